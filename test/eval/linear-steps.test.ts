/**
 * The linear probe's arithmetic against float64 worked out here (main_lincls.py: a linear head, softmax
 * cross-entropy, SGD with momentum 0.9, lr = base x batch / 256): the gradients of one batch, the weights
 * after two SGD steps, a new order of the images each epoch, the train accuracy as a percentage, and test
 * scores read in slices. test/eval/linear.test.ts checks outcomes (separable data learned, noise at chance).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { cachedSource, evaluateProbe, headGradients, LinearHead, trainLinearProbe, type ProbeTrainSource } from '../../src/eval/linear.ts';

/** Logits, softmax and the mean cross-entropy's gradients in float64: dW = xᵀ(p - y)/B, db = Σ(p - y)/B. */
function reference(x: number[][], W: number[][], b: number[], y: number[]): { loss: number; dW: number[][]; db: number[] } {
  const B = x.length;
  const C = b.length;
  const D = W.length;
  const dW = Array.from({ length: D }, () => new Array<number>(C).fill(0));
  const db = new Array<number>(C).fill(0);
  let loss = 0;
  for (let i = 0; i < B; i++) {
    const z = b.map((bc, c) => bc + x[i]!.reduce((a, xd, d) => a + xd * W[d]![c]!, 0));
    const mx = Math.max(...z);
    const ez = z.map((v) => Math.exp(v - mx));
    const sum = ez.reduce((a, v) => a + v, 0);
    loss += Math.log(sum) + mx - z[y[i]!]!;
    for (let c = 0; c < C; c++) {
      const g = (ez[c]! / sum - (c === y[i] ? 1 : 0)) / B;
      db[c]! += g;
      for (let d = 0; d < D; d++) dW[d]![c]! += x[i]![d]! * g;
    }
  }
  return { loss: loss / B, dW, db };
}

const rows = (t: tf.Tensor2D) => t.arraySync();
const near = (a: number[][] | number[], b: number[][] | number[], tol: number, what: string) => {
  const fa = (a as unknown[]).flat() as number[];
  const fb = (b as unknown[]).flat() as number[];
  assert.equal(fa.length, fb.length, what);
  for (let i = 0; i < fa.length; i++) assert.ok(Math.abs(fa[i]! - fb[i]!) <= tol, `${what}[${i}]: ${fa[i]} vs ${fb[i]}`);
};

/** `src` whose features() also records the images of each epoch, in the order asked for. */
function recording(src: ProbeTrainSource, orders: number[][]): ProbeTrainSource {
  return {
    ...src,
    features: (idx, epoch, batch) => {
      if (batch === 0) orders[epoch] = [];
      orders[epoch]!.push(...idx);
      return src.features(idx, epoch, batch);
    },
  };
}

const X = [
  [0.5, -1.2, 2.0],
  [1.5, 0.3, -0.7],
  [-0.4, 0.8, 0.1],
  [2.2, -0.5, -1.1],
];
const Y = [2, 0, 1, 0];

test("one batch's loss and gradients are the mean cross-entropy's, bias included", () => {
  const head = new LinearHead(3, 3, 7);
  head.bias.assign(tf.tensor1d([0.3, -0.2, 0.1]));
  const W = rows(head.weight as unknown as tf.Tensor2D);
  const want = reference(X, W, [0.3, -0.2, 0.1], Y);
  const x = tf.tensor2d(X);
  const y = tf.tensor1d(Y, 'int32');
  const g = headGradients(head, x, y);
  try {
    assert.ok(Math.abs(g.loss.dataSync()[0]! - want.loss) < 1e-6);
    near(rows(g.dW), want.dW, 1e-6, 'dW');
    near(Array.from(g.db.dataSync()), want.db, 1e-6, 'db');
  } finally {
    tf.dispose([x, y, g.loss, g.hits, g.dW, g.db]);
    head.dispose();
  }
});

