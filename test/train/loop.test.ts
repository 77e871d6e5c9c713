import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs, { readFileSync, readdirSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { tf } from '../helpers/tf.ts';
import type { BackendInfo } from '../../src/engine/backend.ts';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { loadRunData } from '../../src/components/index.ts';
import { scheduleSteps, trainRun, type TrainEvent } from '../../src/train/loop.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { gitCommit } from '../../src/train/meta.ts';
import { prefetchViews, ViewDump, viewsOfSteps } from '../../src/train/views.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { weightsFinite } from '../../src/train/step.ts';
import { evalCheckpoint } from '../../src/eval/offline.ts';
import { tempDir } from '../helpers/tmp.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { CheckpointError } from '../../src/runfolder/checkpoints.ts';
import { checkResumeConfig, resumeCheckpoint } from '../../src/runfolder/resume.ts';
import { withResumePoint } from '../../src/sweep/resume.ts';
import { tinyConfig } from '../helpers/tiny.ts';

const backend: BackendInfo = { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null };


const tmp = () => tempDir('moco3-loop-');
const strip = (rows: ReturnType<typeof readMetrics>) => rows.map(({ images_per_s: _ips, ...r }) => r);

test('a run writes its files; numTensors is flat across steps', async () => {
  const c = tinyConfig(['optim.epochs=5', 'train.max_steps=20', 'train.knn_every=10']);
  const dir = tmp();
  const counts: number[] = [];
  const s = await trainRun({ config: c, runDir: dir, backend, onEvent: (e: TrainEvent) => e.type === 'step' && counts.push(tf.memory().numTensors) });
  assert.equal(s.status, 'completed');
  assert.equal(s.steps, 20);
  for (const f of ['config.yaml', 'meta.json', 'status.json', 'metrics.jsonl', 'summary.json', 'checkpoints/last.json']) assert.ok(existsSync(join(dir, f)), f);
  assert.equal(JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).status, 'completed');
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  assert.ok(rows.some((r) => r.knn_top1 !== undefined && r.step === 10));
  const r1 = rows.find((r) => r.step === 1)!;
  for (const k of ['lr', 'momentum', 'loss', 'grad_inf/patch_proj', 'grad_l2/patch_proj', 'grad_inf/projector', 'grad_l2/predictor', 'images_per_s']) {
    assert.equal(typeof r1[k], 'number', k);
  }
  // steps 11..20 run through the same code path as 1..10: the tensor count must not grow over 20 steps
  assert.equal(counts.length, 20);
  assert.equal(counts[19], counts[9], `numTensors grew: ${counts.join(',')}`);
  assert.equal(counts[19], counts[1], `numTensors grew: ${counts.join(',')}`);
  assert.ok(s.knn_top1 !== null);
  assert.equal(s.knn_step, 20);
});

test('resume continues exactly: metrics equal an uninterrupted run', async () => {
  const c = tinyConfig(['train.max_steps=8']);
  const ds = await loadRunData(c);
  const a = tmp();
  await trainRun({ config: c, runDir: a, backend, dataset: ds });
  const b = tmp();
  let steps = 0;
  const first = await trainRun({ config: c, runDir: b, backend, dataset: ds, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 3 });
  assert.equal(first.status, 'interrupted');
  assert.equal(first.steps, 3);
  const starts: Array<number | null> = [];
  const second = await trainRun({ config: c, runDir: b, backend, dataset: ds, resume: true, onEvent: (e) => e.type === 'start' && starts.push(e.knnTop1) });
  assert.equal(second.status, 'completed');
  const rows = readMetrics(join(b, 'metrics.jsonl'));
  assert.deepEqual(strip(rows), strip(readMetrics(join(a, 'metrics.jsonl'))));
  // the start of the resume carries the last kNN before it, for the progress to show until the monitor runs again
  const before = rows.filter((r) => (r.step ?? 0) <= 3 && typeof r.knn_top1 === 'number').at(-1);
  assert.deepEqual(starts, [before?.knn_top1 ?? null]);
  assert.notEqual(starts[0], null);
  const wa = readSafetensors(join(a, 'checkpoints/step-0000008/model.safetensors')).tensors;
  const wb = readSafetensors(join(b, 'checkpoints/step-0000008/model.safetensors')).tensors;
  for (const [name, t] of wa) assert.deepEqual(wb.get(name)!.data, t.data, name);
});

test('meta.json keeps every start: a resume adds its own (host, backend, command, step) to the first', async () => {
  const c = tinyConfig(['train.max_steps=4']);
  const dir = tmp();
  let steps = 0;
  await trainRun({ config: c, runDir: dir, backend, command: ['first'], onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 2 });
  await trainRun({ config: c, runDir: dir, backend: { ...backend, name: 'wasm', device: 'another' }, command: ['second'], resume: true });
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  assert.deepEqual(
    meta.starts.map((s: Record<string, unknown>) => [s.command, s.backend, s.device, s.resumed_from_step]),
    [[['first'], 'cpu', backend.device, null], [['second'], 'wasm', 'another', 2]],
  );
  // the top level is the latest start, as before
  assert.deepEqual([meta.backend, meta.resumed_from_step], ['wasm', 2]);
  // damaged (cut short): not written over without a word; kept beside it, and the new one says so
  const text = readFileSync(join(dir, 'meta.json'), 'utf8');
  writeFileSync(join(dir, 'meta.json'), text.slice(0, 100));
  const phases: string[] = [];
  await trainRun({ config: c, runDir: dir, backend, command: ['third'], resume: true, onEvent: (e) => e.type === 'phase' && phases.push(e.text) });
  const kept = readdirSync(dir).filter((f) => /^meta\.old-\d{8}T\d{6}\.json$/.test(f));
  assert.equal(kept.length, 1);
  assert.equal(readFileSync(join(dir, kept[0]!), 'utf8'), text.slice(0, 100));
  const now = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  assert.deepEqual(now.starts.map((s: Record<string, unknown>) => s.command), [['third']]);
  assert.equal(now.earlier_starts, `unknown: meta.json was damaged, kept as ${kept[0]}`);
  assert.ok(phases.some((p) => p.endsWith(`meta.json: damaged, so this start is the first it lists; the damaged file is kept as ${kept[0]}`)), phases.join('\n'));
});

test('with the kNN monitor off, the final kNN is in the last step\'s metrics row; during the probe status.json says the last step', async () => {
  const c = tinyConfig(['train.max_steps=6', 'train.knn_every=null', 'train.knn_every_epochs=null', 'eval.linear.enabled=true', 'eval.linear.epochs=1']);
  const dir = tmp();
  let during: number | null = null;
  const s = await trainRun({
    config: c,
    runDir: dir,
    backend,
    onEvent: (e) => {
      if (e.type === 'phase' && e.text.startsWith('linear probe') && during === null) during = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).step;
    },
  });
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  const last = rows.at(-1)!;
  assert.equal(last.step, 6);
  assert.equal(last.knn_top1, s.knn_top1);
  assert.equal(new Set(rows.map((r) => r.step)).size, rows.length, 'one row per step');
  assert.equal(during, 6);
});

