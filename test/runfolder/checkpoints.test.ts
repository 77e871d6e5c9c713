/** The checkpoint folders of a run (src/runfolder/checkpoints.ts), on folders made here: no tensors, no training. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CheckpointError,
  checkNoStrayTensors,
  checkpointFolderStep,
  checkpointStep,
  checkpointTempDir,
  commitCheckpoint,
  findLastCheckpoint,
  lastPointer,
  listCheckpoints,
  pruneCheckpoints,
  restoreAsideCheckpoints,
  rewindLast,
  stepDirName,
  stepOfDir,
} from '../../src/runfolder/checkpoints.ts';
import { renamesOnto } from '../helpers/renames.ts';
import { tempDir } from '../helpers/tmp.ts';

/** A checkpoint folder under `root` named `name`, with a state.json of `step` unless `step` is null (an incomplete one). */
function folder(root: string, name: string, step: number | null): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  if (step !== null) writeFileSync(join(dir, 'state.json'), JSON.stringify({ step }));
  return dir;
}

const readLast = (root: string): unknown => JSON.parse(readFileSync(join(root, 'last.json'), 'utf8'));

/** The pid of a process that has ended. */
const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

test('checkpoint folder names: seven digits, step-N only', () => {
  assert.equal(stepDirName(12), 'step-0000012');
  assert.equal(stepOfDir('step-0000012'), 12);
  for (const name of ['step-12.old', 'xstep-12', '.step-0000012.123.tmp', 'last.json', 'step-']) assert.equal(stepOfDir(name), null, name);
});

test('listCheckpoints: the step-N folders by step (not by name), nothing else; a file in the folder\'s place is said', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  for (const name of ['step-10', 'step-9', 'step-100', '.step-0000003.1.tmp', 'step-x']) folder(root, name, 1);
  writeFileSync(join(root, 'last.json'), '{}');
  assert.deepEqual(
    listCheckpoints(root).map((c) => [c.step, c.dir]),
    [
      [9, join(root, 'step-9')],
      [10, join(root, 'step-10')],
      [100, join(root, 'step-100')],
    ],
  );
  assert.deepEqual(listCheckpoints(join(root, 'none')), []);
  writeFileSync(join(root, '..', 'file'), '');
  assert.throws(() => listCheckpoints(join(root, '..', 'file')), (e: Error) => e instanceof CheckpointError && /file: is a file, where moco3 keeps the run's checkpoints/.test(e.message));
});

test('commitCheckpoint: the folder renamed to step-N and last.json pointed at it; one of the same step is replaced, nothing left aside; left keeps only the rewound folders still there past the step', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const tmp = checkpointTempDir(root, 4);
  assert.equal(tmp, join(root, `.step-0000004.${process.pid}.tmp`));
  writeFileSync(join(tmp, 'state.json'), '{"step":4,"v":1}');
  assert.equal(commitCheckpoint(root, tmp, 4), join(root, 'step-0000004'));
  assert.deepEqual(readLast(root), { step: 4, dir: 'step-0000004' });
  // the same step again (a run stopped right after its checkpoint): the new folder's contents, no other
  const again = checkpointTempDir(root, 4);
  writeFileSync(join(again, 'state.json'), '{"step":4,"v":2}');
  commitCheckpoint(root, again, 4);
  assert.equal(readFileSync(join(root, 'step-0000004', 'state.json'), 'utf8'), '{"step":4,"v":2}');
  assert.deepEqual(readdirSync(root).sort(), ['last.json', 'step-0000004']);
  // a rewind left steps 6 and 8; 6 is gone since: step 5's last.json names 8 only, step 9's none
  folder(root, stepDirName(8), 8);
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 4, dir: 'step-0000004', left: [6, 8] }));
  const five = checkpointTempDir(root, 5);
  writeFileSync(join(five, 'state.json'), '{"step":5}');
  commitCheckpoint(root, five, 5);
  assert.deepEqual(readLast(root), { step: 5, dir: 'step-0000005', left: [8] });
  const nine = checkpointTempDir(root, 9);
  writeFileSync(join(nine, 'state.json'), '{"step":9}');
  commitCheckpoint(root, nine, 9);
  assert.deepEqual(readLast(root), { step: 9, dir: 'step-0000009' });
});

