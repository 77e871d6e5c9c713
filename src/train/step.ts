/** One training step on two views, shared by the loop and the benchmark. */
import * as tf from '@tensorflow/tfjs-core';
import type { MoCoViT } from '../model/moco.ts';
import type { Optimizer } from '../optim/index.ts';
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
  const run = () => model.step(x1, x2, o.momentum, o.microBatch);
  const { loss, grads } = o.guard ? o.guard(run) : run();
  x1.dispose();
  x2.dispose();
  let lossT: tf.Scalar = loss;
  if (o.injectNan) {
    lossT = tf.tidy(() => tf.mul(loss, NaN) as tf.Scalar);
    loss.dispose();
  }
  const statsT = gradStats(lossT, grads, model.paramGroups());
  const stats = (await statsT.data()) as Float32Array;
  statsT.dispose();
  lossT.dispose();
  const finite = stats.every((v) => Number.isFinite(v));
  if (finite) optimizer.step(model.vars, new Map(model.trainableNames().map((n) => [n, grads.get(n)!] as const)), o.lr);
  for (const g of grads.values()) g.dispose();
  return { stats, finite };
}
