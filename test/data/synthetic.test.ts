import { tf } from '../helpers/tf.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataError, loadDataset, type DataSpec } from '../../src/data/index.ts';
import { SYNTHETIC_CLASSES, channelStats, makeSyntheticSplit } from '../../src/data/synthetic.ts';
import type { ImageSplit } from '../../src/data/types.ts';

void tf;

const spec = (extra: Partial<DataSpec> = {}): DataSpec => ({ name: 'synthetic', path: null, trainSize: null, testSize: null, seed: 0, ...extra });

test('defaults: 5000/1000 RGB images of 16x16, 10 balanced classes, built in', async () => {
  const ds = await loadDataset(spec());
  assert.equal(ds.name, 'synthetic');
  assert.equal(ds.source, 'built-in');
  assert.equal(ds.numClasses, 10);
  assert.deepEqual(ds.classNames, SYNTHETIC_CLASSES);
  for (const [split, n] of [[ds.train, 5000], [ds.test, 1000]] as const) {
    assert.deepEqual([split.n, split.height, split.width, split.channels], [n, 16, 16, 3]);
    assert.equal(split.images.length, n * 16 * 16 * 3);
    assert.equal(split.labels.length, n);
    const counts = new Array(10).fill(0);
    for (const y of split.labels) counts[y]++;
    assert.deepEqual(counts, new Array(10).fill(n / 10));
  }
});

test('deterministic in (seed, split, index); train differs from test; the seed changes the images', () => {
  const a = makeSyntheticSplit(3, 'train', 40, 16, 10);
  const b = makeSyntheticSplit(3, 'train', 40, 16, 10);
  assert.deepEqual(a.images, b.images);
  // image i does not depend on how many images are made
  const longer = makeSyntheticSplit(3, 'train', 60, 16, 10);
  assert.deepEqual(longer.images.subarray(0, a.images.length), a.images);
  const test = makeSyntheticSplit(3, 'test', 40, 16, 10);
  const other = makeSyntheticSplit(4, 'train', 40, 16, 10);
  const same = (x: ImageSplit, y: ImageSplit, i: number) => x.images.subarray(i * 768, (i + 1) * 768).every((v, k) => v === y.images[i * 768 + k]);
  for (let i = 0; i < 40; i++) {
    assert.ok(!same(a, test, i), `train and test image ${i} are equal`);
    assert.ok(!same(a, other, i), `seeds 3 and 4 give the same image ${i}`);
  }
});

test('sizes, class count and image size are configurable; bad values are DataErrors', async () => {
  const ds = await loadDataset(spec({ trainSize: 30, testSize: 7, numClasses: 3, syntheticImageSize: 32 }));
  assert.deepEqual([ds.train.n, ds.test.n, ds.train.height, ds.numClasses], [30, 7, 32, 3]);
  assert.deepEqual(ds.classNames, SYNTHETIC_CLASSES.slice(0, 3));
  assert.ok(ds.train.labels.every((y) => y < 3));
  await assert.rejects(loadDataset(spec({ numClasses: 11 })), (e: Error) => e instanceof DataError && e.message === 'data.num_classes: the synthetic dataset has 2..10 classes, got 11');
  await assert.rejects(loadDataset(spec({ trainSize: 0 })), DataError);
  await assert.rejects(loadDataset(spec({ numClasses: 1 })), (e: Error) => e instanceof DataError && e.message === 'data.num_classes: the synthetic dataset has 2..10 classes, got 1');
  await assert.rejects(loadDataset(spec({ testSize: 2.5 })), (e: Error) => e instanceof DataError && e.message === 'data.test_size: the synthetic test split must hold a positive whole number of images, got 2.5');
  // the dataset's splits are the seed's splits, each of its own stream
  assert.deepEqual(ds.train.images, makeSyntheticSplit(0, 'train', 30, 32, 3).images);
  assert.deepEqual(ds.test.images, makeSyntheticSplit(0, 'test', 7, 32, 3).images);
  // more images than one array holds: named before anything is allocated (16 px x 3 bytes: 5592405 fit in 4 GiB)
  await assert.rejects(
    loadDataset(spec({ testSize: 5592406 })),
    (e: Error) => e instanceof DataError && e.message === 'data.test_size: at most 5592405 synthetic images of 16 px fit in memory at once (4 GiB), got 5592406',
  );
  await assert.rejects(loadDataset(spec({ syntheticImageSize: 2 })), DataError);
});

