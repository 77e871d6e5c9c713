import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { acquireLock, clearStale, LOCK_NAME, lockIsLive, lockTimeoutS, procStart, releaseLock, setLockTimeout } from '../../src/runfolder/lock.ts';
import { ASIDE_NOTE } from '../../src/runfolder/aside.ts';
import { RunFolderError } from '../../src/runfolder/paths.ts';
import { isDone, reachedState, readRunState } from '../../src/runfolder/state.ts';
import { markFailed, markInterrupted, readStatus, StatusWriter } from '../../src/runfolder/status.ts';
import { knnStepNote, mergeSummary, writeSummary, type Summary } from '../../src/runfolder/summary.ts';
import { resetMetrics, truncateMetrics } from '../../src/runfolder/metrics.ts';
import { renamesOnto, withFs } from '../helpers/renames.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-state-');
after(() => rmSync(root, { recursive: true, force: true }));

function run(status: object | null, ckptStep: number | null): string {
  const dir = mkdtempSync(join(root, 'run-'));
  if (status) writeFileSync(join(dir, 'status.json'), JSON.stringify(status));
  if (ckptStep !== null) {
    const name = `step-${String(ckptStep).padStart(7, '0')}`;
    mkdirSync(join(dir, 'checkpoints', name), { recursive: true });
    writeFileSync(join(dir, 'checkpoints', name, 'state.json'), '{}');
    writeFileSync(join(dir, 'checkpoints', 'last.json'), JSON.stringify({ step: ckptStep, dir: name }));
  }
  return dir;
}

test("a run's state: the step it reached is never behind its checkpoint (a status.json the full disk kept from being rewritten)", () => {
  // killed (no live lock) with status.json still at its first write, step 0, and a checkpoint at step 3
  const lagging = readRunState(run({ status: 'running', step: 0, total_steps: 6, pid: 1, host: 'x' }, 3));
  assert.deepEqual([lagging.state, lagging.step, lagging.checkpoint_step, lagging.total_steps], ['interrupted', 3, 3, 6]);
  // a status ahead of the checkpoint says how far the run went
  const ahead = readRunState(run({ status: 'interrupted', step: 5, total_steps: 6 }, 3));
  assert.deepEqual([ahead.state, ahead.step, ahead.checkpoint_step], ['interrupted', 5, 3]);
  // no status.json at all: the checkpoint alone
  const none = readRunState(run(null, 3));
  assert.deepEqual([none.state, none.step, none.total_steps], ['interrupted', 3, null]);
  // neither: a new run
  const fresh = readRunState(run(null, null));
  assert.deepEqual([fresh.state, fresh.step], ['new', null]);
});

test("a live lock of this process's pid on another host is another process's: the run is running there", () => {
  const dir = run({ status: 'running', step: 2, total_steps: 6, pid: process.pid, host: 'node-b' }, null);
  const lock = { pid: process.pid, host: 'node-b', proc_start: null, since: new Date().toISOString(), heartbeat: new Date().toISOString(), sweep: 'x', timeout_s: 600 };
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify(lock));
  const st = readRunState(dir);
  assert.deepEqual([st.state, st.lock?.host], ['running', 'node-b']);
  // this host's pid of another start (a container's pid 1 beside another's): another process's too
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ ...lock, host: hostname(), proc_start: '1' }));
  assert.equal(readRunState(dir).state, 'running');
  // this host's, of this start: this process's own lock (its run is read by its files)
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ ...lock, host: hostname(), proc_start: procStart(process.pid) }));
  assert.equal(readRunState(dir).state, 'interrupted');
});

test("releaseLock removes this process's own lock, not one of its pid and host that another start has taken since", () => {
  const dir = run(null, null);
  assert.equal(acquireLock(dir, 'x'), null);
  const taken = { ...JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), proc_start: '1', since: new Date(Date.now() + 1000).toISOString() };
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify(taken));
  releaseLock(dir);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), taken);
  rmSync(join(dir, LOCK_NAME));
  assert.equal(acquireLock(dir, 'x'), null);
  releaseLock(dir);
  assert.equal(existsSync(join(dir, LOCK_NAME)), false);
});

