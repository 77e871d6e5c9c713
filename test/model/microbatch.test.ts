import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { assertClose, images, perturbAll, tinyConfig, torchState } from './util.ts';
import { refBackbone, refCtr, refForward, refMlp } from './reference.ts';

/** One step of a fresh model (same seed each time) on views x1, x2; values read back. */
function stepOf(x1: tf.Tensor4D, x2: tf.Tensor4D, micro: number | null) {
  const model = new MoCoViT(tinyConfig(), 3);
  const { loss, grads } = model.step(x1, x2, 0.99, micro);
  const out = { loss: loss.dataSync()[0]!, grads: new Map([...grads].map(([n, g]) => [n, Float32Array.from(g.dataSync())])) };
  loss.dispose();
  grads.forEach((g) => g.dispose());
  model.dispose();
  return out;
}

test('one micro-batch equal to the batch is the plain step, bit for bit', () => {
  const x1 = images('mb1', 8, 8).t;
  const x2 = images('mb2', 8, 8).t;
  const a = stepOf(x1, x2, null);
  const b = stepOf(x1, x2, 8);
  assert.equal(b.loss, a.loss);
  for (const [n, g] of a.grads) assert.deepEqual(b.grads.get(n), g, n);
  x1.dispose();
  x2.dispose();
});

test('micro-batches give the full-batch loss and gradient when BN sees the same statistics in every chunk', () => {
  // a batch made of one chunk repeated: every chunk's BN statistics equal the full batch's, so the only
  // difference left is the chunking of the queries against all keys of the batch
  const c1 = images('mbc1', 4, 8).t;
  const c2 = images('mbc2', 4, 8).t;
  const x1 = tf.concat([c1, c1, c1]) as tf.Tensor4D;
  const x2 = tf.concat([c2, c2, c2]) as tf.Tensor4D;
  const full = stepOf(x1, x2, null);
  const micro = stepOf(x1, x2, 4);
  assert.ok(Math.abs(micro.loss - full.loss) <= 1e-5 * Math.abs(full.loss), `loss ${micro.loss} vs ${full.loss}`);
  for (const [n, g] of full.grads) {
    const h = micro.grads.get(n)!;
    const scale = Math.max(1e-6, ...Array.from(g, Math.abs));
    // some gradients are exactly zero in exact arithmetic (the final norm's bias): float32 noise there
    g.forEach((v, i) => assert.ok(Math.abs(h[i]! - v) <= 2e-4 * scale + 1e-6, `${n}[${i}]: ${h[i]} vs ${v}`));
  }
  // and chunks of different images do change the gradient (BN statistics per chunk, like per-GPU BN)
  const y1 = images('mby1', 12, 8).t;
  const y2 = images('mby2', 12, 8).t;
  const a = stepOf(y1, y2, null);
  const b = stepOf(y1, y2, 4);
  assert.notEqual(a.loss, b.loss);
  [c1, c2, x1, x2, y1, y2].forEach((t) => t.dispose());
});

test('micro-batched step: each chunk its own rows, its BatchNorm statistics its own, its positives at its offset among all keys (float64 reference)', () => {
  const cfg = tinyConfig();
  const model = new MoCoViT(cfg, 6);
  perturbAll(model, 0.3);
  const B = 8;
  const C = 4;
  const a = images('mbr1', B, 8);
  const b = images('mbr2', B, 8);
  const S = torchState(model);
  const per = 8 * 8 * 3;
  const rows = (x: Float64Array, c: number) => x.subarray(c * C * per, (c + 1) * C * per);
  // per chunk: keys of the momentum encoder and queries of base encoder + predictor, BN on that chunk alone
  const keys = (x: Float64Array, c: number) => refMlp(S, 'momentum_encoder.head.', 3, refBackbone(S, 'momentum_encoder.', cfg, rows(x, c), C));
  const query = (x: Float64Array, c: number) => refMlp(S, 'predictor.', 2, refMlp(S, 'base_encoder.head.', 3, refBackbone(S, 'base_encoder.', cfg, rows(x, c), C)));
  const k1 = [...keys(a.data, 0), ...keys(a.data, 1)];
  const k2 = [...keys(b.data, 0), ...keys(b.data, 1)];
  // chunk c's positives are rows c·C.. of the keys: rotated to the front, refCtr's labels arange(C) are theirs
  const rot = (k: typeof k1, c: number) => [...k.slice(c * C), ...k.slice(0, c * C)];
  let want = 0;
  for (const c of [0, 1]) want += (refCtr(query(a.data, c), rot(k2, c), cfg.temperature) + refCtr(query(b.data, c), rot(k1, c), cfg.temperature)) / 2;
  const r = model.step(a.t, b.t, 1, C); // m = 1: the momentum encoder stays as read
  assertClose([r.loss.dataSync()[0]!], [want], 1e-5, 1e-6, 'loss');
  // the full batch's statistics give another loss: the check above tells them apart
  const full = refForward(S, cfg, a.data, b.data, B).loss;
  assert.ok(Math.abs(full - want) > 1e-3, `${full} vs ${want}`);
  tf.dispose([r.loss, ...r.grads.values(), a.t, b.t]);
  model.dispose();
});