test('a run of no steps (train.max_steps=0) ends as every run does: the kNN of its last step, 0, and its checkpoint, the monitor and checkpoints off', async () => {
  const c = tinyConfig(['train.max_steps=0', 'train.knn_every=null', 'train.knn_every_epochs=null', 'train.checkpoint_every=null']);
  const dir = tmp();
  const events: string[] = [];
  const s = await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => (e.type === 'knn' || e.type === 'checkpoint') && events.push(`${e.type}@${e.step}`) });
  assert.deepEqual(events, ['knn@0', 'checkpoint@0'], 'each once');
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  assert.deepEqual(rows.map((r) => r.step), [0]);
  assert.ok(typeof s.knn_top1 === 'number' && s.knn_top1 === rows[0]!.knn_top1, String(s.knn_top1));
  assert.ok(existsSync(join(dir, 'checkpoints', 'step-0000000', 'state.json')));
  assert.equal(JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).status, 'completed');
});

test('frozen patch projection is bit-identical after training while every other weight moved', async () => {
  const c = tinyConfig(['train.max_steps=4', 'train.checkpoint_every=4', 'model.patch_proj=frozen', 'optim.warmup_epochs=0']);
  const dir = tmp();
  await trainRun({ config: c, runDir: dir, backend });
  const w0 = readSafetensors(join(dir, 'checkpoints/step-0000000/model.safetensors')).tensors;
  const w4 = readSafetensors(join(dir, 'checkpoints/step-0000004/model.safetensors')).tensors;
  for (const p of ['weight', 'bias']) {
    const n = `base_encoder.patch_embed.proj.${p}`;
    assert.deepEqual(w4.get(n)!.data, w0.get(n)!.data, `${n} changed`);
    // the official EMA runs over every parameter, frozen ones too: m·x + (1−m)·x may round by an ulp
    const m = `momentum_encoder.patch_embed.proj.${p}`;
    const a = w4.get(m)!.data as Float32Array;
    const b = w0.get(m)!.data as Float32Array;
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-6 * Math.max(1e-3, Math.abs(b[i]!)), `${m}[${i}] drifted`));
  }
  const moved = (n: string) => (w4.get(n)!.data as Float32Array).some((v, i) => v !== (w0.get(n)!.data as Float32Array)[i]);
  for (const n of w0.keys()) {
    if (n.includes('patch_embed') || n.endsWith('pos_embed')) continue;
    assert.ok(moved(n), `${n} did not move`);
  }
});

test('a NaN in the loss stops the run as diverged at that step', async () => {
  const c = tinyConfig(['train.max_steps=8']);
  const dir = tmp();
  const s = await trainRun({ config: c, runDir: dir, backend, injectNanAtStep: 3 });
  assert.equal(s.status, 'diverged');
  assert.equal(s.diverged_at, 3);
  const st = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8'));
  assert.equal(st.status, 'diverged');
  assert.equal(st.diverged_at, 3);
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  assert.ok(Number.isNaN(rows.at(-1)!.loss as number));
  assert.equal(rows.at(-1)!.step, 3);
  // no checkpoint before it (none is due): an evaluation says why there is nothing to evaluate
  assert.equal(existsSync(join(dir, 'checkpoints', 'last.json')), false);
  assert.throws(() => evalCheckpoint(dir), (e: Error) => e.message === `${join(dir, 'checkpoints')}: no checkpoint to evaluate: the run diverged at step 3, before its first checkpoint`);
});