test('checkpointTempDir: a temporary folder left by an earlier write of the same step is emptied', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const tmp = checkpointTempDir(root, 3);
  writeFileSync(join(tmp, 'model.safetensors'), 'half written');
  assert.equal(checkpointTempDir(root, 3), tmp);
  assert.deepEqual(readdirSync(tmp), []);
});

test("rewindLast points last.json back at an older checkpoint and names the newer ones it left; nothing for the checkpoint it names already, or one outside the run's folder", () => {
  const base = tempDir('moco3-ckpt-');
  const root = join(base, 'checkpoints');
  for (const s of [2, 4, 6]) folder(root, stepDirName(s), s);
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 6, dir: 'step-0000006' }));
  rewindLast(root, join(root, 'step-0000002'), 2);
  assert.deepEqual(readLast(root), { step: 2, dir: 'step-0000002', left: [4, 6] });
  // already named: left as it is (its left list kept)
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 4, dir: 'step-0000004', left: [9] }));
  rewindLast(root, join(root, 'step-0000004'), 4);
  assert.deepEqual(readLast(root), { step: 4, dir: 'step-0000004', left: [9] });
  // another run's checkpoint (--checkpoint of another folder): this run's last.json is not touched
  const other = folder(join(base, 'other', 'checkpoints'), stepDirName(2), 2);
  rewindLast(root, other, 2);
  assert.deepEqual(readLast(root), { step: 4, dir: 'step-0000004', left: [9] });
});

test('lastPointer, checkpointStep, findLastCheckpoint: last.json when its folder is complete; otherwise the newest complete folder, or none', () => {
  const run = tempDir('moco3-ckpt-');
  const root = join(run, 'checkpoints');
  assert.equal(findLastCheckpoint(root), null);
  assert.equal(checkpointStep(run), null);
  folder(root, stepDirName(2), 2);
  folder(root, stepDirName(4), 4);
  folder(root, stepDirName(6), null); // its state.json never written
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 6, dir: 'step-0000006', left: [-1, 2.5, 'x', 8] }));
  assert.deepEqual(lastPointer(root), { step: 6, dir: 'step-0000006', left: [8] });
  assert.equal(checkpointStep(run), null, 'last.json names an incomplete folder');
  assert.equal(findLastCheckpoint(root), join(root, 'step-0000004'));
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 2, dir: 'step-0000002' }));
  assert.equal(checkpointStep(run), 2);
  assert.equal(findLastCheckpoint(root), join(root, 'step-0000002'));
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 'x', dir: 7 }));
  assert.equal(lastPointer(root), null);
  assert.equal(checkpointStep(run), null);
  assert.equal(findLastCheckpoint(root), join(root, 'step-0000004'));
  assert.equal(checkpointFolderStep(join(root, 'step-0000004')), 4);
  assert.equal(checkpointFolderStep(join(root, 'step-0000006')), null);
});

test('findLastCheckpoint without last.json takes the highest step, also past step 9,999,999 where the names grow a digit', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  folder(root, stepDirName(9_999_999), 9_999_999);
  folder(root, stepDirName(10_000_000), 10_000_000);
  folder(root, stepDirName(10_000_001), null); // incomplete
  assert.equal(stepDirName(10_000_000), 'step-10000000');
  assert.equal(findLastCheckpoint(root), join(root, 'step-10000000'));
});

test("restoreAsideCheckpoints puts back a dead process's checkpoint moved aside when its replacement never took the name; not a live process's, nor one whose replacement is complete", () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const dead = deadPid();
  folder(root, `.step-0000004.old.${dead}.tmp`, 4);
  folder(root, stepDirName(4), null); // the new folder's rename half done: no state.json
  const live = folder(root, `.step-0000006.old.${process.ppid}.tmp`, 6);
  folder(root, `.step-0000008.old.${dead}.tmp`, 8);
  folder(root, stepDirName(8), 80); // the replacement took the name, complete
  restoreAsideCheckpoints(root);
  assert.equal(readFileSync(join(root, 'step-0000004', 'state.json'), 'utf8'), '{"step":4}');
  assert.equal(existsSync(join(root, `.step-0000004.old.${dead}.tmp`)), false);
  assert.equal(existsSync(live), true);
  assert.equal(existsSync(join(root, 'step-0000006')), false);
  assert.equal(readFileSync(join(root, 'step-0000008', 'state.json'), 'utf8'), '{"step":80}');
  assert.equal(existsSync(join(root, `.step-0000008.old.${dead}.tmp`)), true);
});

