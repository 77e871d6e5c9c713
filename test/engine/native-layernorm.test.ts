/**
 * moco3's LayerNorm kernels on `native` against the model's composition of stock ops (src/model/layers.ts
 * `normalize`), bit for bit: the model (and its tfjs gradients) is imported here, which test/engine/native.test.ts
 * keeps out so that its own transcribed gradients are the ones registered. Fails (does not skip) when the addon
 * is not built: build it with `node scripts/build-native.mjs`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { registerNativeBackend, setNativeThreads } from '../../src/engine/native.ts';
import { GELU_BWD, hasKernel, LAYERNORM_BWD, LAYERNORM_FWD } from '../../src/engine/webgpu-kernels.ts';
import { layerNorm, normalize } from '../../src/model/layers.ts';
import { values } from '../helpers/rng.ts';

assert.ok(registerNativeBackend(), 'the native addon is built (node scripts/build-native.mjs)');


test("LayerNorm's native kernels give the bits of the model's composition of stock ops (layers.ts normalize), y and the three gradients, on any shape", async () => {
  await tf.setBackend('native');
  assert.ok(hasKernel(LAYERNORM_FWD) && hasKernel(LAYERNORM_BWD), 'native has moco3 LayerNorm kernels');
  /** y, dx, dgamma, dbeta of sum(LN(x)·w), by the model's layerNorm (the fused kernels here) or the composition */
  const run = (fused: boolean, x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, w: tf.Tensor2D): Float32Array[] =>
    tf.tidy(() => {
      const ln = (a: tf.Tensor2D, gg: tf.Tensor1D, bb: tf.Tensor1D) => (fused ? layerNorm(a, gg, bb, 1e-6) : normalize(a, 1, 1e-6, gg, bb));
      const y = ln(x, g, b);
      const grads = tf.grads((a: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(ln(a as tf.Tensor2D, gg as tf.Tensor1D, bb as tf.Tensor1D), w)))([x, g, b]);
      return [y, ...grads].map((t) => t.dataSync().slice() as Float32Array);
    });
  // one row long enough for the Mean kernel to cut its sum, [rows, 1] and [1, D] (size-1 reductions are copies),
  // rows enough for the column sums to be cut in partitions, ViT-Micro's and ViT-Tiny's widths, a width not of 8
  const shapes: [number, number][] = [[1, 1], [5, 1], [8, 1], [1, 7], [3, 9], [5, 7], [1, 40_000], [4352, 64], [300, 192], [2, 33_000]];
  let specials = 0;
  try {
    for (const threads of [1, 2, 3]) {
      setNativeThreads(threads);
      for (const [rows, D] of shapes) {
        const xv = values(rows * D, rows + D, -3, 3);
        xv.forEach((v, i) => (xv[i] = v * [1e-3, 1, 40][(i >> 3) % 3]! + [0, 0, 1e4][i % 3]!)); // scales and offsets: a mean far from 0 loses digits
        // a single long row of values far apart in size: its sum depends on where the Mean kernel cuts it
        if (rows === 1 && D >= 32_768) for (let i = 0; i < D; i += 2500) xv[i] = (i / 2500) % 2 ? -(2 ** 60) : 2 ** 60;
        // -0 in a column of one (the Mean kernel copies it: its sign kept)
        if (D === 1) for (let i = 0; i < rows; i += 2) xv[i] = -0;
        if (rows >= 3) {
          // rows of specials: a NaN, an infinity, values whose square overflows, denormals, a constant row (var 0), -0
          const put = (r: number, v: (j: number) => number) => { for (let j = 0; j < D; j++) xv[r * D + j] = v(j); };
          put(0, (j) => (j === 1 ? NaN : xv[j]!));
          put(1, (j) => (j % 2 ? 3e38 : -2e38));
          put(2, (j) => (j % 2 ? 1e-45 : -0));
          if (rows > 4) put(3, () => 2.5);
          if (rows > 5) put(4, (j) => (j === 0 ? Infinity : 1));
          specials++;
        }
        const x = tf.tensor2d(xv, [rows, D]);
        const g = tf.tensor1d(values(D, 7 * D + 1, 0.5, 1.5));
        const b = tf.tensor1d(values(D, 5 * D + 3, -0.5, 0.5));
        const wv = values(rows * D, rows * 3 + D, -2, 2);
        // pairs of rows of dy far larger than the rest, cancelling: the column sums (γ's and β's gradients) lose the
        // rows between a pair's two to rounding, and which depends on where the Sum kernel cuts the rows into
        // partitions (some pairs straddle a cut) and on the order it adds them
        if (rows >= 4000) for (let r = 0; r + 48 < rows; r += 97) for (let j = 0; j < D; j++) (wv[r * D + j] = 2 ** 60), (wv[(r + 48) * D + j] = -(2 ** 60));
        const w = tf.tensor2d(wv, [rows, D]);
        const want = run(false, x, g, b, w);
        const got = run(true, x, g, b, w);
        for (const [k, name] of ['y', 'dx', 'dgamma', 'dbeta'].entries()) {
          const a = new Uint32Array(got[k]!.buffer);
          const c = new Uint32Array(want[k]!.buffer);
          assert.equal(a.length, c.length);
          const bad = [...a.keys()].filter((i) => a[i] !== c[i]); // NaNs too, bit for bit
          assert.deepEqual(bad.slice(0, 3).map((i) => [i, got[k]![i], want[k]![i]]), [], `${name} of [${rows}, ${D}] on ${threads} thread(s): ${bad.length} differ`);
        }
        tf.dispose([x, g, b, w]);
      }
    }
  } finally {
    setNativeThreads(2);
  }
  assert.ok(specials > 0);
});

