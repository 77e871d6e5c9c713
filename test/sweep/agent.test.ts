/**
 * Agents on one results folder (`moco3 sweep --agent`), locks across hosts (heartbeat, timeout, takeover),
 * and SIGTERM as scancel sends it (twice: to the batch shell, which passes it on, and to moco3).
 */
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSweepFile } from '../../src/sweep/file.ts';
import { acquireLock, describeHolder, lockLost, procStart, readLock, releaseLock, setLockTimeout, type LockInfo } from '../../src/runfolder/lock.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { repo, spawnEvents, type Ev } from '../helpers/events.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-agent-');
after(() => rmSync(root, { recursive: true, force: true }));
const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function start(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { child, events, done } = spawnEvents(cli, args, { ...process.env, ...env });
  return { child, events, done: done.then(({ code, stderr }) => ({ code, stderr })) };
}

async function until(what: string, seconds: number, f: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > seconds * 1000) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await sleep(50);
  }
}

test('two agents on one results folder train every run exactly once', async () => {
  const results = join(root, 'agents');
  const plan = planSweep(loadSweepFile(tinyFile), { results });
  const marker = join(root, 'agent-pause');
  const args = ['sweep', tinyFile, '--agent', '--json', '--backend', 'cpu', '--results', results];
  // agent A takes the first run and pauses in it until agent B has taken the second
  const a = start(args, { MOCO3_TEST_PAUSE: `metrics:3:${plan.runs[0]!.id}`, MOCO3_TEST_MARKER: marker, MOCO3_LOCK_TIMEOUT: '2' });
  await until('agent A to train the first run', 90, () => existsSync(marker));
  const b = start(args, { MOCO3_LOCK_TIMEOUT: '2' });
  await until('agent B to start the second run', 90, () => b.events.some((e) => e.type === 'run_start'));
  writeFileSync(`${marker}.go`, '');
  const [ra, rb] = await Promise.all([a.done, b.done]);
  assert.equal(ra.code, 0, ra.stderr);
  assert.equal(rb.code, 0, rb.stderr);
  const started = (x: { events: Ev[] }) => x.events.filter((e) => e.type === 'run_start').map((e) => e.index);
  assert.deepEqual(started(a), [1], 'agent A trained the first run only');
  assert.deepEqual(started(b), [2], 'agent B trained the second run only');
  assert.ok(b.events.some((e) => e.type === 'run_skip' && e.index === 1 && /trained by pid/.test(e.reason) && e.to_train === false), 'B left the locked run to A');
  assert.equal(b.events.find((e) => e.type === 'sweep_start')?.todo, 1, 'B counted only the run it could take');
  for (const r of plan.runs) {
    assert.equal(readRunState(r.dir).state, 'completed');
    const steps = readMetrics(join(r.dir, 'metrics.jsonl')).map((m) => Number(m.step));
    assert.deepEqual(steps, [...new Set(steps)].sort((x, y) => x - y), `${r.id}: every step once`);
    assert.equal(JSON.parse(readFileSync(join(r.dir, 'meta.json'), 'utf8')).resumed_from_step, null, `${r.id}: trained in one go`);
    assert.equal(existsSync(join(r.dir, '.lock')), false);
  }
  process.stderr.write(`# agent test: agent A trained run ${started(a)}, agent B run ${started(b)}; both runs completed, each trained once\n`);
});

/**
 * A sweep (plain lines: no --json) whose run `held` (1-based) is locked by another live process of this host;
 * it pauses in run `pausedIn`, where the holder is killed. Returns what it wrote to stderr.
 */
async function heldRunSweep(name: string, held: number, pausedIn: number, agent: boolean): Promise<{ stderr: string; plan: ReturnType<typeof planSweep> }> {
  const results = join(root, name);
  const plan = planSweep(loadSweepFile(tinyFile), { results });
  // the holder: a live process of this host, its lock fresh
  const holder = spawn('sleep', ['300'], { stdio: 'ignore' });
  const now = new Date().toISOString();
  const heldDir = plan.runs[held - 1]!.dir;
  mkdirSync(heldDir, { recursive: true });
  writeFileSync(join(heldDir, '.lock'), JSON.stringify({ pid: holder.pid, host: hostname(), proc_start: procStart(holder.pid!), since: now, heartbeat: now, sweep: 'other' }));
  const marker = join(root, `${name}-pause`);
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'sweep', tinyFile, ...(agent ? ['--agent'] : []), '--no-baselines', '--backend', 'cpu', '--results', results], {
    cwd: repo,
    env: { ...process.env, MOCO3_TEST_PAUSE: `metrics:3:${plan.runs[pausedIn - 1]!.id}`, MOCO3_TEST_MARKER: marker },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const ended = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  try {
    await until(`the sweep to train run ${pausedIn}`, 90, () => existsSync(marker));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.on('exit', r));
    writeFileSync(`${marker}.go`, '');
    assert.equal(await ended, 0, stderr);
  } finally {
    holder.kill('SIGKILL');
    child.kill('SIGKILL');
  }
  return { stderr, plan };
}

