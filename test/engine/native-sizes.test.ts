/**
 * The native kernels on the sizes and values where their fast paths end: rows longer than the copy loops'
 * cut-over, logits far below a row's maximum, and the like. Each case against the stock cpu backend or values
 * worked out by hand. Fails (does not skip) when the addon is not built.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { nativeAddon, registerNativeBackend } from '../../src/engine/native.ts';
import { values } from '../helpers/rng.ts';

registerNativeBackend();

type Input = { data: Float32Array; shape: number[] };

const input = (shape: number[], seed: number, lo = -2, hi = 2): Input => ({ data: values(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape });

async function runOn(backend: string, inputs: Input[], f: (...xs: tf.Tensor[]) => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const xs = inputs.map((i) => tf.tensor(i.data, i.shape));
  const y = tf.tidy(() => f(...xs));
  const v = (await y.data()) as Float32Array;
  tf.dispose([y, ...xs]);
  return v;
}

/** f on native against f on cpu, element by element within atol + rtol * |want|. */
async function parity(what: string, inputs: Input[], f: (...xs: tf.Tensor[]) => tf.Tensor, rtol: number, atol: number): Promise<void> {
  const want = await runOn('cpu', inputs, f);
  const got = await runOn('native', inputs, f);
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) assert.fail(`${what}[${i}]: got ${g}, want ${w}`);
  }
}

test('softmax keeps the relative precision of probabilities far below the row maximum (logits 60 to 87 below it)', async () => {
  // rows of 8 and 13: the 8-wide loop and its scalar tail; exp(-87) is still a normal float32
  for (const n of [8, 13]) {
    const x = input([3, n], n, -87, -60);
    for (let r = 0; r < 3; r++) x.data[r * n + r] = 0;
    await parity(`softmax of [3, ${n}]`, [x], (t) => tf.softmax(t), 1e-5, 0);
  }
});

test('a transpose that keeps a long last axis in place copies each row whole (rows of 64 elements and more)', async () => {
  for (const [shape, perm] of [[[3, 5, 70], [1, 0, 2]], [[2, 3, 4, 64], [2, 0, 1, 3]]] as [number[], number[]][]) {
    await parity(`transpose ${JSON.stringify(shape)} ${JSON.stringify(perm)}`, [input(shape, 7)], (t) => tf.transpose(t, perm), 0, 0);
  }
});

test('a binary op written over its first operand (out is a, as the fused bias add does) keeps the operand order', () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const a = Float32Array.from([10, 20, 30, 40, 50]);
  const b = Float32Array.from([1, 2, 3, 4, 5]);
  addon.binary(1, a, [5], b, [5], a); // subtract
  assert.deepEqual(Array.from(a), [9, 18, 27, 36, 45]);
  const c = Float32Array.from([8, 6, 4, 2, 1]);
  addon.binary(3, c, [5], Float32Array.from([2, 2, 2, 2, 2]), [5], c); // divide
  assert.deepEqual(Array.from(c), [4, 3, 2, 1, 0.5]);
});

test('erf of 0 and -0 is exactly 0 and -0 (the polynomial alone leaves about 1e-9 there)', () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const y = new Float32Array(2);
  addon.unary(9, Float32Array.from([0, -0]), y, 0); // erf
  assert.ok(Object.is(y[0], 0) && Object.is(y[1], -0), `erf(0), erf(-0): ${y[0]}, ${y[1]}`);
});

test("the addon's softplus, log1p, sin and cos (op codes the backend does not route) as Math computes them, large inputs too", () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const x = Float32Array.from([-100, -20, -1, -1e-6, 0, 1e-6, 0.5, 3, 20, 100]);
  const y = new Float32Array(x.length);
  const softplus = (v: number) => Math.log1p(Math.exp(-Math.abs(v))) + Math.max(v, 0);
  for (const [op, ref, xs] of [[19, softplus, x], [16, Math.log1p, x.map(Math.abs)], [17, Math.sin, x], [18, Math.cos, x]] as const) {
    addon.unary(op, xs, y, 0);
    for (let i = 0; i < xs.length; i++) {
      const want = ref(xs[i]!);
      assert.ok(Math.abs(y[i]! - want) <= 2e-7 * Math.abs(want) + 1e-45, `op ${op} of ${xs[i]}: got ${y[i]}, want ${want}`);
    }
  }
});

/** An n-element view whose next 64 elements, in the same buffer, hold a marker the kernel must leave alone. */
function guarded(n: number): { out: Float32Array; intact: () => boolean } {
  const buf = new Float32Array(n + 64).fill(-12345);
  return { out: buf.subarray(0, n), intact: () => buf.subarray(n).every((v) => v === -12345) };
}

test('kernels write nothing past an output whose size is no multiple of their chunk, tile or slice (large enough for the threads)', () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const n = 70_003; // 17 chunks of 4096 and a partial one
  const x = values(n, 1);
  const u = guarded(n);
  addon.unary(1, x, u.out, 0); // exp
  assert.ok(u.intact(), 'unary');
  const e = Math.exp(x[n - 1]!);
  assert.ok(Math.abs(u.out[n - 1]! - e) <= 2e-7 * e, `exp's last element: ${u.out[n - 1]} vs ${e}`);
  const g = guarded(n);
  addon.gelu!(x, null, g.out);
  assert.ok(g.intact(), 'gelu');
  const b = guarded(n);
  addon.binary(0, x, [n], Float32Array.from([1]), [1], b.out);
  assert.ok(b.intact(), 'binary');
  assert.equal(b.out[n - 1], Math.fround(x[n - 1]! + 1));
  // one plane of 300 x 203: its last group of 8 columns is 3 wide
  const t = guarded(300 * 203);
  const xt = values(300 * 203, 2);
  addon.transpose(xt, [300, 203], [1, 0], t.out);
  assert.ok(t.intact(), 'transpose');
  assert.equal(t.out[202 * 300 + 299], xt[299 * 203 + 202]);
  // a product of 300 rows (37 slices of 8 and 4 more) too large for the small-matrix kernel
  const [M, K, N] = [300, 64, 130];
  const A = values(M * K, 3);
  const B = values(K * N, 4);
  const c = guarded(M * N);
  addon.matmul(A, B, c.out, 1, M, N, K, false, false, M * K, K * N, null, null);
  assert.ok(c.intact(), 'matmul');
  let want = 0;
  for (let k = 0; k < K; k++) want += A[(M - 1) * K + k]! * B[k * N + N - 1]!;
  assert.ok(Math.abs(c.out[M * N - 1]! - want) < 1e-4, `matmul's last element: ${c.out[M * N - 1]} vs ${want}`);
});