test("weightsFinite: finite weights too large to add up are finite; one ±Inf or NaN among them is not; no tensor left", async () => {
  const vars = (...rows: number[][]) => new Map(rows.map((r, i) => [`w${i}`, tf.tidy(() => tf.variable(tf.tensor1d(r)))] as const));
  const before = tf.memory().numTensors;
  const cases: [number[][], boolean][] = [
    [[[1, -2], [3]], true],
    [[[3e38, 3e38], [3e38]], true],
    [[[3e38, 3e38], [Infinity]], false],
    [[[1, -Infinity]], false],
    [[[1], [NaN, 2]], false],
  ];
  for (const [rows, want] of cases) {
    const v = vars(...rows);
    assert.equal(await weightsFinite(v), want, JSON.stringify(rows));
    for (const x of v.values()) x.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});

test('an update that overflows under a finite loss (an absurd lr) is a divergence at that step: no kNN, checkpoint or end measures or saves its weights', async () => {
  // base lr 1e40: step 2's loss and gradients are finite, its update leaves weights at ±Inf and NaN
  const floatsFinite = (dir: string) => {
    const last = JSON.parse(readFileSync(join(dir, 'checkpoints', 'last.json'), 'utf8')) as { step: number; dir: string };
    const { tensors } = readSafetensors(join(dir, 'checkpoints', last.dir, 'model.safetensors'));
    const ok = [...tensors.values()].every((t) => !(t.data instanceof Float32Array) || t.data.every(Number.isFinite));
    return { step: last.step, ok };
  };
  const at = async (sets: string[], stopAfter?: number, dumpViews?: number) => {
    const dir = tmp();
    let steps = 0;
    const s = await trainRun({ config: tinyConfig(['optim.base_lr=1e40', ...sets]), runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: stopAfter === undefined ? undefined : () => steps >= stopAfter, ...(dumpViews ? { dumpViews } : {}) });
    const st = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8'));
    const rows = readMetrics(join(dir, 'metrics.jsonl')).filter((r) => (r.step ?? 0) > 0);
    return { dir, s, st, rows };
  };
  // a checkpoint due at step 2
  const a = await at(['train.max_steps=6', 'train.checkpoint_every=1']);
  assert.deepEqual([a.s.status, a.s.diverged_at, a.st.status, a.st.diverged_at], ['diverged', 2, 'diverged', 2]);
  assert.deepEqual(floatsFinite(a.dir), { step: 1, ok: true });
  assert.deepEqual(a.rows.map((r) => [r.step, Number.isFinite(r.loss)]), [[1, true], [2, true]]);
  // the end of training at step 2: not a completed run of non-finite weights with their kNN
  const b = await at(['train.max_steps=2', 'train.checkpoint_every=1']);
  assert.deepEqual([b.s.status, b.s.diverged_at, b.s.steps], ['diverged', 2, 2]);
  assert.deepEqual(floatsFinite(b.dir), { step: 1, ok: true });
  assert.equal(b.rows.at(-1)!.knn_top1, undefined);
  // stopped right after it, nothing due: the stop's checkpoint is not written either; as any divergence, its
  // step's row (which train.log_every 5 left out) and the views up to it are
  const c = await at(['train.max_steps=6', 'train.checkpoint_every=1000', 'train.knn_every=1000', 'train.log_every=5'], 2, 4);
  assert.deepEqual([c.s.status, c.s.diverged_at, c.st.status], ['diverged', 2, 'diverged']);
  assert.deepEqual(floatsFinite(c.dir), { step: 0, ok: true });
  assert.deepEqual(c.rows.map((r) => r.step), [2]);
  assert.deepEqual(readSafetensors(join(c.dir, 'views.safetensors')).metadata, { ...readSafetensors(join(c.dir, 'views.safetensors')).metadata, steps: '2', diverged_at: '2' });
  // stopped right after its first step, whose update overflowed (no warmup): diverged at step 1, its weights never saved
  const d = await at(['train.max_steps=6', 'optim.warmup_epochs=0', 'train.checkpoint_every=1000', 'train.knn_every=1000'], 1);
  assert.deepEqual([d.s.status, d.s.diverged_at, d.st.status], ['diverged', 1, 'diverged']);
  assert.deepEqual(floatsFinite(d.dir), { step: 0, ok: true });
  // stopped at the last step of the views kept, written before the stop found the divergence: marked too
  const e = await at(['train.max_steps=6', 'train.checkpoint_every=1000', 'train.knn_every=1000', 'train.log_every=5'], 2, 2);
  assert.deepEqual([e.s.status, e.s.diverged_at], ['diverged', 2]);
  const dv = readSafetensors(join(e.dir, 'views.safetensors'));
  assert.deepEqual([dv.metadata.steps, dv.metadata.diverged_at, [...dv.tensors.keys()].sort()], ['2', '2', ['step0.x1', 'step0.x2', 'step1.x1', 'step1.x2']]);
  // a sane lr is never stopped by the check (the same run completes)
  assert.equal((await trainRun({ config: tinyConfig(['train.max_steps=2', 'train.checkpoint_every=1']), runDir: tmp(), backend })).status, 'completed');
});

test('a diverged run with --dump-views writes the views of the steps up to its divergence (the ones to replay)', async () => {
  const dir = tmp();
  const s = await trainRun({ config: tinyConfig(['train.max_steps=8']), runDir: dir, backend, injectNanAtStep: 3, dumpViews: 5 });
  assert.equal(s.status, 'diverged');
  const { tensors, metadata } = readSafetensors(join(dir, 'views.safetensors'));
  assert.deepEqual([metadata.steps, metadata.diverged_at], ['3', '3']);
  assert.deepEqual([...tensors.keys()].sort(), ['step0.x1', 'step0.x2', 'step1.x1', 'step1.x2', 'step2.x1', 'step2.x2']);
  // at the last step kept, too
  const at = tmp();
  await trainRun({ config: tinyConfig(['train.max_steps=8']), runDir: at, backend, injectNanAtStep: 3, dumpViews: 3 });
  assert.deepEqual(readSafetensors(join(at, 'views.safetensors')).metadata.steps, '3');
});

test('ViewDump holding no views marks the file written at step N (a start that began there) with a divergence at N, and leaves one it cannot mark as it is', () => {
  const dir = tmp();
  const path = join(dir, 'views.safetensors');
  const x = new Float32Array([1, 2, 3, 4]);
  assert.equal(new ViewDump(path, 2, 7).flushPartial(2), null);
  assert.equal(existsSync(path), false, 'nothing to mark: no file, no view');
  // the file the earlier start wrote at step 2 (this start added no view: it began at step 2)
  writeSafetensorsFile(path, x, '7');
  // a divergence before step N is not of that file's steps
  assert.equal(new ViewDump(path, 2, 7).flushPartial(1), null);
  assert.equal(readSafetensors(path).metadata.diverged_at, undefined);
  assert.equal(new ViewDump(path, 2, 7).flushPartial(2), null);
  const { tensors, metadata } = readSafetensors(path);
  assert.deepEqual([metadata.steps, metadata.seed, metadata.diverged_at, [...(tensors.get('step0.x1')!.data as Float32Array)]], ['2', '7', '2', [...x]]);
  // of another seed, or damaged: left as it is, and said
  writeSafetensorsFile(path, x, '8');
  const before = readFileSync(path);
  assert.match(new ViewDump(path, 2, 7).flushPartial(2)!, /holds other views \(steps 2, seed 8\): left without diverged_at$/);
  assert.deepEqual(readFileSync(path), before);
  writeFileSync(path, before.subarray(0, 20));
  assert.match(new ViewDump(path, 2, 7).flushPartial(2)!, /views\.safetensors left without diverged_at$/);
  assert.equal(readFileSync(path).length, 20);
});

test('ViewDump keeps the views of its first N steps only: a step past them (a stop found at step N) leaves the file of N steps whole, and marks it', async () => {
  const path = join(tmp(), 'views.safetensors');
  const dump = new ViewDump(path, 2, 7);
  const views = (v: number) => ({ x1: tf.fill([1, 2, 2, 3], v) as tf.Tensor4D, x2: tf.fill([1, 2, 2, 3], -v) as tf.Tensor4D });
  for (const s of [0, 1]) {
    const v = views(s + 1);
    await dump.add(s, v);
    tf.dispose([v.x1, v.x2]);
    dump.flush(s + 1);
  }
  const v = views(3);
  await dump.add(2, v);
  tf.dispose([v.x1, v.x2]);
  // a divergence found at the stop at step 2: the file of steps 0 and 1 marked, not rewritten with step 2
  assert.equal(dump.flushPartial(2), null);
  const { tensors, metadata } = readSafetensors(path);
  assert.deepEqual([...tensors.keys()].sort(), ['step0.x1', 'step0.x2', 'step1.x1', 'step1.x2']);
  assert.deepEqual([metadata.steps, metadata.seed, metadata.diverged_at], ['2', '7', '2']);
  assert.deepEqual(tensors.get('step1.x2')!.shape, [1, 3, 2, 2]);
  assert.deepEqual([...(tensors.get('step1.x2')!.data as Float32Array)], new Array(12).fill(-2));
});

test('a views file counts as made for a resume only when it holds exactly the steps asked for, of the seed, with no divergence', () => {
  const dir = tmp();
  const x = new Float32Array([1, 2, 3, 4]);
  const at = (name: string, meta: Record<string, string>) => {
    const path = join(dir, name);
    writeSafetensors(path, new Map([['step0.x1', { dtype: 'F32', shape: [4], data: x }]]), meta);
    return path;
  };
  assert.equal(viewsOfSteps(at('a', { steps: '2', seed: '7' }), 2, 7), true);
  assert.equal(viewsOfSteps(at('b', { steps: '2', seed: '7', diverged_at: '2' }), 2, 7), false);
  assert.equal(viewsOfSteps(at('c', { steps: '1', seed: '7' }), 2, 7), false);
  assert.equal(viewsOfSteps(at('d', { steps: '2', seed: '8' }), 2, 7), false);
  assert.equal(viewsOfSteps(join(dir, 'none'), 2, 7), false);
});

test('views are computed in the background by default with every backend but native; MOCO3_PREFETCH=1 or 0 forces it', () => {
  const prev = process.env.MOCO3_PREFETCH;
  try {
    delete process.env.MOCO3_PREFETCH;
    assert.deepEqual(['native', 'cpu', 'wasm', 'tensorflow', 'webgpu'].map(prefetchViews), [false, true, true, true, true]);
    process.env.MOCO3_PREFETCH = '1';
    assert.equal(prefetchViews('native'), true);
    process.env.MOCO3_PREFETCH = '0';
    assert.equal(prefetchViews('cpu'), false);
  } finally {
    if (prev === undefined) delete process.env.MOCO3_PREFETCH;
    else process.env.MOCO3_PREFETCH = prev;
  }
});

test('a run resumed past step N with --dump-views N holds the views of N steps, also when an earlier start asked for fewer', async () => {
  const dir = tmp();
  const c = tinyConfig(['train.max_steps=3', 'train.checkpoint_every=1']);
  await trainRun({ config: c, runDir: dir, backend, dumpViews: 1 });
  assert.equal(readSafetensors(join(dir, 'views.safetensors')).metadata.steps, '1');
  await trainRun({ config: c, runDir: dir, backend, dumpViews: 2, resume: true, checkpoint: join(dir, 'checkpoints', 'step-0000002') });
  const { tensors, metadata } = readSafetensors(join(dir, 'views.safetensors'));
  assert.equal(metadata.steps, '2');
  assert.deepEqual([...tensors.keys()].sort(), ['step0.x1', 'step0.x2', 'step1.x1', 'step1.x2']);
  // the same views as a run that asked for 2 from its start
  const whole = tmp();
  await trainRun({ config: c, runDir: whole, backend, dumpViews: 2 });
  const want = readSafetensors(join(whole, 'views.safetensors')).tensors;
  for (const [k, t] of tensors) assert.deepEqual(t.data, want.get(k)!.data, k);
});

test('a resumed run that fails says in summary.json the figures it reached, not those of its earlier part', async () => {
  const c = tinyConfig(['train.max_steps=12', 'train.knn_every=4', 'train.checkpoint_every=4']);
  const dir = tmp();
  let steps = 0;
  const first = await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 5 });
  assert.deepEqual([first.status, first.steps, first.knn_step], ['interrupted', 5, 4]);
  const step = MoCoViT.prototype.step;
  let calls = 0;
  MoCoViT.prototype.step = function (this: MoCoViT, ...a: Parameters<MoCoViT['step']>) {
    if (++calls === 6) throw new Error('injected: the sixth step after the resume');
    return step.apply(this, a);
  };
  try {
    await assert.rejects(trainRun({ config: c, runDir: dir, backend, resume: true }), /injected: the sixth step/);
  } finally {
    MoCoViT.prototype.step = step;
  }
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  const lastKnn = rows.filter((r) => r.knn_top1 !== undefined).at(-1)!;
  assert.deepEqual(
    [summary.status, summary.steps, summary.knn_step, summary.knn_top1, summary.error],
    ['failed', rows.at(-1)!.step, lastKnn.step, lastKnn.knn_top1, 'injected: the sixth step after the resume'],
  );
  assert.equal(summary.steps, 10);
});

