/**
 * The real training step (MoCoViT.step: TensorFlow.js's own gradients plus the model's custom ones)
 * gives the same loss and gradients on the `native` backend as on the stock `cpu` backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { nativeStatus, registerNativeBackend } from '../../src/engine/native.ts';
import { modelConfig } from '../../src/model/archs.ts';
import { MoCoViT } from '../../src/model/moco.ts';

async function stepOn(backend: string, images: Float32Array[]): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  await tf.setBackend(backend);
  const cfg = modelConfig('vit-test', { projHidden: 32, projDim: 16, predHidden: 32, patchProj: 'learned' });
  const model = new MoCoViT(cfg, 7);
  const S = cfg.imageSize;
  const [x1, x2] = images.map((v) => tf.tensor4d(v, [6, S, S, 3]));
  const before = tf.memory().numTensors;
  const { loss, grads } = model.step(x1!, x2!, 0.99);
  const out = { loss: (await loss.data())[0]!, grads: new Map([...grads].map(([k, g]) => [k, g.dataSync() as Float32Array])) };
  loss.dispose();
  for (const g of grads.values()) g.dispose();
  assert.equal(tf.memory().numTensors, before, `${backend}: the step leaves no tensors behind`);
  tf.dispose([x1!, x2!]);
  model.dispose();
  return out;
}

test('MoCoViT.step: same loss and gradients on native and cpu', async () => {
  assert.ok(registerNativeBackend(), `the native addon is not available (${nativeStatus().error}); build it: node scripts/build-native.mjs`);
  const S = modelConfig('vit-test').imageSize;
  let s = 12345;
  const images = [0, 1].map(() =>
    Float32Array.from({ length: 6 * S * S * 3 }, () => {
      s = (s * 1103515245 + 12345) >>> 0;
      return (s / 2 ** 32) * 2 - 1;
    }),
  );
  const want = await stepOn('cpu', images);
  const got = await stepOn('native', images);
  assert.ok(Math.abs(got.loss - want.loss) <= 1e-4 * Math.abs(want.loss), `loss ${got.loss} vs ${want.loss}`);
  assert.deepEqual([...got.grads.keys()], [...want.grads.keys()]);
  // float32 rounding differs between the backends (BLAS sums in another order), and some gradients are
  // cancellation noise near zero: compare against each tensor's scale and the largest gradient overall
  let global = 0;
  for (const w of want.grads.values()) for (const v of w) global = Math.max(global, Math.abs(v));
  for (const [name, w] of want.grads) {
    const g = got.grads.get(name)!;
    let scale = 0;
    for (const v of w) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < w.length; i++) {
      if (!(Math.abs(g[i]! - w[i]!) <= 1e-4 * scale + 1e-6 * global)) assert.fail(`${name}[${i}]: ${g[i]} vs ${w[i]} (max |g| ${scale}, overall ${global})`);
    }
  }
  await tf.setBackend('cpu');
});
