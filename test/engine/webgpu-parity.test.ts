/**
 * The `webgpu` backend (Dawn; on CI Mesa's lavapipe, a software Vulkan adapter installed by .ci/run) makes
 * the same two training steps as the `native` backend: from the PyTorch reference fixture's step-0
 * checkpoint, on the fixture's views (test/torchref/fixture, written by tools/torch_reference.py), for
 * AdamW, LAMB and LARS, learned and frozen patch projection, with and without micro-batches. Losses,
 * the second step's gradients, weights, momentum-encoder weights and optimizer slots agree to float32
 * noise. The worst difference per kind of tensor is printed.
 */
import { tf } from '../helpers/tf.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { nativeStatus, registerNativeBackend } from '../../src/engine/native.ts';
import { clearWebGpuErrors, closeWebGpu, registerWebGpuBackend, describeAdapter, WebGpuDeviceError } from '../../src/engine/webgpu.ts';
import { trainStep } from '../../src/train/step.ts';
import { ADAMW, ATTENTION_FWD, BATCHNORM_FWD, canPack, COLUMN_SUM, EMA, GELU_FWD, hasKernel, LAMB, LARS, LAYERNORM_FWD, useMoco3Packing } from '../../src/engine/webgpu-kernels.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import type { ResolvedRunConfig } from '../../src/config/schema.ts';
import { modelConfigOf, optimizerOf } from '../../src/components/index.ts';
import { lrAt, momentumAt, scaledLr } from '../../src/optim/schedule.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (proj: string) => join(here, '..', 'torchref', 'fixture', proj);

type Kind = 'loss' | 'grad1' | 'grad2' | 'param' | 'momentum' | 'slot';
interface Outcome {
  loss: number[];
  tensors: Map<string, { kind: Kind; values: Float32Array; start?: Float32Array }>;
  /** per parameter, the elements whose gradient is float32 cancellation noise in some step (see compare) */
  noise: Map<string, Uint8Array>;
}

interface Case {
  optim: 'adamw' | 'lamb' | 'lars';
  proj: 'learned' | 'frozen';
  micro: number | null;
  /** webgpu: the optimizer, momentum and statistics updates packed per group (a hardware adapter's default) */
  pack?: boolean;
}