test('a run resumed from an older checkpoint that fails keeps no linear probe of its later weights in summary.json', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=4', 'eval.linear.enabled=true', 'eval.linear.epochs=1', 'eval.linear.batch_size=16']);
  const dir = tmp();
  const done = await trainRun({ config: c, runDir: dir, backend });
  assert.equal(typeof done.linear_top1, 'number');
  const step = MoCoViT.prototype.step;
  MoCoViT.prototype.step = function () {
    throw new Error('injected: the first step after the resume');
  };
  try {
    await assert.rejects(trainRun({ config: c, runDir: dir, backend, resume: true, checkpoint: join(dir, 'checkpoints', 'step-0000004') }), /injected/);
  } finally {
    MoCoViT.prototype.step = step;
  }
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual([summary.status, summary.steps, summary.linear_top1, summary.linear_top5, summary.linear], ['failed', 4, null, null, undefined]);
});

test('a run that fails after its linear probe has ended keeps the probe\'s figures in summary.json, as linear.json does', async () => {
  const c = tinyConfig(['train.max_steps=4', 'eval.linear.enabled=true', 'eval.linear.epochs=1', 'eval.linear.batch_size=16']);
  const failAtEnd = (e: TrainEvent) => {
    if (e.type === 'end') throw new Error('injected: a failure once the probe has ended');
  };
  const dir = tmp();
  await assert.rejects(trainRun({ config: c, runDir: dir, backend, onEvent: failAtEnd }), /injected/);
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  const linear = JSON.parse(readFileSync(join(dir, 'linear.json'), 'utf8'));
  assert.deepEqual([summary.status, summary.steps, summary.error], ['failed', 4, 'injected: a failure once the probe has ended']);
  assert.equal(typeof summary.linear_top1, 'number');
  assert.deepEqual([summary.linear_top1, summary.linear_top5, summary.linear.step], [linear.top1, linear.top5, 4]);
  // a probe that diverged: why it has no figures stays too
  const diverging = tinyConfig(['train.max_steps=4', 'eval.linear.enabled=true', 'eval.linear.epochs=1', 'eval.linear.batch_size=16', 'eval.linear.base_lr=1e300']);
  const d = tmp();
  await assert.rejects(trainRun({ config: diverging, runDir: d, backend, onEvent: failAtEnd }), /injected/);
  const ds = JSON.parse(readFileSync(join(d, 'summary.json'), 'utf8'));
  assert.deepEqual([ds.status, ds.linear_top1], ['failed', null]);
  assert.match(ds.linear_error, /not finite|loss/);
});

