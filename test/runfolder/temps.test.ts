/**
 * Temporary files left by killed processes: this host's are told by their pid, another host's (a results
 * folder shared over the network) only by their age, since a pid there means nothing here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { checkOutputDir, FOREIGN_TEMP_STALE_MS, hostTag, isStaleTemp, missingAncestors, removeEmptyFolders, tempName, writeFileAtomic } from '../../src/engine/files.ts';
import { cleanStaleTemps } from '../../src/runfolder/lock.ts';
import { isNotInputFault } from '../../src/config/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-temps-');
// above the kernel's largest pid: never a live process
const dead = 2 ** 22 + 4321;
const host = hostTag();

function file(dir: string, name: string, ageMs = 0): string {
  writeFileSync(join(dir, name), 'x');
  if (ageMs) {
    const t = (Date.now() - ageMs) / 1000;
    utimesSync(join(dir, name), t, t);
  }
  return name;
}

test('tempName carries host and pid; a write names the file, not its temporary name, when it fails', () => {
  assert.equal(tempName('sweep.yaml'), `.sweep.yaml.${host}.${process.pid}.tmp`);
  const dir = join(root, 'named');
  mkdirSync(join(dir, 'status.json'), { recursive: true });
  assert.throws(() => writeFileAtomic(join(dir, 'status.json'), '{}'), (e: NodeJS.ErrnoException) => e.path === join(dir, 'status.json'));
  assert.deepEqual(readdirSync(dir), ['status.json'], 'the temporary file removed');
  // a full disk fails the write of a descriptor, whose error names no file (Node's own: code, syscall, no path)
  for (const call of ['writeSync', 'fsyncSync'] as const) {
    const real = fs[call];
    (fs as Record<string, unknown>)[call] = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    };
    syncBuiltinESMExports();
    try {
      assert.throws(() => writeFileAtomic(join(dir, 'summary.json'), '{}'), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.path === join(dir, 'summary.json'), call);
    } finally {
      (fs as Record<string, unknown>)[call] = real;
      syncBuiltinESMExports();
    }
    assert.deepEqual(readdirSync(dir), ['status.json'], `${call}: the temporary file removed`);
  }
});

test('isStaleTemp: this host by pid, other hosts and nameless ones by age, checkpoints by pid alone', () => {
  const dir = join(root, 'rules');
  mkdirSync(dir);
  const old = FOREIGN_TEMP_STALE_MS + 60_000;
  const cases: [string, boolean, boolean?][] = [
    [file(dir, `.status.json.${host}.${dead}.tmp`), true],
    [file(dir, `.status.json.${host}.${process.ppid}.tmp`), false],
    [file(dir, tempName('summary.json')), false],
    [file(dir, `.lock.${host}-${dead}.stale.tmp`), true],
    [file(dir, `.lock.${host}-${process.ppid}.tmp`), false],
    // another host's write in progress: its pid may be dead here, or alive as another process
    [file(dir, `.sweep.yaml.node-7.cluster.${dead}.tmp`), false],
    [file(dir, `.sweep.yaml.node-8.${process.pid}.tmp`), false],
    [file(dir, `.baselines.json.node-7.${dead}.tmp`, old), true],
    // earlier versions' names say no host
    [file(dir, `.status.json.${dead}.tmp`), false],
    [file(dir, `.meta.json.${dead}.tmp`, old), true],
    [file(dir, `.step-0000003.${dead}.tmp`), true, true],
    [file(dir, `.step-0000003.${process.ppid}.tmp`), false, true],
    [file(dir, 'status.json'), false],
    [file(dir, `.notes.${dead}.tmp.keep`), false],
    // a user's own file of that shape, however old, is no temporary of moco3's (they start with a dot)
    [file(dir, `notes.${dead}.tmp`, old), false],
    [file(dir, `notes.${host}.${dead}.tmp`), false],
  ];
  for (const [name, stale, pidOnly] of cases) assert.equal(isStaleTemp(dir, name, pidOnly), stale, name);
});

test('cleanStaleTemps on a folder hosts share: another host\'s write in progress is left, this host\'s dead ones go', () => {
  const dir = join(root, 'sweep');
  mkdirSync(join(dir, 'checkpoints'), { recursive: true });
  const theirs = file(dir, `.sweep.yaml.node-7.${dead}.tmp`);
  const mine = file(dir, `.sweep.yaml.${host}.${dead}.tmp`);
  mkdirSync(join(dir, 'checkpoints', `.step-0000006.${dead}.tmp`));
  cleanStaleTemps(dir);
  assert.ok(existsSync(join(dir, theirs)));
  assert.ok(!existsSync(join(dir, mine)));
  assert.deepEqual(readdirSync(join(dir, 'checkpoints')), []);
});

test("cleanStaleTemps puts back a checkpoint a killed process had moved aside to replace it (the run's only copy of it), and a run a killed train --force had begun to move aside", () => {
  const dir = join(root, 'killed');
  mkdirSync(join(dir, 'checkpoints', `.step-0000008.old.${dead}.tmp`), { recursive: true });
  writeFileSync(join(dir, 'checkpoints', `.step-0000008.old.${dead}.tmp`, 'state.json'), '{"step": 8}');
  writeFileSync(join(dir, 'checkpoints', 'last.json'), '{"step": 8, "dir": "step-0000008"}');
  const aside = join(root, 'killed.old-20261205T000000');
  mkdirSync(aside);
  writeFileSync(join(aside, 'metrics.jsonl'), '{"step": 0}\n');
  writeFileSync(join(dir, '.aside.json'), JSON.stringify({ to: 'killed.old-20261205T000000' }));
  // a sweep folder's cleanup leaves the move to the run's own lock holder
  assert.deepEqual(cleanStaleTemps(dir, false), []);
  assert.ok(existsSync(join(aside, 'metrics.jsonl')));
  assert.equal(readFileSync(join(dir, 'checkpoints', 'step-0000008', 'state.json'), 'utf8'), '{"step": 8}');
  assert.deepEqual(readdirSync(join(dir, 'checkpoints')).sort(), ['last.json', 'step-0000008']);
  const notes = cleanStaleTemps(dir);
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /put back the files of the previous run that an interrupted `train --force` had begun to move aside$/);
  assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), '{"step": 0}\n');
  assert.equal(existsSync(aside), false);
});

test('a file rewritten through a temporary name keeps the permissions of the one it replaces', () => {
  const dir = tempDir('moco3-mode-');
  const p = join(dir, 'summary.json');
  writeFileAtomic(p, '{}');
  chmodSync(p, 0o600);
  writeFileAtomic(p, '{"a": 1}');
  assert.equal(statSync(p).mode & 0o777, 0o600);
  assert.equal(readFileSync(p, 'utf8'), '{"a": 1}');
  chmodSync(p, 0o640);
  writeFileAtomic(p, '{"a": 2}');
  assert.equal(statSync(p).mode & 0o777, 0o640);
  // a mode the umask would narrow (a group's shared folder: 664) is kept too
  const umask = process.umask(0o022);
  try {
    chmodSync(p, 0o664);
    writeFileAtomic(p, '{"a": 3}');
    assert.equal(statSync(p).mode & 0o777, 0o664);
  } finally {
    process.umask(umask);
  }
});

test("a write whose folder cannot be synced (a failing disk's EIO) fails, naming the folder; a file system that cannot sync a folder (EINVAL) is fine", () => {
  const dir = join(root, 'dirsync');
  mkdirSync(dir);
  const real = fs.fsyncSync;
  for (const [code, fails] of [['EIO', true], ['EINVAL', false]] as const) {
    let calls = 0;
    // the file's own fsync passes; the folder's, after the rename, fails
    (fs as Record<string, unknown>).fsyncSync = (fd: number) => {
      if (++calls === 2) throw Object.assign(new Error(`${code}: fsync`), { code, syscall: 'fsync' });
      real(fd);
    };
    syncBuiltinESMExports();
    try {
      const write = () => writeFileAtomic(join(dir, 'status.json'), code);
      if (fails) assert.throws(write, (e: NodeJS.ErrnoException) => e.code === 'EIO' && e.path === dir);
      else write();
    } finally {
      (fs as Record<string, unknown>).fsyncSync = real;
      syncBuiltinESMExports();
    }
    assert.equal(calls, 2, `${code}: the file and its folder synced`);
    assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), code, `${code}: the file in place`);
  }
});

test('removeEmptyFolders: the folders a refused command made go, deepest first, relative and absolute paths mixed', () => {
  const cwd = process.cwd();
  const base = join(root, 'made');
  mkdirSync(base);
  process.chdir(base);
  try {
    // `train --out runs/r1` with runs/ missing: the ancestors come absolute, the run folder as given
    const made = [...missingAncestors('runs/r1'), 'runs/r1'];
    assert.deepEqual(made, [join(base, 'runs'), 'runs/r1']);
    // several missing: outermost first, the order they are made in (a fetch into a new nested --dir)
    assert.deepEqual(missingAncestors('runs/a/b/r1'), [join(base, 'runs'), join(base, 'runs/a'), join(base, 'runs/a/b')]);
    mkdirSync('runs/r1', { recursive: true });
    removeEmptyFolders(made);
    assert.deepEqual(readdirSync(base), [], 'nothing left behind');
    // a folder that holds something stays, and so does each one above it
    mkdirSync('a/bb/c', { recursive: true });
    writeFileSync('a/bb/kept', 'x');
    removeEmptyFolders([join(base, 'a'), 'a/bb', 'a/bb/c']);
    assert.deepEqual([existsSync('a/bb/c'), existsSync('a/bb'), existsSync('a')], [false, true, true]);
  } finally {
    process.chdir(cwd);
  }
});

test('checkOutputDir: a disk with too little room, or full, is no fault of the folder given (exit 1); a denied one is (exit 2)', () => {
  const dir = join(root, 'room');
  mkdirSync(dir);
  const real = fs.statfsSync;
  (fs as Record<string, unknown>).statfsSync = (p: string) => ({ ...real(p), bavail: 1, bsize: 4096 });
  syncBuiltinESMExports();
  try {
    assert.throws(
      () => checkOutputDir(join(dir, 'run'), '--out x'),
      (e: Error) => e.message === `--out x: the disk of ${dir} has 0.0 MiB free, less than the 16 MiB a run needs to start: free some space or give another folder` && isNotInputFault(e),
    );
    // a small result file needs no room
    checkOutputDir(join(dir, 'run'), '--out x', undefined, { space: false });
  } finally {
    (fs as Record<string, unknown>).statfsSync = real;
    syncBuiltinESMExports();
  }
  const realOpen = fs.openSync;
  for (const [code, fault, why] of [['ENOSPC', true, 'the disk is full'], ['EIO', true, 'EIO'], ['EACCES', false, 'no write access'], ['EPERM', false, 'no write access'], ['EROFS', false, 'a read-only file system']] as const) {
    (fs as Record<string, unknown>).openSync = () => {
      throw Object.assign(new Error(code), { code });
    };
    syncBuiltinESMExports();
    try {
      assert.throws(() => checkOutputDir(join(dir, 'run'), '--out x'), (e: Error) => e.message === `--out x: cannot write in ${dir} (${why}): give a folder you can write to` && isNotInputFault(e) === fault, code);
    } finally {
      (fs as Record<string, unknown>).openSync = realOpen;
      syncBuiltinESMExports();
    }
  }
});
