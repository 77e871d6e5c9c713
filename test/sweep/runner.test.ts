import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import YAML from 'yaml';
import '../helpers/tf.ts';
import type { BackendInfo } from '../../src/engine/backend.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { hostTag } from '../../src/engine/files.ts';
import { loadSweepFile, parseSweep, SweepError } from '../../src/sweep/file.ts';
import { acquireLock, procStart, readLock, releaseLock } from '../../src/runfolder/lock.ts';
import { restoreAsideCheckpoints, rewindLast } from '../../src/runfolder/checkpoints.ts';
import { planSweep, type SweepPlan } from '../../src/sweep/plan.ts';
import { runSweep, type SweepEvent } from '../../src/sweep/runner.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { DataError } from '../../src/data/types.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-sweep-runner-');
after(() => rmSync(root, { recursive: true, force: true }));

const backend: BackendInfo = { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null };
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');
const tmp = () => mkdtempSync(join(root, 'moco3-sweep-'));

function tinyPlan(results: string, edit: (doc: Record<string, any>) => void = () => {}): SweepPlan {
  const doc = YAML.parse(readFileSync(tinyFile, 'utf8'));
  edit(doc);
  return planSweep(parseSweep(doc, 'tiny.yaml'), { results });
}

async function sweep(plan: SweepPlan, stopAfterSteps?: number) {
  const events: SweepEvent[] = [];
  let steps = 0;
  const r = await runSweep({
    plan,
    backend,
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'train' && e.event.type === 'step') steps++;
    },
    shouldStop: () => stopAfterSteps !== undefined && steps >= stopAfterSteps,
  });
  return { ...r, events };
}

const strip = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).map(({ images_per_s: _ips, ...row }) => row);

test('a sweep trains every run and writes sweep.yaml; run again, it skips them all', async () => {
  const plan = tinyPlan(tmp());
  const first = await sweep(plan);
  assert.deepEqual(first.states.map((s) => s.state), ['completed', 'completed']);
  assert.deepEqual(first.failed, []);
  assert.equal(first.interrupted, false);
  const resolved = YAML.parse(readFileSync(join(plan.dir, 'sweep.yaml'), 'utf8'));
  assert.deepEqual(resolved.runs.map((r: { id: string }) => r.id), plan.runs.map((r) => r.id));
  assert.equal(resolved.runs[0].config.optim.batch_size, 16);
  assert.equal(resolved.runs[0].paper['optim.batch_size'], 512);
  assert.equal(resolved.preset, 'smoke');
  for (const r of plan.runs) assert.ok(existsSync(join(r.dir, 'summary.json')));
  assert.equal(existsSync(join(plan.runs[0]!.dir, '.lock')), false, 'the lock is released');

  // a process killed after the run's last write but before its unlock left a lock and a temporary file
  const dead = await sleeper();
  await dead.kill();
  const d0 = plan.runs[0]!.dir;
  writeFileSync(join(d0, '.lock'), JSON.stringify({ pid: dead.pid, host: hostname(), proc_start: null, since: '', sweep: 'tiny' }));
  writeFileSync(join(d0, `.status.json.${hostTag()}.${dead.pid}.tmp`), '{"sta');
  const again = await sweep(plan);
  assert.deepEqual(again.events.filter((e) => e.type === 'run_start'), []);
  assert.equal(existsSync(join(d0, '.lock')), false, 'stale lock removed');
  assert.equal(existsSync(join(d0, `.status.json.${hostTag()}.${dead.pid}.tmp`)), false, 'stale temporary file removed');
  // ... and none of them counted as to train (the progress line's count of runs left)
  assert.deepEqual(again.events.filter((e) => e.type === 'run_skip').map((e) => [(e as { state: string }).state, (e as { to_train: boolean }).to_train]), [['completed', false], ['completed', false]]);
  assert.ok(again.events.every((e) => e.type !== 'run_skip' || e.notes === undefined), 'nothing to say of whole runs');

  // a done run whose config.yaml was lost: skipped, and said (the report would stop on it)
  rmSync(join(d0, 'config.yaml'));
  const third = await sweep(plan);
  const notes = third.events.flatMap((e) => (e.type === 'run_skip' ? (e.notes ?? []) : []));
  assert.equal(notes.length, 1, notes.join('\n'));
  assert.match(notes[0]!, /config\.yaml is missing: `moco3 report` stops on this run until it is put back/);
});

