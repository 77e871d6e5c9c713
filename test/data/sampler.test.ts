import { tf } from '../helpers/tf.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.ts';
import { DataError } from '../../src/data/types.ts';
import { batchIndices, gatherBatch, itersPerEpoch } from '../../src/data/sampler.ts';

void tf;

test('itersPerEpoch drops the incomplete last batch', () => {
  assert.equal(itersPerEpoch(1000, 256), 3);
  assert.equal(itersPerEpoch(1024, 256), 4);
  assert.equal(itersPerEpoch(100, 256), 0);
  assert.throws(() => itersPerEpoch(100, 0), DataError);
});

test('one epoch visits floor(n/b)*b distinct images; the dropped ones change with the epoch', () => {
  const order = { n: 103, batchSize: 10, seed: 5, shuffle: true };
  const seen = (epoch: number) => {
    const s = new Set<number>();
    for (let i = 0; i < 10; i++) for (const j of batchIndices(epoch * 10 + i, order)) s.add(j);
    return s;
  };
  const e0 = seen(0);
  const e1 = seen(1);
  assert.equal(e0.size, 100);
  for (const j of e0) assert.ok(j >= 0 && j < 103);
  assert.notDeepEqual([...e0].sort(), [...e1].sort());
  // the epoch's order is Rng(seed, 'order', epoch)'s permutation, cut into batches
  const perm = new Rng(5, 'order', 1).permutation(103);
  assert.deepEqual(Array.from(batchIndices(13, order)), Array.from(perm.subarray(30, 40)));
});

test('pure function of the step: recomputed indices are identical, epochs differ', () => {
  const order = { n: 1000, batchSize: 64, seed: 1, shuffle: true };
  const a = batchIndices(40, order);
  batchIndices(3, order); // another epoch in between
  assert.deepEqual(batchIndices(40, order), a);
  assert.deepEqual(batchIndices(40, { ...order }), a);
  const iters = itersPerEpoch(1000, 64);
  assert.notDeepEqual(batchIndices(5, order), batchIndices(5 + iters, order));
  assert.notDeepEqual(batchIndices(5, order), batchIndices(5, { ...order, seed: 2 }));
});

test("the epoch's order is the permutation of this split's size: a split of another size right after gets its own, never the last one's", () => {
  const big = { n: 100, batchSize: 10, seed: 7, shuffle: true };
  const small = { n: 40, batchSize: 10, seed: 7, shuffle: true };
  // same seed, same epoch, one after the other (a run's train split, then a probe's smaller one)
  assert.deepEqual(Array.from(batchIndices(1, big)), Array.from(new Rng(7, 'order', 0).permutation(100).subarray(10, 20)));
  const got = Array.from(batchIndices(1, small));
  assert.deepEqual(got, Array.from(new Rng(7, 'order', 0).permutation(40).subarray(10, 20)));
  for (const j of got) assert.ok(j >= 0 && j < 40, `index ${j} inside the split of 40`);
  assert.deepEqual(Array.from(batchIndices(1, big)), Array.from(new Rng(7, 'order', 0).permutation(100).subarray(10, 20)));
});

test('a step or a batch size that is not a whole number is refused, not rounded', () => {
  const order = { n: 100, batchSize: 10, seed: 0, shuffle: true };
  assert.throws(() => batchIndices(1.5, order), RangeError);
  assert.throws(() => batchIndices(-1, order), RangeError);
  assert.throws(() => itersPerEpoch(100, 2.5), DataError);
  assert.throws(() => batchIndices(0, { ...order, batchSize: 2.5 }), DataError);
});

test('without shuffle the order is 0..n-1 every epoch', () => {
  const order = { n: 25, batchSize: 8, seed: 0, shuffle: false };
  assert.deepEqual(Array.from(batchIndices(0, order)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(batchIndices(2, order)), [16, 17, 18, 19, 20, 21, 22, 23]);
  assert.deepEqual(Array.from(batchIndices(3, order)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.throws(() => batchIndices(0, { ...order, batchSize: 26 }), DataError);
});

test('gatherBatch copies the images and labels at the indices', () => {
  const split = {
    images: Uint8Array.from({ length: 5 * 2 * 1 * 3 }, (_, i) => i),
    labels: Int32Array.of(10, 11, 12, 13, 14),
    n: 5,
    height: 2,
    width: 1,
    channels: 3 as const,
  };
  const b = gatherBatch(split, Int32Array.of(4, 0, 4));
  assert.deepEqual([b.n, b.h, b.w, b.c], [3, 2, 1, 3]);
  assert.deepEqual(Array.from(b.data), [24, 25, 26, 27, 28, 29, 0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29]);
  assert.deepEqual(Array.from(b.labels!), [14, 10, 14]);
  b.data[0] = 99; // a copy, not a view
  assert.equal(split.images[24], 24);
  assert.throws(() => gatherBatch(split, [5]), RangeError);
});