test("pruneCheckpoints: dead processes' and this process's temporary folders go, a live process's stays; the folders the cadence does not keep go, the current one stays", () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const dead = deadPid();
  for (const s of [2, 4, 6, 8]) folder(root, stepDirName(s), s);
  folder(root, `.step-0000003.${dead}.tmp`, null);
  folder(root, `.step-0000005.${process.ppid}.tmp`, null);
  folder(root, `.step-0000007.${process.pid}.tmp`, null);
  // a dead process's checkpoint moved aside, its replacement never renamed in: put back, not removed as a temporary folder
  folder(root, `.step-0000012.old.${dead}.tmp`, 12);
  writeFileSync(join(root, 'last.json'), JSON.stringify({ step: 12, dir: 'step-0000012' }));
  pruneCheckpoints(root, (s) => s % 4 === 0, join(root, 'step-0000006'));
  assert.deepEqual(readdirSync(root).sort(), [`.step-0000005.${process.ppid}.tmp`, 'last.json', 'step-0000004', 'step-0000006', 'step-0000008', 'step-0000012']);
  assert.equal(readFileSync(join(root, 'step-0000012', 'state.json'), 'utf8'), '{"step":12}');
});

test("checkNoStrayTensors: a tensor the model has no place for is named (a file of another model); one outside what the reader loads is not checked", () => {
  const has = (n: string) => n === 'base_encoder.a';
  assert.doesNotThrow(() => checkNoStrayTensors('/c', ['base_encoder.a'], has));
  assert.throws(
    () => checkNoStrayTensors('/c', ['base_encoder.a', 'base_encoder.blocks.12.w'], has),
    (e: Error) => e instanceof CheckpointError && e.message.startsWith("/c/model.safetensors: holds base_encoder.blocks.12.w, which the run's model has no place for"),
  );
  assert.doesNotThrow(() => checkNoStrayTensors('/c', ['base_encoder.a', 'momentum_encoder.x'], has, (n) => n.startsWith('base_encoder.')));
});

test('commitCheckpoint that cannot write last.json puts the folder of the same step it replaced back, and leaves no newer folder', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  folder(root, stepDirName(4), 4);
  mkdirSync(join(root, 'last.json', 'x'), { recursive: true }); // a folder in last.json's place: its write fails
  const again = checkpointTempDir(root, 4);
  writeFileSync(join(again, 'state.json'), '{"step":4,"v":2}');
  assert.throws(() => commitCheckpoint(root, again, 4));
  assert.equal(readFileSync(join(root, 'step-0000004', 'state.json'), 'utf8'), '{"step":4}');
  const six = checkpointTempDir(root, 6);
  writeFileSync(join(six, 'state.json'), '{"step":6}');
  assert.throws(() => commitCheckpoint(root, six, 6));
  assert.equal(existsSync(join(root, 'step-0000006')), false);
  assert.deepEqual(readdirSync(root).filter((d) => !d.endsWith('.tmp')).sort(), ['last.json', 'step-0000004']);
});

test('last.json is written whole under another name and renamed onto its own, by a commit and by a rewind', () => {
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  folder(root, stepDirName(2), 2);
  const tmp = checkpointTempDir(root, 4);
  writeFileSync(join(tmp, 'state.json'), '{"step":4}');
  const onto = renamesOnto(root, () => {
    commitCheckpoint(root, tmp, 4);
    rewindLast(root, join(root, stepDirName(2)), 2);
  });
  assert.deepEqual(onto, ['step-0000004', 'last.json', 'last.json']);
  assert.deepEqual(readLast(root), { step: 2, dir: 'step-0000002', left: [4] });
});
