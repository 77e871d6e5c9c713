/** Where a resume starts (src/runfolder/resume.ts), on run folders of small checkpoints made here: no training. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../../src/engine/files.ts';
import { CheckpointError, stepDirName } from '../../src/runfolder/checkpoints.ts';
import { resumeCheckpoint } from '../../src/runfolder/resume.ts';
import { writeCheckpointFile } from '../helpers/checkpoint.ts';
import { tempDir } from '../helpers/tmp.ts';

const f32 = (n: number) => ({ dtype: 'F32' as const, shape: [n], data: new Float32Array(n) });

/** A checkpoint folder of `step` as a save writes it: a complete state.json, both tensor files and their digests. */
function checkpoint(runDir: string, step: number, logEvery = 1): string {
  const dir = join(runDir, 'checkpoints', stepDirName(step));
  mkdirSync(dir, { recursive: true });
  const state = { step, epoch: 0, wall_s: 1, train_s: 1, images_seen: step * 8, best_knn_top1: null, last_knn_top1: null, config_hash: 'c0ffee00', optimizer: {}, config: { train: { log_every: logEvery } } };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  writeCheckpointFile(join(dir, 'model.safetensors'), new Map([['base_encoder.w', f32(2)], ['momentum_encoder.w', f32(2)]]), {});
  writeCheckpointFile(join(dir, 'optimizer.safetensors'), new Map([['base_encoder.w.m', f32(2)]]), {});
  return dir;
}

/** A run folder with checkpoints of `steps`, last.json naming `last` (none: null), and metrics rows of steps 0..`rows` (none: null). */
function run(steps: number[], last: number | null, rows: number | null, logEvery = 1, left?: number[]): string {
  const dir = tempDir('moco3-resume-');
  for (const s of steps) checkpoint(dir, s, logEvery);
  if (last !== null) writeJsonAtomic(join(dir, 'checkpoints', 'last.json'), { step: last, dir: stepDirName(last), ...(left ? { left } : {}) });
  if (rows !== null) {
    const logged = Array.from({ length: rows + 1 }, (_, s) => s).filter((s) => s % logEvery === 0);
    writeFileSync(join(dir, 'metrics.jsonl'), logged.map((s) => `${JSON.stringify({ step: s, loss: 1 })}\n`).join(''));
  }
  return dir;
}
const ckpt = (dir: string, step: number) => join(dir, 'checkpoints', stepDirName(step));

test('without last.json a resume takes the newest checkpoint of the run\'s own steps: not one past the metrics (rows lost), not an older one', () => {
  const dir = run([2, 4, 6], null, 4);
  assert.equal(resumeCheckpoint(dir), ckpt(dir, 4));
  rmSync(join(dir, 'metrics.jsonl'));
  assert.equal(resumeCheckpoint(dir), ckpt(dir, 6), 'no metrics to tell by: the newest');
});

test('a checkpoint last.json names as left by a rewind is refused by --checkpoint, though the rows trained again pass it; the resume takes last.json\'s', () => {
  const dir = run([2, 4, 6], 4, 6, 1, [6]);
  assert.throws(
    () => resumeCheckpoint(dir, 'step-6'),
    (e: Error) => e instanceof CheckpointError && e.message.startsWith('--checkpoint step-6: step 6 is of steps the run left when it went back to step 4'),
  );
  assert.equal(resumeCheckpoint(dir), ckpt(dir, 4));
  assert.equal(resumeCheckpoint(dir, 'step-2'), ckpt(dir, 2));
});

test('without metrics, a checkpoint newer than last.json\'s (an older rewind that named none) is refused by --checkpoint', () => {
  const dir = run([2, 4, 6], 4, null);
  assert.throws(() => resumeCheckpoint(dir, 'step-6'), (e: Error) => e instanceof CheckpointError && e.message.startsWith('--checkpoint step-6: step 6 is of steps the run left when it went back to step 4 ('));
  assert.equal(resumeCheckpoint(dir, 'step-4'), ckpt(dir, 4));
});

test('rows lost after step 2 with checkpoints at 4 and 6 past them: the resume goes back to step 2, the newest the rows reach, and says so', () => {
  const dir = run([2, 4, 6], 6, 2);
  const notes: string[] = [];
  assert.equal(resumeCheckpoint(dir, undefined, { note: (t) => notes.push(t) }), ckpt(dir, 2));
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /ends at step 2, before the newest checkpoint \(step 6\): the rows of the steps between were lost; resuming from step 2,/);
});

