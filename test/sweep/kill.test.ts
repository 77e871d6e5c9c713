import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import '../helpers/tf.ts';
import { loadSweepFile } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { runSweep } from '../../src/sweep/runner.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { spawnEvents, type Ev } from '../helpers/events.ts';
import { rng } from '../helpers/rng.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-sweep-kill-');
after(() => rmSync(root, { recursive: true, force: true }));

const cli = join(import.meta.dirname, 'fixtures', 'cli.ts');
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');


/**
 * `moco3 sweep tiny.yaml --json`, paused at `pause` (see fixtures/cli.ts); there it gets `signal`
 * (SIGKILL by default). After a signal other than SIGKILL the process is let go on.
 */
function runCli(results: string, opts: { pause?: string; signal?: NodeJS.Signals; killWhen?: (e: Ev, n: number) => boolean; delayMs?: number } = {}) {
  const marker = join(results, `.pause-${process.hrtime.bigint()}`);
  const env = { ...process.env, MOCO3_TEST_PAUSE: opts.pause ?? '', MOCO3_TEST_MARKER: marker };
  let paused = false;
  const { child, events, done } = spawnEvents(cli, ['sweep', tinyFile, '--json', '--no-baselines', '--backend', 'cpu', '--results', results], env, (ev, n, c) => {
    if (opts.killWhen && !paused && opts.killWhen(ev, n)) {
      // the process runs on for delayMs: the kill lands at an arbitrary point of what comes next
      paused = true;
      setTimeout(() => c.kill('SIGKILL'), opts.delayMs ?? 0);
    }
  });
  const poll = setInterval(() => {
    if (!opts.pause || paused || !existsSync(marker)) return;
    paused = true;
    child.kill(opts.signal ?? 'SIGKILL');
    if (opts.signal && opts.signal !== 'SIGKILL') writeFileSync(`${marker}.go`, '');
  }, 20);
  return done.then(({ code, signal, stderr }) => {
    clearInterval(poll);
    rmSync(marker, { force: true });
    rmSync(`${marker}.go`, { force: true });
    return { code, signal, events, stderr, paused };
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

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const pad = (n: number) => String(n).padStart(7, '0');

/**
 * A kill moment on the sweep's timeline: `pos` orders them (run, step, moment within the step); `step` is
 * what a resume must not have passed for the moment to come again.
 */
interface Moment {
  phase: 'checkpoint write' | 'step' | 'linear probe' | 'run end';
  what: string;
  run: number;
  step: number;
  pos: [number, number, number];
  opts: (r: ReturnType<typeof rng>) => Parameters<typeof runCli>[1];
}

/** Every kill moment of a sweep's runs: each part of each checkpoint write, each step, each probe epoch, the run's end. */
function moments(plan: Awaited<typeof refPlan>): Moment[] {
  const out: Moment[] = [];
  for (const [i, run] of plan.runs.entries()) {
    const id = esc(run.id);
    const T = strip(run.dir).at(-1)!.step as number;
    const every = run.config.train.checkpoint_every!;
    const ckpts = [...new Set([...Array.from({ length: Math.floor(T / every) + 1 }, (_, k) => k * every), T])];
    for (const N of ckpts) {
      const tmp = `${id}/checkpoints/\\.step-${pad(N)}\\.\\d+\\.tmp`;
      // in the order of a checkpoint write: each file written but not renamed, the folder, then last.json
      const parts: [string, string][] = [
        ['model.safetensors written, not in place', `before-rename:1:${tmp}/\\.model\\.safetensors\\.[^/]+\\.\\d+\\.tmp$`],
        ['optimizer.safetensors written, not in place', `before-rename:1:${tmp}/\\.optimizer\\.safetensors\\.[^/]+\\.\\d+\\.tmp$`],
        ['state.json written, not in place', `before-rename:1:${tmp}/\\.state\\.json\\.[^/]+\\.\\d+\\.tmp$`],
        ['the folder complete, not renamed', `before-rename:1:${tmp}$`],
        ['the folder in place, last.json not yet', `after-rename:1:${id}/checkpoints/step-${pad(N)}$`],
      ];
      parts.forEach(([what, pause], sub) =>
        out.push({ phase: 'checkpoint write', what: `run ${i + 1} step ${N}: ${what}`, run: i, step: N, pos: [i, N, 1 + sub], opts: () => ({ pause }) }),
      );
    }
    for (let s = 1; s <= T; s++) {
      // after the step's event, a random delay: the kill lands in what follows (a metrics row, kNN, the next
      // step); not after a checkpoint's step, where the kill would pass the checkpoint's own moments
      if (ckpts.includes(s)) continue;
      out.push({
        phase: 'step', what: `run ${i + 1} step ${s}`, run: i, step: s, pos: [i, s, 0],
        opts: (r) => ({ killWhen: (e) => e.type === 'step' && e.run === run.id && e.step === s, delayMs: r.int(150) }),
      });
    }
    for (let epoch = 2; epoch <= 16; epoch++) {
      out.push({
        phase: 'linear probe', what: `run ${i + 1} probe epoch ${epoch}`, run: i, step: T + 1, pos: [i, T + 1, epoch],
        opts: (r) => ({ killWhen: (e) => e.type === 'phase' && e.run === run.id && new RegExp(`^linear probe: epoch ${epoch}/`).test(e.text), delayMs: r.int(30) }),
      });
    }
    out.push(
      { phase: 'run end', what: `run ${i + 1}: summary.json written, not in place`, run: i, step: T + 2, pos: [i, T + 2, 0], opts: () => ({ pause: `before-rename:1:${id}/\\.summary\\.json\\.[^/]+\\.\\d+\\.tmp$` }) },
      { phase: 'run end', what: `run ${i + 1}: summary.json in place, the status not yet final`, run: i, step: T + 2, pos: [i, T + 2, 1], opts: () => ({ pause: `after-rename:1:${id}/summary\\.json$` }) },
    );
  }
  return out;
}

/** A seeded choice of kill moments in timeline order: `quota` of each phase. */
function schedule(all: Moment[], r: ReturnType<typeof rng>, quota: Record<Moment['phase'], number>): Moment[] {
  const chosen = new Set<Moment>();
  for (const [phase, n] of Object.entries(quota)) {
    const pool = all.filter((m) => m.phase === phase);
    // the probe and the end of every run at least once
    if (phase === 'linear probe' || phase === 'run end') for (const run of new Set(pool.map((m) => m.run))) chosen.add(r.pick(pool.filter((m) => m.run === run)));
    while ([...chosen].filter((m) => m.phase === phase).length < Math.min(n, pool.length)) chosen.add(r.pick(pool));
  }
  const cmp = (a: Moment, b: Moment) => a.pos[0] - b.pos[0] || a.pos[1] - b.pos[1] || a.pos[2] - b.pos[2];
  return [...chosen].sort(cmp);
}

/** Where each run of the killed sweep stands: done, or the step of its newest checkpoint (-1: none). */
function standing(plan: Awaited<typeof refPlan>, dir: string): { done: boolean; resume: number }[] {
  return plan.runs.map((run) => {
    const d = join(dir, run.id);
    const read = (f: string) => (existsSync(join(d, f)) ? JSON.parse(readFileSync(join(d, f), 'utf8')) : null);
    const done = read('status.json')?.status === 'completed' && existsSync(join(d, 'summary.json'));
    return { done, resume: read('checkpoints/last.json')?.step ?? -1 };
  });
}

test('SIGKILL at 24 seeded random moments over a whole sweep (each part of checkpoint writes, after steps, in the linear probe, at the end of a run): every run ends as if never killed', async (t) => {
  const ref = await refPlan;
  const results = mkdtempSync(join(root, 'moco3-kills-'));
  const dir = join(results, 'tiny');
  const seed = Number(process.env.MOCO3_KILL_SEED ?? 12);
  const r = rng(seed);
  const plan = schedule(moments(ref), r, { 'checkpoint write': 11, step: 7, 'linear probe': 4, 'run end': 2 });
  const hit: { phase: string; what: string }[] = [];
  const skipped: string[] = [];
  const t0 = performance.now();
  for (const m of plan) {
    // a moment the killed sweep has passed for good (a delayed kill landed beyond it) cannot come again
    const now = standing(ref, dir);
    if (now[m.run]!.done || m.step <= now[m.run]!.resume) {
      skipped.push(m.what);
      continue;
    }
    const res = await runCli(results, m.opts(r));
    assert.equal(res.signal, 'SIGKILL', `${m.what}: not reached (exit ${res.code}): ${res.stderr}`);
    const mine = res.events.filter((e) => e.run === ref.runs[m.run]!.id);
    let phase: string = m.phase;
    // a kill after a probe epoch counts as one in the probe only when the run had not ended
    if (m.phase === 'linear probe' && mine.some((e) => e.type === 'end')) phase = 'after the linear probe';
    if (m.phase === 'step') phase = `after step (last event: ${mine.at(-1)?.type ?? '-'})`;
    hit.push({ phase, what: m.what });
    assertNothingHalfWrittenButTemps(dir);
  }
  const last = await runCli(results);
  assert.equal(last.code, 0, last.stderr);
  const count = (p: string) => hit.filter((h) => h.phase === p).length;
  const summary = `seed ${seed}: ${hit.length} kills in ${((performance.now() - t0) / 1000).toFixed(0)} s: ${count('checkpoint write')} in checkpoint writes, ${count('linear probe')} in the linear probe, ${count('run end')} at a run's end, ${hit.filter((h) => h.phase.startsWith('after step')).length} after a step (${skipped.length} planned moment(s) passed by an earlier kill)`;
  t.diagnostic(summary);
  for (const h of hit) t.diagnostic(`  ${h.phase}: ${h.what}`);
  for (const w of skipped) t.diagnostic(`  passed: ${w}`);
  assert.ok(hit.length >= 20, summary);
  assert.ok(count('checkpoint write') >= 8, summary);
  assert.ok(count('linear probe') >= 2, summary);
  assert.ok(count('run end') >= 2, summary);
  assertNothingHalfWritten(dir);
  for (const run of ref.runs) {
    const mine = join(dir, run.id);
    const where = hit.map((h) => h.what).join('; ');
    assert.deepEqual(strip(mine), strip(run.dir), `${run.id}: metrics differ after kills at ${where}`);
    assert.deepEqual(summaryOf(mine), summaryOf(run.dir), `${run.id}: summary differs after kills at ${where}`);
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
