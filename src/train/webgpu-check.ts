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
  /** per kind (loss, grad1 = first step's gradients, param, slot): largest |diff| / the kind's largest value */
  worst: Record<string, number>;
  ok: boolean;
  seconds: number;
}

async function twoSteps(backend: string, microBatch: number | null): Promise<Map<string, Float32Array>> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} is not available`);
  const cfg = modelConfig('vit-test', { projHidden: 32, projDim: 16, predHidden: 32, patchProj: 'learned' });
  const model = new MoCoViT(cfg, 7);
  const opt = createOptimizer({ name: 'adamw', weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-8, momentum: 0.9, trustCoefficient: 0.001, lambExcludeBiasNorm: false, lambMaxGradNorm: null }, (n) => model.torchShape(n).length);
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
      opt.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), 1e-5);
      tf.dispose([x1!, x2!, loss, ...grads.values()]);
    }
    for (const n of model.trainableNames()) out.set(`param:${n}`, (await readBack(model.vars.get(n)!.data(), 'the replay')) as Float32Array);
    for (const [k, t] of opt.stateTensors()) out.set(`slot:${k}`, (await readBack(t.data(), 'the replay')) as Float32Array);
  } finally {
    opt.dispose();
    model.dispose();
  }
  return out;
}

/** Two steps on webgpu (already registered) and on `reference` (default `cpu`), compared. */
export async function replayCheck(reference = 'cpu', microBatch: number | null = null): Promise<ReplayResult> {
  const t0 = performance.now();
  const want = await twoSteps(reference, microBatch);
  const got = await twoSteps('webgpu', microBatch);
  await tf.setBackend(reference);
  // differences against each kind's largest value: some gradients are cancellation noise (zero in exact
  // arithmetic), and AdamW turns noise into updates of either sign, so a per-tensor scale would be noise
  const diff: Record<string, number> = {};
  const scale: Record<string, number> = {};
  for (const [key, w] of want) {
    const g = got.get(key);
    if (!g || g.length !== w.length) throw new Error(`replay: ${key} missing or of another size on webgpu`);
    const kind = key.slice(0, key.indexOf(':'));
    for (let i = 0; i < w.length; i++) {
      scale[kind] = Math.max(scale[kind] ?? 0, Math.abs(w[i]!));
      diff[kind] = Math.max(diff[kind] ?? 0, Math.abs(g[i]! - w[i]!));
    }
  }
  const worst: Record<string, number> = {};
  for (const k of Object.keys(diff)) worst[k] = Number((scale[k]! > 0 ? diff[k]! / scale[k]! : diff[k]!).toExponential(2));
  // float32 noise is ~1e-6 of a tensor's scale here; a wrong kernel is off by the scale itself
  const ok = Object.values(worst).every((v) => v <= 1e-3);
  return { reference, worst, ok, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) };
}
