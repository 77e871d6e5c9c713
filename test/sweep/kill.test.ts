import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import '../helpers/tf.ts';
import { loadSweepFile } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { runSweep } from '../../src/sweep/runner.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';

const root = mkdtempSync(join(tmpdir(), 'moco3-sweep-kill-'));
after(() => rmSync(root, { recursive: true, force: true }));

const repo = join(import.meta.dirname, '..', '..');
const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');

type Ev = Record<string, any>;

/**
 * `moco3 sweep tiny.yaml --json`, paused at `pause` (see fixtures/cli.ts); there it gets `signal`
 * (SIGKILL by default). After a signal other than SIGKILL the process is let go on.
 */
function runCli(results: string, opts: { pause?: string; signal?: NodeJS.Signals; killWhen?: (e: Ev, n: number) => boolean; delayMs?: number } = {}) {
  const marker = join(results, `.pause-${process.hrtime.bigint()}`);
  const env = { ...process.env, MOCO3_TEST_PAUSE: opts.pause ?? '', MOCO3_TEST_MARKER: marker };
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'sweep', tinyFile, '--json', '--no-baselines', '--backend', 'cpu', '--results', results], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Ev[] = [];
  let stderr = '';
  let buf = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const ev = JSON.parse(buf.slice(0, i)) as Ev;
      events.push(ev);
      buf = buf.slice(i + 1);
      if (opts.killWhen && !paused && opts.killWhen(ev, events.length)) {
        // the process runs on for delayMs: the kill lands at an arbitrary point of what comes next
        paused = true;
        setTimeout(() => child.kill('SIGKILL'), opts.delayMs ?? 0);
      }
    }
  });
  let paused = false;
  const poll = setInterval(() => {
    if (!opts.pause || paused || !existsSync(marker)) return;
    paused = true;
    child.kill(opts.signal ?? 'SIGKILL');
    if (opts.signal && opts.signal !== 'SIGKILL') writeFileSync(`${marker}.go`, '');
  }, 20);
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; events: Ev[]; stderr: string; paused: boolean }>((resolve) => {
    child.on('exit', (code, signal) => {
      clearInterval(poll);
      rmSync(marker, { force: true });
      rmSync(`${marker}.go`, { force: true });
      resolve({ code, signal, events, stderr, paused });
    });
  });
}

/** Every file of the results is whole: no temporary files or locks left, every JSON and metrics line parses. */
function assertNothingHalfWritten(dir: string): void {
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      assert.ok(!name.endsWith('.tmp'), `left behind: ${p}`);
      assert.notEqual(name, '.lock', `left behind: ${p}`);
      if (statSync(p).isDirectory()) {
        if (/^step-\d+$/.test(name)) {
          for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json']) assert.ok(existsSync(join(p, f)), `${p} lacks ${f}`);
        }
        walk(p);
      } else if (name.endsWith('.json')) {
        JSON.parse(readFileSync(p, 'utf8'));
      } else if (name.endsWith('.jsonl')) {
        for (const line of readFileSync(p, 'utf8').split('\n').filter(Boolean)) JSON.parse(line);
      } else if (name.endsWith('.yaml')) {
        YAML.parse(readFileSync(p, 'utf8'));
      }
    }
  };
  walk(dir);
}

async function reference() {
  const results = mkdtempSync(join(root, 'moco3-ref-'));
  const plan = planSweep(loadSweepFile(tinyFile), { results });
  const backend = { name: 'cpu', requested: 'cpu' as const, device: 'test', reason: 'test', gpu: false, heapLimit: null };
  await runSweep({ plan, backend });
  return plan;
}
const refPlan = reference();

const strip = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).map(({ images_per_s: _ips, ...row }) => row);
/** summary.json without the timings, which differ from run to run */
const TIMING = new Set(['wall_s', 'train_s', 'images_per_s', 'seconds']);
const untimed = (v: unknown): unknown =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).filter(([k]) => !TIMING.has(k)).map(([k, x]) => [k, untimed(x)])) : v;
const summaryOf = (dir: string) => untimed(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')));

test('SIGKILL at any moment, then the same command: the sweep ends as if never killed', async () => {
  const ref = await refPlan;

  const results = mkdtempSync(join(root, 'moco3-kill-'));
  const [run1, run2] = ref.runs.map((r) => r.id) as [string, string];
  // 1. between two steps of the first run (before the metrics row of step 2: step 0 kNN, step 1, step 2)
  const a = await runCli(results, { pause: `metrics:3:${run1}` });
  assert.equal(a.signal, 'SIGKILL', a.stderr);
  assert.ok(a.paused && !a.events.some((e) => e.type === 'checkpoint' && e.step > 0));
  // 2. inside a checkpoint write (step 3 of the first run): the folder is written, not yet in place
  const b = await runCli(results, { pause: `ckpt-write:1:${run1}` });
  assert.equal(b.signal, 'SIGKILL', b.stderr);
  assert.ok(b.paused, 'the checkpoint write was reached');
  assert.ok(b.events.some((e) => e.type === 'run_start' && e.index === 1 && e.previous === 'interrupted'));
  // 3. right after a checkpoint completes: the second one of the second run (step 3), the first run done
  const c = await runCli(results, { pause: `ckpt-done:2:${run2}` });
  assert.equal(c.signal, 'SIGKILL', c.stderr);
  assert.ok(c.events.some((e) => e.type === 'end' && e.index === 1 && e.status === 'completed'));
  // the last one finishes: the first run is skipped, the second resumes
  const last = await runCli(results);
  assert.equal(last.code, 0, last.stderr);
  assert.ok(last.events.some((e) => e.type === 'run_skip' && e.index === 1 && e.state === 'completed'));
  assert.ok(last.events.some((e) => e.type === 'run_start' && e.index === 2 && e.previous === 'interrupted' && e.resume_step !== null));
  const end = last.events.at(-1)!;
  assert.equal(end.type, 'sweep_end');
  assert.deepEqual(end.counts, { completed: 2 });

  const killedDir = join(results, 'tiny');
  assertNothingHalfWritten(killedDir);
  for (const r of ref.runs) {
    const mine = join(killedDir, r.id);
    assert.deepEqual(strip(mine), strip(r.dir), `${r.id}: metrics differ`);
    assert.deepEqual(summaryOf(mine), summaryOf(r.dir), `${r.id}: summary differs`);
  }
});

/** mulberry32: seeded, so a failing kill sequence can be replayed */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]! };
}