const startsOf = (stderr: string) => [...stderr.matchAll(/sweep tiny: 2 runs, (\d+) to train/g)].map((m) => Number(m[1]));
const throughOf = (stderr: string) => [...stderr.matchAll(/sweep: (\d+)\/(\d+) runs through/g)].map((m) => `${m[1]}/${m[2]}`);

test("a run another live process holds is not counted to train; once its holder is gone, an agent's next pass counts it anew", async () => {
  const { stderr, plan } = await heldRunSweep('held', 1, 2, true);
  assert.deepEqual(startsOf(stderr), [1, 1], `first pass: the second run only; second: the first, freed\n${stderr}`);
  assert.deepEqual(throughOf(stderr), ['1/1', '1/1'], `each pass's own count\n${stderr}`);
  for (const r of plan.runs) assert.equal(readRunState(r.dir).state, 'completed');
});

test('a run left to another process at the start and freed before the sweep reaches it is trained, and counted then', async () => {
  const { stderr, plan } = await heldRunSweep('freed', 2, 1, false);
  assert.deepEqual(startsOf(stderr), [1], stderr);
  assert.deepEqual(throughOf(stderr), ['1/1', '2/2'], `the freed run joins the count\n${stderr}`);
  for (const r of plan.runs) assert.equal(readRunState(r.dir).state, 'completed');
});

test('an agent alone trains every run in one pass over the plan, and a second agent finds nothing to train', async () => {
  const results = join(root, 'alone');
  const args = ['sweep', tinyFile, '--agent', '--json', '--backend', 'cpu', '--results', results];
  const a = start(args);
  const ra = await a.done;
  assert.equal(ra.code, 0, ra.stderr);
  const passes = (x: { events: Ev[] }) => x.events.filter((e) => e.type === 'sweep_start').length;
  assert.equal(passes(a), 1, 'no second pass once every run is done');
  assert.deepEqual(a.events.filter((e) => e.type === 'run_start').map((e) => e.index), [1, 2]);
  const b = start(args);
  const rb = await b.done;
  assert.equal(rb.code, 0, rb.stderr);
  assert.equal(passes(b), 1);
  assert.deepEqual(b.events.filter((e) => e.type === 'run_start'), []);
  // the baselines probe as the runs did: on 64 train images a batch of 256 is the whole split, at its lr
  const baselines = JSON.parse(readFileSync(join(results, 'tiny', 'baselines.json'), 'utf8'));
  const runDir = join(results, 'tiny', readdirSync(join(results, 'tiny')).find((d) => d.startsWith('bs16'))!);
  const runProbe = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8')).linear;
  assert.equal(runProbe.batch_size, 64);
  assert.deepEqual(baselines.seeds[0].linear, { epochs: runProbe.epochs, base_lr: runProbe.base_lr, batch_size: runProbe.batch_size, train_views: runProbe.train_views });
});

test('an agent whose sweep ends with a failed run still computes the baselines (no other task is left to)', async () => {
  const results = join(root, 'failed');
  // the first run's checkpoint of step 6 cannot be written: that run fails, the other completes
  const a = start(['sweep', tinyFile, '--agent', '--json', '--backend', 'cpu', '--results', results], { MOCO3_TEST_WRITE_ERROR: 'EACCES:open:1:/.step-0000006.' });
  const ra = await a.done;
  assert.equal(ra.code, 1, ra.stderr);
  assert.deepEqual(a.events.filter((e) => e.type === 'run_failed').map((e) => e.index), [1]);
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')), 'baselines.json written');
});