test('a resumed run\'s summary.json says running at the checkpoint\'s step from its start, not its earlier end (completed, with a probe of other weights)', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=4', 'eval.linear.enabled=true', 'eval.linear.epochs=1', 'eval.linear.batch_size=16']);
  const dir = tmp();
  await trainRun({ config: c, runDir: dir, backend });
  const seen: unknown[][] = [];
  const again = await trainRun({
    config: c,
    runDir: dir,
    backend,
    resume: true,
    checkpoint: join(dir, 'checkpoints', 'step-0000004'),
    onEvent: (e) => {
      if (e.type !== 'step' || e.step !== 5) return;
      const s = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
      seen.push([s.status, s.steps, s.linear_top1, s.linear_top5, s.linear, s.diverged_at]);
    },
  });
  assert.deepEqual(seen, [['running', 4, null, null, undefined, null]]);
  assert.equal(again.status, 'completed');
  const done = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual([done.status, done.steps, typeof done.linear_top1], ['completed', 8, 'number']);
});

test('summary.json says running while the linear probe runs, completed once it has (a kill in the probe leaves no completed summary)', async () => {
  const c = tinyConfig(['train.max_steps=4', 'eval.linear.enabled=true', 'eval.linear.epochs=3', 'eval.linear.batch_size=16']);
  const dir = tmp();
  const during: string[] = [];
  const s = await trainRun({
    config: c,
    runDir: dir,
    backend,
    onEvent: (e) => {
      if (e.type === 'phase' && /linear probe: epoch/.test(e.text)) during.push(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).status);
    },
  });
  assert.equal(s.status, 'completed');
  assert.ok(during.length >= 3 && during.every((x) => x === 'running'), `during the probe: ${during}`);
  const done = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(done.status, 'completed');
  assert.equal(typeof done.linear_top1, 'number');
  assert.equal(done.linear.step, 4, 'the probe records the step of the weights it probed');
  assert.equal(done.best_knn_top1, done.knn_top1, 'the best kNN is of the trained steps (the one at step 4), not the untrained step 0');
  assert.equal(JSON.parse(readFileSync(join(dir, 'linear.json'), 'utf8')).step, 4);
});

test('the best kNN leaves out step 0 (the untrained encoder): a run that diverges before its first trained kNN has none', async () => {
  const dir = tmp();
  const s = await trainRun({ config: tinyConfig(['train.max_steps=8', 'train.knn_every=4']), runDir: dir, backend, injectNanAtStep: 3 });
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  assert.equal(typeof rows[0]!.knn_top1, 'number', 'step 0 was measured');
  assert.deepEqual([s.status, s.best_knn_top1], ['diverged', null]);
  // its kNN is the untrained encoder's, and says so
  assert.deepEqual([s.knn_top1, s.knn_step], [rows[0]!.knn_top1, 0]);
  assert.equal(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).knn_step, 0);
});

test('a diverged run keeps its last finite checkpoint; killed before its final status and resumed, it diverges at the same step', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=2']);
  const dir = tmp();
  await trainRun({ config: c, runDir: dir, backend, injectNanAtStep: 3 });
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'checkpoints', 'last.json'), 'utf8')).step, 2, 'no checkpoint of the non-finite weights');
  // as if killed after the divergence, before status.json said so
  const st = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8'));
  writeFileSync(join(dir, 'status.json'), JSON.stringify({ ...st, status: 'running', diverged_at: null }));
  const again = await trainRun({ config: c, runDir: dir, backend, resume: true, injectNanAtStep: 3 });
  assert.deepEqual([again.status, again.diverged_at], ['diverged', 3]);
  const steps = readMetrics(join(dir, 'metrics.jsonl')).map((r) => Number(r.step));
  assert.deepEqual(steps, [...new Set(steps)], 'every step once');
  assert.equal(steps.at(-1), 3);
});

test('prefetched views (computed in the background while the previous step runs) give the same run, also when stopped and resumed', async () => {
  const c = tinyConfig(['train.max_steps=6', 'train.checkpoint_every=2']);
  const ds = await loadRunData(c);
  const plain = tmp();
  const prev = process.env.MOCO3_PREFETCH;
  try {
    process.env.MOCO3_PREFETCH = '0';
    await trainRun({ config: c, runDir: plain, backend, dataset: ds });
    process.env.MOCO3_PREFETCH = '1';
    const { prefetchViews } = await import('../../src/train/views.ts');
    assert.equal(prefetchViews('cpu'), true, 'the native augmentation kernel (with its async entry) is built');
    const pre = tmp();
    let steps = 0;
    const first = await trainRun({ config: c, runDir: pre, backend, dataset: ds, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 4 });
    assert.equal(first.status, 'interrupted');
    await trainRun({ config: c, runDir: pre, backend, dataset: ds, resume: true });
    assert.deepEqual(strip(readMetrics(join(pre, 'metrics.jsonl'))), strip(readMetrics(join(plain, 'metrics.jsonl'))));
  } finally {
    if (prev === undefined) delete process.env.MOCO3_PREFETCH;
    else process.env.MOCO3_PREFETCH = prev;
  }
});

test('a run taken over before its first write (its data loading took long) is not touched: not reset, no status, no config', async () => {
  const { acquireLock, releaseLock, LockLostError } = await import('../../src/runfolder/lock.ts');
  const { writeFileSync: write, readdirSync } = await import('node:fs');
  const dir = tmp();
  assert.equal(acquireLock(dir, 'test'), null);
  try {
    // another host took the run over and has trained two steps
    write(join(dir, '.lock'), JSON.stringify({ pid: 4242, host: 'other-host', proc_start: null, since: new Date().toISOString(), sweep: 's', heartbeat: new Date().toISOString() }));
    write(join(dir, 'metrics.jsonl'), '{"step":1}\n{"step":2}\n');
    write(join(dir, 'status.json'), '{"status":"running","step":2}');
    await assert.rejects(trainRun({ config: tinyConfig(['train.max_steps=4']), runDir: dir, backend }), (e: unknown) => e instanceof LockLostError && e.message.startsWith(`${dir}: taken over by pid 4242 on other-host (since `));
    assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), '{"step":1}\n{"step":2}\n');
    assert.equal(readFileSync(join(dir, 'status.json'), 'utf8'), '{"status":"running","step":2}');
    assert.deepEqual(readdirSync(dir).sort(), ['.lock', 'metrics.jsonl', 'status.json']);
  } finally {
    releaseLock(dir);
  }
});