test('mean/std are the per-channel statistics of the train split', async () => {
  const ds = await loadDataset(spec({ trainSize: 200, testSize: 10 }));
  const px = ds.train.images;
  for (let c = 0; c < 3; c++) {
    let s = 0;
    let s2 = 0;
    for (let i = c; i < px.length; i += 3) {
      s += px[i]! / 255;
      s2 += (px[i]! / 255) ** 2;
    }
    const n = px.length / 3;
    assert.ok(Math.abs(ds.mean[c]! - s / n) < 1e-9);
    assert.ok(Math.abs(ds.std[c]! - Math.sqrt(s2 / n - (s / n) ** 2)) < 1e-9);
  }
  // random colours: the statistics are broad, not a constant image
  assert.ok(ds.std.every((s) => s > 0.2));
  // a gray split replicates its one channel
  const gray: ImageSplit = { images: Uint8Array.of(0, 255), labels: Int32Array.of(0, 0), n: 2, height: 1, width: 1, channels: 1 };
  assert.deepEqual(channelStats(gray), { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
});

/** Nearest class mean of the given per-image features; accuracy on the test split. */
function nearestMeanAccuracy(train: ImageSplit, test: ImageSplit, k: number, feat: (s: ImageSplit, i: number) => number[]): number {
  const dim = feat(train, 0).length;
  const mean = Array.from({ length: k }, () => new Float64Array(dim));
  const count = new Array(k).fill(0);
  for (let i = 0; i < train.n; i++) {
    const f = feat(train, i);
    const y = train.labels[i]!;
    count[y]++;
    f.forEach((v, d) => (mean[y]![d]! += v));
  }
  mean.forEach((m, y) => m.forEach((_, d) => (m[d]! /= count[y])));
  let right = 0;
  for (let i = 0; i < test.n; i++) {
    const f = feat(test, i);
    let best = 0;
    let bestD = Infinity;
    mean.forEach((m, y) => {
      const dist = f.reduce((s, v, d) => s + (v - m[d]!) ** 2, 0);
      if (dist < bestD) [bestD, best] = [dist, y];
    });
    right += +(best === test.labels[i]);
  }
  return right / test.n;
}

test('classes are not separable by mean colour but are by structure', async () => {
  const ds = await loadDataset(spec({ trainSize: 2000, testSize: 500 }));
  const P = 16 * 16;
  const colour = (s: ImageSplit, i: number) =>
    [0, 1, 2].map((c) => {
      let t = 0;
      for (let p = 0; p < P; p++) t += s.images[(i * P + p) * 3 + c]!;
      return t / P / 255;
    });
  const accColour = nearestMeanAccuracy(ds.train, ds.test, 10, colour);
  assert.ok(accColour < 0.3, `mean colour gives ${accColour}`);
  // a colour-free structural feature: mean |gradient| of the luminance along 4 directions, and its spread
  const structure = (s: ImageSplit, i: number) => {
    const lum = (y: number, x: number) => {
      const o = (i * P + y * 16 + x) * 3;
      return (s.images[o]! + s.images[o + 1]! + s.images[o + 2]!) / 765;
    };
    const g = [0, 0, 0, 0];
    let lo = 1;
    let hi = 0;
    for (let y = 1; y < 15; y++) {
      for (let x = 1; x < 15; x++) {
        const v = lum(y, x);
        g[0] += Math.abs(lum(y, x + 1) - v);
        g[1] += Math.abs(lum(y + 1, x) - v);
        g[2] += Math.abs(lum(y + 1, x + 1) - v);
        g[3] += Math.abs(lum(y + 1, x - 1) - v);
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    const tot = g.reduce((a, b) => a + b) + 1e-9;
    return [...g.map((v) => (4 * v) / tot), (tot / 196 / (hi - lo + 1e-3)) * 4];
  };
  const accStructure = nearestMeanAccuracy(ds.train, ds.test, 10, structure);
  assert.ok(accStructure > 0.35 && accStructure > accColour + 0.15, `structure ${accStructure}, colour ${accColour}`);
});
