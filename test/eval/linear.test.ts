import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { Rng } from '../../src/engine/rng.ts';
import { cachedSource, crossEntropy, LinearHead, linearProbe, ProbeDiverged, type ProbeEpoch } from '../../src/eval/linear.ts';
import { probeLrAt } from '../../src/optim/schedule.ts';

/** n points of C classes in D dims: class c sits at `sep` along axis c, plus unit Gaussian noise. */
function blobs(n: number, C: number, D: number, sep: number, seed: number, randomLabels = false) {
  const rng = new Rng(seed, 'blobs');
  const x = new Float32Array(n * D);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = rng.int(C);
    y[i] = randomLabels ? rng.int(C) : c;
    for (let d = 0; d < D; d++) x[i * D + d] = rng.normal() + (d === c ? sep : 0);
  }
  return { x: tf.tensor2d(x, [n, D]), y };
}

test('separable features: the probe reaches ~100% top-1 and 100% top-5', async () => {
  const train = blobs(2000, 10, 16, 8, 1);
  const testSet = blobs(1000, 10, 16, 8, 2);
  const before = tf.memory().numTensors;
  const r = await linearProbe(cachedSource(train.x, train.y), { features: testSet.x, labels: testSet.y }, {
    numClasses: 10,
    epochs: 10,
    baseLr: 0.1,
    batchSize: 256,
    seed: 0,
  });
  assert.ok(r.top1 >= 99, `top-1 ${r.top1}`);
  assert.equal(r.top5, 100);
  assert.equal(r.n, 1000);
  assert.ok(r.losses[r.losses.length - 1]! < r.losses[0]!, `loss did not fall: ${r.losses.join(', ')}`);
  assert.equal(tf.memory().numTensors, before, 'the probe leaked tensors');
  for (const t of [train.x, testSet.x]) t.dispose();
});

test('a probe whose lr is too large fails as diverged (its head would score 0%, below chance), leaving no tensor', async () => {
  const train = blobs(200, 4, 8, 3, 7);
  const testSet = blobs(50, 4, 8, 3, 8);
  const before = tf.memory().numTensors;
  for (const [epochs, what] of [[3, /loss NaN in epoch 2 at lr 7\.50e\+299$/], [1, /weights not finite after the last update in epoch 1 at lr 1\.00e\+300$/]] as const) {
    // one batch an epoch: the loss of epoch 1 is taken before its update, finite (lr: cosine over the epochs)
    await assert.rejects(
      linearProbe(cachedSource(train.x, train.y), { features: testSet.x, labels: testSet.y }, { numClasses: 4, epochs, baseLr: 1e300, batchSize: 256, seed: 0 }),
      (e: unknown) => e instanceof ProbeDiverged && e.message.startsWith('the linear probe diverged: ') && what.test(e.message),
    );
    assert.equal(tf.memory().numTensors, before);
  }
  for (const t of [train.x, testSet.x]) t.dispose();
});

test('a probe whose loss goes non-finite stops at that batch, not at the end of its epoch', async () => {
  const train = blobs(1000, 4, 8, 3, 7);
  const testSet = blobs(50, 4, 8, 3, 8);
  const before = tf.memory().numTensors;
  const src = cachedSource(train.x, train.y);
  const batches: number[] = [];
  const counted = { ...src, features: (idx: Int32Array, epoch: number, b: number) => (batches.push(b), src.features(idx, epoch, b)) };
  // 10 batches an epoch: the first batch's loss is taken before any update (finite), its update at lr 1e300
  // makes the head non-finite, so the second batch's loss is the first non-finite one
  await assert.rejects(
    linearProbe(counted, { features: testSet.x, labels: testSet.y }, { numClasses: 4, epochs: 2, baseLr: 1e300, batchSize: 100, seed: 0 }),
    (e: unknown) => e instanceof ProbeDiverged && /loss (NaN|-?Infinity) in epoch 1 at lr /.test(e.message),
  );
  assert.deepEqual(batches, [0, 1], 'features asked for after the loss went non-finite');
  assert.equal(tf.memory().numTensors, before);
  for (const t of [train.x, testSet.x]) t.dispose();
});

test('the probe reads back once a training batch (the loss and the hits together)', async () => {
  const train = blobs(600, 4, 8, 3, 5);
  const testSet = blobs(100, 4, 8, 3, 6);
  const proto = tf.Tensor.prototype as unknown as { data: (...a: unknown[]) => Promise<unknown> };
  const read = proto.data;
  let reads = 0;
  proto.data = function (this: tf.Tensor, ...a: unknown[]) {
    reads++;
    return read.apply(this, a);
  };
  try {
    const r = await linearProbe(cachedSource(train.x, train.y), { features: testSet.x, labels: testSet.y }, { numClasses: 4, epochs: 3, baseLr: 0.1, batchSize: 128, seed: 0 });
    assert.equal(r.n, 100);
  } finally {
    proto.data = read;
  }
  // 3 epochs of 5 batches (600 = 4 x 128 + 88), one for the head's weights being finite after the last
  // update, then one for the evaluation (1 batch of 100)
  const batches = 3 * Math.ceil(600 / 128);
  assert.equal(reads, batches + 2, `${reads} read-backs for ${batches} batches`);
  for (const t of [train.x, testSet.x]) t.dispose();
});

