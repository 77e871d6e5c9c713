/** One training step on two views, shared by the loop and the benchmark. */
import * as tf from '@tensorflow/tfjs-core';
import type { MoCoViT } from '../model/moco.ts';
import type { Optimizer } from '../optim/index.ts';
import { checkWebGpuErrors, readBack } from '../engine/webgpu.ts';
import { gradStats } from './metrics.ts';

export interface StepOptions {
  momentum: number;
  lr: number;
  microBatch: number | null;
  /** runs the forward/backward (the loop uses it to explain out-of-memory errors) */
  guard?: <T>(f: () => T) => T;
  /** tests: make the loss non-finite */
  injectNan?: boolean;
}

/**
 * Loss and gradients of `model` on (x1, x2), their statistics read back once ([loss, inf, l2 per parameter
 * group], see gradStats), then the optimizer update when every statistic is finite. Disposes x1, x2 and
 * every gradient.
 */
export async function trainStep(model: MoCoViT, optimizer: Optimizer, x1: tf.Tensor4D, x2: tf.Tensor4D, o: StepOptions): Promise<{ stats: Float32Array; finite: boolean }> {
  // every tensor of the step is disposed however it ends: a step that throws leaves nothing behind
  let out: { loss: tf.Scalar; grads: Map<string, tf.Tensor> } | null = null;
  let lossT: tf.Scalar | null = null;
  try {
    const run = () => model.step(x1, x2, o.momentum, o.microBatch);
    out = o.guard ? o.guard(run) : run();
    x1.dispose();
    x2.dispose();
    const { loss, grads } = out;
    lossT = o.injectNan ? tf.tidy(() => tf.mul(loss, NaN) as tf.Scalar) : loss;
    const statsT = gradStats(lossT, grads, model.paramGroups());
    let stats: Float32Array;
    try {
      stats = (await readBack(statsT.data(), 'a training step (its forward, backward or the previous optimizer update)')) as Float32Array;
    } finally {
      statsT.dispose();
    }
    // zeros of work the GPU rejected (this step's, or the previous update's) are no gradients to step on
    checkWebGpuErrors('a training step (its forward, backward or the previous optimizer update)');
    const finite = stats.every((v) => Number.isFinite(v));
    if (finite) optimizer.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), o.lr);
    return { stats, finite };
  } finally {
    x1.dispose();
    x2.dispose();
    lossT?.dispose();
    out?.loss.dispose();
    for (const g of out?.grads.values() ?? []) g.dispose();
  }
}

/**
 * Whether every weight of the model (its float variables: base and momentum encoders, heads, BatchNorm
 * statistics) is finite, read back as one number. An update that overflows (an absurd lr: 1e36 and up)
 * leaves weights at ±Inf or NaN under a loss that was finite; the next step's loss shows it, but a kNN,
 * checkpoint or end of training that comes first would measure or save them.
 */
export async function weightsFinite(vars: Map<string, tf.Variable>): Promise<boolean> {
  const floats = [...vars.values()].filter((v) => v.dtype === 'float32');
  if (floats.length === 0) return true;
  // the sum of every weight is finite where every weight is (one pass); a sum that is not may be finite weights
  // too large to add up, told apart by x * 0 (0 for a finite x, NaN for ±Inf and NaN). Added one by one: an
  // addN of every variable binds more buffers than a WebGPU kernel may (16 per stage)
  const total = async (f: (v: tf.Variable) => tf.Tensor): Promise<number> => {
    const t = tf.tidy(() => floats.reduce<tf.Tensor>((acc, v) => tf.add(acc, tf.sum(f(v))), tf.scalar(0)));
    try {
      const [sum] = (await readBack(t.data(), "a check of the model's weights")) as Float32Array;
      checkWebGpuErrors("a check of the model's weights");
      return sum!;
    } finally {
      t.dispose();
    }
  };
  return Number.isFinite(await total((v) => v)) || Number.isFinite(await total((v) => tf.mul(v, 0)));
}
