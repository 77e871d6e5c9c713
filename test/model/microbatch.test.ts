import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { tinyConfig, images } from './util.ts';

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
