/** Moving a run aside for `train --force`, and undoing a move a killed process left half done. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { basename, join } from 'node:path';
import { ASIDE_NOTE, asidePath, movedAsideFile, moveRunAside, pendingMoveAside, undoPartialMoveAside } from '../../src/runfolder/aside.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-aside-');

function makeRun(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'checkpoints', 'step-4'), { recursive: true });
  writeFileSync(join(dir, '.lock'), '{}');
  for (const f of ['config.yaml', 'status.json', 'metrics.jsonl']) writeFileSync(join(dir, f), f);
  writeFileSync(join(dir, 'checkpoints', 'step-4', 'state.json'), '{}');
  return dir;
}
const siblings = (name: string) => readdirSync(root).filter((e) => e.startsWith(`${name}.old-`)).sort();

test('moveRunAside moves all but the lock to a new sibling folder, a second one the same second gets -2', () => {
  const dir = makeRun('whole');
  const t = new Date('2026-12-05T06:07:08.9Z');
  const a = moveRunAside(dir, t);
  assert.equal(a, join(root, 'whole.old-20261205T060708'));
  assert.deepEqual(readdirSync(dir), ['.lock']);
  assert.deepEqual(readdirSync(a).sort(), ['checkpoints', 'config.yaml', 'metrics.jsonl', 'status.json']);
  writeFileSync(join(dir, 'status.json'), 'new');
  assert.equal(moveRunAside(dir, t), join(root, 'whole.old-20261205T060708-2'));
  assert.equal(undoPartialMoveAside(dir), null, 'no note once a move is complete');
});

/** Runs `f` with fs[call] failing as the system would (EPERM) on a path `fails` picks. */
function failing<T>(call: 'renameSync' | 'mkdirSync', fails: (path: string) => boolean, f: () => T, code = 'EPERM'): T {
  const real = fs[call] as (...a: unknown[]) => unknown;
  (fs as unknown as Record<string, unknown>)[call] = (path: string, ...rest: unknown[]) => {
    if (fails(String(path))) throw Object.assign(new Error(`${code}: operation failed, ${call} '${path}'`), { code, syscall: call.replace('Sync', ''), path: String(path) });
    return real(path, ...rest);
  };
  syncBuiltinESMExports();
  try {
    return f();
  } finally {
    (fs as unknown as Record<string, unknown>)[call] = real;
    syncBuiltinESMExports();
  }
}

test('a move aside that fails half way (a file that cannot be moved, a folder that cannot be made) puts back what moved: the run is as it was', () => {
  for (const [call, fails, what] of [
    ['renameSync', (p: string) => p.endsWith('/status.json'), /EPERM in rename of \S+\/status\.json; the previous run is left as it was$/],
    ['mkdirSync', (p: string) => /\.old-\d{8}T\d{6}$/.test(p), /EPERM in mkdir of \S+\.old-\d{8}T\d{6}; the previous run is left as it was$/],
  ] as const) {
    const dir = makeRun(`stuck-${call}`);
    const before = readdirSync(dir).sort();
    assert.throws(
      () => failing(call, fails, () => moveRunAside(dir)),
      (e: unknown) => e instanceof Error && e.name !== 'AssertionError' && /--force could not move the previous run aside to /.test(e.message) && what.test(e.message),
    );
    assert.deepEqual(readdirSync(dir).sort(), before, `${call}: the run's files are all back, no note`);
    assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), 'status.json');
    assert.deepEqual(siblings(`stuck-${call}`), [], `${call}: no folder aside left`);
  }
});

test('a move aside across file systems (EXDEV: the run folder a symbolic link to another) says to give --out the folder it points to', () => {
  const dir = makeRun('exdev');
  assert.throws(
    () => failing('renameSync', (p) => p.endsWith('/config.yaml'), () => moveRunAside(dir), 'EXDEV'),
    (e: unknown) =>
      e instanceof Error &&
      e.name !== 'AssertionError' &&
      / \(the run folder is a symbolic link to another file system\? give --out the folder it points to\); the previous run is left as it was$/.test(e.message),
  );
  assert.deepEqual(siblings('exdev'), []);
});

