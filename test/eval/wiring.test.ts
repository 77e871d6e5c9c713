/**
 * What the evaluation hands its units: the kNN monitor's k and temperature reaching the kNN (the same
 * result as knnAccuracy on the same features, which k and t change), and the linear probe's training views
 * as main_lincls.py draws them (RandomResizedCrop at scale 0.08-1, a horizontal flip half the time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { buildConfig } from '../../src/config/load.ts';
import { augmentConfigOf, modelConfigOf } from '../../src/components/index.ts';
import { gatherBatch, loadDataset } from '../../src/data/index.ts';
import { extractFeatures, extractFeaturesPolled, knnMonitor, knnOfModel } from '../../src/eval/features.ts';
import { knnAccuracy } from '../../src/eval/knn.ts';
import { augmentedSource, probeTrainView } from '../../src/eval/offline.ts';
import { MoCoViT } from '../../src/model/moco.ts';

test("the kNN monitor's k and temperature reach the kNN: its result is knnAccuracy's on the same features, for settings that differ", async () => {
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=96', 'data.test_size=48', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'] });
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 96, testSize: 48, seed: 0, syntheticImageSize: 8 });
  const aug = augmentConfigOf(c, ds);
  const model = new MoCoViT(modelConfigOf(c), 5);
  const bank = extractFeatures(model, ds.train, 96, aug);
  const queries = extractFeatures(model, ds.test, 48, aug);
  try {
    const direct = async (k: number, t: number) => {
      const r = await knnAccuracy(bank, ds.train.labels.subarray(0, 96), queries, ds.test.labels.subarray(0, 48), { k, t, numClasses: ds.numClasses });
      return { top1: r.top1, top5: r.top5 };
    };
    const settings: [number, number][] = [
      [1, 0.07],
      [50, 1],
      [7, 0.5],
    ];
    const want = await Promise.all(settings.map(([k, t]) => direct(k, t)));
    // the settings give different answers here, so a k or t lost on the way would show
    assert.ok(new Set(want.map((w) => `${w.top1}/${w.top5}`)).size > 1, JSON.stringify(want));
    for (const [i, [k, t]] of settings.entries()) {
      assert.deepEqual(await knnOfModel(model, ds, aug, { k, t, bank: 96, queries: 48 }), want[i], `k ${k}, t ${t}`);
    }
  } finally {
    tf.dispose([bank, queries]);
    model.dispose();
  }
});

test('the kNN of a model on the first images of each split: bank and queries with their own labels; the monitor cuts its sizes to the splits', async () => {
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=96', 'data.test_size=48', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'eval.knn.k=5', 'eval.knn.bank_size=1000', 'eval.knn.query_size=20'] });
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 96, testSize: 48, seed: 0, syntheticImageSize: 8 });
  const aug = augmentConfigOf(c, ds);
  const model = new MoCoViT(modelConfigOf(c), 5);
  const bank = extractFeatures(model, ds.train, 96, aug);
  const queries = extractFeatures(model, ds.test, 48, aug);
  const firstQueries = tf.slice(queries, [0, 0], [20, -1]);
  const firstBank = tf.slice(bank, [0, 0], [40, -1]);
  try {
    const direct = async (b: tf.Tensor2D, q: tf.Tensor2D) => {
      const r = await knnAccuracy(b, ds.train.labels.subarray(0, b.shape[0]), q, ds.test.labels.subarray(0, q.shape[0]), { k: 5, t: 0.1, numClasses: ds.numClasses });
      return { top1: r.top1, top5: r.top5 };
    };
    // 40 of the bank, 20 queries: each split's labels cut to its own count
    assert.deepEqual(await knnOfModel(model, ds, aug, { k: 5, t: 0.1, bank: 40, queries: 20 }), await direct(firstBank, firstQueries));
    // bank_size 1000 past the 96 train images: the whole train split; query_size 20: the first 20
    assert.deepEqual(await knnMonitor(model, ds, c, aug), await direct(bank, firstQueries));
  } finally {
    tf.dispose([bank, queries, firstQueries, firstBank]);
    model.dispose();
  }
});

test('polled features give Node a turn before each check, which is told the images done so far', async () => {
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'] });
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 40, testSize: 8, seed: 0, syntheticImageSize: 8 });
  const aug = augmentConfigOf(c, ds);
  const model = new MoCoViT(modelConfigOf(c), 5);
  const before = tf.memory().numTensors;
  // a callback queued before the pass (a lock's heartbeat, a signal's handler) has run by the first check
  let turned = false;
  setImmediate(() => (turned = true));
  const seen: [number, boolean][] = [];
  const polled = await extractFeaturesPolled(model, ds.train, 40, aug, (done) => seen.push([done, turned]), 16);
  const plain = extractFeatures(model, ds.train, 40, aug);
  try {
    assert.deepEqual(seen, [[16, true], [32, true], [40, true]]);
    assert.deepEqual(polled.shape, [40, 8]);
    assert.deepEqual(polled.dataSync(), plain.dataSync());
  } finally {
    tf.dispose([polled, plain]);
  }
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test("the probe's augmented source: each batch's features are the encoder's on that epoch's and batch's views of the run's seed", async () => {
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'] });
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 12, testSize: 4, seed: 0, syntheticImageSize: 8 });
  const aug = augmentConfigOf(c, ds);
  const model = new MoCoViT(modelConfigOf(c), 5);
  const src = augmentedSource(model, ds.train, aug, 7);
  const idx = Int32Array.from([3, 0, 9, 4]);
  assert.equal(src.augmented, true);
  assert.equal(src.n, 12);
  assert.deepEqual(src.labels, ds.train.labels);
  try {
    const seen: Float32Array[] = [];
    for (const [epoch, b] of [[0, 0], [2, 0], [0, 1]] as const) {
      const f = src.features(idx, epoch, b);
      const x = probeTrainView(gatherBatch(ds.train, idx), aug, 7, epoch, b);
      const want = model.features(x);
      try {
        assert.deepEqual(f.dataSync(), want.dataSync(), `epoch ${epoch}, batch ${b}`);
        seen.push(f.dataSync() as Float32Array);
      } finally {
        tf.dispose([f, x, want]);
      }
    }
    // new crops in another epoch and in another batch
    assert.notDeepEqual(seen[1], seen[0]);
    assert.notDeepEqual(seen[2], seen[0]);
  } finally {
    model.dispose();
  }
});

test("the probe's training views: random crops of 8-100% of the image, flipped half the time", () => {
  // 400 copies of a 32 px image whose grey level rises left to right (constant down a column)
  const n = 400;
  const S = 32;
  const data = new Uint8Array(n * S * S * 3);
  for (let i = 0; i < n; i++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) data.fill(8 * x, ((i * S + y) * S + x) * 3, ((i * S + y) * S + x) * 3 + 3);
  const aug = { ...augmentConfigOf(buildConfig({ preset: 'smoke', sets: ['data.image_size=16'] }), { mean: [0, 0, 0], std: [1, 1, 1] }), imageSize: 16 };
  const views = probeTrainView({ data, n, h: S, w: S, c: 3 }, aug, 3, 0, 0);
  const v = views.arraySync() as number[][][][];
  views.dispose();
  let flipped = 0;
  let narrow = 0;
  for (const img of v) {
    const row = img[8]!.map((px) => px[0]!);
    if (row[15]! < row[0]!) flipped++;
    // a crop of the whole width spans the whole grey range (0-248); a crop of a few columns, a little of it
    if ((Math.max(...row) - Math.min(...row)) * 255 < 0.6 * 248) narrow++;
  }
  // binomial(400, 0.5): 200 ± 10 (one std); 0.4-0.6 is 4 std either way
  assert.ok(flipped > 0.4 * n && flipped < 0.6 * n, `flipped ${flipped} of ${n}`);
  assert.ok(narrow > 0.3 * n, `crops narrower than 60% of the image: ${narrow} of ${n}`);
});
