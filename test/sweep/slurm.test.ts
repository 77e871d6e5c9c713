/**
 * `moco3 sweep --launcher slurm` against a real Slurm (munged, slurmctld, slurmd on localhost; see
 * test/helpers/slurm.ts): the array job trains every run exactly once with the metrics of the same sweep
 * run here, step for step; a task signalled with USR1 checkpoints, requeues itself and resumes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../helpers/tf.ts';
import { startSlurm, type SlurmCluster } from '../helpers/slurm.ts';
import { loadSweepFile } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { runSweep } from '../../src/sweep/runner.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-slurm-');
const repo = join(import.meta.dirname, '..', '..');
const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');
const T0 = Date.now();
const log = (s: string) => process.stderr.write(`# slurm test [${((Date.now() - T0) / 1000).toFixed(1)} s]: ${s}\n`);

let slurm: SlurmCluster;
before(async () => {
  const t0 = Date.now();
  slurm = await startSlurm(join(root, 'cluster'));
  log(`munged, slurmctld, slurmd up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
after(() => {
  slurm?.stop();
  rmSync(root, { recursive: true, force: true });
});

function moco3(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, env: { ...slurm.env, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, seconds: number, f: () => T | null | undefined | false): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() - t0 > seconds * 1000) throw new Error(`timed out after ${seconds} s waiting for ${what}\n${slurm.logs()}`);
    await sleep(250);
  }
}

const strip = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).map(({ images_per_s: _ips, ...row }) => row);
const queue = () => slurm.cmd('squeue', ['-h', '-r', '-o', '%i|%T|%r']).trim().split('\n').filter(Boolean);

test('a sweep as a Slurm array job: every run once, a task requeued on USR1 resumes, metrics equal a local sweep step for step', async () => {
  // the same sweep trained here, in this process
  const refDir = join(root, 'local');
  const ref = planSweep(loadSweepFile(tinyFile), { results: refDir });
  await runSweep({ plan: ref, backend: { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null } });
  log('local reference sweep done');

  // a space in the results folder's path, and an sbatch option of two words: both quoted in the script
  const results = join(root, 'my results');
  const marker = join(root, 'pause');
  const [run1, run2] = ref.runs as [(typeof ref.runs)[0], (typeof ref.runs)[0]];
  const sweepArgs = ['sweep', tinyFile, '--backend', 'cpu', '--results', results];
  // the first run's task pauses before its third metrics row, where the test signals it
  const sub = moco3([...sweepArgs, '--launcher', 'slurm', '--max-parallel', '2', '--cpus-per-run', '1', '--sbatch-arg=--comment=moco3 test'], {
    MOCO3_TEST_PAUSE: `metrics:3:${run1.id}`,
    MOCO3_TEST_MARKER: marker,
  });
  assert.equal(sub.code, 0, sub.stderr);
  const job = sub.stdout.trim();
  assert.match(job, /^\d+$/);
  assert.match(sub.stderr, new RegExp(`submitted Slurm array job ${job}: runs 1-2 of 2, at most 2 at a time`));
  // the status line names this submission's plan: its flags, the path with a space quoted
  assert.match(sub.stderr, /\n {2}status: moco3 plan \S+tiny\.yaml --backend cpu --results '[^'\n]*my results'\n/);
  const script = readFileSync(sub.stderr.match(/script: (.+\.sbatch)\n/)![1]!, 'utf8');
  assert.match(script, /#SBATCH --array=1-2%2/);
  assert.match(script, /#SBATCH --signal=B:USR1@300/);
  assert.match(script, /#SBATCH --requeue/);
  log(`submitted array job ${job}`);

  // 1. the first task is training (paused between two steps): USR1 to its batch shell, as Slurm sends it
  await until('the first run to reach step 2', 90, () => existsSync(marker));
  log('first run paused at step 2');
  // moco3 plan meanwhile: the run's array task as Slurm reports it, next to the run's own status
  const during = moco3(['plan', tinyFile, '--backend', 'cpu', '--results', results]);
  assert.equal(during.code, 0, during.stderr);
  assert.match(during.stdout, new RegExp(`${job}_1 RUNNING +running \\(pid \\d+ on `));
  slurm.cmd('scancel', ['--signal=USR1', '--batch', `${job}_1`]);
  await sleep(300);
  writeFileSync(`${marker}.go`, '');
  // it checkpoints and requeues itself: Slurm holds a requeued job back about two minutes; start it now
  await until('the first task to be requeued', 60, () => queue().some((l) => l.startsWith(`${job}_1|PENDING`)));
  log(`task ${job}_1 requeued by moco3 on USR1`);
  // slurmd rejects a start in the same second as the requeue (the old credential is revoked up to then):
  // Slurm's own delay is about two minutes; two seconds are enough
  await sleep(2000);
  const taskLog = join(results, 'tiny', 'slurm', 'tasks.jsonl');
  const readTasks = () => readFileSync(taskLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  // both tasks log their end; the requeued one is started now, not after Slurm's delay
  let seen: string[] = [];
  await until('both tasks to end', 150, () => {
    seen = queue();
    if (seen.some((l) => l === `${job}_1|PENDING|BeginTime`)) slurm.cmd('scontrol', ['update', `JobId=${job}_1`, 'StartTime=now']);
    return readTasks().filter((e) => e.event === 'end').length === 2 || null;
  }).catch((e) => {
    const taskOut = join(results, 'tiny', 'slurm', `${job}_1.log`);
    throw new Error(`${(e as Error).message}\nsqueue: ${seen.join(', ')}\ntasks: ${readFileSync(taskLog, 'utf8')}\n${job}_1.log: ${existsSync(taskOut) ? readFileSync(taskOut, 'utf8').slice(-3000) : '-'}`);
  });
  await until('the array job to leave the queue', 60, () => queue().every((l) => !l.startsWith(`${job}_`)));

  // every run completed, trained once: one start per Slurm start, the requeued one resumed where it stopped
  const tasks = readTasks();
  const of = (t: string) => tasks.filter((e) => e.task === t).map((e) => `${e.event}:${e.restarts}${e.state ? `:${e.state}` : ''}`);
  assert.deepEqual(of(`${job}_1`), ['start:0', 'requeue:0', 'start:1', 'end:1:completed']);
  assert.deepEqual(of(`${job}_2`), ['start:0', 'end:0:completed']);
  const requeuedAt = tasks.find((e) => e.event === 'requeue')?.step;
  assert.ok(requeuedAt >= 2 && requeuedAt < 6, `checkpointed at step ${requeuedAt}`);
  const meta = JSON.parse(readFileSync(join(results, 'tiny', run1.id, 'meta.json'), 'utf8'));
  assert.equal(meta.resumed_from_step, requeuedAt, 'the requeued task resumed from the checkpoint it wrote on USR1');
  const log1 = readFileSync(join(results, 'tiny', 'slurm', `${job}_1.log`), 'utf8');
  assert.match(log1, /USR1: checkpointing the current run, then requeueing/);
  for (const r of [run1, run2]) {
    const mine = join(results, 'tiny', r.id);
    assert.equal(JSON.parse(readFileSync(join(mine, 'status.json'), 'utf8')).status, 'completed');
    assert.deepEqual(strip(mine), strip(r.dir), `${r.id}: metrics differ from the local sweep`);
  }
  // the task that ended the sweep computed its baselines
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')), 'baselines.json written by the last task');
  log(`runs completed once each (${run1.id} requeued at step ${requeuedAt} and resumed); metrics equal the local sweep's, ${strip(run1.dir).length + strip(run2.dir).length} rows`);

  // moco3 plan names each run's task; submitting again submits nothing
  const plan = moco3(['plan', tinyFile, '--backend', 'cpu', '--results', results]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, new RegExp(`${job}_1 \\S+.*completed`));
  assert.match(plan.stdout, new RegExp(`${job}_2 \\S+.*completed`));
  const again = moco3([...sweepArgs, '--launcher', 'slurm']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /nothing to submit/);
  assert.doesNotMatch(again.stderr, /baselines/);
  assert.equal(again.stdout, '');
  // the baselines lost (the last task killed while computing them): submitting again says how to get them;
  // a dry run prints no script of an empty array
  rmSync(join(results, 'tiny', 'baselines.json'));
  const dry = moco3([...sweepArgs, '--launcher', 'slurm', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(dry.stdout, '');
  assert.match(dry.stderr, /nothing to submit: every run is completed, running or queued \(1 completed, 2 completed\)\n  baselines\.json lacks seed 0: the same command without --launcher slurm computes it here \(it trains nothing: every run is done\)\n$/);
  // ... as it does
  const local = moco3(sweepArgs);
  assert.equal(local.code, 0, local.stderr);
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')));
  assert.doesNotMatch(local.stderr, /run_start|starting,/);
});