test('a failing run is recorded with its error, the sweep goes on, and a diverged run is a result', async () => {
  const results = tmp();
  const plan = tinyPlan(results, (d) => (d.parameters['optim.batch_size'] = { values: [2048, 512, 1024] }));
  // the third run already diverged in an earlier sweep: a result, not trained again
  const div = plan.runs[2]!.dir;
  mkdirSync(div, { recursive: true });
  writeFileSync(join(div, 'status.json'), JSON.stringify({ status: 'diverged', step: 3, total_steps: 6 }));
  writeFileSync(join(div, 'summary.json'), JSON.stringify({ status: 'diverged' }));
  // the first run fails at its second step (an error thrown where the loop reports the step)
  const events: SweepEvent[] = [];
  const r = await runSweep({
    plan,
    backend,
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'train' && e.index === 1 && e.event.type === 'step' && e.event.step === 2) throw new Error('injected failure at step 2');
    },
  });
  assert.deepEqual(r.states.map((s) => s.state), ['failed', 'completed', 'diverged']);
  assert.deepEqual(r.failed, [plan.runs[0]!.id]);
  const st = JSON.parse(readFileSync(join(plan.runs[0]!.dir, 'status.json'), 'utf8'));
  assert.equal(st.status, 'failed');
  assert.match(st.error, /injected failure at step 2/);
  assert.ok(events.some((e) => e.type === 'run_failed' && e.index === 1));
  assert.ok(!events.some((e) => e.type === 'run_start' && e.index === 3));
});

test('data that cannot serve a run stops the sweep before anything is written, whichever run it is', async () => {
  const results = tmp();
  // 4096 / 32 = 128 images a batch, more than the 64 of the train set: the last run's, found before the first trains
  const plan = tinyPlan(results, (d) => (d.parameters['optim.batch_size'] = { values: [512, 1024, 4096] }));
  const events: SweepEvent[] = [];
  await assert.rejects(
    runSweep({ plan, backend, onEvent: (e) => events.push(e) }),
    (e: unknown) => e instanceof DataError && /fewer than one batch of optim\.batch_size 128/.test(e.message),
  );
  assert.equal(events.length, 0);
  assert.equal(existsSync(plan.dir), false, 'no folder made');
  // a later run's dataset missing (a sweep over two datasets): the same, before the first run trains
  const two = tinyPlan(results, (d) => {
    d.parameters['data.name'] = { values: ['synthetic', 'cifar10'] };
    d.parameters['data.path'] = { value: join(results, 'none') };
  });
  // the path shared by the grid's datasets is cifar10's: the synthetic runs read none, and record none
  assert.deepEqual([...new Set(two.runs.map((r) => `${r.config.data.name} ${r.config.data.path}`))].sort(), ['cifar10 ' + join(results, 'none'), 'synthetic null']);
  // a path beside the synthetic dataset alone, in a grid not over datasets, is refused as train refuses it
  assert.throws(() => tinyPlan(results, (d) => (d.parameters['data.path'] = { value: join(results, 'none') })), (e: Error) => e.message.startsWith('tiny.yaml: data.path: the synthetic dataset is built in and reads no path'));
  await assert.rejects(runSweep({ plan: two, backend, onEvent: (e) => events.push(e) }), (e: unknown) => e instanceof DataError && /cifar10: no cifar-10-batches-bin/.test(e.message));
  assert.equal(events.length, 0);
  assert.equal(existsSync(two.dir), false, 'no folder made');
  // Ctrl-C before the data is read: no section is loaded (each may build a cache for hours), nothing trains
  const stopped = await runSweep({ plan: two, backend, shouldStop: () => true });
  assert.equal(stopped.interrupted, true);
  assert.deepEqual(stopped.trained, []);
});

test('a run to resume whose checkpoint was trained on other data stops the sweep before anything trains, its status untouched', async () => {
  const plan = tinyPlan(tmp());
  const stopped = await sweep(plan, 5);
  assert.deepEqual(stopped.states.map((s) => s.state), ['interrupted', 'new']);
  // the data changed since (an image folder that gained files keeps the run's id): its checkpoint says so
  const stateFile = join(plan.runs[0]!.dir, 'checkpoints', 'step-0000005', 'state.json');
  writeFileSync(stateFile, JSON.stringify({ ...JSON.parse(readFileSync(stateFile, 'utf8')), train_images: 70 }));
  const status = readFileSync(join(plan.runs[0]!.dir, 'status.json'), 'utf8');
  const events: SweepEvent[] = [];
  await assert.rejects(
    runSweep({ plan, backend, onEvent: (e) => events.push(e) }),
    (e: unknown) => e instanceof Error && /: its checkpoint of step 5 was trained on a train split of 70 images, which now holds 64: to resume it, give it the data it was trained on/.test(e.message),
  );
  assert.deepEqual(events, [], 'nothing trained');
  assert.equal(readFileSync(join(plan.runs[0]!.dir, 'status.json'), 'utf8'), status, 'the run is left as it was, not marked failed');
  assert.deepEqual(plan.runs.map((r) => readRunState(r.dir).state), ['interrupted', 'new']);
});