test("markFailed (a sweep's run failed outside its loop): the loop's own failed status of the same error is kept; an earlier attempt's error is replaced", () => {
  const dir = run({ status: 'failed', step: 30, total_steps: 80, error: 'metrics.jsonl: line 31 is not a JSON object' }, null);
  const before = readFileSync(join(dir, 'status.json'), 'utf8');
  markFailed(dir, 'metrics.jsonl: line 31 is not a JSON object');
  assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), before, 'the same error: not rewritten');
  markFailed(dir, 'metrics.jsonl: line 51 is not a JSON object');
  const st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.error], ['failed', 30, 80, 'metrics.jsonl: line 51 is not a JSON object']);
});

test("markInterrupted (a second Ctrl-C): this process's running status says interrupted at its step; another process's, or a final one, is left as it is", () => {
  const mine = run({ status: 'running', step: 7, total_steps: 20, pid: process.pid, host: hostname() }, null);
  markInterrupted(mine);
  const st = readStatus(mine)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.pid], ['interrupted', 7, 20, process.pid]);
  for (const other of [
    { status: 'running', step: 7, total_steps: 20, pid: process.pid, host: 'node-b' },
    { status: 'running', step: 7, total_steps: 20, pid: process.pid + 1, host: hostname() },
    { status: 'completed', step: 20, total_steps: 20, pid: process.pid, host: hostname() },
  ]) {
    const dir = run(other, null);
    const before = readFileSync(join(dir, 'status.json'), 'utf8');
    markInterrupted(dir);
    assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), before, JSON.stringify(other));
  }
});

test('a status.json whose step is no count (negative, a fraction) is damaged: named, with what to do', () => {
  for (const step of [-1, 2.5]) {
    const dir = run({ status: 'running', step, total_steps: 6 }, null);
    assert.throws(() => readStatus(dir), (e: Error) => e.message.startsWith(`${join(dir, 'status.json')}: step: expected a non-negative integer, got ${step}; remove it`));
  }
});

test('a lock of the same Slurm array task is stale only when an earlier start of the task wrote it (a requeue); one of this start is another agent\'s', () => {
  const saved = ['SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SLURM_RESTART_COUNT'].map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, { SLURM_ARRAY_JOB_ID: '77', SLURM_ARRAY_TASK_ID: '3', SLURM_RESTART_COUNT: '1' });
  try {
    const now = new Date().toISOString();
    const lock = { pid: 4242, host: 'node-b', proc_start: null, since: now, heartbeat: now, sweep: 'x', timeout_s: 600, slurm_task: '77_3' };
    assert.equal(lockIsLive({ ...lock, slurm_restart: 0 }), false, 'an earlier start of this task');
    assert.equal(lockIsLive({ ...lock, slurm_restart: 1 }), true, 'another agent of this start');
    assert.equal(lockIsLive({ ...lock, slurm_task: '77_4', slurm_restart: 0 }), true, 'another task');
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('a taker that finds the lock it moved aside live (another taker replaced the stale one meanwhile) puts it back and leaves the run to it', () => {
  const dir = run(null, null);
  const old = new Date(Date.now() - 3600_000).toISOString();
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ pid: 4242, host: 'node-b', proc_start: null, since: old, heartbeat: old, sweep: 'x', timeout_s: 600 }));
  const now = new Date().toISOString();
  const taker = { pid: 4343, host: 'node-c', proc_start: null, since: now, heartbeat: now, sweep: 'y', timeout_s: 600 };
  // between this process's read of the stale lock and its rename, the other taker puts its own in place
  let raced = false;
  const taken = withFs(
    'renameSync',
    (rename) =>
      ((from: fs.PathLike, to: fs.PathLike) => {
        if (!raced && String(from) === join(dir, LOCK_NAME)) {
          raced = true;
          writeFileSync(join(dir, LOCK_NAME), JSON.stringify(taker));
        }
        rename(from, to);
      }) as typeof fs.renameSync,
    () => acquireLock(dir, 'x'),
  );
  assert.deepEqual(taken, taker);
  assert.ok(raced);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), taker);
  assert.deepEqual(readdirSync(dir), [LOCK_NAME], 'nothing of this process left');
});