test("locks across hosts: another host's lock is live while its heartbeat is fresh, stale after the timeout, taken over once", async () => {
  const dir = join(root, 'locks');
  mkdirSync(dir, { recursive: true });
  setLockTimeout(60);
  try {
    const other = (heartbeat: string | undefined): LockInfo => ({ pid: 1, host: 'another-host', proc_start: null, since: '2026-01-01T00:00:00.000Z', sweep: 's', ...(heartbeat ? { heartbeat } : {}) });
    const put = (l: LockInfo) => writeFileSync(join(dir, '.lock'), JSON.stringify(l));
    put(other(new Date(Date.now() - 30_000).toISOString()));
    assert.equal(readRunState(dir).state, 'running');
    assert.equal(acquireLock(dir, 's')?.host, 'another-host', 'a heartbeat 30 s old, timeout 60 s: held');
    put(other(undefined));
    const legacy = acquireLock(dir, 's');
    assert.equal(legacy?.host, 'another-host', 'no heartbeat (an older moco3): held');
    // ... and the line that says the run is taken says how to free it
    assert.equal(describeHolder(legacy!, dir), `pid 1 on another-host (since 2026-01-01T00:00:00.000Z), whose lock has no heartbeat (an older moco3 wrote it) and so never goes stale: once that process has ended, remove ${join(dir, '.lock')}`);
    assert.equal(describeHolder(other(new Date(0).toISOString()), dir), 'pid 1 on another-host (since 2026-01-01T00:00:00.000Z)');
    // a holder on a longer timeout (it beats every tenth of its own): judged by the longer of the two
    put({ ...other(new Date(Date.now() - 61_000).toISOString()), timeout_s: 600 });
    assert.equal(acquireLock(dir, 's')?.host, 'another-host', 'a heartbeat 61 s old, the holder on 600 s: held');
    // honoured up to a day: a lock written with an absurd timeout is not kept for ever
    put({ ...other(new Date(Date.now() - 2 * 86_400_000).toISOString()), timeout_s: 1e300 });
    assert.equal(readRunState(dir).state, 'new', 'a heartbeat two days old, the holder on 1e300 s: stale');
    put({ ...other(new Date(Date.now() - 61_000).toISOString()), timeout_s: 30 });
    assert.equal(readRunState(dir).state, 'new', 'the holder on 30 s, this process on 60 s: stale');
    put(other(new Date(Date.now() - 61_000).toISOString()));
    assert.equal(readRunState(dir).state, 'new', 'stale');
    assert.equal(acquireLock(dir, 's'), null, 'a heartbeat older than the timeout: taken over');
    const mine = readLock(dir)!;
    assert.equal(mine.pid, process.pid);
    assert.equal(mine.timeout_s, 60, 'the lock records its holder\'s timeout');
    // the holder's heartbeat advances (every tenth of the timeout)
    setLockTimeout(0.5);
    releaseLock(dir);
    assert.equal(acquireLock(dir, 's'), null);
    const first = readLock(dir)!.heartbeat!;
    await sleep(200);
    assert.ok(readLock(dir)!.heartbeat! > first, 'heartbeat refreshed');
    assert.equal(lockLost(dir), false);
    // another agent took it over (this process was frozen past the timeout): the holder sees it has lost it
    put({ ...other(new Date().toISOString()), pid: 2 });
    await sleep(200);
    assert.equal(lockLost(dir), true);
    assert.equal(readLock(dir)!.pid, 2, 'the other holder is left alone');
    releaseLock(dir);
    assert.equal(readLock(dir)!.pid, 2, 'release removes only our own lock');
    // a requeued Slurm task started on another node: the lock of its earlier start (node gone) is stale at once
    const fresh = { ...other(new Date().toISOString()), slurm_task: '7_1', slurm_restart: 0 };
    Object.assign(process.env, { SLURM_ARRAY_JOB_ID: '7', SLURM_ARRAY_TASK_ID: '2', SLURM_RESTART_COUNT: '1' });
    put(fresh);
    assert.equal(acquireLock(dir, 's')?.slurm_task, '7_1', "another task's lock: held");
    process.env.SLURM_ARRAY_TASK_ID = '1';
    // the same start of the same task (its script runs two agents): a live holder, held
    process.env.SLURM_RESTART_COUNT = '0';
    assert.equal(acquireLock(dir, 's')?.slurm_task, '7_1', "the same start's other agent: held");
    put({ ...fresh, host: hostname(), pid: process.ppid, proc_start: null });
    assert.equal(acquireLock(dir, 's')?.pid, process.ppid, "the same start's other agent on this host: held");
    process.env.SLURM_RESTART_COUNT = '1';
    put(fresh);
    assert.equal(acquireLock(dir, 's'), null, 'its own earlier start: taken over');
    assert.deepEqual([readLock(dir)!.slurm_task, readLock(dir)!.slurm_restart], ['7_1', 1]);
    releaseLock(dir);
  } finally {
    setLockTimeout(null);
    delete process.env.SLURM_ARRAY_JOB_ID;
    delete process.env.SLURM_ARRAY_TASK_ID;
    delete process.env.SLURM_RESTART_COUNT;
  }
});

for (const signals of [['SIGTERM', 'SIGTERM'], ['SIGHUP'], ['SIGUSR2']] as const) {
const what = signals.length === 2 ? 'SIGTERM twice (scancel: to the batch shell and to moco3)' : `${signals[0]} (a closed terminal, a scheduler's warning)`;
test(`${what} still checkpoints where it stopped`, async () => {
  const results = join(root, `stop-${signals.join('-')}`);
  const plan = planSweep(loadSweepFile(tinyFile), { results });
  const marker = join(root, `pause-${signals.join('-')}`);
  const p = start(['sweep', tinyFile, '--json', '--backend', 'cpu', '--results', results], { MOCO3_TEST_PAUSE: 'metrics:3', MOCO3_TEST_MARKER: marker });
  await until('the first run to reach step 2', 90, () => existsSync(marker));
  for (const sig of signals) p.child.kill(sig);
  writeFileSync(`${marker}.go`, '');
  const r = await p.done;
  assert.equal(r.code, 130, r.stderr);
  const end = p.events.find((e) => e.type === 'run_end');
  assert.equal(end?.status, 'interrupted');
  assert.ok(p.events.some((e) => e.type === 'checkpoint' && e.step === end.summary.steps), 'checkpointed at the step it stopped');
  assert.equal(readRunState(plan.runs[0]!.dir).checkpoint_step, end.summary.steps, 'no step lost');
});
}
