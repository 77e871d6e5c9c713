/** What a sweep resumes from (src/sweep/resume.ts), on run folders of small checkpoints made here: no training. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../../src/engine/files.ts';
import { stepDirName } from '../../src/runfolder/checkpoints.ts';
import { LOCK_NAME } from '../../src/runfolder/lock.ts';
import { RunFolderError } from '../../src/runfolder/paths.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import type { PlannedRun } from '../../src/sweep/plan.ts';
import { checkSweepResumes, withResumePoint } from '../../src/sweep/resume.ts';
import { writeCheckpointFile } from '../helpers/checkpoint.ts';
import { tempDir } from '../helpers/tmp.ts';

const f32 = (n: number) => ({ dtype: 'F32' as const, shape: [n], data: new Float32Array(n) });

/**
 * A run folder with a status.json of `status`, checkpoints of `steps` (as a save writes them), last.json naming
 * `last` (none: null) and metrics rows of steps 0..`rows`.
 */
function run(status: string, steps: number[], last: number | null, rows: number): string {
  const dir = tempDir('moco3-sweep-resume-');
  writeFileSync(join(dir, 'status.json'), JSON.stringify({ status, step: rows, total_steps: 10, error: status === 'failed' ? 'boom' : undefined }));
  for (const step of steps) {
    const c = join(dir, 'checkpoints', stepDirName(step));
    mkdirSync(c, { recursive: true });
    const state = { step, epoch: 0, wall_s: 1, train_s: 1, images_seen: step * 8, best_knn_top1: null, last_knn_top1: null, config_hash: 'c0ffee00', optimizer: {}, config: { train: { log_every: 1 } } };
    writeFileSync(join(c, 'state.json'), JSON.stringify(state));
    writeCheckpointFile(join(c, 'model.safetensors'), new Map([['base_encoder.w', f32(2)], ['momentum_encoder.w', f32(2)]]), {});
    writeCheckpointFile(join(c, 'optimizer.safetensors'), new Map([['base_encoder.w.m', f32(2)]]), {});
  }
  if (last !== null) writeJsonAtomic(join(dir, 'checkpoints', 'last.json'), { step: last, dir: stepDirName(last) });
  writeFileSync(join(dir, 'metrics.jsonl'), Array.from({ length: rows + 1 }, (_, s) => `{"step":${s},"loss":1}\n`).join(''));
  return dir;
}

const planned = (id: string, dir: string) => ({ id, dir, config: { train: { log_every: 1 } } }) as unknown as PlannedRun;
const ckpt = (dir: string, step: number) => join(dir, 'checkpoints', stepDirName(step));

/** A state.json of the checkpoint of `step` without images_seen: damage, which a resume refuses. */
function damage(dir: string, step: number): string {
  const state = join(ckpt(dir, step), 'state.json');
  const { images_seen: _, ...rest } = JSON.parse(readFileSync(state, 'utf8'));
  writeFileSync(state, JSON.stringify(rest));
  return state;
}

test("withResumePoint: an interrupted or failed run's checkpoint as the resume finds it (the newest of its own steps without last.json); a damaged one is its error; a finished run's state as it is", () => {
  for (const status of ['interrupted', 'failed']) {
    const dir = run(status, [2, 4], null, 4);
    const before = readRunState(dir);
    assert.deepEqual([before.state, before.checkpoint_step], [status, null], 'no last.json: the state knows no checkpoint');
    const s = withResumePoint(before, dir, 1);
    assert.deepEqual([s.state, s.checkpoint_step, s.resume_error], [status, 4, undefined]);
  }
  const damaged = run('interrupted', [2, 4], 4, 4);
  const state = damage(damaged, 4);
  const s = withResumePoint(readRunState(damaged), damaged, 1);
  assert.deepEqual([s.state, s.checkpoint_step], ['interrupted', 4]);
  assert.ok(s.resume_error?.startsWith(`${state}: images_seen: expected a non-negative integer, got nothing`), s.resume_error);
  const done = readRunState(damaged);
  const completed = { ...done, state: 'completed' as const };
  assert.equal(withResumePoint(completed, damaged, 1), completed);
});