test('the lock timeout is 600 s unless MOCO3_LOCK_TIMEOUT (a positive number) or --lock-timeout says otherwise: another host\'s lock with a heartbeat 5 minutes old is live by default', () => {
  const saved = process.env.MOCO3_LOCK_TIMEOUT;
  const beat = new Date(Date.now() - 300_000).toISOString();
  const other = { pid: 4242, host: 'node-b', proc_start: null, since: beat, heartbeat: beat, sweep: 'x' };
  try {
    delete process.env.MOCO3_LOCK_TIMEOUT;
    assert.equal(lockTimeoutS(), 600);
    assert.equal(lockIsLive(other), true);
    for (const bad of ['0', '-5', 'abc', '']) {
      process.env.MOCO3_LOCK_TIMEOUT = bad;
      assert.equal(lockTimeoutS(), 600, `MOCO3_LOCK_TIMEOUT=${bad}`);
    }
    process.env.MOCO3_LOCK_TIMEOUT = '120';
    assert.equal(lockTimeoutS(), 120);
    assert.equal(lockIsLive(other), false, 'a heartbeat older than MOCO3_LOCK_TIMEOUT');
    setLockTimeout(900);
    assert.equal(lockTimeoutS(), 900, '--lock-timeout over MOCO3_LOCK_TIMEOUT');
    assert.equal(lockIsLive(other), true);
  } finally {
    setLockTimeout(null);
    if (saved === undefined) delete process.env.MOCO3_LOCK_TIMEOUT;
    else process.env.MOCO3_LOCK_TIMEOUT = saved;
  }
});

test("clearStale (a finished run's leftovers) removes a dead process's lock, never a live one, and leaves a half-done move aside to the lock's holder", () => {
  const dir = run({ status: 'completed', step: 6, total_steps: 6 }, null);
  const live = { pid: process.ppid, host: hostname(), proc_start: procStart(process.ppid), since: new Date().toISOString(), heartbeat: new Date().toISOString(), sweep: 'x', timeout_s: 600 };
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify(live));
  // a train --force of that process moving the run aside: its note and the folder it fills
  const aside = `${dir}.old-20261205T000000`;
  writeFileSync(join(dir, ASIDE_NOTE), JSON.stringify({ to: aside.split('/').at(-1) }));
  mkdirSync(aside);
  renameSync(join(dir, 'status.json'), join(aside, 'status.json'));
  clearStale(dir);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), live, 'the live lock stays');
  assert.ok(existsSync(join(aside, 'status.json')) && existsSync(join(dir, ASIDE_NOTE)), 'the move is left as it is');
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ ...live, pid: 2 ** 22 + 4321, proc_start: null }));
  clearStale(dir);
  assert.equal(existsSync(join(dir, LOCK_NAME)), false, "a dead process's lock goes");
});

test('a taker that cannot move a stale lock aside (other takers move it first, every time) gets the lock found, not the run', () => {
  const dir = run(null, null);
  const old = new Date(Date.now() - 3600_000).toISOString();
  const stale = { pid: 4242, host: 'node-b', proc_start: null, since: old, heartbeat: old, sweep: 'x', timeout_s: 600 };
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify(stale));
  let tries = 0;
  const found = withFs(
    'renameSync',
    (rename) =>
      ((from: fs.PathLike, to: fs.PathLike) => {
        if (String(from) === join(dir, LOCK_NAME)) {
          tries++;
          throw Object.assign(new Error(`ENOENT: no such file or directory, rename '${String(from)}'`), { code: 'ENOENT' });
        }
        rename(from, to);
      }) as typeof fs.renameSync,
    () => acquireLock(dir, 'x'),
  );
  assert.deepEqual(found, stale);
  assert.equal(tries, 5);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), stale, 'no lock of this process written');
  assert.deepEqual(readdirSync(dir), [LOCK_NAME]);
});

test("clearStale that finds a stale lock replaced meanwhile (a train --force of the finished run took it over) leaves the new holder's lock", () => {
  const dir = run({ status: 'completed', step: 6, total_steps: 6 }, null);
  const old = new Date(Date.now() - 3600_000).toISOString();
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify({ pid: 4242, host: 'node-b', proc_start: null, since: old, heartbeat: old, sweep: 'x', timeout_s: 600 }));
  const now = new Date().toISOString();
  const taker = { pid: 4343, host: 'node-c', proc_start: null, since: now, heartbeat: now, sweep: 'y', timeout_s: 600 };
  // between clearStale's read of the stale lock and its removal, the taker puts its own in place
  let raced = false;
  withFs(
    'existsSync',
    (exists) =>
      ((p: fs.PathLike) => {
        if (!raced && String(p) === join(dir, LOCK_NAME)) {
          raced = true;
          writeFileSync(join(dir, LOCK_NAME), JSON.stringify(taker));
        }
        return exists(p);
      }) as typeof fs.existsSync,
    () => clearStale(dir),
  );
  assert.ok(raced);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), taker);
  assert.deepEqual(readdirSync(dir).sort(), [LOCK_NAME, 'status.json']);
});