test("LayerNorm's native kernels on no rows or no features: γ's and β's gradients are zeros (not a recycled array's values), each row's mean and rstd the Mean kernel's NaN", async () => {
  await tf.setBackend('native');
  const D = 1024;
  // arrays of D values that the native backend recycles once they are freed
  tf.tidy(() => {
    for (let i = 1; i <= 4; i++) tf.add(tf.fill([D], 7), i);
  });
  const noRows = tf.zeros([0, D]);
  const none = tf.zeros([0]);
  const gamma = tf.ones([D]);
  const [dx, dgamma, dbeta] = tf.engine().runKernel(LAYERNORM_BWD, { dy: noRows, x: noRows, mean: none, rstd: none, gamma }) as tf.Tensor[];
  assert.deepEqual(dx!.shape, [0, D]);
  assert.deepEqual([dgamma!.shape, dbeta!.shape], [[D], [D]]);
  assert.deepEqual([...new Set([...dgamma!.dataSync(), ...dbeta!.dataSync()])], [0]);
  const noFeatures = tf.zeros([3, 0]);
  const [y, mean, rstd] = tf.engine().runKernel(LAYERNORM_FWD, { x: noFeatures, gamma: none, beta: none }, { eps: 1e-6 }) as tf.Tensor[];
  assert.deepEqual(y!.shape, [3, 0]);
  assert.deepEqual([Array.from(mean!.dataSync()), Array.from(rstd!.dataSync())], [[NaN, NaN, NaN], [NaN, NaN, NaN]]);
  tf.dispose([noRows, none, gamma, dx!, dgamma!, dbeta!, noFeatures, y!, mean!, rstd!]);
  await tf.setBackend('cpu');
});

test("LayerNorm's native backward frees its scratch array; GELU's and LayerNorm's kernels refuse operands of other shapes, even of the same size", async () => {
  await tf.setBackend('native');
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const x = tf.tensor2d(values(6 * 64, 3, -2, 2), [6, 64]);
  const g = tf.ones([64]);
  const b = tf.zeros([64]);
  const ids = backend.numDataIds();
  tf.tidy(() => {
    const [dx] = tf.grads((a: tf.Tensor) => tf.sum(layerNorm(a as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-6)))([x]);
    assert.deepEqual(dx!.shape, [6, 64]);
  });
  assert.equal(backend.numDataIds(), ids, 'no backend data left behind');
  const [y, mean, rstd] = tf.engine().runKernel(LAYERNORM_FWD, { x, gamma: g, beta: b }, { eps: 1e-6 }) as tf.Tensor[];
  const run = (name: string, inputs: Record<string, tf.Tensor>) => () => tf.engine().runKernel(name, inputs);
  const dyT = tf.zeros([64, 6]);
  assert.throws(run(LAYERNORM_BWD, { dy: dyT, x, mean: mean!, rstd: rstd!, gamma: g }), /: x \[6,64\] and dy \[64,6\] differ/);
  assert.throws(run(LAYERNORM_BWD, { dy: y!, x, mean: tf.zeros([5]), rstd: rstd!, gamma: g }), /: \[5\] for 6 rows/);
  assert.throws(run(LAYERNORM_FWD, { x, gamma: tf.ones([63]), beta: b }), /: \[63\] for 64 features/);
  assert.throws(run(GELU_BWD, { x, dy: dyT }), /: x \[6,64\] and dy \[64,6\] differ/);
  tf.dispose([x, g, b, y!, mean!, rstd!, dyT]);
  await tf.setBackend('cpu');
});