test('a resume whose newest checkpoint is ahead of its metrics (rows lost when the machine went down) goes on from the newest checkpoint the rows reach, rewinds last.json and says so', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=2']);
  const ds = await loadRunData(c);
  const whole = tmp();
  await trainRun({ config: c, runDir: whole, backend, dataset: ds });
  // rows of steps 3..5 lost, or all of them past step 0: checkpoints 0, 2, 4 and 5 remain
  for (const keep of [2, 0]) {
    const dir = tmp();
    let steps = 0;
    assert.equal((await trainRun({ config: c, runDir: dir, backend, dataset: ds, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 5 })).status, 'interrupted');
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, readFileSync(path, 'utf8').split('\n').filter((l) => l && JSON.parse(l).step <= keep).map((l) => `${l}\n`).join(''));
    // killed in its first step after the resume: the next resume starts from the same checkpoint
    const notes: string[] = [];
    const crash = (e: TrainEvent) => {
      if (e.type === 'phase') notes.push(e.text);
      if (e.type === 'step') throw new Error('killed');
    };
    await assert.rejects(trainRun({ config: c, runDir: dir, backend, dataset: ds, resume: true, onEvent: crash }), /killed/);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'checkpoints', 'last.json'), 'utf8')).step, keep);
    const s = await trainRun({ config: c, runDir: dir, backend, dataset: ds, resume: true });
    assert.equal(s.status, 'completed');
    const said = keep ? 'ends at step 2' : 'holds no row past step 0';
    assert.ok(notes.some((n) => n.includes(`${said}, before the newest checkpoint (step 5): the rows of the steps between were lost; resuming from step ${keep}`)), notes.join(' | '));
    assert.deepEqual(strip(readMetrics(path)), strip(readMetrics(join(whole, 'metrics.jsonl'))));
  }
});

test('a resume whose metrics.jsonl has a damaged line fails before it writes: a failed run keeps its status and error', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=2']);
  const dir = tmp();
  let steps = 0;
  await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 5 });
  const status = join(dir, 'status.json');
  writeFileSync(status, JSON.stringify({ ...JSON.parse(readFileSync(status, 'utf8')), status: 'failed', error: 'the first failure' }));
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n');
  lines[2] = 'garbage';
  writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n'));
  const before = ['status.json', 'metrics.jsonl', 'checkpoints/last.json', 'meta.json'].map((f) => readFileSync(join(dir, f), 'utf8'));
  await assert.rejects(trainRun({ config: c, runDir: dir, backend, resume: true }), /metrics\.jsonl: line 3 is not/);
  assert.deepEqual(['status.json', 'metrics.jsonl', 'checkpoints/last.json', 'meta.json'].map((f) => readFileSync(join(dir, f), 'utf8')), before);
});

/** A tiny run stopped at step 5 (checkpoints every 2 steps and at the stop): its config, folder and step-5 checkpoint. */
async function stoppedAt5(): Promise<{ c: ReturnType<typeof tinyConfig>; dir: string; ckpt: string }> {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=2']);
  const dir = tmp();
  let steps = 0;
  await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 5 });
  return { c, dir, ckpt: join(dir, 'checkpoints', 'step-0000005') };
}

/** Four bytes of a tensor file's last value made a NaN: its header whole, every shape right. */
function nanAtEnd(file: string): void {
  const bytes = readFileSync(file);
  bytes.writeFloatLE(NaN, bytes.length - 4);
  writeFileSync(file, bytes);
}

test('a checkpoint file damaged after it was written (a NaN among its weights) is refused before anything is written, the previous one offered; never trained on as a divergence', async () => {
  const { c, dir, ckpt } = await stoppedAt5();
  // state.json keeps each tensor file's size and SHA-256, as written
  const state = JSON.parse(readFileSync(join(ckpt, 'state.json'), 'utf8'));
  for (const f of ['model.safetensors', 'optimizer.safetensors']) {
    const bytes = readFileSync(join(ckpt, f));
    assert.deepEqual(state.files[f], { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }, f);
  }
  const model = join(ckpt, 'model.safetensors');
  nanAtEnd(model);
  const before = ['status.json', 'metrics.jsonl', 'checkpoints/last.json', 'meta.json'].map((f) => readFileSync(join(dir, f), 'utf8'));
  await assert.rejects(
    trainRun({ config: c, runDir: dir, backend, resume: true }),
    (e: Error) => e.message === `${model}: its SHA-256 is not the one ${join(ckpt, 'state.json')} records: the file changed after it was written (damaged on the disk, or copied in from elsewhere); resume from the previous checkpoint with --checkpoint step-4 (the later steps are trained again), or start again with --force`,
  );
  assert.deepEqual(['status.json', 'metrics.jsonl', 'checkpoints/last.json', 'meta.json'].map((f) => readFileSync(join(dir, f), 'utf8')), before);
  // `moco3 plan` reads the headers only (a preview of a sweep of large checkpoints reads no gigabytes)
  assert.deepEqual([withResumePoint(readRunState(dir), dir).checkpoint_step, withResumePoint(readRunState(dir), dir).resume_error], [5, undefined]);
  // the previous checkpoint resumes, and the run completes
  const done = await trainRun({ config: c, runDir: dir, backend, resume: true, checkpoint: join(dir, 'checkpoints', 'step-0000004') });
  assert.equal(done.status, 'completed');
});

test('a damaged optimizer file stops a resume but not an evaluation, which reads the model file alone', async () => {
  const { c, dir, ckpt } = await stoppedAt5();
  const opt = join(ckpt, 'optimizer.safetensors');
  nanAtEnd(opt);
  await assert.rejects(trainRun({ config: c, runDir: dir, backend, resume: true }), (e: Error) => e.message.startsWith(`${opt}: its SHA-256 is not the one ${join(ckpt, 'state.json')} records`));
  assert.equal(evalCheckpoint(dir), ckpt);
  assert.equal(evalCheckpoint(dir, 'step-5'), ckpt);
  // its header gone too: still not read by an evaluation
  writeFileSync(opt, 'garbage, not a tensor file');
  assert.equal(evalCheckpoint(dir), ckpt);
  // the model file damaged: refused, the previous checkpoint offered
  const model = join(ckpt, 'model.safetensors');
  nanAtEnd(model);
  assert.throws(() => evalCheckpoint(dir), (e: Error) => e.message.startsWith(`${model}: its SHA-256 is not the one`) && e.message.endsWith('evaluate the previous checkpoint with --checkpoint ' + join(dir, 'checkpoints', 'step-0000004')));
});

test("a checkpoint past the last row by less than train.log_every is the run's own, whatever config.yaml says (or when it is gone): no rows were lost", async () => {
  const c = tinyConfig(['train.max_steps=12', 'train.checkpoint_every=3', 'train.log_every=5']);
  const dir = tmp();
  let steps = 0;
  // stopped at step 9: rows of steps 5 (and the rows the loop always writes), checkpoints 0, 3, 6, 9
  await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 9 });
  const last = readMetrics(join(dir, 'metrics.jsonl')).at(-1)!.step!;
  assert.ok(last > 4 && last < 9, `rows end at ${last}`);
  rmSync(join(dir, 'config.yaml'));
  const notes: string[] = [];
  const s = await trainRun({ config: c, runDir: dir, backend, resume: true, onEvent: (e) => e.type === 'phase' && notes.push(e.text) });
  assert.equal(s.status, 'completed');
  assert.deepEqual(notes.filter((n) => /were lost/.test(n)), []);
  assert.equal(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).starts.at(-1).resumed_from_step, 9);
});