test('micro-batching leaks no tensors', () => {
  const x1 = images('mbl1', 8, 8).t;
  const x2 = images('mbl2', 8, 8).t;
  const model = new MoCoViT(tinyConfig(), 5);
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    const { loss, grads } = model.step(x1, x2, 0.99, 2);
    loss.dispose();
    grads.forEach((g) => g.dispose());
    counts.push(tf.memory().numTensors);
  }
  assert.equal(counts[3], counts[1], counts.join(','));
  model.dispose();
  x1.dispose();
  x2.dispose();
});

test('the contrastive loss of query chunks against all keys (offset positives) averages to the full-batch loss', async () => {
  const { contrastiveLoss, l2normalize } = await import('../../src/model/layers.ts');
  const { randn } = await import('./util.ts');
  const q = tf.tensor2d(randn('ctr-q', 12 * 5), [12, 5]);
  const k = l2normalize(tf.tensor2d(randn('ctr-k', 12 * 5), [12, 5]));
  const full = contrastiveLoss(q, k, 0.2).dataSync()[0]!;
  let sum = 0;
  for (const o of [0, 4, 8]) sum += contrastiveLoss(tf.slice(q, [o, 0], [4, -1]) as tf.Tensor2D, k, 0.2, 1e-12, o).dataSync()[0]!;
  assert.ok(Math.abs(sum / 3 - full) <= 1e-6 * Math.abs(full), `${sum / 3} vs ${full}`);
  // positives at the wrong rows give another loss
  const wrong = contrastiveLoss(tf.slice(q, [4, 0], [4, -1]) as tf.Tensor2D, k, 0.2, 1e-12, 0).dataSync()[0]!;
  const right = contrastiveLoss(tf.slice(q, [4, 0], [4, -1]) as tf.Tensor2D, k, 0.2, 1e-12, 4).dataSync()[0]!;
  assert.ok(Math.abs(wrong - right) > 1e-3);
});

test('the gradient of the chunked contrastive loss equals the full-batch gradient', async () => {
  const { contrastiveLoss, l2normalize } = await import('../../src/model/layers.ts');
  const { randn } = await import('./util.ts');
  const q = tf.tensor2d(randn('ctr-gq', 12 * 5), [12, 5]);
  const k = l2normalize(tf.tensor2d(randn('ctr-gk', 12 * 5), [12, 5]));
  const gFull = tf.grad((x: tf.Tensor) => contrastiveLoss(x as tf.Tensor2D, k, 0.2))(q).dataSync();
  const gChunk = tf.grad((x: tf.Tensor) => {
    const parts = [0, 4, 8].map((o) => contrastiveLoss(tf.slice(x, [o, 0], [4, -1]) as tf.Tensor2D, k, 0.2, 1e-12, o));
    return tf.div(tf.addN(parts), 3);
  })(q).dataSync();
  const scale = Math.max(...Array.from(gFull, Math.abs));
  gFull.forEach((v, i) => assert.ok(Math.abs(gChunk[i]! - v) <= 1e-5 * scale, `dq[${i}]: ${gChunk[i]} vs ${v}`));
});