test("a run's final state needs its summary.json: completed and diverged with one are final; without one, or moved aside by a train --force, the run is interrupted; failed keeps its error", () => {
  const withSummary = (status: object, summary: string | null) => {
    const dir = run(status, 4);
    if (summary !== null) writeFileSync(join(dir, 'summary.json'), summary);
    return dir;
  };
  const summary = JSON.stringify({ status: 'completed', steps: 6 });
  const done = readRunState(withSummary({ status: 'completed', step: 6, total_steps: 6 }, summary));
  assert.deepEqual([done.state, done.step, done.total_steps, done.checkpoint_step, done.error], ['completed', 6, 6, 4, null]);
  assert.equal(isDone(done.state), true);
  const div = readRunState(withSummary({ status: 'diverged', step: 5, total_steps: 6, diverged_at: 5 }, summary));
  assert.deepEqual([div.state, div.step], ['diverged', 5]);
  assert.equal(isDone(div.state), true, 'a diverged run is final: the sweep does not train it again');
  for (const status of ['completed', 'diverged']) {
    assert.equal(readRunState(withSummary({ status, step: 6, total_steps: 6 }, null)).state, 'interrupted', `${status} without summary.json`);
  }
  // a damaged summary.json is said, not taken for a finished run's
  const damaged = withSummary({ status: 'completed', step: 6, total_steps: 6 }, '{"status": "compl');
  assert.throws(() => readRunState(damaged), (e: Error) => e instanceof RunFolderError && e.message.startsWith(`${join(damaged, 'summary.json')}: not valid JSON (truncated?); remove it`));
  const failed = readRunState(withSummary({ status: 'failed', step: 3, total_steps: 6, error: 'out of memory' }, null));
  assert.deepEqual([failed.state, failed.step, failed.error], ['failed', 4, 'out of memory']);
  assert.equal(isDone(failed.state), false);
  const aside = withSummary({ status: 'completed', step: 6, total_steps: 6 }, summary);
  writeFileSync(join(aside, ASIDE_NOTE), JSON.stringify({ to: 'x' }));
  assert.equal(readRunState(aside).state, 'interrupted');
});

test("reachedState: an unfinished run's step is its last whole metrics row (past the heartbeat, a torn last line skipped), never behind the heartbeat; a finished run's is its status's", () => {
  const rows = (n: number) => Array.from({ length: n + 1 }, (_, s) => `{"step":${s},"loss":4.123456,"lr":0.000123}\n`).join('');
  const torn = run({ status: 'interrupted', step: 10, total_steps: 40 }, null);
  writeFileSync(join(torn, 'metrics.jsonl'), `${rows(17)}{"step":18,"lo`);
  assert.deepEqual([reachedState(torn).state, reachedState(torn).step], ['interrupted', 17]);
  // a last row written whole, without its newline
  writeFileSync(join(torn, 'metrics.jsonl'), rows(17).trimEnd());
  assert.equal(reachedState(torn).step, 17);
  // rows lost after step 15: the heartbeat's step 20 stands
  const behind = run({ status: 'failed', step: 20, total_steps: 40, error: 'x' }, null);
  writeFileSync(join(behind, 'metrics.jsonl'), rows(15));
  assert.deepEqual([reachedState(behind).state, reachedState(behind).step], ['failed', 20]);
  // a file larger than the tail read: its last row still found
  const long = run({ status: 'interrupted', step: 2990, total_steps: 4000 }, null);
  writeFileSync(join(long, 'metrics.jsonl'), rows(2999));
  assert.equal(reachedState(long).step, 2999);
  // no metrics: the heartbeat's
  assert.equal(reachedState(run({ status: 'interrupted', step: 10, total_steps: 40 }, null)).step, 10);
});

test('a status.json of an unknown status is damaged: named, with the statuses there are', () => {
  const dir = run({ status: 'finished', step: 6, total_steps: 6 }, null);
  assert.throws(
    () => readStatus(dir),
    (e: Error) => e instanceof RunFolderError && e.message.startsWith(`${join(dir, 'status.json')}: status: expected one of pending, running, completed, diverged, failed, interrupted, got "finished"; remove it`),
  );
});