/** Two steps from the fixture's step-0 checkpoint on `backend`; every tensor read back with `await data()`. */
async function twoSteps(backend: string, k: Case): Promise<Outcome> {
  assert.ok(await tf.setBackend(backend), `backend ${backend}`);
  // webgpu runs moco3's own kernels (src/engine/webgpu-kernels.ts), native the stock compositions but GELU's
  // (its native kernels give the composition's bits: test/engine/native.test.ts)
  for (const kern of [ATTENTION_FWD, BATCHNORM_FWD, COLUMN_SUM, EMA, { adamw: ADAMW, lamb: LAMB, lars: LARS }[k.optim]]) assert.equal(hasKernel(kern), backend === 'webgpu', `${backend}: ${kern}`);
  // GELU's and LayerNorm's kernels are on native too (the composition's bits there)
  for (const kern of [GELU_FWD, LAYERNORM_FWD]) assert.equal(hasKernel(kern), true, `${backend}: ${kern}`);
  assert.equal(canPack(), backend === 'webgpu' && k.pack === true, `${backend}: packed updates`);
  const run = fixture(k.proj);
  const c = parse(readFileSync(join(run, 'config.yaml'), 'utf8')) as ResolvedRunConfig;
  const model = new MoCoViT(modelConfigOf(c), 0);
  // the step-0 checkpoint holds the initial weights and an empty AdamW state: load with AdamW, then
  // start the optimizer under test from nothing
  const adamw = optimizerOf(c, model);
  loadCheckpoint(join(run, 'checkpoints', 'step-0000000'), model, adamw);
  adamw.dispose();
  const oc = { ...c, optim: { ...c.optim, name: k.optim, ...(k.optim === 'adamw' ? {} : { base_lr: k.optim === 'lars' ? 0.3 : 0.005 }) } } as ResolvedRunConfig;
  const opt = optimizerOf(oc, model);
  const before = tf.memory().numTensors;
  const read = async (t: tf.Tensor) => (await t.data()) as Float32Array;
  const out: Outcome = { loss: [], tensors: new Map(), noise: new Map() };
  const trainable = new Set(model.trainableNames());
  for (const [name, v] of model.vars) {
    out.tensors.set(`${trainable.has(name) ? 'param' : 'momentum'}:${name}`, { kind: trainable.has(name) ? 'param' : 'momentum', values: new Float32Array(), start: await read(v) });
  }
  const views = readSafetensors(join(run, 'views.safetensors')).tensors;
  try {
    for (const s of [0, 1]) {
      const e = s / Math.floor(c.data.train_size! / c.optim.batch_size);
      const lr = lrAt(e, { lr: scaledLr(oc.optim.base_lr, c.optim.batch_size), epochs: c.optim.epochs, warmupEpochs: c.optim.warmup_epochs });
      const m = momentumAt(e, { m0: c.moco.momentum, epochs: c.optim.epochs, schedule: c.moco.momentum_schedule });
      const view = (v: string) => {
        const t = views.get(`step${s}.${v}`)!;
        return tf.tidy(() => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number], 'float32'), [0, 2, 3, 1]));
      };
      const x1 = view('x1');
      const x2 = view('x2');
      const { loss, grads } = model.step(x1, x2, m, k.micro);
      const gv = new Map<string, Float32Array>();
      for (const [name, g] of grads) gv.set(name, await read(g));
      // the typical gradient size: the median over tensors of each one's largest (the cls token's is an outlier)
      const maxes = [...gv.values()].map((v) => v.reduce((a, x) => Math.max(a, Math.abs(x)), 0)).sort((a, b) => a - b);
      const typical = maxes[maxes.length >> 1]!;
      for (const [name, v] of gv) {
        const mask = out.noise.get(name) ?? new Uint8Array(v.length);
        for (let i = 0; i < v.length; i++) if (Math.abs(v[i]!) <= 1e-5 * typical) mask[i] = 1;
        out.noise.set(name, mask);
        out.tensors.set(`grad${s + 1}:${name}`, { kind: s === 0 ? 'grad1' : 'grad2', values: v });
      }
      opt.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), lr);
      out.loss.push((await read(loss))[0]!);
      tf.dispose([x1, x2, loss, ...grads.values()]);
    }
    for (const [name, v] of model.vars) out.tensors.get(`${trainable.has(name) ? 'param' : 'momentum'}:${name}`)!.values = await read(v);
    for (const [key, t] of opt.stateTensors()) out.tensors.set(`slot:${key}`, { kind: 'slot', values: await read(t) });
    assert.equal(tf.memory().numTensors - before, opt.stateTensors().size, `${backend}: two steps leave only the optimizer's slots behind`);
  } finally {
    opt.dispose();
    model.dispose();
  }
  return out;
}

const worst = new Map<Kind, { diff: number; rel: number; where: string }>();
/** per case, per kind: the largest |diff| relative to the tensor's scale */
const perCase = new Map<string, Map<Kind, number>>();
const note = (label: string, kind: Kind, rel: number) => {
  const m = perCase.get(label) ?? new Map<Kind, number>();
  m.set(kind, Math.max(m.get(kind) ?? 0, rel));
  perCase.set(label, m);
};
let noiseElements = 0;

function typicalGrad(o: Outcome): number {
  const maxes = [...o.tensors.values()].filter((t) => t.kind === 'grad1').map((t) => t.values.reduce((a, x) => Math.max(a, Math.abs(x)), 0)).sort((a, b) => a - b);
  return maxes[maxes.length >> 1]!;
}