test("train.log_every 4: a checkpoint a whole interval past the last row lost its rows; one within the interval, or past a multiple the checkpoint before it had passed, is the run's own", () => {
  // rows at 0 and 4, checkpoint at 8: the row of step 8 comes before its checkpoint, so it was lost
  const lost = run([4, 8], 8, 4, 4);
  const notes: string[] = [];
  assert.equal(resumeCheckpoint(lost, undefined, { note: (t) => notes.push(t) }), ckpt(lost, 4));
  assert.equal(notes.length, 1);
  // rows at 0 and 4, checkpoints at 2 and 6 (time-kept): the row of step 4 is there, none is due before 8
  const own = run([2, 6], 6, 4, 4);
  const none: string[] = [];
  assert.equal(resumeCheckpoint(own, undefined, { note: (t) => none.push(t) }), ckpt(own, 6));
  assert.deepEqual(none, []);
});

test("--checkpoint as the results name it (checkpoints/step-N, from the run folder) wherever moco3 runs; the run's folder or its checkpoints folder is no checkpoint", () => {
  const dir = run([2, 4], 4, 4);
  assert.equal(resumeCheckpoint(dir, join('checkpoints', stepDirName(2))), join(dir, 'checkpoints', stepDirName(2)));
  for (const [given, what] of [[dir, 'folder'], [join(dir, 'checkpoints'), 'checkpoints folder']] as const) {
    assert.throws(
      () => resumeCheckpoint(dir, given),
      (e: Error) => e instanceof CheckpointError && e.message === `--checkpoint ${given}: the run's ${what}, not one checkpoint; give step-N (${join(dir, 'checkpoints')} holds step-2, step-4)`,
    );
  }
});

test("a state.json whose train_images is no count, or whose model file's momentum encoder is of another shape than its base encoder, is damage: the previous checkpoint offered", () => {
  const dir = run([2, 4], 4, 4);
  const state = join(ckpt(dir, 4), 'state.json');
  const good = readFileSync(state, 'utf8');
  writeFileSync(state, JSON.stringify({ ...JSON.parse(good), train_images: -1 }));
  assert.throws(() => resumeCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${state}: train_images: expected a non-negative integer, got -1; resume from the previous checkpoint with --checkpoint step-2`));
  writeFileSync(state, good);
  writeCheckpointFile(join(ckpt(dir, 4), 'model.safetensors'), new Map([['base_encoder.w', f32(2)], ['momentum_encoder.w', f32(3)]]), {});
  assert.throws(
    () => resumeCheckpoint(dir),
    (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${ckpt(dir, 4)}: model.safetensors base_encoder.w has shape [2] but momentum_encoder.w has [3]: the files are of different models`),
  );
});

test('a resume needs every key of state.json moco3 writes: one without images_seen is damage, the previous checkpoint offered; a step-0 checkpoint (counts of 0) is whole', () => {
  const dir = run([0, 4], 4, 4);
  assert.equal(resumeCheckpoint(dir, 'step-0'), ckpt(dir, 0));
  const state = join(ckpt(dir, 4), 'state.json');
  const { images_seen: _, ...rest } = JSON.parse(readFileSync(state, 'utf8'));
  writeFileSync(state, JSON.stringify(rest));
  assert.throws(() => resumeCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${state}: images_seen: expected a non-negative integer, got nothing; resume from the previous checkpoint with --checkpoint step-0`));
});

test('an evaluation reads the newest checkpoint past lost rows (its weights are the run\'s); a last.json naming a missing folder offers the newest complete one', () => {
  const dir = run([2, 4, 6], 6, 2);
  const notes: string[] = [];
  assert.equal(resumeCheckpoint(dir, undefined, { evaluate: true, note: (t) => notes.push(t) }), ckpt(dir, 6));
  assert.deepEqual(notes, []);
  const whole = run([2, 4, 6], 6, 6);
  const last = join(whole, 'checkpoints', 'last.json');
  writeFileSync(last, JSON.stringify({ step: 8, dir: stepDirName(8) }));
  assert.throws(
    () => resumeCheckpoint(whole),
    (e: Error) => e instanceof CheckpointError && e.message === `${last}: names ${stepDirName(8)}, which is missing; resume from the newest complete checkpoint with --checkpoint step-6 (the later steps are trained again), or start again with --force`,
  );
});