test('StatusWriter: running heartbeats at their step, a final status with where it diverged, failed with its error', () => {
  const dir = run(null, null);
  const w = new StatusWriter(dir, 40);
  w.running(12);
  let st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.pid, st.host, st.error, st.diverged_at], ['running', 12, 40, process.pid, hostname(), undefined, undefined]);
  // when it was written, for whoever reads the file
  assert.ok(Math.abs(Date.parse(st.heartbeat!) - Date.now()) < 60_000, st.heartbeat);
  w.final('diverged', 17, 15);
  st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.diverged_at], ['diverged', 17, 40, 15]);
  w.final('completed', 40, null);
  st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, 'diverged_at' in st], ['completed', 40, false]);
  w.failed(3, 'disk full');
  st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.error], ['failed', 3, 40, 'disk full']);
});

test('markFailed of a run with no status.json: failed at step 0, with the error', () => {
  const dir = run(null, null);
  markFailed(dir, 'config.yaml: not valid YAML');
  const st = readStatus(dir)!;
  assert.deepEqual([st.status, st.step, st.total_steps, st.error], ['failed', 0, null, 'config.yaml: not valid YAML']);
});

test("markInterrupted leaves the status of a run whose lock another process has taken since: the run is the other's", () => {
  const dir = run({ status: 'running', step: 7, total_steps: 20, pid: process.pid, host: hostname() }, null);
  assert.equal(acquireLock(dir, 'x'), null);
  const taken = { ...JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')), pid: process.pid + 1, proc_start: '1' };
  writeFileSync(join(dir, LOCK_NAME), JSON.stringify(taken));
  const before = readFileSync(join(dir, 'status.json'), 'utf8');
  markInterrupted(dir);
  assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), before);
  releaseLock(dir);
});

test('knnStepNote: the step of a kNN measured before the last step (a diverged run), nothing when it is the last or unknown', () => {
  assert.equal(knnStepNote({ knn_step: 30, steps: 45 }), ' at step 30');
  assert.equal(knnStepNote({ knn_step: 45, steps: 45 }), '');
  assert.equal(knnStepNote({ knn_step: null, steps: 45 }), '');
  assert.equal(knnStepNote({ steps: 45 }), '');
});

test('mergeSummary: keys merged over what is there, the file left as it is when nothing changes', () => {
  const dir = run(null, null);
  writeFileSync(join(dir, 'summary.json'), '{"status":"completed","knn_top1":41.5}');
  assert.deepEqual(mergeSummary(dir, { knn_top1: 41.5 }), { status: 'completed', knn_top1: 41.5 });
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), '{"status":"completed","knn_top1":41.5}', 'not rewritten');
  assert.deepEqual(mergeSummary(dir, { linear_top1: 50 }), { status: 'completed', knn_top1: 41.5, linear_top1: 50 });
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), '{\n  "status": "completed",\n  "knn_top1": 41.5,\n  "linear_top1": 50\n}\n');
  // a key set to undefined goes, a non-finite number is null: what is returned is what the file holds
  assert.deepEqual(mergeSummary(dir, { linear_top1: undefined, dips: NaN }), { status: 'completed', knn_top1: 41.5, dips: null });
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')), { status: 'completed', knn_top1: 41.5, dips: null });
});

test('status.json, summary.json and a cut or emptied metrics.jsonl are written whole under another name and renamed onto theirs: a reader never finds half a file', () => {
  const dir = run(null, null);
  writeFileSync(join(dir, 'metrics.jsonl'), '{"step":0,"loss":5}\n{"step":1,"loss":4}\n');
  const onto = renamesOnto(dir, () => {
    new StatusWriter(dir, 10).running(3);
    writeSummary(dir, { status: 'completed', steps: 10 } as Summary);
    mergeSummary(dir, { knn_top1: 40 });
    truncateMetrics(dir, 0);
    resetMetrics(dir);
  });
  assert.deepEqual(onto, ['status.json', 'summary.json', 'summary.json', 'metrics.jsonl', 'metrics.jsonl']);
  assert.deepEqual(readdirSync(dir).sort(), ['metrics.jsonl', 'status.json', 'summary.json']);
});