test('Ctrl-C checkpoints the current run; the next sweep resumes it and ends as if never stopped', async () => {
  const ref = tinyPlan(tmp());
  await sweep(ref);
  const plan = tinyPlan(tmp());
  const stopped = await sweep(plan, 5);
  assert.equal(stopped.interrupted, true);
  assert.deepEqual(stopped.states.map((s) => s.state), ['interrupted', 'new']);
  assert.equal(stopped.states[0]!.checkpoint_step, 5);
  // then a `train --force` on the run was killed halfway through moving it aside (src/runfolder/aside.ts)
  const d0 = plan.runs[0]!.dir;
  const aside = `${d0}.old-20261205T000000`;
  writeFileSync(join(d0, '.aside.json'), JSON.stringify({ to: basename(aside) }));
  mkdirSync(aside);
  for (const e of ['status.json', 'checkpoints']) renameSync(join(d0, e), join(aside, e));
  const resumed = await sweep(plan);
  const start = resumed.events.find((e) => e.type === 'run_start');
  assert.deepEqual(start && [start.previous, start.resume_step], ['interrupted', 5]);
  assert.match(start?.type === 'run_start' ? (start.notes ?? []).join('\n') : '', /put back the files of the previous run/);
  assert.equal(existsSync(aside), false);
  // the same on the completed run with its status.json not yet moved: it reads as done only once put back
  const d1 = plan.runs[1]!.dir;
  const aside1 = `${d1}.old-20261205T000000`;
  writeFileSync(join(d1, '.aside.json'), JSON.stringify({ to: basename(aside1) }));
  mkdirSync(aside1);
  renameSync(join(d1, 'checkpoints'), join(aside1, 'checkpoints'));
  assert.equal(readRunState(d1).state, 'interrupted');
  const third = await sweep(plan);
  assert.deepEqual(third.events.filter((e) => e.type === 'run_start'), []);
  const skip = third.events.find((e) => e.type === 'run_skip' && e.index === 2);
  assert.match(skip?.type === 'run_skip' ? (skip.notes ?? []).join('\n') : '', /put back the files of the previous run/);
  assert.ok(existsSync(join(d1, 'checkpoints', 'last.json')) && !existsSync(aside1));
  assert.deepEqual(resumed.states.map((s) => s.state), ['completed', 'completed']);
  for (let i = 0; i < plan.runs.length; i++) {
    assert.equal(plan.runs[i]!.id, ref.runs[i]!.id);
    assert.deepEqual(strip(plan.runs[i]!.dir), strip(ref.runs[i]!.dir));
  }
});

function sleeper(): Promise<{ pid: number; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  return new Promise((resolve) => {
    child.once('spawn', () =>
      resolve({
        pid: child.pid!,
        kill: () => new Promise<void>((done) => (child.once('exit', () => done()), child.kill('SIGKILL'))),
      }),
    );
  });
}

test('a run locked by a live sweep is left to it; a stale lock (dead process) is taken over', async () => {
  const plan = tinyPlan(tmp());
  const other = await sleeper();
  const dir = plan.runs[0]!.dir;
  mkdirSync(dir, { recursive: true });
  const lock = { pid: other.pid, host: hostname(), proc_start: procStart(other.pid), since: new Date().toISOString(), sweep: 'tiny' };
  writeFileSync(join(dir, '.lock'), JSON.stringify(lock));
  try {
    assert.equal(readRunState(dir).state, 'running');
    const r = await sweep(plan);
    assert.deepEqual(r.busy, [plan.runs[0]!.id]);
    assert.deepEqual(r.states.map((s) => s.state), ['running', 'completed']);
    assert.deepEqual(readLock(dir), lock, 'a live lock is left alone');
  } finally {
    await other.kill();
  }
  assert.equal(readRunState(dir).state, 'new');
  const r = await sweep(plan);
  assert.deepEqual(r.states.map((s) => s.state), ['completed', 'completed']);
  assert.equal(existsSync(join(dir, '.lock')), false);

  // a run left to another sweep that finishes it meanwhile is not said to be still in training at the end
  const plan2 = tinyPlan(tmp());
  const dir2 = plan2.runs[0]!.dir;
  const holder = await sleeper();
  mkdirSync(dir2, { recursive: true });
  writeFileSync(join(dir2, '.lock'), JSON.stringify({ ...lock, pid: holder.pid, proc_start: procStart(holder.pid) }));
  try {
    const r2 = await runSweep({
      plan: plan2,
      backend,
      onEvent: (e) => {
        if (e.type !== 'run_skip' || e.index !== 1) return;
        // the other sweep ends the run as the loop does: summary.json, then the final status, then its unlock
        writeFileSync(join(dir2, 'summary.json'), '{}');
        writeFileSync(join(dir2, 'status.json'), JSON.stringify({ status: 'completed', step: 12, total_steps: 12 }));
        rmSync(join(dir2, '.lock'));
      },
    });
    assert.deepEqual(r2.states.map((s) => s.state), ['completed', 'completed']);
    assert.deepEqual(r2.busy, [], 'nothing is left in training');
  } finally {
    await holder.kill();
  }
});

