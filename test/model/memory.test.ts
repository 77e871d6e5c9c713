/**
 * What a ViT's forward keeps for its backward: exactly the tensors the backward reads (src/model/vit.ts), so a
 * block's activations cost what PyTorch's autograd keeps for timm's Block (its LayerNorms keep x̂ where PyTorch
 * keeps the block's input), not the copies tfjs's Reshape, Mul and Add would hold on to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { vitForward, type Params } from '../../src/model/vit.ts';
import { addSame, scale, view } from '../../src/model/layers.ts';
import { images, randn, tinyConfig } from './util.ts';

type Engine = {
  trackTensor(t: tf.Tensor, backend: unknown): void;
  disposeTensor(t: tf.Tensor): void;
  state: { tensorInfo: WeakMap<object, { bytes: number }> };
};

/**
 * The bytes of the tensor buffers made while f runs and still alive, each counted once (tf.memory().numBytes
 * counts a buffer once per tensor viewing it): f is given a function that reads them.
 */
function withBufferBytes<T>(f: (bytes: () => number) => T): T {
  const engine = tf.engine() as unknown as Engine;
  const live = new Map<object, number>();
  const { trackTensor, disposeTensor } = engine;
  engine.trackTensor = function (this: Engine, t, backend) {
    // a buffer made now (a tensor of one made before, a variable saved for the backward, makes none)
    const made = !this.state.tensorInfo.has(t.dataId);
    trackTensor.call(this, t, backend);
    if (made) live.set(t.dataId, this.state.tensorInfo.get(t.dataId)!.bytes);
  };
  engine.disposeTensor = function (this: Engine, t) {
    disposeTensor.call(this, t);
    if (!this.state.tensorInfo.has(t.dataId)) live.delete(t.dataId);
  };
  try {
    return f(() => [...live.values()].reduce((a, b) => a + b, 0));
  } finally {
    engine.trackTensor = trackTensor;
    engine.disposeTensor = disposeTensor;
  }
}

/** Bytes of the buffers made by a ViT forward and alive at its end, recorded for the backward. */
function forwardBytes(depth: number, B: number): { bytes: number; dims: { N: number; D: number; hidden: number; heads: number } } {
  const cfg = tinyConfig({ depth });
  const model = new MoCoViT(cfg, 3);
  const x = images('mem', B, cfg.imageSize).t;
  const P = (model as unknown as { params(prefix: string): Params }).params('base_encoder.');
  let bytes = NaN;
  withBufferBytes((alive) => {
    const g = tf.grads(() => {
      const y = vitForward(x, cfg, P);
      bytes = alive();
      return tf.sum(y);
    })([P('blocks.0.mlp.fc1.weight')]);
    tf.dispose(g);
  });
  x.dispose();
  model.dispose();
  const N = (cfg.imageSize / cfg.patchSize) ** 2 + 1;
  return { bytes, dims: { N, D: cfg.dim, hidden: Math.round(cfg.dim * cfg.mlpRatio), heads: cfg.heads } };
}

test("a ViT block keeps for the backward only what it reads: x̂ and the LayerNorm's output twice, q·hd^-0.5, k, v, the merged heads, the probabilities, fc1's output and GELU's", () => {
  const B = 3;
  const one = forwardBytes(1, B);
  const two = forwardBytes(2, B);
  const { N, D, hidden, heads } = one.dims;
  const T = B * N;
  // per block: x̂1, norm1's output, q·scale, k, v, merged heads, x̂2, norm2's output [T, D]; rstd1, rstd2 [T, 1];
  // fc1's output and GELU's [T, hidden]; the softmax probabilities [heads·B, N, N] (float32: 4 bytes each)
  const expected = 4 * (8 * T * D + 2 * T + 2 * T * hidden + heads * B * N * N);
  assert.equal(two.bytes - one.bytes, expected, `one block more keeps ${two.bytes - one.bytes} B, expected ${expected} B`);
});

test('view, scale and addSame: the gradients of tf.reshape, tf.mul by a constant and tf.add, bit for bit', () => {
  const a = tf.tensor(randn('va', 24), [4, 6]);
  const b = tf.tensor(randn('vb', 24), [4, 6]);
  const w = tf.tensor(randn('vw', 24), [2, 12]);
  const loss = (ours: boolean) => (p: tf.Tensor, q: tf.Tensor) => {
    const s = ours ? addSame(p, q) : tf.add(p, q);
    const r = ours ? view(scale(s, 0.37), [2, 12]) : tf.reshape(tf.mul(s, 0.37), [2, 12]);
    return tf.sum(tf.mul(tf.sin(r), w));
  };
  const before = tf.memory().numTensors;
  const mine = tf.grads(loss(true))([a, b]);
  const stock = tf.grads(loss(false))([a, b]);
  assert.deepEqual(mine.map((t) => Array.from(t.dataSync())), stock.map((t) => Array.from(t.dataSync())));
  tf.dispose([...mine, ...stock]);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => addSame(a, w), /shapes \[4,6\] and \[2,12\] differ/);
  tf.dispose([a, b, w]);
});