/**
 * |webgpu - native| against each tensor's own scale: for weights the change the two steps made (what
 * float32 noise in the gradients can move), for the rest the tensor's largest value. The bound is float32
 * noise amplified through two steps of a 2-block ViT (sums of ~10^2-10^3 terms), not a loose check: a wrong
 * kernel is off by the scale itself.
 *
 * Some gradients are zero in exact arithmetic and float32 cancellation noise in practice: the key part of
 * the qkv bias (softmax ignores a shift shared by all keys) and the final LayerNorm's bias (the projector's
 * BatchNorm removes it). Adam-type optimizers turn that noise into full-size updates of either sign, so
 * after such an update the weight, its slots and its momentum copy are noise too: those elements (native
 * gradient below 1e-5 of the step's typical one, the median over tensors of their largest) are held to the size of the update, the gradient itself to
 * 1e-5 of the typical one.
 *
 * With micro-batches of 4 (BatchNorm statistics over 4 samples) the step is ill-conditioned: on native,
 * moving the views by 1e-6 (relative) moves the first step's gradients by 1.1e-4 of their scale (the whole
 * batch: 1.2e-5). The first gradients then differ by up to 4e-4 on lavapipe (3e-6 on the whole batch):
 * those cases get 10x the bounds (5x for the first gradients).
 */
function compare(want: Outcome, got: Outcome, label: string, micro: boolean): string[] {
  const bad: string[] = [];
  for (let i = 0; i < want.loss.length; i++) {
    const d = Math.abs(got.loss[i]! - want.loss[i]!);
    const rel = d / Math.abs(want.loss[i]!);
    if (rel > (worst.get('loss')?.rel ?? -1)) worst.set('loss', { diff: d, rel, where: `${label} step ${i + 1}` });
    note(label, 'loss', rel);
    if (!(rel <= (micro ? 2e-5 : 2e-6))) bad.push(`loss of step ${i + 1}: ${got.loss[i]} vs ${want.loss[i]}`);
  }
  assert.deepEqual([...got.tensors.keys()].sort(), [...want.tensors.keys()].sort());
  for (const [key, w] of want.tensors) {
    const g = got.tensors.get(key)!;
    assert.equal(g.values.length, w.values.length, key);
    const param = key.slice(key.indexOf(':') + 1);
    const mask = want.noise.get(w.kind === 'slot' ? param.slice(0, param.lastIndexOf('.')) : param.replace(/^momentum_encoder\./, 'base_encoder.'));
    let scale = 0;
    for (let i = 0; i < w.values.length; i++) scale = Math.max(scale, Math.abs(w.start ? w.values[i]! - w.start[i]! : w.values[i]!));
    let d = 0;
    let at = 0;
    for (let i = 0; i < w.values.length; i++) {
      const di = Math.abs(g.values[i]! - w.values[i]!);
      if (mask?.[i]) {
        const bound = w.kind === 'grad1' || w.kind === 'grad2' ? typicalGrad(want) * 1e-5 : 2.5 * scale + 1e-7;
        if (!(di <= bound)) bad.push(`${key}[${i}] (noise-driven): webgpu ${g.values[i]} vs native ${w.values[i]}, beyond ${bound.toExponential(2)}`);
        if (w.kind === 'param') noiseElements++;
        continue;
      }
      if (di > d) {
        d = di;
        at = i;
      }
    }
    // momentum weights move by (1-m) x the base encoder's change; tiny tensors may not move at all
    const r = micro ? 10 : 1;
    const tol = (w.kind === 'grad1' ? 2e-5 * r * 5 : w.kind === 'slot' || w.kind === 'grad2' ? 2e-3 * r : 5e-3 * r) * scale + 2e-7;
    const rel = scale > 0 ? d / scale : d;
    if (rel > (worst.get(w.kind)?.rel ?? -1)) worst.set(w.kind, { diff: d, rel, where: `${label} ${key}` });
    note(label, w.kind, rel);
    if (!(d <= tol)) bad.push(`${key}[${at}]: webgpu ${g.values[at]} vs native ${w.values[at]} (|diff| ${d.toExponential(2)}, scale ${scale.toExponential(2)})`);
  }
  return bad;
}

const cases: Case[] = [
  { optim: 'adamw', proj: 'learned', micro: null },
  { optim: 'adamw', proj: 'frozen', micro: null },
  { optim: 'adamw', proj: 'learned', micro: 4 },
  { optim: 'lamb', proj: 'learned', micro: null },
  { optim: 'lamb', proj: 'frozen', micro: 4 },
  { optim: 'lars', proj: 'learned', micro: null },
  { optim: 'lars', proj: 'frozen', micro: 4 },
  { optim: 'adamw', proj: 'learned', micro: 4, pack: true },
  { optim: 'lamb', proj: 'frozen', micro: null, pack: true },
  { optim: 'lars', proj: 'learned', micro: null, pack: true },
];