test('moco3 sweep that leaves a run to another process says the sweep is not finished, not done', async () => {
  const results = tmp();
  const plan = tinyPlan(results);
  const other = await sleeper();
  const dir = plan.runs[0]!.dir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: other.pid, host: hostname(), proc_start: procStart(other.pid), since: new Date().toISOString(), sweep: 'tiny' }));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'cli.ts'), 'sweep', tinyFile, '--backend', 'cpu', '--results', results, '--no-baselines', '-q'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^sweep tiny: not finished in \S+; results in /m);
    assert.match(r.stderr, /^  1 run\(s\) are being trained by another process .*: run this command again once they have ended/m);
    assert.match(r.stderr, /^  report \(of what is finished so far\): moco3 report /m);
    assert.deepEqual(plan.runs.map((x) => readRunState(x.dir).state), ['running', 'completed']);
  } finally {
    await other.kill();
  }
  // the same command again, the holder gone: it trains the run, and the sweep is done
  const again = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'cli.ts'), 'sweep', tinyFile, '--backend', 'cpu', '--results', results, '--no-baselines', '-q'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /^sweep tiny: done in /m);
  assert.match(again.stderr, /^  report: moco3 report /m);
  // once more, every run done: no backend starts, and the first line says so (it read "0 to train on -")
  const done = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'cli.ts'), 'sweep', tinyFile, '--backend', 'cpu', '--results', results, '--no-baselines'], { encoding: 'utf8' });
  assert.equal(done.status, 0, done.stderr);
  assert.match(done.stderr, /^sweep tiny: 2 runs, none to train -> /m);
  // -q: the baselines it computes at the end say nothing either (their lines came through)
  const quiet = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'cli.ts'), 'sweep', tinyFile, '--backend', 'cpu', '--results', results, '-q'], { encoding: 'utf8' });
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')));
  assert.doesNotMatch(quiet.stderr, /baselines of sweep|seed 0/);
  // a Slurm dry run with nothing to submit, --json: an sbatch object of no script (it said "submitted")
  const slurm = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'cli.ts'), 'sweep', tinyFile, '--backend', 'cpu', '--results', results, '--launcher', 'slurm', '--dry-run', '--json'], { encoding: 'utf8' });
  assert.equal(slurm.status, 0, slurm.stderr);
  assert.deepEqual(JSON.parse(slurm.stdout), { type: 'sbatch', script: null, skipped: ['1 completed', '2 completed'] });
});