test('an epoch of two batches is two SGD steps with momentum 0.9 at base x batch / 256, the bias trained too; the order is new each epoch', async () => {
  const seed = 11;
  const init = new LinearHead(3, 3, seed);
  const W0 = rows(init.weight as unknown as tf.Tensor2D);
  init.dispose();
  // the batches as the probe takes them, and each epoch's order
  const orders: number[][] = [];
  const seen = recording(cachedSource(tf.tensor2d(X), Int32Array.from(Y)), orders);
  // base lr 256 at batch 2: lr 2; one epoch (the cosine's first epoch is at the peak)
  const { head, lr } = await trainLinearProbe(seen, 3, { numClasses: 3, epochs: 1, baseLr: 256, batchSize: 2, seed });
  try {
    assert.equal(lr, 2);
    const [b1, b2] = [orders[0]!.slice(0, 2), orders[0]!.slice(2)];
    const xs = (ix: number[]) => ix.map((i) => X[i]!);
    const ys = (ix: number[]) => ix.map((i) => Y[i]!);
    // step 1: buf = g1, p1 = p0 - lr g1 (the bias starts at 0); step 2: buf = 0.9 g1 + g2, p2 = p1 - lr buf
    const g1 = reference(xs(b1), W0, [0, 0, 0], ys(b1));
    const W1 = W0.map((r, d) => r.map((w, c) => w - lr * g1.dW[d]![c]!));
    const bias1 = g1.db.map((g) => -lr * g);
    const g2 = reference(xs(b2), W1, bias1, ys(b2));
    const W2 = W1.map((r, d) => r.map((w, c) => w - lr * (0.9 * g1.dW[d]![c]! + g2.dW[d]![c]!)));
    const bias2 = bias1.map((v, c) => v - lr * (0.9 * g1.db[c]! + g2.db[c]!));
    near(rows(head.weight as unknown as tf.Tensor2D), W2, 1e-5, 'weight');
    near(Array.from(head.bias.dataSync()), bias2, 1e-5, 'bias');
  } finally {
    head.dispose();
  }
  // twelve images over three epochs: each epoch a permutation, not all the same
  const many = cachedSource(tf.tensor2d(Array.from({ length: 12 }, (_, i) => [i % 3, (i * 7) % 5, 1])), Int32Array.from({ length: 12 }, (_, i) => i % 3));
  orders.length = 0;
  const r = await trainLinearProbe(recording(many, orders), 3, { numClasses: 3, epochs: 3, baseLr: 1, batchSize: 4, seed });
  r.head.dispose();
  for (const o of orders) assert.deepEqual([...o].sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => i));
  assert.ok(orders.some((o) => o.join() !== orders[0]!.join()), `one order for every epoch: ${orders[0]}`);
});

test("an epoch's loss and train accuracy are over all its images, a short last batch weighed by its size", async () => {
  // five images in batches of 2, 2 and 1; lr 0 keeps the initial head, so every batch sees the same weights
  const x5 = [...X, [1.1, 0.9, -2.0]].map((r) => r.map((v) => 100 * v));
  const y5 = [...Y, 1];
  const seed = 10;
  const init = new LinearHead(3, 3, seed);
  const W0 = rows(init.weight as unknown as tf.Tensor2D);
  init.dispose();
  const want = reference(x5, W0, [0, 0, 0], y5);
  const hits = x5.filter((x, i) => {
    const z = [0, 1, 2].map((c) => x.reduce((a, xd, d) => a + xd * W0[d]![c]!, 0));
    return z.indexOf(Math.max(...z)) === y5[i];
  }).length;
  assert.ok(hits > 0 && hits < 5, `${hits} hits: a count and a percentage must differ`);
  const feats = tf.tensor2d(x5);
  const seen: { loss: number; trainTop1: number }[] = [];
  const r = await trainLinearProbe(cachedSource(feats, Int32Array.from(y5)), 3, { numClasses: 3, epochs: 1, baseLr: 0, batchSize: 2, seed, onEpoch: (e) => seen.push(e) });
  r.head.dispose();
  feats.dispose();
  assert.ok(Math.abs(r.losses[0]! - want.loss) <= 1e-4 * want.loss, `loss ${r.losses[0]} vs ${want.loss}`);
  assert.equal(r.trainTop1[0], (100 * hits) / 5);
  assert.deepEqual([seen[0]!.loss, seen[0]!.trainTop1], [r.losses[0], r.trainTop1[0]]);
});

test("the probe's train accuracy is a percentage of the images", async () => {
  // 300 images of 3 classes, one feature each at 10 x its class: learned in a few epochs
  const n = 300;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const feats = tf.tensor2d(Array.from(labels, (c) => [c === 0 ? 10 : 0, c === 1 ? 10 : 0, c === 2 ? 10 : 0]));
  const r = await trainLinearProbe(cachedSource(feats, labels), 3, { numClasses: 3, epochs: 5, baseLr: 1, batchSize: 30, seed: 1 });
  r.head.dispose();
  feats.dispose();
  assert.ok(r.trainTop1.every((v) => v >= 0 && v <= 100), String(r.trainTop1));
  assert.equal(r.trainTop1.at(-1), 100);
});

test('test scores read in slices land on their own rows: the same top-1 for any slice size', async () => {
  // identity head: each row's class is its largest feature; rows 0-4 of classes 2, 0, 1, 1, 2
  const head = new LinearHead(3, 3, 0);
  head.weight.assign(tf.eye(3));
  head.bias.assign(tf.zeros([3]));
  const feats = tf.tensor2d([
    [0, 1, 5],
    [4, 1, 0],
    [0, 3, 1],
    [1, 2, 0],
    [0, 0, 9],
  ]);
  const labels = Int32Array.from([2, 0, 1, 1, 2]);
  try {
    for (const batch of [1, 2, 3, 4096]) assert.equal((await evaluateProbe(head, feats, labels, 3, batch)).top1, 100, `batch ${batch}`);
    const wrong = Int32Array.from([2, 0, 1, 0, 2]);
    for (const batch of [2, 4096]) assert.equal((await evaluateProbe(head, feats, wrong, 3, batch)).top1, 80, `batch ${batch}`);
  } finally {
    head.dispose();
    feats.dispose();
  }
});