describe('webgpu (Dawn) vs native: two training steps', () => {
  before(async () => {
    assert.ok(registerNativeBackend(), `the native addon is not available (${nativeStatus().error})`);
    // a test that cannot fail is no test: no adapter (no Vulkan driver, no lavapipe) fails here, never skips
    const a = await registerWebGpuBackend({ allowSoftware: true });
    assert.equal(typeof a, 'object', `no WebGPU adapter: ${String(a)} (.ci/run installs Mesa's lavapipe from bookworm-backports)`);
    process.stderr.write(`webgpu adapter: ${describeAdapter(a as Exclude<typeof a, string>)}\n`);
  });
  after(async () => {
    const lines = [...worst].map(([k, w]) => `  ${k.padEnd(8)} max |diff| ${w.diff.toExponential(2)}, ${w.rel.toExponential(2)} of scale (${w.where})`);
    for (const [label, m] of perCase) lines.push(`  ${label}: ${[...m].map(([k, r]) => `${k} ${r.toExponential(1)}`).join(', ')}`);
    process.stderr.write(`webgpu vs native, worst difference per kind:\n${lines.join('\n')}\n  (${noiseElements} weight elements with noise gradients held to the update size instead)\n`);
    await tf.setBackend('cpu');
    closeWebGpu();
  });
  it('work the GPU rejects (a binding over its limit reads back as zeros) fails the step, before the optimizer steps on it', async () => {
    assert.ok(await tf.setBackend('webgpu'));
    const run = fixture('learned');
    const c = parse(readFileSync(join(run, 'config.yaml'), 'utf8')) as ResolvedRunConfig;
    const model = new MoCoViT(modelConfigOf(c), 0);
    const opt = optimizerOf(c, model);
    const name = model.trainableNames()[0]!;
    const before = (await model.vars.get(name)!.data()).slice();
    try {
      // 160 MiB in one binding: above the default and lavapipe's 128 MiB storage binding limit
      const big = tf.tidy(() => tf.add(tf.fill([40 * 2 ** 20], 1), 1));
      big.dispose();
      const x = () => tf.randomUniform([c.optim.batch_size, c.data.image_size, c.data.image_size, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const step = () => trainStep(model, opt, x(), x(), { momentum: 0.99, lr: 1e-3, microBatch: null });
      await assert.rejects(step(), (e: Error) => e instanceof WebGpuDeviceError && /during a training step .*larger than the maximum storage buffer binding size.*: a tensor does not fit the device/.test(e.message));
      assert.deepEqual(await model.vars.get(name)!.data(), before, 'the optimizer did not step');
      // said once: the next step runs
      const { finite } = await step();
      assert.ok(finite);
      assert.notDeepEqual(await model.vars.get(name)!.data(), before);
      // an error after the last read-back of a run is forgotten as the next run starts (clearWebGpuErrors)
      const late = tf.tidy(() => tf.add(tf.fill([40 * 2 ** 20], 1), 1));
      await late.data(); // its error has arrived
      late.dispose();
      clearWebGpuErrors();
      assert.ok((await step()).finite);
    } finally {
      opt.dispose();
      model.dispose();
    }
  });
  for (const k of cases) {
    const label = `${k.optim}, ${k.proj} patch projection, ${k.micro === null ? 'whole batch' : `micro-batch ${k.micro}`}${k.pack ? ', packed updates' : ''}`;
    it(label, async () => {
      const want = await twoSteps('native', k);
      const was = useMoco3Packing(k.pack === true);
      let got: Awaited<ReturnType<typeof twoSteps>>;
      try {
        got = await twoSteps('webgpu', k);
      } finally {
        useMoco3Packing(was);
      }
      assert.deepEqual(compare(want, got, label, k.micro !== null), []);
    });
  }
});