test('a resume with another train.log_every (free to change) judges the checkpoint by the cadence it was written with: no rows were lost, none are cut', async () => {
  const every5 = tinyConfig(['train.max_steps=12', 'train.checkpoint_every=3', 'train.log_every=5']);
  const dir = tmp();
  let steps = 0;
  // stopped at step 6: rows of step 5 (and step 6's, the last before the stop, if the loop writes it), checkpoint 6
  await trainRun({ config: every5, runDir: dir, backend, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 6 });
  const rows = readMetrics(join(dir, 'metrics.jsonl'));
  const every1 = tinyConfig(['train.max_steps=12', 'train.checkpoint_every=3', 'train.log_every=1']);
  const notes: string[] = [];
  const s = await trainRun({ config: every1, runDir: dir, backend, resume: true, onEvent: (e) => e.type === 'phase' && notes.push(e.text) });
  assert.equal(s.status, 'completed');
  assert.deepEqual(notes.filter((n) => /were lost/.test(n)), []);
  assert.equal(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).starts.at(-1).resumed_from_step, 6);
  assert.deepEqual(readMetrics(join(dir, 'metrics.jsonl')).slice(0, rows.length), rows, 'the rows before the resume kept');
});

test('the schedule has epochs x iterations per epoch whole steps: fractional epochs lose no step to rounding', () => {
  // 0.57 x 100 = 56.99999999999999 and 0.29 x 100 = 28.999999999999996 in floating point; their floor was one short
  assert.deepEqual([scheduleSteps(0.57, 100), scheduleSteps(0.29, 100), scheduleSteps(2.01, 1000), scheduleSteps(1.13, 234)], [57, 29, 2010, 264]);
  // whole epochs, a fraction of a step, and at least one step
  assert.deepEqual([scheduleSteps(2, 937), scheduleSteps(1.6, 3), scheduleSteps(0.001, 10)], [1874, 4, 1]);
});

test("meta.json's commit is of moco3's own checkout, with its changes said; inside another project's repository, none", () => {
  const repo = tmp();
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: repo, stdio: 'pipe' }).toString().trim();
  git('init', '-q');
  mkdirSync(join(repo, 'node_modules', 'moco3'), { recursive: true });
  writeFileSync(join(repo, 'a.txt'), 'a');
  git('add', 'a.txt');
  git('commit', '-q', '-m', 'x');
  const head = git('rev-parse', 'HEAD');
  assert.deepEqual(gitCommit(repo), { commit: head, dirty: false });
  // a file git does not track is no change to the checkout
  writeFileSync(join(repo, 'untracked.txt'), 'u');
  assert.deepEqual(gitCommit(repo), { commit: head, dirty: false });
  writeFileSync(join(repo, 'a.txt'), 'b');
  assert.deepEqual(gitCommit(repo), { commit: head, dirty: true });
  // moco3 installed in another project: git would name the project's commit
  assert.equal(gitCommit(join(repo, 'node_modules', 'moco3')), null);
});

test("meta.json's figures: the start's step, config hash, trainable parameters and command as given; the cores this process may run on (taskset -c 0: one) beside the machine's", () => {
  const script = [
    "import { runMeta } from './src/train/meta.ts';",
    "const backend = { name: 'cpu', requested: 'cpu', device: 'dev', reason: 'test', gpu: false, heapLimit: null };",
    "console.log(JSON.stringify(runMeta({ backend, command: ['moco3', 'train'], resumedFrom: 6, hash: 'h1', params: 1234 })));",
  ].join('\n');
  const r = spawnSync('taskset', ['-c', '0', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..', '..'), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(
    [m.resumed_from_step, m.config_hash, m.params_trainable, m.command, m.backend, m.device],
    [6, 'h1', 1234, ['moco3', 'train'], 'cpu', 'dev'],
  );
  assert.deepEqual([m.cpus_allowed, m.cpus], [1, cpus().length]);
  const git = gitCommit();
  assert.deepEqual([m.git_commit, m.git_dirty], [git?.commit ?? null, git?.dirty ?? null]);
});

test('--dump-views failing to read a step\'s views (a GPU read error) leaves no tensor behind: the views are the step\'s only once it runs', async () => {
  const c = tinyConfig(['train.max_steps=3']);
  const add = ViewDump.prototype.add;
  ViewDump.prototype.add = async function (step, views) {
    if (step === 1) throw new Error('injected: the views of step 1 could not be read');
    return add.call(this, step, views);
  };
  try {
    const before = tf.memory().numTensors;
    await assert.rejects(trainRun({ config: c, runDir: tmp(), backend, dumpViews: 2 }), /injected: the views of step 1/);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    ViewDump.prototype.add = add;
  }
});

test("a resume from an older checkpoint says running before it points last.json back: killed between the two, the run reads interrupted, not completed", async () => {
  const c = tinyConfig(['train.max_steps=4', 'train.checkpoint_every=2']);
  const dir = tmp();
  assert.equal((await trainRun({ config: c, runDir: dir, backend })).status, 'completed');
  const last = join(dir, 'checkpoints', 'last.json');
  // status.json as it is each time last.json is put in place
  const seen: unknown[][] = [];
  const rename = fs.renameSync;
  fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    rename(from, to);
    if (String(to) === last) seen.push([JSON.parse(readFileSync(last, 'utf8')).step, JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).status]);
  }) as typeof fs.renameSync;
  syncBuiltinESMExports();
  try {
    const s = await trainRun({ config: c, runDir: dir, backend, resume: true, checkpoint: join(dir, 'checkpoints', 'step-0000002'), shouldStop: () => true });
    assert.equal(s.status, 'interrupted');
  } finally {
    fs.renameSync = rename;
    syncBuiltinESMExports();
  }
  assert.deepEqual(seen[0], [2, 'running']);
});