test('the probe gives Node a turn before each check (a signal or a lock\'s heartbeat is seen between batches)', async () => {
  const train = blobs(100, 3, 4, 4, 5);
  let turns = 0;
  const tick = () => {
    turns++;
    if (turns < 1000) setImmediate(tick);
  };
  setImmediate(tick);
  const seen: number[] = [];
  const r = await linearProbe(cachedSource(train.x, train.y), { features: train.x, labels: train.y }, { numClasses: 3, epochs: 1, baseLr: 0.1, batchSize: 25, seed: 0, check: () => seen.push(turns) });
  train.x.dispose();
  assert.equal(r.n, 100);
  // four batches, four checks, each after a turn of the event loop the one before did not have
  assert.equal(seen.length, 4);
  assert.ok(seen[0]! >= 1 && seen.every((t, i) => i === 0 || t > seen[i - 1]!), `turns seen at the checks: ${seen}`);
});

test('random labels: the probe is at chance on held-out data', async () => {
  const train = blobs(2000, 10, 16, 0, 3, true);
  const testSet = blobs(2000, 10, 16, 0, 4, true);
  const r = await linearProbe(cachedSource(train.x, train.y), { features: testSet.x, labels: testSet.y }, {
    numClasses: 10,
    epochs: 5,
    baseLr: 0.1,
    batchSize: 256,
    seed: 0,
  });
  // chance is 10% (50% top-5); 2000 test points: std of the estimate ~0.7 points
  assert.ok(r.top1 > 6 && r.top1 < 14, `top-1 ${r.top1}`);
  assert.ok(r.top5 > 44 && r.top5 < 56, `top-5 ${r.top5}`);
  for (const t of [train.x, testSet.x]) t.dispose();
});

test('the lr follows main_lincls: base_lr x batch / 256, per-epoch cosine, no warmup', async () => {
  const train = blobs(300, 3, 4, 4, 5);
  const seen: ProbeEpoch[] = [];
  const r = await linearProbe(cachedSource(train.x, train.y), { features: train.x, labels: train.y }, {
    numClasses: 3,
    epochs: 4,
    baseLr: 0.5,
    batchSize: 128,
    seed: 0,
    onEpoch: (e) => seen.push(e),
  });
  assert.equal(r.lr, 0.25);
  assert.deepEqual(seen.map((e) => e.lr), [0, 1, 2, 3].map((e) => probeLrAt(e, { lr: 0.25, epochs: 4 })));
  assert.equal(seen[0]!.lr, 0.25);
  train.x.dispose();
});

test('a probe of no epochs, a batch under one image, or labels not one to a feature row is refused before it trains', async () => {
  const train = blobs(20, 3, 4, 4, 5);
  const before = tf.memory().numTensors;
  for (const [epochs, batchSize] of [[0, 8], [2, 0.5]]) {
    await assert.rejects(
      linearProbe(cachedSource(train.x, train.y), { features: train.x, labels: train.y }, { numClasses: 3, epochs, baseLr: 0.1, batchSize, seed: 0 }),
      (e: unknown) => e instanceof RangeError && e.message === `linear probe: epochs and batch size must be >= 1, got ${epochs}, ${batchSize}`,
    );
  }
  for (const n of [19, 21]) {
    assert.throws(() => cachedSource(train.x, Int32Array.from({ length: n }, (_, i) => train.y[i % 20]!)), (e: unknown) => e instanceof Error && e.message === `linear probe: ${n} labels for 20 feature rows`);
  }
  assert.equal(tf.memory().numTensors, before);
  train.x.dispose();
});

test('the head starts as N(0, 0.01²) weights and zero bias; cross-entropy matches log-softmax', () => {
  const h = new LinearHead(64, 50, 0);
  const w = Array.from(h.weight.dataSync() as Float32Array);
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(std - 0.01) < 0.0005, `std ${std}`);
  assert.deepEqual(Array.from(h.bias.dataSync()), new Array(50).fill(0));
  h.dispose();
  // logits [[0, ln 3]]: p(label 1) = 3/4
  const l = tf.tensor2d([[0, Math.log(3)]]);
  const ce = crossEntropy(l, tf.tensor1d([1], 'int32'));
  assert.ok(Math.abs(ce.dataSync()[0]! - -Math.log(0.75)) < 1e-6);
  tf.dispose([l, ce]);
});