test('SIGKILL at seeded random moments over a whole sweep (steps, kNN, checkpoint writes, the linear probe): every run ends as if never killed', async (t) => {
  const ref = await refPlan;
  const results = mkdtempSync(join(root, 'moco3-kills-'));
  const r = rng(12);
  const where: string[] = [];
  let kills = 0;
  for (let i = 0; i < 7; i++) {
    // kill moments: after the n-th event of this invocation plus a random delay; inside a checkpoint write;
    // right after one; before a metrics row; inside the linear probe
    const kind = i === 1 || i === 4 ? 'probe' : r.pick(['event', 'event', 'ckpt-write', 'ckpt-done', 'metrics'] as const);
    const k = 1 + r.int(3);
    const res =
      kind === 'event'
        ? await runCli(results, { killWhen: (_e, n) => n >= k * 6, delayMs: r.int(250) })
        : kind === 'probe'
          ? await runCli(results, { killWhen: (e) => e.type === 'phase' && /^linear probe: epoch/.test(e.text) && Number(/epoch (\d+)/.exec(e.text)![1]) >= k * 5, delayMs: r.int(100) })
          : await runCli(results, { pause: `${kind}:${k}` });
    if (res.signal !== 'SIGKILL') {
      assert.equal(res.code, 0, res.stderr);
      break; // the sweep finished before this moment came
    }
    kills++;
    where.push(`${kind}:${k}`);
    assertNothingHalfWrittenButTemps(join(results, 'tiny'));
  }
  const last = await runCli(results);
  assert.equal(last.code, 0, last.stderr);
  assert.ok(kills >= 5, `only ${kills} kills landed (${where.join(', ')})`);
  assert.ok(where.filter((w) => w.startsWith('probe')).length >= 1, `no kill in a linear probe (${where.join(', ')})`);
  t.diagnostic(`${kills} kills: ${where.join(', ')}`);
  const killedDir = join(results, 'tiny');
  assertNothingHalfWritten(killedDir);
  for (const run of ref.runs) {
    const mine = join(killedDir, run.id);
    assert.deepEqual(strip(mine), strip(run.dir), `${run.id}: metrics differ after kills at ${where.join(', ')}`);
    assert.deepEqual(summaryOf(mine), summaryOf(run.dir), `${run.id}: summary differs after kills at ${where.join(', ')}`);
  }
});

/** After a kill: temporary files and a lock may be left (the next invocation clears them); every other file is whole. */
function assertNothingHalfWrittenButTemps(dir: string): void {
  if (!existsSync(dir)) return;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (name.endsWith('.tmp') || name === '.lock') continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.json')) JSON.parse(readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
}

test('Ctrl-C checkpoints the current run and exits 130; the same command then finishes the sweep', async () => {
  const ref = await refPlan;
  const results = mkdtempSync(join(root, 'moco3-int-'));
  const d = await runCli(results, { pause: 'metrics:3', signal: 'SIGINT' });
  assert.equal(d.code, 130, d.stderr);
  const end = d.events.find((e) => e.type === 'run_end');
  assert.equal(end?.status, 'interrupted');
  assert.ok(end.summary.steps < end.summary.total_steps, 'stopped before the run ended');
  assert.ok(d.events.some((e) => e.type === 'checkpoint' && e.index === 1 && e.step === end.summary.steps), 'checkpointed where it stopped');
  assert.ok(!d.events.some((e) => e.type === 'run_start' && e.index === 2), 'the next run did not start');
  const last = await runCli(results);
  assert.equal(last.code, 0, last.stderr);
  assert.ok(last.events.some((e) => e.type === 'run_start' && e.index === 1 && e.resume_step === end.summary.steps));
  assertNothingHalfWritten(join(results, 'tiny'));
  for (const r of ref.runs) assert.deepEqual(strip(join(results, 'tiny', r.id)), strip(r.dir), `${r.id}: metrics differ`);
});
