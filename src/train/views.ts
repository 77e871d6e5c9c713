/**
 * The two views of every training step, a function of (seed, step) only: computed in the step, or with
 * prefetching on a background thread while the previous step runs; and the `--dump-views` record of them.
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { canAugmentAsync, twoViewArraysAsync, twoViews, viewTensors, type AugmentConfig } from '../data/augment.ts';
import { batchIndices, gatherBatch, type Dataset } from '../data/index.ts';
import { checkSafetensorsFile, readSafetensors, writeSafetensors, type StTensor } from '../engine/safetensors.ts';
import { readBack } from '../engine/webgpu.ts';
import { firstLine } from '../config/errors.ts';

/**
 * Whether the loop computes the next step's views in the background, while the current step runs: by
 * default with every backend but `native` (whose kernels use the same thread pool as the augmentation;
 * with `tensorflow` the model runs on a GPU or in TensorFlow's threads, with `wasm` on one thread).
 * MOCO3_PREFETCH=1 or 0 forces it. Needs the native augmentation kernel. The views are the same either way.
 */
export function prefetchViews(backend: string): boolean {
  if (!canAugmentAsync()) return false;
  const env = process.env.MOCO3_PREFETCH;
  if (env === '1' || env === '0') return env === '1';
  return backend !== 'native';
}

export type Views = { x1: tf.Tensor4D; x2: tf.Tensor4D };

/** viewsOf(step): the views of optimizer step `step` (0-based), asked for in increasing order. */
export function stepViews(ds: Dataset, aug: AugmentConfig, c: ResolvedRunConfig, backend: string, totalSteps: number): (step: number) => Promise<Views> {
  const order = { n: ds.train.n, batchSize: c.optim.batch_size, seed: c.seed, shuffle: c.train.shuffle };
  const batchOf = (step: number) => gatherBatch(ds.train, batchIndices(step, order));
  if (!prefetchViews(backend)) return async (step) => twoViews(batchOf(step), aug, c.seed, step);
  let pending: { step: number; views: Promise<{ v1: Float32Array; v2: Float32Array }> } | null = null;
  const start = (step: number) => {
    const views = twoViewArraysAsync(batchOf(step), aug, c.seed, step);
    views.catch(() => {}); // a prefetch the loop leaves behind (stop, divergence) must not fail the process
    return { step, views };
  };
  return async (step) => {
    const job = pending?.step === step ? pending : start(step);
    pending = step + 1 < totalSteps ? start(step + 1) : null;
    return viewTensors(await job.views, aug.imageSize);
  };
}

/** Whether `path` is a views file of exactly `steps` whole steps of `seed` (no divergence cut it short). */
export function viewsOfSteps(path: string, steps: number, seed: number): boolean {
  try {
    const { metadata } = checkSafetensorsFile(path);
    return metadata.steps === String(steps) && metadata.seed === String(seed) && metadata.diverged_at === undefined;
  } catch {
    return false; // none, or unreadable: made again
  }
}

/** The normalised views of the first `steps` steps, written to `path` (safetensors, NCHW) after the last of them. */
export class ViewDump {
  private readonly views = new Map<string, StTensor>();

  constructor(
    private readonly path: string,
    private readonly steps: number,
    private readonly seed: number,
  ) {}

  async add(step: number, { x1, x2 }: Views): Promise<void> {
    if (step >= this.steps) return;
    for (const [name, x] of [['x1', x1], ['x2', x2]] as const) {
      const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]));
      try {
        // await data(): GPU backends have no synchronous read
        this.views.set(`step${step}.${name}`, { dtype: 'F32', shape: nchw.shape, data: (await readBack(nchw.data(), 'the read-back of --dump-views')) as Float32Array });
      } finally {
        nchw.dispose();
      }
    }
  }

  /** After step `stepsDone` (1-based) went through: the file is written when it was the last one kept. */
  flush(stepsDone: number): void {
    if (stepsDone !== this.steps || this.steps === 0) return;
    this.write(this.steps, {});
  }

  /**
   * The run ended (diverged) at step `stepsDone`, at or before the last step kept: the steps it has, written.
   * A divergence found at a stop at the last step kept, the file written there already (by this start, or by
   * the start this run resumed from), marks that file; one that cannot be marked (unreadable, of other steps
   * or another seed, a failing write) is left as it is, and the reason returned: the divergence is the run's
   * result, the views' mark is not.
   */
  flushPartial(stepsDone: number): string | null {
    if (this.steps === 0 || stepsDone > this.steps || stepsDone === 0) return null;
    // none held: the file was written at the last step kept
    if (this.views.size === 0) {
      if (stepsDone !== this.steps || !existsSync(this.path)) return null;
      try {
        const { tensors, metadata } = readSafetensors(this.path);
        if (metadata.steps !== String(this.steps) || metadata.seed !== String(this.seed)) return `${this.path} holds other views (steps ${metadata.steps}, seed ${metadata.seed}): left without diverged_at`;
        writeSafetensors(this.path, tensors, { ...metadata, diverged_at: String(stepsDone) });
        return null;
      } catch (e) {
        return `${firstLine(e)}: ${this.path} left without diverged_at`;
      }
    }
    this.write(stepsDone, { diverged_at: String(stepsDone) });
    return null;
  }

  private write(steps: number, extra: Record<string, string>): void {
    writeSafetensors(this.path, this.views, {
      layout: 'x1 and x2 of step s (0-based) as tensors "step{s}.x1" / "step{s}.x2": float32 [batch, 3, H, W] (NCHW, PyTorch), normalised with the dataset mean/std; rows in batch order',
      steps: String(steps),
      seed: String(this.seed),
      ...extra,
    });
    this.views.clear();
  }
}