test('a half-done move is undone: the moved files go back, the folder aside goes', () => {
  const dir = makeRun('half');
  const aside = join(root, 'half.old-20261205T000000');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: basename(aside) }));
  mkdirSync(aside);
  renameSync(join(dir, 'status.json'), join(aside, 'status.json'));
  renameSync(join(dir, 'checkpoints'), join(aside, 'checkpoints'));
  const note = undoPartialMoveAside(dir);
  assert.match(note ?? '', /put back the files of the previous run/);
  assert.deepEqual(readdirSync(dir).sort(), ['.lock', 'checkpoints', 'config.yaml', 'metrics.jsonl', 'status.json']);
  assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), 'status.json');
  assert.ok(existsSync(join(dir, 'checkpoints', 'step-4', 'state.json')));
  assert.deepEqual(siblings('half'), []);
});

test('killed before the folder aside was made, nothing moved: the note alone goes', () => {
  const dir = makeRun('early');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: 'early.old-20261205T000000' }));
  assert.equal(undoPartialMoveAside(dir), null);
  assert.deepEqual(readdirSync(dir).sort(), ['.lock', 'checkpoints', 'config.yaml', 'metrics.jsonl', 'status.json']);
});

test('a file both folders hold is not overwritten: it stays aside, and the line says where', () => {
  const dir = makeRun('both');
  const aside = join(root, 'both.old-20261205T000000');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: basename(aside) }));
  mkdirSync(aside);
  renameSync(join(dir, 'config.yaml'), join(aside, 'config.yaml'));
  writeFileSync(join(aside, 'status.json'), 'other');
  const note = undoPartialMoveAside(dir);
  assert.match(note ?? '', new RegExp(`except status\\.json, which the run folder also holds: those stay in ${aside}$`));
  assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), 'status.json');
  assert.equal(readFileSync(join(dir, 'config.yaml'), 'utf8'), 'config.yaml');
  assert.deepEqual(readdirSync(aside), ['status.json']);
  assert.ok(!existsSync(join(dir, ASIDE_NOTE)));
});

test('a note naming no folder of the run\'s moves nothing anywhere', () => {
  for (const to of ['../elsewhere', 'other.old-20261205T000000', 'both/x', 7]) {
    const dir = makeRun(`bad-${String(to).replace(/\W/g, '')}`);
    mkdirSync(join(root, 'elsewhere'), { recursive: true });
    writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to }));
    assert.match(undoPartialMoveAside(dir) ?? '', /named no folder of this run's/);
    assert.ok(!existsSync(join(dir, ASIDE_NOTE)));
    assert.equal(readdirSync(dir).length, 5);
  }
});

test('pendingMoveAside: null without a note; the folder a move has begun to fill; no folder for a move killed before it made one', () => {
  const dir = makeRun('pending');
  assert.equal(pendingMoveAside(dir), null);
  const aside = join(root, 'pending.old-20261205T000000');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: basename(aside) }));
  assert.deepEqual(pendingMoveAside(dir), { folder: null });
  mkdirSync(aside);
  assert.deepEqual(pendingMoveAside(dir), { folder: aside });
});

test('movedAsideFile finds a file a half-done move left aside, read-only; nothing when there is no note or no such file', () => {
  const dir = makeRun('find');
  assert.equal(movedAsideFile(dir, 'config.yaml'), null);
  const aside = join(root, 'find.old-20261205T000000');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: basename(aside) }));
  mkdirSync(aside);
  renameSync(join(dir, 'config.yaml'), join(aside, 'config.yaml'));
  assert.equal(movedAsideFile(dir, 'config.yaml'), join(aside, 'config.yaml'));
  assert.equal(movedAsideFile(dir, 'status.json'), null);
  assert.ok(existsSync(join(dir, ASIDE_NOTE)) && existsSync(join(aside, 'config.yaml')), 'nothing moved');
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: '../find.old-20261205T000000' }));
  assert.equal(movedAsideFile(dir, 'config.yaml'), null);
});

test('asidePath: <base>.old-<YYYYMMDDTHHMMSS>[-N]<ext>, a file of the same second taken gets -2, then -3', () => {
  const dir = tempDir('moco3-aside-name-');
  const base = join(dir, 'baselines');
  const now = new Date('2026-12-05T10:21:26.084Z');
  const first = asidePath(base, '.json', now);
  assert.equal(basename(first), 'baselines.old-20261205T102126.json');
  writeFileSync(first, '{}');
  const second = asidePath(base, '.json', now);
  assert.equal(basename(second), 'baselines.old-20261205T102126-2.json');
  writeFileSync(second, '{}');
  assert.equal(basename(asidePath(base, '.json', now)), 'baselines.old-20261205T102126-3.json');
  // a run folder's: no extension
  assert.equal(basename(asidePath(join(dir, 'run'), '', now)), 'run.old-20261205T102126');
});
