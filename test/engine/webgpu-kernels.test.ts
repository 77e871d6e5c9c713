/**
 * moco3's WGSL kernels (src/engine/webgpu-kernels.ts) against the stock tfjs kernels they replace, both on
 * the webgpu backend (on CI: Mesa's lavapipe, installed by .ci/run). No adapter fails the test.
 */
import { tf } from '../helpers/tf.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeWebGpu, registerWebGpuBackend } from '../../src/engine/webgpu.ts';
import { fusedKernel, GELU_BWD, GELU_FWD } from '../../src/engine/webgpu-kernels.ts';
import { gelu } from '../../src/model/layers.ts';

before(async () => {
  const a = await registerWebGpuBackend({ allowSoftware: true });
  assert.equal(typeof a, 'object', `no WebGPU adapter: ${String(a)}`);
});
after(async () => {
  await tf.setBackend('cpu');
  closeWebGpu();
});

function stockGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.mul(0.5, tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}
function stockGeluGrad(x: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
  return tf.mul(dy, tf.add(cdf, tf.mul(x, tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(x)))))));
}

async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0]!;
  d.dispose();
  return v;
}

// 3x37 is smaller than a workgroup; 70000x130 (9.1 M elements) needs a two-dimensional dispatch
for (const shape of [[3, 37], [256, 65, 64], [70000, 130]] as const) {
  test(`GELU forward and backward, [${shape}]: fused kernels = stock kernels on webgpu`, async () => {
    assert.equal(tf.getBackend(), 'webgpu');
    const before = tf.memory().numTensors;
    const x = tf.tidy(() => tf.mul(tf.randomNormal([...shape], 0, 1, 'float32', 3), 3));
    const dy = tf.randomNormal([...shape], 0, 1, 'float32', 4);
    const yF = fusedKernel(GELU_FWD, { x })!;
    const gF = fusedKernel(GELU_BWD, { x, dy })!;
    assert.ok(yF && gF, 'the kernels are registered on webgpu');
    const yS = tf.tidy(() => stockGelu(x));
    const gS = tf.tidy(() => stockGeluGrad(x, dy));
    assert.deepEqual(yF.shape, [...shape]);
    // the same erf formula; exp and the operation order differ: a few float32 ulps of values up to ~10
    assert.ok((await maxDiff(yF, yS)) <= 4e-6, `forward ${await maxDiff(yF, yS)}`);
    assert.ok((await maxDiff(gF, gS)) <= 4e-6, `backward ${await maxDiff(gF, gS)}`);
    // through the model's op: value and gradient use the fused kernels
    const [v, g] = tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), dy)))([x]);
      return [tf.keep(tf.sub(tf.sum(tf.mul(yS, dy)), value)), tf.keep(grads[0]!)];
    });
    assert.ok(Math.abs((await v!.data())[0]!) <= 1e-6 * shape.reduce((a, b) => a * b, 1), 'gelu() value');
    assert.ok((await maxDiff(g!, gS)) <= 4e-6, 'gelu() gradient');
    tf.dispose([x, dy, yF, gF, yS, gS, v!, g!]);
    assert.equal(tf.memory().numTensors, before);
  });
}
