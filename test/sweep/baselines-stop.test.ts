/**
 * Ctrl-C while a sweep computes its baselines at the end: it stops within a probe batch, keeps the seeds
 * done, exits 130 saying so, and the same command computes the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { procStart } from '../../src/runfolder/lock.ts';
import { spawnEvents } from '../helpers/events.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-baselines-stop-');
const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');
// long probes (the baselines' two a seed take seconds), short training
const args = ['sweep', tinyFile, '--seeds', '0,1', '--backend', 'cpu', '--results', root, '--set', 'eval.linear.epochs=400', '--set', 'eval.linear.enabled=false', '--set', 'optim.epochs=1'];

function sweep(onErr?: (all: string, child: ReturnType<typeof spawn>) => void, more: string[] = [], results = root): Promise<{ code: number | null; stderr: string; seconds: number }> {
  let a = results === root ? args : args.map((x) => (x === root ? results : x));
  // another backend replaces the command's (an option of one value is given once)
  if (more.includes('--backend')) a = a.filter((x, i) => x !== '--backend' && a[i - 1] !== '--backend');
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...a, ...more], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let signalled = 0;
  child.stderr!.on('data', (d) => {
    stderr += d;
    if (onErr && !signalled) {
      onErr(stderr, child);
      if (child.signalCode === null && stderr.includes('  seed 0: ')) signalled = performance.now();
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr, seconds: signalled ? (performance.now() - signalled) / 1000 : 0 })));
}

test('Ctrl-C during the baselines at the end of a sweep: exit 130 within a probe batch, the seeds done kept, the rest computed by the same command', async () => {
  const stopped = await sweep((all, child) => {
    if (all.includes('  seed 0: ')) child.kill('SIGINT');
  });
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.ok(stopped.seconds < 10, `stopped ${stopped.seconds.toFixed(1)} s after the signal`);
  assert.match(stopped.stderr, /the baselines were stopped; the seeds done are in .*baselines\.json: run the same command again/);
  // the signal's own line speaks of the baselines: no run is training to checkpoint
  assert.match(stopped.stderr, /\nmoco3: stopping the baselines \(the seeds done are kept\); `moco3 sweep` again computes the rest/);
  assert.doesNotMatch(stopped.stderr, /checkpointing the current run/);
  assert.doesNotMatch(stopped.stderr, /report: moco3 report/, 'an interrupted sweep names no report yet');
  const file = join(root, 'tiny', 'baselines.json');
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).seeds.map((s: { seed: number }) => s.seed), [0]);
  // the same command on the native backend (where a run may move, its hash leaves the backend out): every run
  // is done, so no run starts the backend; the baselines start it themselves, not TensorFlow.js's default
  const again = await sweep(undefined, ['--backend', 'native']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /baselines of sweep tiny on native: untrained encoder and linear on pixels, seeds 1\n/);
  // a sweep done names the command that makes its report
  assert.match(again.stderr, new RegExp(`\n  report: moco3 report ${join(root, 'tiny').replace(/[/.]/g, '\\$&')}\n`));
  const seeds = JSON.parse(readFileSync(file, 'utf8')).seeds;
  assert.deepEqual(seeds.map((s: { seed: number }) => s.seed), [0, 1]);
  assert.deepEqual(seeds.map((s: { backend: string }) => s.backend), ['cpu', 'native']);
});

test('Ctrl-C before the first seed of the baselines is done: exit 130, no baselines.json, and the line says none was done', async () => {
  const results = join(root, 'none-done');
  let sent = false;
  const stopped = await sweep(
    (all, child) => {
      // once: a second Ctrl-C quits at once
      if (!sent && /baselines of sweep tiny on \w+: /.test(all)) sent = child.kill('SIGINT');
    },
    [],
    results,
  );
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.match(stopped.stderr, /the baselines were stopped before a seed was done: run the same command again to compute them\n/);
  assert.doesNotMatch(stopped.stderr, /the seeds done are in/);
  assert.equal(existsSync(join(results, 'tiny', 'baselines.json')), false);
});

test('--json: the baselines have their start and their stop in the event stream (the sweep_end before them said the runs)', async () => {
  const results = join(root, 'json');
  const a = args.map((x) => (x === root ? results : x));
  const { events, done } = spawnEvents(cli, [...a, '--json'], process.env, (e, _n, child) => e.type === 'baselines_start' && child.kill('SIGINT'));
  const { code, stderr } = await done;
  assert.equal(code, 130, stderr);
  assert.deepEqual(events.slice(-3).map((e) => e.type), ['sweep_end', 'baselines_start', 'baselines_stopped']);
  assert.deepEqual(events.at(-2), { type: 'baselines_start', sweep: 'tiny', seeds: [0, 1] });
  assert.deepEqual(events.at(-1), { type: 'baselines_stopped', sweep: 'tiny', seeds_done: [], seeds_left: [0, 1] });
});

test('a Slurm task warned (USR1) during the baselines stops them and requeues itself, to compute them when it starts again', async () => {
  const results = join(root, 'slurm');
  const base = ['sweep', tinyFile, '--backend', 'cpu', '--results', results, '--set', 'eval.linear.epochs=400', '--set', 'eval.linear.enabled=false', '--set', 'optim.epochs=1'];
  const trained = spawnSync(process.execPath, ['--import', 'tsx', cli, ...base, '--no-baselines'], { encoding: 'utf8' });
  assert.equal(trained.status, 0, trained.stderr);
  // scontrol of a stub that notes what it was asked
  const bin = join(root, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'scontrol'), `#!/bin/sh\necho "$@" >> ${join(root, 'scontrol.log')}\n`, { mode: 0o755 });
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, SLURM_ARRAY_JOB_ID: '77', SLURM_ARRAY_TASK_ID: '1', SLURM_JOB_ID: '78' };
  // the task, warned (USR1) once its baselines have begun: its exit code and stderr
  const warned = async (taskEnv: NodeJS.ProcessEnv) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...base, '--run-index', '1'], { env: taskEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
      if (err.includes('baselines of sweep') && child.signalCode === null && !err.includes('USR1')) child.kill('SIGUSR1');
    });
    return { code: await new Promise<number | null>((resolve) => child.on('close', resolve)), stderr: err };
  };
  const { code, stderr } = await warned(env);
  assert.equal(code, 130, stderr);
  assert.match(stderr, /requeueing Slurm task 77_1 for the baselines/);
  // the task's log says what happens next: Slurm starts it again; no command is the user's to run
  assert.match(stderr, /\n  requeued: Slurm starts this task again, and it goes on from where it stopped\n/);
  assert.doesNotMatch(stderr, /run the same command again/);
  assert.equal(readFileSync(join(root, 'scontrol.log'), 'utf8'), 'requeue 77_1\n');
  const tasks = readFileSync(join(results, 'tiny', 'slurm', 'tasks.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(tasks.map((t) => [t.event, t.baselines ?? false]), [['start', false], ['end', false], ['requeue', true]]);

  // a requeue Slurm refuses: said in the log and in tasks.jsonl, exit 1 (not 130: the task did not do what it said)
  const failing = join(root, 'bin-failing');
  mkdirSync(failing);
  writeFileSync(join(failing, 'scontrol'), '#!/bin/sh\necho "scontrol: error: Invalid job id specified" >&2\nexit 1\n', { mode: 0o755 });
  const { code: code2, stderr: stderr2 } = await warned({ ...env, PATH: `${failing}:${process.env.PATH}` });
  assert.equal(code2, 1, stderr2);
  assert.match(stderr2, /moco3: scontrol requeue 77_1 failed: scontrol: error: Invalid job id specified; submit the sweep again for the baselines\n/);
  assert.doesNotMatch(stderr2, /requeued: Slurm starts this task again/);
  const rows = readFileSync(join(results, 'tiny', 'slurm', 'tasks.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).slice(tasks.length);
  assert.deepEqual(rows.map((t) => t.event), ['start', 'end', 'requeue', 'requeue_failed']);
  assert.equal(rows[3].error, 'scontrol: error: Invalid job id specified');
});

test('Slurm tasks or agents that end a sweep together: one computes the baselines, under the sweep\'s lock; the others leave them to it', async () => {
  const results = join(root, 'together');
  const base = ['sweep', tinyFile, '--backend', 'cpu', '--results', results, '--set', 'eval.linear.enabled=false', '--set', 'optim.epochs=1'];
  const trained = spawnSync(process.execPath, ['--import', 'tsx', cli, ...base, '--no-baselines'], { encoding: 'utf8' });
  assert.equal(trained.status, 0, trained.stderr);
  // another live process holds the baselines' lock
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  await new Promise((r) => other.once('spawn', r));
  const lockDir = join(results, 'tiny', '.baselines');
  mkdirSync(lockDir, { recursive: true });
  const now = new Date().toISOString();
  writeFileSync(join(lockDir, '.lock'), JSON.stringify({ pid: other.pid, host: hostname(), proc_start: procStart(other.pid!), since: now, heartbeat: now, sweep: 'tiny baselines' }));
  try {
    const left = spawnSync(process.execPath, ['--import', 'tsx', cli, ...base, '--run-index', '1'], { encoding: 'utf8' });
    assert.equal(left.status, 0, left.stderr);
    assert.match(left.stderr, /sweep tiny: the baselines are being computed by .*pid \d+.*; left to it\n/);
    assert.equal(existsSync(join(results, 'tiny', 'baselines.json')), false);
    assert.equal(existsSync(join(lockDir, '.lock')), true, 'the other holder\'s lock is left alone');
    // said as an event with --json
    const json = spawnSync(process.execPath, ['--import', 'tsx', cli, ...base, '--run-index', '1', '--json'], { encoding: 'utf8' });
    assert.equal(json.status, 0, json.stderr);
    const event = json.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.type === 'baselines_left');
    assert.deepEqual(event?.holder?.pid, other.pid, json.stdout);
    // `moco3 baselines` beside it is refused, not computed side by side
    const alone = spawnSync(process.execPath, ['--import', 'tsx', cli, 'baselines', ...base.slice(1)], { encoding: 'utf8' });
    assert.equal(alone.status, 2, alone.stderr);
    assert.match(alone.stderr, /^moco3: \S+tiny: its baselines are being computed by pid \d+ on \S+ \(since [^)]+\); wait for it to end, or stop it first\n$/);
    assert.equal(existsSync(join(results, 'tiny', 'baselines.json')), false);
  } finally {
    await new Promise<void>((done) => (other.once('exit', () => done()), other.kill('SIGKILL')));
  }
  // its holder gone: the next task computes them, and leaves no lock folder
  const done = spawnSync(process.execPath, ['--import', 'tsx', cli, ...base, '--run-index', '2'], { encoding: 'utf8' });
  assert.equal(done.status, 0, done.stderr);
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')), done.stderr);
  assert.equal(existsSync(join(lockDir, '.lock')), false, 'its lock released');
});

test('moco3 baselines stopped by a signal: after the seeds done, exit 130 saying so, its lock released; stopped before any, no folder left', async () => {
  const results = join(root, 'command');
  const base = ['baselines', tinyFile, '--seeds', '0,1', '--backend', 'cpu', '--results', results, '--set', 'eval.linear.epochs=400', '--set', 'optim.epochs=1'];
  const run = (when: RegExp, signal: NodeJS.Signals) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...base], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = false;
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (!sent && when.test(stderr)) sent = child.kill(signal);
    });
    return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  };
  const none = await run(/baselines of sweep tiny on \w+: /, 'SIGTERM');
  assert.equal(none.code, 130, none.stderr);
  assert.match(none.stderr, /\nmoco3: baselines: SIGTERM: stopped; no seed was done: run the same command again to compute them\n$/);
  assert.equal(existsSync(results), false, 'the folders it made are gone');
  const one = await run(/ {2}seed 0: /, 'SIGINT');
  assert.equal(one.code, 130, one.stderr);
  assert.match(one.stderr, /\nmoco3: baselines: SIGINT: stopped; the seeds done are in \S+\/tiny\/baselines\.json: run the same command again for the rest\n$/);
  assert.deepEqual(JSON.parse(readFileSync(join(results, 'tiny', 'baselines.json'), 'utf8')).seeds.map((s: { seed: number }) => s.seed), [0]);
  assert.equal(existsSync(join(results, 'tiny', '.baselines', '.lock')), false, 'its lock released');
});

test("a baseline probe that diverges (eval.linear.base_lr too large for it) leaves the sweep without baselines, said; its runs done, exit 0", async () => {
  const results = join(root, 'diverged');
  const more = ['--set', 'eval.linear.base_lr=1e300', '--set', 'eval.linear.epochs=2'];
  const r = await sweep(undefined, more, results);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /: baselines not computed for the seeds left: the baselines' linear probe of the untrained encoder diverged: loss NaN in epoch \d at lr [\d.e+]+ \(eval\.linear\.base_lr 1e\+300, seed 0\); the report goes without them \(a smaller eval\.linear\.base_lr has them, the runs' probes too: `moco3 eval linear <run-dir> --lr <smaller>`\)\n/);
  assert.equal(existsSync(join(results, 'tiny', 'baselines.json')), false);
});
