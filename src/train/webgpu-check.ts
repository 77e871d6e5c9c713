/**
 * `moco3 doctor --replay`: the same two training steps (a tiny ViT, AdamW, fixed random views) on the
 * webgpu backend and on the CPU, and the largest differences per kind of tensor. A check for a GPU
 * machine that has nothing but this program: no fixture files, no Python. The thorough version, against
 * the PyTorch reference fixtures, is test/engine/webgpu-parity.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readBack } from '../engine/webgpu.ts';
import { modelConfig } from '../model/archs.ts';
import { MoCoViT } from '../model/moco.ts';
import { createOptimizer } from '../optim/index.ts';

export interface ReplayResult {
  reference: string;
  /**
   * per kind (loss, grad1 = first step's gradients, param, slot, state = the momentum encoder and the BN
   * buffers): largest |diff| / the kind's largest value
   */
  worst: Record<string, number>;
  ok: boolean;
  seconds: number;
}

// An update of 1e-5 of a weight's size keeps the noise of AdamW's sign-like first steps (gradients that are zero
// in exact arithmetic, such as the key bias's) far below the check's limit; the decay of 1e3 then takes 1% of
// every weight per step, so a decay left out or misapplied shows, and the momentum encoder starts at half the
// base encoder, so that its update moves it by 0.5% per step: one left out or with m and 1 - m swapped shows.
// Measured on the cpu backend (test/train/webgpu-check.test.ts): a decay left out is off by 2e-2 of the
// parameters' scale, a momentum update left out by 2.5e-3 of the state's, against the limit of 1e-3 and
// float32 noise of at most 4e-5 (webgpu on lavapipe against the CPU).
const LR = 1e-5;
const WEIGHT_DECAY = 1e3;
const MOMENTUM_PREFIX = 'momentum_encoder.';
const BN_BUFFER = /(running_mean|running_var|num_batches_tracked)$/;

async function twoSteps(backend: string, microBatch: number | null): Promise<Map<string, Float32Array>> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} is not available`);
  const cfg = modelConfig('vit-test', { projHidden: 32, projDim: 16, predHidden: 32, patchProj: 'learned' });
  const model = new MoCoViT(cfg, 7);
  for (const [n, v] of model.vars) if (n.startsWith(MOMENTUM_PREFIX) && !BN_BUFFER.test(n)) tf.tidy(() => v.assign(tf.mul(v, 0.5)));
  const opt = createOptimizer({ name: 'adamw', weightDecay: WEIGHT_DECAY, betas: [0.9, 0.999], eps: 1e-8, momentum: 0.9, trustCoefficient: 0.001, lambExcludeBiasNorm: false, lambMaxGradNorm: null }, (n) => model.torchShape(n).length);
  const out = new Map<string, Float32Array>();
  const S = cfg.imageSize;
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed / 2 ** 32) * 2 - 1;
  };
  try {
    for (const s of [0, 1]) {
      const [x1, x2] = [0, 1].map(() => tf.tensor4d(Float32Array.from({ length: 8 * S * S * 3 }, rand), [8, S, S, 3]));
      const { loss, grads } = model.step(x1!, x2!, 0.99, microBatch);
      out.set(`loss:${s}`, (await readBack(loss.data(), 'the replay')) as Float32Array);
      if (s === 0) for (const [n, g] of grads) out.set(`grad1:${n}`, (await readBack(g.data(), 'the replay')) as Float32Array);
      opt.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), LR);
      tf.dispose([x1!, x2!, loss, ...grads.values()]);
    }
    for (const n of model.trainableNames()) out.set(`param:${n}`, (await readBack(model.vars.get(n)!.data(), 'the replay')) as Float32Array);
    for (const [k, t] of opt.stateTensors()) out.set(`slot:${k}`, (await readBack(t.data(), 'the replay')) as Float32Array);
    for (const [n, v] of model.vars) {
      if (!v.trainable) out.set(`state:${n}`, Float32Array.from((await readBack(v.data(), 'the replay')) as ArrayLike<number>));
    }
  } finally {
    opt.dispose();
    model.dispose();
  }
  return out;
}

/** Two steps on `target` (default webgpu, already registered) and on `reference` (default `cpu`), compared. */
export async function replayCheck(reference = 'cpu', microBatch: number | null = null, target = 'webgpu'): Promise<ReplayResult> {
  const t0 = performance.now();
  const want = await twoSteps(reference, microBatch);
  const got = await twoSteps(target, microBatch);
  await tf.setBackend(reference);
  // differences against each kind's largest value: some gradients are cancellation noise (zero in exact
  // arithmetic), and AdamW turns noise into updates of either sign, so a per-tensor scale would be noise
  const diff: Record<string, number> = {};
  const scale: Record<string, number> = {};
  for (const [key, w] of want) {
    const g = got.get(key);
    if (!g || g.length !== w.length) throw new Error(`replay: ${key} missing or of another size on ${target}`);
    const kind = key.slice(0, key.indexOf(':'));
    for (let i = 0; i < w.length; i++) {
      scale[kind] = Math.max(scale[kind] ?? 0, Math.abs(w[i]!));
      diff[kind] = Math.max(diff[kind] ?? 0, Math.abs(g[i]! - w[i]!));
    }
  }
  const worst: Record<string, number> = {};
  for (const k of Object.keys(diff)) worst[k] = Number((scale[k]! > 0 ? diff[k]! / scale[k]! : diff[k]!).toExponential(2));
  // float32 noise is at most 4e-5 of a kind's scale; a wrong kernel is off by the scale itself, a decay or a
  // momentum update left out by 2.5e-3 or more (above)
  const ok = Object.values(worst).every((v) => v <= 1e-3);
  return { reference, worst, ok, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) };
}
