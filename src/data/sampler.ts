/**
 * Which images make up the batch of a step. A pure function of the step (epoch order from
 * `new Rng(seed, 'order', epoch)`), so a resumed run draws exactly the batches it would have drawn.
 * Incomplete last batches are dropped, like the official loader (drop_last=True).
 */
import { Rng } from '../engine/rng.ts';
import { DataError, type ImageBatch, type ImageSplit } from './types.ts';

export interface BatchOrder {
  n: number;
  batchSize: number;
  seed: number;
  shuffle: boolean;
}

export function itersPerEpoch(n: number, batchSize: number): number {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new DataError(`batch size must be a positive integer, got ${batchSize}`);
  return Math.floor(n / batchSize);
}

// the permutation of the current epoch, kept because consecutive steps share it
let cached: { seed: number; n: number; epoch: number; perm: Int32Array } | null = null;

function epochOrder(seed: number, n: number, epoch: number): Int32Array {
  if (cached && cached.seed === seed && cached.n === n && cached.epoch === epoch) return cached.perm;
  const perm = new Rng(seed, 'order', epoch).permutation(n);
  cached = { seed, n, epoch, perm };
  return perm;
}

/** Indices into the split for training step `step` (0-based, counted across epochs). */
export function batchIndices(step: number, order: BatchOrder): Int32Array {
  const { n, batchSize, seed, shuffle } = order;
  const iters = itersPerEpoch(n, batchSize);
  if (iters === 0) throw new DataError(`batch size ${batchSize} is larger than the ${n} training images`);
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be a non-negative integer, got ${step}`);
  const epoch = Math.floor(step / iters);
  const start = (step - epoch * iters) * batchSize;
  const out = new Int32Array(batchSize);
  if (shuffle) {
    out.set(epochOrder(seed, n, epoch).subarray(start, start + batchSize));
  } else {
    for (let i = 0; i < batchSize; i++) out[i] = start + i;
  }
  return out;
}

/** Copy the images (and labels) at `indices` into one compact batch, from memory or, for a streamed split, from disk. */
export function gatherBatch(split: ImageSplit, indices: ArrayLike<number>): ImageBatch {
  const size = split.height * split.width * split.channels;
  const data = new Uint8Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  // a streamed split reads each image from disk; `images` is only touched when the split is in memory
  const images = split.read ? null : split.images;
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < split.n)) throw new RangeError(`index ${j} outside the split (n = ${split.n})`);
    if (images !== null) data.set(images.subarray(j * size, (j + 1) * size), i * size);
    else split.read!(j, data, i * size);
    labels[i] = split.labels[j]!;
  }
  return { data, n: indices.length, h: split.height, w: split.width, c: split.channels, labels };
}
