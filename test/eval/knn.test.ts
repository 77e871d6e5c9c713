import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { knnAccuracy, knnScores, topkAccuracy } from '../../src/eval/knn.ts';
import { Rng } from '../../src/engine/rng.ts';

/** Plain float64 reference: cosine similarity, k largest, exp(sim/t) votes (scaled per query, see below). */
function reference(bank: number[][], labels: number[], q: number[][], k: number, t: number, C: number): number[][] {
  const norm = (v: number[]) => {
    const n = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
    return v.map((x) => x / n);
  };
  const B = bank.map(norm);
  return q.map((qq) => {
    const qn = norm(qq);
    const sims = B.map((b, i) => ({ s: b.reduce((a, x, j) => a + x * qn[j]!, 0), i }));
    sims.sort((a, b) => b.s - a.s);
    const out = new Array(C).fill(0);
    for (const { s, i } of sims.slice(0, k)) out[labels[i]!] += Math.exp(s / t);
    // the votes as moco3 keeps them: divided by the nearest neighbour's exp(sim/t), which leaves the ranking
    return out.map((x) => x / Math.exp(sims[0]!.s / t));
  });
}

test('kNN votes equal a float64 reference', async () => {
  const rng = new Rng(1, 'knn-test');
  const bank = Array.from({ length: 40 }, () => Array.from({ length: 6 }, () => rng.normal()));
  const labels = bank.map((_, i) => i % 3);
  const q = Array.from({ length: 7 }, () => Array.from({ length: 6 }, () => rng.normal()));
  const want = reference(bank, labels, q, 5, 0.1, 3);
  const got = await knnScores(tf.tensor2d(bank), Int32Array.from(labels), tf.tensor2d(q), { k: 5, t: 0.1, numClasses: 3, chunk: 3 });
  for (let i = 0; i < 7; i++) for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(got[i * 3 + c]! - want[i]![c]!) <= 1e-4 * Math.max(1, want[i]![c]!), `query ${i} class ${c}`);
  }
});

test('a bank label past the classes is refused, not a vote in the next query\'s row', async () => {
  const before = tf.memory().numTensors;
  const bank = tf.tensor2d([[1, 0], [0, 1]]);
  const q = tf.tensor2d([[1, 0.1], [0.1, 1]]);
  for (const labels of [[0, 2], [-1, 1]]) {
    await assert.rejects(knnScores(bank, Int32Array.from(labels), q, { k: 2, t: 0.1, numClasses: 2 }), new RegExp(`^Error: kNN: bank label ${labels.find((y) => y < 0 || y > 1)} at \\d is not a class of 2 \\(0-1\\)$`));
  }
  const ok = await knnScores(bank, Int32Array.from([0, 1]), q, { k: 2, t: 0.1, numClasses: 2 });
  assert.ok(ok[0]! > ok[1]! && ok[3]! > ok[2]!);
  tf.dispose([bank, q]);
  assert.equal(tf.memory().numTensors, before);
});

test('one bank label a bank feature: too many or too few are refused, not votes read past the labels', async () => {
  const before = tf.memory().numTensors;
  const bank = tf.tensor2d([[1, 0], [0, 1]]);
  const q = tf.tensor2d([[1, 0.1]]);
  for (const labels of [[0], [0, 1, 1]]) {
    await assert.rejects(knnScores(bank, Int32Array.from(labels), q, { k: 2, t: 0.1, numClasses: 2 }), new RegExp(`^Error: kNN: ${labels.length} bank labels for 2 bank features$`));
  }
  tf.dispose([bank, q]);
  assert.equal(tf.memory().numTensors, before);
});

test('a feature row of zeros (a dead encoder\'s) has similarity 0 to everything, not NaN', async () => {
  // the zero query: every bank image at similarity 0, each votes exp(0) = 1; the zero bank row: similarity 0 to the query
  const bank = tf.tensor2d([[1, 0], [0, 0], [0, 1]]);
  const q = tf.tensor2d([[0, 0], [1, 0.5]]);
  const got = await knnScores(bank, Int32Array.from([0, 1, 2]), q, { k: 3, t: 0.1, numClasses: 3 });
  // query 1: cosines 2/sqrt(5), 0 and 1/sqrt(5), votes relative to the nearest one
  const c = 1 / Math.sqrt(5);
  const want = [1, 1, 1, 1, Math.exp((0 - 2 * c) / 0.1), Math.exp((c - 2 * c) / 0.1)];
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5, `score ${i}: ${got[i]} vs ${want[i]}`);
  tf.dispose([bank, q]);
});