test("a resumed run stopped before its next kNN says in summary.json the kNN its checkpoint had and that kNN's step, and keeps what eval knn merged in", async () => {
  // its kNN every 4 steps (tinyConfig's), its checkpoints every 2
  const { c, dir } = await stoppedAt5();
  let steps = 0;
  // what `moco3 eval knn` merged in before the resume stays
  const knnEval = { top1: 12.5, top5: 50, k: 20, t: 0.07, bank: 64, queries: 32, step: 5 };
  const sp = join(dir, 'summary.json');
  writeFileSync(sp, JSON.stringify({ ...JSON.parse(readFileSync(sp, 'utf8')), knn_eval: knnEval }));
  steps = 0;
  const s = await trainRun({ config: c, runDir: dir, backend, resume: true, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 1 });
  assert.deepEqual([s.status, s.steps], ['interrupted', 6]);
  const row = readMetrics(join(dir, 'metrics.jsonl')).find((r) => r.step === 4)!;
  assert.equal(typeof row.knn_top1, 'number');
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual([s.knn_top1, s.knn_top5, s.knn_step], [row.knn_top1, row.knn_top5, 4]);
  assert.deepEqual([summary.knn_top1, summary.knn_top5, summary.knn_step, summary.knn_eval], [row.knn_top1, row.knn_top5, 4, knnEval]);
});

test("rows lost after step 2: the newest checkpoint is still evaluated when named; without last.json a resume takes the newest checkpoint the rows reach; without metrics any checkpoint is the run's", async () => {
  const { c, dir, ckpt } = await stoppedAt5();
  const path = join(dir, 'metrics.jsonl');
  const text = readFileSync(path, 'utf8');
  writeFileSync(path, text.split('\n').filter((l) => l && JSON.parse(l).step <= 2).map((l) => `${l}\n`).join(''));
  // an evaluation reads the newest weights (last.json's), named or not; a resume from them is refused
  assert.equal(evalCheckpoint(dir, 'step-5'), ckpt);
  assert.throws(() => resumeCheckpoint(dir, 'step-5'), /step 5 is ahead of the run's metrics, which end at step 2/);
  // no metrics to tell by: every checkpoint up to last.json's is the run's
  rmSync(path);
  assert.equal(evalCheckpoint(dir, 'step-5'), ckpt);
  assert.equal(evalCheckpoint(dir, 'step-4'), join(dir, 'checkpoints', 'step-0000004'));
  // last.json gone: the newest folder the rows reach, not one past them
  writeFileSync(path, text.split('\n').filter((l) => l && JSON.parse(l).step <= 2).map((l) => `${l}\n`).join(''));
  rmSync(join(dir, 'checkpoints', 'last.json'));
  const s = await trainRun({ config: c, runDir: dir, backend, resume: true });
  assert.equal(s.status, 'completed');
  assert.equal(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).starts.at(-1).resumed_from_step, 2);
  assert.deepEqual(readMetrics(path).map((r) => r.step), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

test('a checkpoint edited by hand is refused as bad input before anything is written: a state.json of another step than its folder, a last.json whose step and folder differ, an optimizer state that cannot load', async () => {
  const { c, dir, ckpt } = await stoppedAt5();
  const root = join(dir, 'checkpoints');
  const before = () => ['status.json', 'summary.json', 'metrics.jsonl', 'checkpoints/last.json'].map((f) => readFileSync(join(dir, f), 'utf8'));
  const files = before();
  // step-4's state.json says step 5 (a folder renamed): the previous checkpoint offered
  const four = join(root, 'step-0000004', 'state.json');
  const state4 = readFileSync(four, 'utf8');
  writeFileSync(four, JSON.stringify({ ...JSON.parse(state4), step: 5 }));
  assert.throws(() => resumeCheckpoint(dir, 'step-4'), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${four}: step 5 does not match its folder (step 4); resume from the previous checkpoint with --checkpoint step-2`));
  writeFileSync(four, state4);
  // last.json names step-4 as step 5: not taken for either, the newest complete one offered
  const last = join(root, 'last.json');
  writeFileSync(last, JSON.stringify({ step: 5, dir: 'step-0000004' }));
  assert.throws(() => resumeCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${last}: expected {"step": N, "dir": "step-N"}`) && e.message.endsWith('resume from the newest complete checkpoint with --checkpoint step-5 (the later steps are trained again), or start again with --force'));
  writeFileSync(last, files[3]!);
  // an optimizer state the optimizer refuses: the files it came from named; status and summary as they were
  const path = join(ckpt, 'state.json');
  const state = JSON.parse(readFileSync(path, 'utf8'));
  writeFileSync(path, JSON.stringify({ ...state, optimizer: { ...state.optimizer, stepCount: -1 } }));
  await assert.rejects(
    trainRun({ config: c, runDir: dir, backend, resume: true }),
    (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${ckpt}/{state.json,optimizer.safetensors}: `) && /stepCount must be a non-negative integer, got -1/.test(e.message),
  );
  assert.deepEqual(before(), files);
});

test('a resume refused for another config names the keys that change the run, not those free to change (train.log_every)', () => {
  const c = tinyConfig(['train.max_steps=8']);
  const old = JSON.parse(JSON.stringify(tinyConfig(['train.max_steps=8', 'optim.base_lr=0.02', 'train.log_every=7'])));
  assert.throws(
    () => checkResumeConfig('run', c, { config_hash: 'another', config: old }),
    (e: Error) => e.message === `run: was trained with another config: optim.base_lr 0.02 -> ${c.optim.base_lr}; to resume it, start again with --force, or drop the changes (or train into another --out)`,
  );
});

test('time-kept checkpoints (train.checkpoint_every null), rows lost after step 4 and only the checkpoint of step 5 left: the resume says the curves lack step 5', async () => {
  const c = tinyConfig(['train.max_steps=8', 'train.checkpoint_every=null']);
  const dir = tmp();
  let steps = 0;
  await trainRun({ config: c, runDir: dir, backend, checkpointSeconds: 0, onEvent: (e) => e.type === 'step' && steps++, shouldStop: () => steps >= 5 });
  assert.deepEqual(readdirSync(join(dir, 'checkpoints')).sort(), ['last.json', 'step-0000005']);
  const path = join(dir, 'metrics.jsonl');
  writeFileSync(path, readFileSync(path, 'utf8').split('\n').filter((l) => l && JSON.parse(l).step <= 4).map((l) => `${l}\n`).join(''));
  const notes: string[] = [];
  assert.equal(resumeCheckpoint(dir, undefined, { note: (t) => notes.push(t) }), join(dir, 'checkpoints', 'step-0000005'));
  assert.deepEqual(notes, [`${path} ends at step 4, before the newest checkpoint (step 5): the rows of the steps between were lost, and no complete checkpoint is one they reach: resuming from step 5; the curves have no rows of step 5`]);
});

/** A views file of 2 steps as a start of seed `seed` that reached step 2 writes it: every tensor `x`. */
function writeSafetensorsFile(path: string, x: Float32Array, seed: string): void {
  const t = { dtype: 'F32' as const, shape: [1, 1, 2, 2], data: x };
  writeSafetensors(path, new Map(['step0.x1', 'step0.x2', 'step1.x1', 'step1.x2'].map((n) => [n, t])), { steps: '2', seed });
}
