import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { buildConfig } from '../../src/config/load.ts';
import { evalView } from '../../src/data/augment.ts';
import { gatherBatch, itersPerEpoch } from '../../src/data/sampler.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { cachedSource, linearProbe } from '../../src/eval/linear.ts';
import { augmentedSource } from '../../src/eval/offline.ts';
import { computeBaselines, pixelFeatures } from '../../src/train/baselines.ts';
import { augmentConfigOf, loadRunData, modelConfigOf } from '../../src/components/index.ts';
import { extractFeatures, knnMonitor } from '../../src/eval/features.ts';
import { knnEverySteps } from '../../src/train/loop.ts';

const config = buildConfig({
  preset: 'smoke',
  sets: [
    'model.arch=vit-test',
    'data.image_size=8',
    'data.train_size=96',
    'data.test_size=48',
    'moco.proj_hidden=16',
    'moco.proj_dim=8',
    'moco.pred_hidden=16',
    'eval.linear.epochs=2',
    'eval.linear.batch_size=32',
    'eval.linear.train_views=cached',
    'seed=3',
  ],
});

test('kNN cadence in epochs: the same share of an epoch for every batch size, rounded to whole steps', () => {
  const c = buildConfig({ preset: 'cpu', sets: ['train.knn_every=50', 'train.knn_every_epochs=0.05'] });
  // 60000 images: batch 64 -> 937 steps an epoch, 46.85 -> 47; batch 384 -> 156, 7.8 -> 8
  assert.equal(knnEverySteps(c, itersPerEpoch(60000, 64)), 47);
  assert.equal(knnEverySteps(c, itersPerEpoch(60000, 384)), 8);
  // at least one step, however small the share
  assert.equal(knnEverySteps(c, 3), 1);
  const steps = buildConfig({ preset: 'cpu', sets: ['train.knn_every=50', 'train.knn_every_epochs=null'] });
  assert.equal(knnEverySteps(steps, 937), 50);
});

test('pixel features are the normalised centre view, flattened in NCHW order', async () => {
  const ds = await loadRunData(config);
  const aug = augmentConfigOf(config, ds);
  const got = pixelFeatures(ds.train, 10, aug, 4);
  const want = evalView(gatherBatch(ds.train, Int32Array.from({ length: 10 }, (_, i) => i)), aug);
  assert.deepEqual(got.shape, [10, 3 * 8 * 8]);
  assert.deepEqual(Array.from(await got.data()), Array.from(await want.data()));
  tf.dispose([got, want]);
});

test('baselines: the untrained encoder of the run seed, probed like a run; the pixels probed the same way; no tensor left', async () => {
  const ds = await loadRunData(config);
  const before = tf.memory().numTensors;
  const b = await computeBaselines(config, ds);
  assert.equal(tf.memory().numTensors, before);
  // independently: a fresh encoder of seed 3, the kNN monitor, and a probe on its cached features
  const aug = augmentConfigOf(config, ds);
  const model = new MoCoViT(modelConfigOf(config), 3);
  const knn = await knnMonitor(model, ds, config, aug);
  const tr = extractFeatures(model, ds.train, ds.train.n, aug);
  const te = extractFeatures(model, ds.test, ds.test.n, aug);
  const opts = { numClasses: ds.numClasses, epochs: 2, baseLr: config.eval.linear.base_lr, batchSize: 32, seed: 3 };
  const lin = await linearProbe(cachedSource(tr, ds.train.labels), { features: te, labels: ds.test.labels }, opts);
  const ptr = pixelFeatures(ds.train, ds.train.n, aug);
  const pte = pixelFeatures(ds.test, ds.test.n, aug);
  const pix = await linearProbe(cachedSource(ptr, ds.train.labels), { features: pte, labels: ds.test.labels }, opts);
  tf.dispose([tr, te, ptr, pte]);
  model.dispose();
  assert.equal(b.random_init.knn_top1, knn.top1);
  assert.equal(b.random_init.linear_top1, lin.top1);
  assert.equal(b.pixels.linear_top1, pix.top1);
  assert.equal(b.pixels.dim, 192);
  assert.equal(b.seed, 3);
  assert.deepEqual(b.linear, { epochs: 2, base_lr: 3, batch_size: 32, train_views: 'centre view, features cached' });
});

test("baselines: a config whose probe trains on augmented views probes the untrained encoder on them too (the pixels stay on the centre view)", async () => {
  const aug8 = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=96', 'data.test_size=48', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'eval.linear.epochs=2', 'eval.linear.batch_size=32', 'eval.linear.train_views=augmented', 'seed=3'] });
  const ds = await loadRunData(aug8);
  const before = tf.memory().numTensors;
  const b = await computeBaselines(aug8, ds);
  assert.equal(tf.memory().numTensors, before);
  const aug = augmentConfigOf(aug8, ds);
  const model = new MoCoViT(modelConfigOf(aug8), 3);
  const te = extractFeatures(model, ds.test, ds.test.n, aug);
  const opts = { numClasses: ds.numClasses, epochs: 2, baseLr: aug8.eval.linear.base_lr, batchSize: 32, seed: 3 };
  const lin = await linearProbe(augmentedSource(model, ds.train, aug, 3), { features: te, labels: ds.test.labels }, opts);
  tf.dispose(te);
  model.dispose();
  assert.equal(b.random_init.linear_top1, lin.top1);
  assert.deepEqual(b.linear, { epochs: 2, base_lr: 3, batch_size: 32, train_views: 'random-resized-crop + flip, every epoch' });
  const cached = await computeBaselines(config, ds);
  assert.equal(b.pixels.linear_top1, cached.pixels.linear_top1, 'the pixel classifier is the same');
});

test('baselines: every feature pass gives Node a turn after each batch and calls check there (a lock heartbeat does not starve)', async () => {
  const ds = await loadRunData(config);
  let inPasses = 0;
  let ticks = 0;
  const timer = setInterval(() => (ticks += 1), 0);
  try {
    await computeBaselines(config, ds, () => {
      if (/at extractFeaturesPolled/.test(new Error().stack ?? '')) inPasses += 1;
    });
  } finally {
    clearInterval(timer);
  }
  // one batch each at 96 train / 48 test images: the kNN bank and queries, then the probe's test and train features
  assert.equal(inPasses, 4);
  assert.ok(ticks > 0);
});

test('baselines: a probe batch larger than the train split is probed, and recorded, as the whole split (as a run\'s probe)', async () => {
  const big = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=96', 'data.test_size=48', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'eval.linear.epochs=1', 'eval.linear.batch_size=256', 'eval.linear.train_views=cached', 'seed=3'] });
  const ds = await loadRunData(big);
  const b = await computeBaselines(big, ds);
  assert.equal(b.linear.batch_size, 96);
  const aug = augmentConfigOf(big, ds);
  const ptr = pixelFeatures(ds.train, ds.train.n, aug);
  const pte = pixelFeatures(ds.test, ds.test.n, aug);
  const opts = { numClasses: ds.numClasses, epochs: 1, baseLr: big.eval.linear.base_lr, batchSize: 96, seed: 3 };
  const pix = await linearProbe(cachedSource(ptr, ds.train.labels), { features: pte, labels: ds.test.labels }, opts);
  tf.dispose([ptr, pte]);
  assert.deepEqual([b.pixels.linear_top1, b.pixels.linear_top5], [pix.top1, pix.top5]);
});