test('checkSweepResumes: the checkpoint each run resumes from, by id; a damaged checkpoint or metrics line stops the sweep, naming the train command; a run another process trains is left to it', () => {
  const a = run('interrupted', [2, 4], 4, 4);
  const b = run('failed', [2], 2, 3);
  const fresh = tempDir('moco3-sweep-resume-');
  const runs = [a, b, fresh].map((dir, i) => ({ run: planned(`r${i}`, dir), before: readRunState(dir) }));
  assert.deepEqual([...checkSweepResumes(runs)], [
    ['r0', ckpt(a, 4)],
    ['r1', ckpt(b, 2)],
  ]);
  // a damaged newest checkpoint: the previous offered with the command that resumes from it
  damage(a, 4);
  assert.throws(
    () => checkSweepResumes([{ run: planned('r0', a), before: readRunState(a) }]),
    (e: Error) => e.message.includes(`resume the run from the previous checkpoint with \`moco3 train -c ${join(a, 'config.yaml')} --out ${a} --resume --checkpoint step-2\``),
  );
  // a damaged metrics line before the last: said now, not once the run's turn comes
  writeFileSync(join(b, 'metrics.jsonl'), '{"step":0,"loss":1}\n{"step":1,"lo\n{"step":2,"loss":1}\n');
  assert.throws(() => checkSweepResumes([{ run: planned('r1', b), before: readRunState(b) }]), (e: Error) => e instanceof RunFolderError && /metrics\.jsonl: line 2 is not a JSON object/.test(e.message));
  // the same runs, trained by another live process: theirs, nothing said
  const now = new Date().toISOString();
  for (const dir of [a, b]) writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ pid: process.pid, host: 'node-b', proc_start: null, since: now, heartbeat: now, sweep: 'x', timeout_s: 600 }));
  // as the sweep saw them before (interrupted), and as it sees them now (running)
  assert.deepEqual([...checkSweepResumes([a, b].map((dir, i) => ({ run: planned(`r${i}`, dir), before: { ...readRunState(dir), state: 'interrupted' as const } })))], []);
  assert.deepEqual([...checkSweepResumes([a, b].map((dir, i) => ({ run: planned(`r${i}`, dir), before: readRunState(dir) })))], []);
});

test("checkSweepResumes: a run the sweep found running is left to its process, whatever its checkpoint; train.log_every 4 of the run's config (its checkpoints not saying theirs): rows at 0 and 4, the checkpoint at 8 lost its rows", () => {
  const dir = run('interrupted', [2, 4], 4, 4);
  damage(dir, 4);
  assert.deepEqual([...checkSweepResumes([{ run: planned('r0', dir), before: { ...readRunState(dir), state: 'running' } }])], []);
  // rows at 0 and 4, checkpoints at 4 and 8 whose state.json does not say their log_every (written before it
  // kept the config's): at log_every 4 the row of step 8 was due before its checkpoint, so it was lost
  const sparse = run('interrupted', [4, 8], 8, 8);
  writeFileSync(join(sparse, 'metrics.jsonl'), '{"step":0,"loss":1}\n{"step":4,"loss":1}\n');
  for (const step of [4, 8]) {
    const state = join(ckpt(sparse, step), 'state.json');
    writeFileSync(state, JSON.stringify({ ...JSON.parse(readFileSync(state, 'utf8')), config: {} }));
  }
  const every4 = { ...planned('r0', sparse), config: { train: { log_every: 4 } } } as unknown as PlannedRun;
  assert.deepEqual([...checkSweepResumes([{ run: every4, before: readRunState(sparse) }])], [['r0', ckpt(sparse, 4)]]);
});