test('separable features give 100%, and top-k counting is exact', async () => {
  // class c lives on axis c
  const bank = tf.tensor2d([[1, 0.1], [0.9, 0], [0, 1], [0.1, 0.8]]);
  const r = await knnAccuracy(bank, Int32Array.from([0, 0, 1, 1]), tf.tensor2d([[1, 0.2], [0.2, 1]]), Int32Array.from([0, 1]), { k: 2, t: 0.1, numClasses: 2 });
  assert.equal(r.top1, 100);
  const acc = topkAccuracy(Float64Array.from([0.1, 0.5, 0.4, /* */ 0.3, 0.3, 0.4]), Int32Array.from([2, 0]), 3);
  assert.equal(acc.top1, 0); // query 0: class 1 wins; query 1: class 2 wins
  assert.equal(acc.top5, 100);
  // the 5th of 7 classes is in the top 5, the 6th is not (by score, and by the lower index among equals)
  const seven = (y: number, row: number[]) => topkAccuracy(Float64Array.from(row), Int32Array.from([y]), 7).top5;
  assert.deepEqual([seven(2, [7, 6, 3, 5, 4, 2, 1]), seven(5, [7, 6, 4, 5, 3, 2, 1])], [100, 0]);
  assert.deepEqual([seven(4, [1, 1, 1, 1, 1, 1, 1]), seven(5, [1, 1, 1, 1, 1, 1, 1])], [100, 0]);
});

test('a class no neighbour voted for is no top-5 hit (k=1 counted the lowest-numbered classes as hits)', async () => {
  // ten classes, one neighbour: the query of class 0 sits on a bank image of class 5
  const bank = tf.tensor2d([[1, 0], [0, 1]]);
  const q = tf.tensor2d([[1, 0.1], [0.1, 1]]);
  const r = await knnAccuracy(bank, Int32Array.from([5, 0]), q, Int32Array.from([0, 0]), { k: 1, t: 0.1, numClasses: 10 });
  assert.deepEqual([r.top1, r.top5], [50, 50]);
  // a class voted for whose weight underflows to 0 (t = 1e-4: exp(-1000)) is voted for all the same
  const far = await knnAccuracy(tf.tensor2d([[1, 0], [0.9, 0.43589]]), Int32Array.from([5, 7]), tf.tensor2d([[1, 0]]), Int32Array.from([7]), { k: 2, t: 1e-4, numClasses: 10 });
  assert.deepEqual([far.top1, far.top5], [0, 100]);
  // logits (the linear probe's) of 0 are scores like any other: ties go to the lower class index
  assert.equal(topkAccuracy(Float64Array.from([0, 0, 0, 0, 0, 1]), Int32Array.from([0]), 6).top5, 100);
  // no queries: 0%, not NaN (which summary.json would record as null)
  assert.deepEqual(topkAccuracy(new Float64Array(0), new Int32Array(0), 6), { top1: 0, top5: 0, n: 0 });
});

test('a tiny temperature does not overflow the votes; a NaN score is a miss, never a hit', async () => {
  // t = 1e-4: exp(1 / 1e-4) is Infinity; the nearest neighbour must still decide (k = 1's answer)
  const bank = tf.tensor2d([[1, 0], [0.95, 0.31], [0, 1], [0.31, 0.95]]);
  const labels = Int32Array.from([0, 1, 2, 2]);
  const q = tf.tensor2d([[0.96, 0.28], [1, 0.02]]);
  const tiny = await knnAccuracy(bank, labels, q, Int32Array.from([1, 0]), { k: 4, t: 1e-4, numClasses: 3 });
  const one = await knnAccuracy(bank, labels, q, Int32Array.from([1, 0]), { k: 1, t: 0.1, numClasses: 3 });
  assert.deepEqual([tiny.top1, one.top1], [100, 100]);
  // a diverged encoder's features: every score NaN
  const nan = await knnAccuracy(bank, labels, tf.tensor2d([[NaN, NaN], [NaN, NaN]]), Int32Array.from([1, 0]), { k: 2, t: 0.1, numClasses: 3 });
  assert.deepEqual([nan.top1, nan.top5], [0, 0]);
  assert.deepEqual(topkAccuracy(Float64Array.from([NaN, NaN, NaN]), Int32Array.from([1]), 3).top1, 0);
});

test('a read that fails in the kNN (a device error) leaves no tensor behind', async () => {
  const bank = tf.randomNormal([30, 4]) as tf.Tensor2D;
  const queries = tf.randomNormal([9, 4]) as tf.Tensor2D;
  const labels = Int32Array.from({ length: 30 }, (_, i) => i % 3);
  const qLabels = Int32Array.from({ length: 9 }, (_, i) => i % 3);
  const before = tf.memory().numTensors;
  const proto = Object.getPrototypeOf(bank) as { data: () => Promise<unknown> };
  const data = proto.data;
  let reads = 0;
  // the second read of the first chunk (its indices) fails, as a lost device's would
  proto.data = function (this: tf.Tensor) {
    reads += 1;
    return reads === 2 ? Promise.reject(new Error('device lost')) : data.call(this);
  };
  try {
    await assert.rejects(knnAccuracy(bank, labels, queries, qLabels, { k: 5, t: 0.1, numClasses: 3, chunk: 4 }), /device lost/);
  } finally {
    proto.data = data;
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([bank, queries]);
});