test('locks: one holder at a time; a reused pid (other start time) is stale', async () => {
  const dir = tmp();
  assert.equal(acquireLock(dir, 's'), null);
  assert.equal(readLock(dir)!.pid, process.pid);
  assert.equal(acquireLock(dir, 's')!.pid, process.pid, 'held');
  releaseLock(dir);
  assert.equal(existsSync(join(dir, '.lock')), false);
  const other = await sleeper();
  try {
    writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: other.pid, host: hostname(), proc_start: 'not-its-start-time', since: '', sweep: 's' }));
    if (procStart(other.pid) !== null) assert.equal(acquireLock(dir, 's'), null, 'the pid now belongs to another process');
    else assert.equal(acquireLock(dir, 's')!.pid, other.pid);
  } finally {
    await other.kill();
  }
  releaseLock(dir);
  // this very pid and host, of another start time: a killed process whose pid this one was given (a
  // container started again), its heartbeat old, is stale; one whose heartbeat is fresh (a process of another
  // pid namespace on a host of the same name) holds the run
  const old = new Date(Date.now() - 3600_000).toISOString();
  writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: process.pid, host: hostname(), proc_start: 'not-my-start-time', since: old, heartbeat: old, sweep: 's' }));
  assert.equal(acquireLock(dir, 's'), null, 'an earlier process of this pid');
  assert.equal(readLock(dir)!.proc_start, procStart(process.pid));
  releaseLock(dir);
  const now = new Date().toISOString();
  writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: process.pid, host: hostname(), proc_start: 'not-my-start-time', since: now, heartbeat: now, sweep: 's' }));
  assert.equal(acquireLock(dir, 's')!.proc_start, 'not-my-start-time', 'a live process of another pid namespace');
  rmSync(join(dir, '.lock'));
  writeFileSync(join(dir, '.lock'), '{"pid": 9');
  assert.equal(acquireLock(dir, 's'), null, 'an unreadable lock is stale');
  releaseLock(dir);
  for (const shape of ['{}', '[]', '{"pid": "7", "host": "h"}', 'null']) {
    writeFileSync(join(dir, '.lock'), shape);
    assert.equal(acquireLock(dir, 's'), null, `a lock without a holder (${shape}) is stale`);
    releaseLock(dir);
  }
});

test('the file of a shipped sweep plans without error', () => {
  for (const name of ['batch-size', 'lr', 'patch-proj', 'temperature']) {
    const spec = loadSweepFile(join(import.meta.dirname, '..', '..', 'sweeps', `${name}.yaml`));
    assert.equal(spec.name, name);
    assert.ok(planSweep(spec, { preset: 'smoke' }).runs.length >= 3);
  }
});

test("a checkpoint moved aside by a killed process whose pid this one was given is put back, not taken for this process's own", () => {
  const root = join(tmp(), 'checkpoints');
  const aside = join(root, `.step-0000008.old.${process.pid}.tmp`);
  mkdirSync(aside, { recursive: true });
  writeFileSync(join(aside, 'state.json'), '{"step": 8}');
  restoreAsideCheckpoints(root);
  assert.equal(readFileSync(join(root, 'step-0000008', 'state.json'), 'utf8'), '{"step": 8}');
  assert.equal(existsSync(aside), false);
});

test('a resume from an older checkpoint named through a symbolic link to the run folder points last.json back at it', () => {
  const real = join(tmp(), 'run');
  mkdirSync(join(real, 'checkpoints', 'step-0000000'), { recursive: true });
  mkdirSync(join(real, 'checkpoints', 'step-0000050'), { recursive: true });
  writeFileSync(join(real, 'checkpoints', 'last.json'), JSON.stringify({ step: 50, dir: 'step-0000050' }));
  const link = join(tmp(), 'link');
  symlinkSync(real, link);
  rewindLast(join(link, 'checkpoints'), join(real, 'checkpoints', 'step-0000000'), 0);
  assert.deepEqual(JSON.parse(readFileSync(join(real, 'checkpoints', 'last.json'), 'utf8')), { step: 0, dir: 'step-0000000', left: [50] });
});

test('a run taken over by another process while it trains is left to that process, not marked failed', async () => {
  const plan = tinyPlan(tmp());
  const dir = plan.runs[0]!.dir;
  const other = await sleeper();
  try {
    // this process frozen past the lock timeout: another took the run (its lock in place of this one's)
    const r = await runSweep({
      plan,
      backend,
      onEvent: (e) => {
        if (e.type === 'train' && e.index === 1 && e.event.type === 'step' && e.event.step === 1) {
          writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: other.pid, host: hostname(), proc_start: procStart(other.pid), since: new Date().toISOString(), sweep: 'other' }));
        }
      },
    });
    assert.deepEqual(r.failed, []);
    assert.deepEqual(r.busy, [plan.runs[0]!.id]);
    assert.notEqual(JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).status, 'failed');
  } finally {
    await other.kill();
  }
});

test('one sweep trains on one backend: runs of two backends (grids of two optimizers) are refused before anything starts', async () => {
  const plan = tinyPlan(tmp(), (d) => {
    d.parameters['optim.name'] = { values: ['adamw', 'lamb'] };
    d.parameters['optim.batch_size'] = { value: 512 };
    d.by_optimizer = { lamb: { 'train.backend': { value: 'wasm' } } };
  });
  await assert.rejects(runSweep({ plan, backend }), (e: unknown) => e instanceof SweepError && /^tiny\.yaml: every run of a sweep must use one train\.backend, got auto, wasm$/.test((e as Error).message));
  assert.equal(existsSync(plan.dir), false, 'no folder made');
});
