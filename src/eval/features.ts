/**
 * The frozen encoder's features of a split (class token after the final LayerNorm, on the evaluation
 * view), and the weighted kNN of a model on a dataset: what the loop's kNN monitor and the run-folder
 * kNN share.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { evalView, type AugmentConfig } from '../data/augment.ts';
import { gatherBatch, type Dataset, type ImageSplit } from '../data/index.ts';
import type { MoCoViT } from '../model/moco.ts';
import { knnAccuracy } from './knn.ts';

/** The features of the first `n` images of a split, one batch at a time; the caller owns each part. */
function* featureParts(model: MoCoViT, split: ImageSplit, n: number, aug: AugmentConfig, batch: number): Generator<tf.Tensor2D> {
  for (let s = 0; s < n; s += batch) {
    const idx = Int32Array.from({ length: Math.min(batch, n - s) }, (_, i) => s + i);
    yield tf.tidy(() => model.features(evalView(gatherBatch(split, idx), aug)));
  }
}

/** Class-token features of the first `n` images of a split, [n, dim]. */
export function extractFeatures(model: MoCoViT, split: ImageSplit, n: number, aug: AugmentConfig, batch = 256): tf.Tensor2D {
  const parts: tf.Tensor2D[] = [];
  try {
    for (const part of featureParts(model, split, n, aug, batch)) parts.push(part);
    return tf.concat(parts) as tf.Tensor2D;
  } finally {
    tf.dispose(parts); // also when a batch throws: nothing is left behind
  }
}

/**
 * extractFeatures, giving Node a turn between batches and calling `check` there (it throws to stop, e.g.
 * on Ctrl-C): for passes long enough that a signal must not wait for their end (the linear probe's).
 */
export async function extractFeaturesPolled(model: MoCoViT, split: ImageSplit, n: number, aug: AugmentConfig, check: (done: number) => void, batch = 256): Promise<tf.Tensor2D> {
  const parts: tf.Tensor2D[] = [];
  let done = 0;
  try {
    for (const part of featureParts(model, split, n, aug, batch)) {
      parts.push(part);
      done += part.shape[0];
      await new Promise<void>((r) => setImmediate(r));
      check(done);
    }
    return tf.concat(parts) as tf.Tensor2D;
  } finally {
    tf.dispose(parts);
  }
}

export interface ModelKnnOptions {
  k: number;
  t: number;
  /** the first `bank` train images are the bank, the first `queries` test images the queries */
  bank: number;
  queries: number;
}

/**
 * Weighted kNN top-1 / top-5 (%) of `model`'s features: train images as the bank, test images as queries;
 * `check` as extractFeaturesPolled's, given the images whose features are done of bank + queries.
 */
export async function knnOfModel(
  model: MoCoViT,
  ds: Dataset,
  aug: AugmentConfig,
  o: ModelKnnOptions,
  check?: (done: number, total: number) => void,
): Promise<{ top1: number; top5: number }> {
  const total = o.bank + o.queries;
  const bank = check ? await extractFeaturesPolled(model, ds.train, o.bank, aug, (d) => check(d, total)) : extractFeatures(model, ds.train, o.bank, aug);
  let queries: tf.Tensor2D | null = null;
  try {
    queries = check ? await extractFeaturesPolled(model, ds.test, o.queries, aug, (d) => check(o.bank + d, total)) : extractFeatures(model, ds.test, o.queries, aug);
    const r = await knnAccuracy(bank, ds.train.labels.subarray(0, o.bank), queries, ds.test.labels.subarray(0, o.queries), {
      k: o.k,
      t: o.t,
      numClasses: ds.numClasses,
    });
    return { top1: r.top1, top5: r.top5 };
  } finally {
    bank.dispose();
    queries?.dispose();
  }
}

/**
 * The kNN monitor of eval.knn: the first bank_size train images as the bank, the first query_size test images as
 * queries. With `check`, Node gets a turn between batches (timers, a lock's heartbeat, signals) and `check` runs there.
 */
export async function knnMonitor(model: MoCoViT, ds: Dataset, c: ResolvedRunConfig, aug: AugmentConfig, check?: () => void): Promise<{ top1: number; top5: number }> {
  const bank = Math.min(ds.train.n, c.eval.knn.bank_size ?? ds.train.n);
  const queries = Math.min(ds.test.n, c.eval.knn.query_size ?? ds.test.n);
  return knnOfModel(model, ds, aug, { k: c.eval.knn.k, t: c.eval.knn.t, bank, queries }, check);
}
