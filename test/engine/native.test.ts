/**
 * Parity of the `native` backend with the stock `cpu` backend: values and gradients of every kernel it
 * replaces, on odd shapes, broadcasts, transposes and both thread settings. Fails (does not skip) when
 * the addon is not built: build it with `node scripts/build-native.mjs`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import './grads.ts';
import { defaultFreeListBytes, NativeBackend, nativeAddon, nativeStatus, registerNativeBackend, releaseNativeFreeList, setNativeThreads } from '../../src/engine/native.ts';
import { GELU_BWD, GELU_FWD, hasKernel } from '../../src/engine/webgpu-kernels.ts';
import { values } from '../helpers/rng.ts';

const registration = registerNativeBackend();

type Arr = number[];
type Inputs = { data: Float32Array; shape: number[]; dtype?: 'float32' | 'int32' }[];


function input(shape: number[], seed: number, lo = -2, hi = 2): Inputs[number] {
  return { data: values(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape };
}

/** Runs f on one backend with fresh tensors; returns every output's values and shape. */
async function runOn(
  backend: string,
  inputs: Inputs,
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ values: (Float32Array | Int32Array | Uint8Array)[]; shapes: number[][]; dtypes: string[] }> {
  await tf.setBackend(backend);
  const xs = inputs.map((i) => tf.tensor(i.dtype === 'int32' ? Int32Array.from(i.data) : i.data, i.shape, i.dtype ?? 'float32'));
  const out = tf.tidy(() => f(...xs));
  const list = Array.isArray(out) ? out : [out];
  const res = {
    values: list.map((t) => t.dataSync() as Float32Array | Int32Array | Uint8Array),
    shapes: list.map((t) => t.shape),
    dtypes: list.map((t) => t.dtype as string),
  };
  tf.dispose(list);
  tf.dispose(xs);
  return res;
}

function close(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(w)) {
      assert.ok(Number.isNaN(g), `${what}[${i}]: got ${g}, want NaN`);
      continue;
    }
    if (!Number.isFinite(w)) {
      assert.equal(g, w, `${what}[${i}]`);
      continue;
    }
    const tol = atol + rtol * Math.abs(w);
    if (!(Math.abs(g - w) <= tol)) assert.fail(`${what}[${i}]: got ${g}, want ${w} (tol ${tol})`);
  }
}

/** Same outputs (values, shapes, dtypes) on `native` and `cpu`. */
async function parity(
  what: string,
  inputs: Inputs,
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  rtol = 1e-5,
  atol = 1e-6,
): Promise<void> {
  const want = await runOn('cpu', inputs, f);
  const got = await runOn('native', inputs, f);
  assert.equal(got.values.length, want.values.length);
  for (let k = 0; k < want.values.length; k++) {
    assert.deepEqual(got.shapes[k], want.shapes[k], `${what}: shape of output ${k}`);
    assert.equal(got.dtypes[k], want.dtypes[k], `${what}: dtype of output ${k}`);
    close(got.values[k]!, want.values[k]!, rtol, atol, `${what} output ${k}`);
  }
}

/** `f` on native against `ref` on cpu (for cases the stock kernel gets wrong). */
async function parityRef(
  what: string,
  inputs: Inputs,
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  ref: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  rtol: number,
  atol: number,
): Promise<void> {
  const want = await runOn('cpu', inputs, ref);
  const got = await runOn('native', inputs, f);
  for (let k = 0; k < want.values.length; k++) {
    assert.deepEqual(got.shapes[k], want.shapes[k], `${what}: shape of output ${k}`);
    close(got.values[k]!, want.values[k]!, rtol, atol, `${what} output ${k}`);
  }
}

/** Gradients of sum(f(xs) * w) with respect to every input, for a fixed random w. */
function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor) {
  return (...xs: tf.Tensor[]): tf.Tensor[] => {
    const g = tf.grads((...ys: tf.Tensor[]) => {
      const y = f(...ys);
      const w = tf.tensor(values(y.size, 99), y.shape);
      return tf.sum(tf.mul(y, w));
    });
    return g(xs);
  };
}

const threadSettings = [1, 2];

test('the addon refuses operands smaller than their shapes or batch offsets say (it would read past them), and exp of NaN is NaN', () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const out = new Float32Array(4096);
  assert.throws(() => addon.binary(0, new Float32Array(2), [4096], new Float32Array(4096), [4096], out), /binary: operand size mismatch/);
  assert.throws(() => addon.compare(0, new Float32Array(4096), [4096], new Float32Array(3), [4096], new Uint8Array(4096)), /binary: operand size mismatch/);
  // 2x2 by 2x2: a holds 3 of its 4
  assert.throws(() => addon.matmul(new Float32Array(3), new Float32Array(4), new Float32Array(4), 1, 2, 2, 2, false, false, 4, 4, null, null), /matmul: operand size mismatch/);
  // two batches of a: the second's index points past the array; the second's stride too
  assert.throws(() => addon.matmul(new Float32Array(8), new Float32Array(4), new Float32Array(8), 2, 2, 2, 2, false, false, 4, 0, new Int32Array([0, 2]), null), /matmul: operand size mismatch/);
  assert.throws(() => addon.matmul(new Float32Array(7), new Float32Array(4), new Float32Array(8), 2, 2, 2, 2, false, false, 4, 0, null, null), /matmul: operand size mismatch/);
  // what fits is computed: [[1, 2], [3, 4]] squared, b shared by both batches
  const c = new Float32Array(8);
  addon.matmul(new Float32Array([1, 2, 3, 4, 1, 0, 0, 1]), new Float32Array([1, 2, 3, 4]), c, 2, 2, 2, 2, false, false, 4, 0, null, null);
  assert.deepEqual(Array.from(c), [7, 10, 15, 22, 1, 2, 3, 4]);
  const y = new Float32Array(3);
  addon.unary(1, new Float32Array([NaN, -NaN, 0]), y, 0);
  assert.deepEqual(Array.from(y), [NaN, NaN, 1]);
  // sizes whose product wraps around (2^62 batches of 0x4 read as 0 elements: it wrote 2^62 matrices), or negative
  assert.throws(() => addon.matmul(new Float32Array(0), new Float32Array(0), new Float32Array(0), 2 ** 62, 4, 1, 0, true, false, 0, 0, null, null), /matmul: bad sizes/);
  assert.throws(() => addon.matmul(new Float32Array(4), new Float32Array(4), new Float32Array(4), -1, 2, 2, 2, false, false, 4, 4, null, null), /matmul: bad sizes/);
  // a batch stride whose product with the batch count wraps (it read far outside a)
  assert.throws(() => addon.matmul(new Float32Array(1), new Float32Array(1), new Float32Array(3), 3, 1, 1, 1, false, false, 2 ** 62 + 2 ** 40, 0, null, null), /matmul: operand size mismatch/);
});

test('the addon throws, and the process lives, when an argument is no typed array (a second throw was fatal: SIGABRT)', () => {
  const script = `const { nativeAddon } = await import(${JSON.stringify(new URL('../../src/engine/native.ts', import.meta.url).pathname)});
    const addon = nativeAddon();
    try { addon.unary(1, [1, 2], new Float32Array(2), 0); console.log('no error'); } catch (e) { console.log('threw: ' + e.message); }
    try { addon.binary(0, new Float32Array(2), 'x', new Float32Array(2), [2], new Float32Array(2)); console.log('no error'); } catch (e) { console.log('threw: ' + e.message); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${r.signal ?? ''} ${r.stderr}`);
  assert.deepEqual(r.stdout.trim().split('\n').map((l) => l.startsWith('threw: ')), [true, true], r.stdout);
});

test('registered, native is not the backend a process that never calls setBackend gets: cpu stays the default', () => {
  const script = `const tf = await import('@tensorflow/tfjs-core'); await import('@tensorflow/tfjs-backend-cpu');
    const { registerNativeBackend } = await import(${JSON.stringify(new URL('../../src/engine/native.ts', import.meta.url).pathname)});
    const registered = registerNativeBackend() !== null; await tf.ready();
    console.log(JSON.stringify({ registered, backend: tf.getBackend() }));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { registered: true, backend: 'cpu' });
});

test('the free list cap by default: a quarter of the RAM, at most 4 GiB; MOCO3_NATIVE_POOL_MB in MiB', () => {
  const os = createRequire(import.meta.url)('node:os') as { totalmem: () => number };
  const total = os.totalmem;
  const pool = process.env.MOCO3_NATIVE_POOL_MB;
  delete process.env.MOCO3_NATIVE_POOL_MB;
  try {
    for (const [ram, cap] of [[8 * 2 ** 30, 2 * 2 ** 30], [6 * 2 ** 30 + 4, 1.5 * 2 ** 30 + 1], [64 * 2 ** 30, 4 * 2 ** 30]]) {
      os.totalmem = () => ram!;
      syncBuiltinESMExports();
      assert.equal(defaultFreeListBytes(), cap, `${ram} bytes of RAM`);
    }
    process.env.MOCO3_NATIVE_POOL_MB = '96';
    assert.equal(defaultFreeListBytes(), 96 * 2 ** 20);
  } finally {
    os.totalmem = total;
    syncBuiltinESMExports();
    if (pool === undefined) delete process.env.MOCO3_NATIVE_POOL_MB;
    else process.env.MOCO3_NATIVE_POOL_MB = pool;
  }
});

test("in the GPU check's bundle (MOCO3_GPU_BUNDLE=1) the checkout's build is not taken for its addon", () => {
  const script = `const { nativeStatus } = await import(${JSON.stringify(new URL('../../src/engine/native.ts', import.meta.url).pathname)});
    const st = nativeStatus(); console.log(JSON.stringify({ built: st.built, error: st.error ?? null }));`;
  const { MOCO3_NATIVE_PATH: _, MOCO3_NATIVE: __, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...env, MOCO3_GPU_BUNDLE: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { built: false, error: 'moco3_native.node not found (build it with: node scripts/build-native.mjs)' });
});

test("the native backend's free list: an array it handed out comes back once no tensor uses it, unless read out, and the list stays within its cap", async () => {
  const n = 4096;
  const bytes = 4 * n;
  const b = new NativeBackend(3 * bytes);
  /** a tensor's data on an array the backend hands out */
  const put = () => {
    const a = b.takeF32(n);
    return { a, id: b.write(a, [n], 'float32') };
  };
  const x = put();
  assert.equal(b.freeListBytes(), 0);
  b.disposeData(x.id);
  assert.equal(b.freeListBytes(), bytes, 'recycled');
  assert.equal(b.takeF32(n), x.a, 'and handed out again');
  assert.equal(b.freeListBytes(), 0);
  // two tensors on one array: it comes back when the second goes
  const y = put();
  const y2 = b.write(y.a, [n], 'float32');
  b.disposeData(y.id);
  assert.equal(b.freeListBytes(), 0);
  b.disposeData(y2);
  assert.equal(b.freeListBytes(), bytes);
  assert.equal(b.takeF32(n), y.a);
  // read out, by dataSync or data(): the caller may keep the array
  const r1 = put();
  b.readSync(r1.id);
  b.disposeData(r1.id);
  assert.equal(b.freeListBytes(), 0, 'an array read by dataSync is not recycled');
  const r2 = put();
  await b.read(r2.id);
  b.disposeData(r2.id);
  assert.equal(b.freeListBytes(), 0, 'an array read by data() is not recycled');
  // small arrays are left to the garbage collector
  b.disposeData(b.write(b.takeF32(1000), [1000], 'float32'));
  assert.equal(b.freeListBytes(), 0);
  // four disposed, three kept: the cap
  const four = [put(), put(), put(), put()];
  four.forEach((t) => b.disposeData(t.id));
  assert.equal(b.freeListBytes(), 3 * bytes);
  for (let i = 0; i < 3; i++) b.takeF32(n);
  assert.equal(b.freeListBytes(), 0, 'the list empties as its arrays are taken');
  // and with the room taken back, arrays are recycled again
  const again = put();
  b.disposeData(again.id);
  assert.equal(b.freeListBytes(), bytes);
  b.dispose();
  assert.equal(b.freeListBytes(), 0, 'dispose drops the list');
});

describe('native backend', () => {
  before(() => {
    if (!registration) {
      const st = nativeStatus();
      assert.fail(`the native addon is not available (${st.error ?? 'unknown'}); build it: node scripts/build-native.mjs`);
    }
  });
  after(async () => {
    setNativeThreads(2);
    await tf.setBackend('cpu');
  });

  test('is built, registered, and leaves the cpu backend alone', () => {
    assert.ok(registration, `not built: ${nativeStatus().error}`);
    const st = nativeStatus();
    assert.equal(st.built, true);
    assert.ok(st.blas && st.blas.length > 0);
    assert.ok((st.threads ?? 0) >= 1);
    assert.deepEqual(registerNativeBackend(), registration, 'second registration is a no-op');
    // the threads in effect, as setNativeThreads left them
    setNativeThreads(3);
    assert.equal(nativeStatus().threads, 3);
    setNativeThreads(2);
    assert.equal(nativeStatus().threads, 2);
    for (const name of ['BatchMatMul', 'Multiply', 'Softmax', 'Sum', 'Transpose']) {
      const cpu = tf.getKernel(name, 'cpu');
      const nat = tf.getKernel(name, 'native');
      assert.ok(cpu && nat, name);
      assert.notEqual(cpu.kernelFunc, nat.kernelFunc, `${name} is replaced on native only`);
    }
    // every stock kernel is available on native
    const cpuNames = tf.getKernelsForBackend('cpu').map((k) => k.kernelName).sort();
    const natNames = new Set(tf.getKernelsForBackend('native').map((k) => k.kernelName));
    for (const n of cpuNames) assert.ok(natNames.has(n), `native lacks ${n}`);
  });

  test("GELU's native kernels give the bits of the model's composition of stock ops (src/model/layers.ts), forward and backward, special values too", async () => {
    await tf.setBackend('native');
    assert.ok(hasKernel(GELU_FWD) && hasKernel(GELU_BWD), 'native has moco3 GELU kernels');
    const n = 70_001; // not a multiple of the threads' chunks nor of the kernel's blocks
    const xv = values(n, 41, -12, 12);
    // scales where erf saturates and where it is linear, and what a divergence feeds it
    xv.forEach((v, i) => (xv[i] = v * [1e-4, 0.05, 1, 3][i % 4]!));
    [NaN, Infinity, -Infinity, 0, -0, 1e-45, -1e-45, 1e-38, 3e38, -3e38, 9.5, -9.5, 14, -14].forEach((v, i) => (xv[i * 11] = v));
    const x = tf.tensor(xv, [n]);
    const dy = tf.tensor(values(n, 42, -2, 2), [n]);
    // the composition, op for op as layers.ts's gelu
    const cdf = (v: tf.Tensor) => tf.mul(0.5, tf.add(1, tf.erf(tf.mul(v, Math.SQRT1_2))));
    const composed = () =>
      tf.tidy(() => [
        tf.mul(x, cdf(x)).dataSync().slice(),
        tf.mul(dy, tf.add(cdf(x), tf.mul(x, tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(x))))))).dataSync().slice(),
      ]);
    const fused = () =>
      tf.tidy(() => [
        (tf.engine().runKernel(GELU_FWD, { x }) as tf.Tensor).dataSync().slice(),
        (tf.engine().runKernel(GELU_BWD, { x, dy }) as tf.Tensor).dataSync().slice(),
      ]);
    try {
      for (const threads of [1, 2]) {
        setNativeThreads(threads);
        const want = composed();
        const got = fused();
        for (const k of [0, 1]) {
          const a = new Uint32Array(got[k]!.buffer);
          const b = new Uint32Array(want[k]!.buffer);
          const bad = [...a.keys()].filter((i) => a[i] !== b[i] && !(Number.isNaN(got[k]![i]) && Number.isNaN(want[k]![i])));
          assert.deepEqual(bad.slice(0, 5).map((i) => [xv[i], got[k]![i], want[k]![i]]), [], `${k ? 'backward' : 'forward'} on ${threads} thread(s): ${bad.length} differ`);
        }
      }
    } finally {
      setNativeThreads(2);
      tf.dispose([x, dy]);
    }
  });

  test('products and reductions give the same bits on 1, 2 and 3 threads (a run is the same with any MOCO3_THREADS)', async () => {
    await tf.setBackend('native');
    const cases: [string, () => tf.Tensor][] = [
      ['matmul 256x64x192', () => tf.matMul(tf.tensor(values(256 * 64, 1), [256, 64]), tf.tensor(values(64 * 192, 2), [64, 192]))],
      ['matmul 512x197x300, b transposed', () => tf.matMul(tf.tensor(values(512 * 197, 3), [512, 197]), tf.tensor(values(300 * 197, 4), [300, 197]), false, true)],
      ['matmul 30x500x400', () => tf.matMul(tf.tensor(values(30 * 500, 5), [30, 500]), tf.tensor(values(500 * 400, 6), [500, 400]))],
      ['matmul 1024x128x128, a transposed', () => tf.matMul(tf.tensor(values(128 * 1024, 7), [128, 1024]), tf.tensor(values(128 * 128, 8), [128, 128]), true, false)],
      ['batched matmul 3x[300x200x200]', () => tf.matMul(tf.tensor(values(3 * 300 * 200, 9), [3, 300, 200]), tf.tensor(values(3 * 200 * 200, 10), [3, 200, 200]))],
      ['sum over rows of [5000, 64]', () => tf.sum(tf.tensor(values(5000 * 64, 11, -1e3, 1e3), [5000, 64]), 0)],
      ['mean of 70000', () => tf.mean(tf.tensor(values(70000, 12), [70000]))],
      ['max over rows of [3000, 40]', () => tf.max(tf.tensor(values(3000 * 40, 13), [3000, 40]), 0)],
      // 2^60, 2048 ones, -2^60: whether the ones survive depends on which partial sum takes them with 2^60
      ['sum of 32768 with cancellation', () => tf.sum(tf.tensor(Float32Array.from({ length: 32768 }, (_, i) => (i === 0 ? 2 ** 60 : i === 32767 ? -(2 ** 60) : i >= 6144 && i < 8192 ? 1 : 0)), [32768]))],
    ];
    try {
      const bits = new Map<string, Uint8Array>();
      for (const threads of [1, 2, 3]) {
        setNativeThreads(threads);
        for (const [name, f] of cases) {
          const y = tf.tidy(f);
          const got = new Uint8Array((await y.data()).slice().buffer);
          y.dispose();
          const first = bits.get(name);
          if (!first) bits.set(name, got);
          else assert.ok(Buffer.from(got).equals(Buffer.from(first)), `${name}: ${threads} threads differ from 1`);
        }
      }
    } finally {
      setNativeThreads(2);
      await tf.setBackend('cpu');
    }
  });

  for (const threads of threadSettings) {
    describe(`${threads} thread(s)`, () => {
      before(() => {
        setNativeThreads(threads);
      });

      test('unary ops and their gradients', async () => {
        const x = input([3, 7, 33], 1, -3, 3);
        const special = { data: new Float32Array([0, -0, 1e-30, -1e-30, 1e30, -1e30, 100, -100, 88.5, -90, -200, NaN, Infinity, -Infinity]), shape: [14] };
        const pos = input([7, 33], 2, 0.01, 5);
        const ops: [string, (t: tf.Tensor) => tf.Tensor, boolean][] = [
          ['neg', tf.neg, true], ['exp', tf.exp, true], ['square', tf.square, true], ['abs', tf.abs, true],
          ['relu', tf.relu, true], ['erf', tf.erf, true], ['sigmoid', tf.sigmoid, true], ['tanh', tf.tanh, true],
          ['relu6', tf.relu6, true], ['elu', tf.elu, true], ['step', (t) => tf.step(t, 0.3), false],
          ['leakyRelu', (t) => tf.leakyRelu(t, 0.1), true],
        ];
        for (const [name, f, grad] of ops) {
          await parity(name, [x], f);
          await parity(`${name} special`, [special], f, 1e-5, 1e-6);
          if (grad) await parity(`${name} grad`, [x], gradsOf(f), 1e-5, 1e-6);
        }
        for (const [name, f] of [['log', tf.log], ['sqrt', tf.sqrt], ['rsqrt', tf.rsqrt], ['reciprocal', tf.reciprocal]] as const) {
          await parity(name, [pos], f);
          await parity(`${name} special`, [special], f);
          await parity(`${name} grad`, [pos], gradsOf(f));
        }
        // big enough for the thread pool
        await parity('exp big', [input([70000], 3, -20, 20)], tf.exp);
        await parity('erf big', [input([70000], 4, -4, 4)], tf.erf);
        // small negative inputs: elu as exp(x) - 1 lost its digits there (-1e-8 gave 0)
        await parity('elu small', [{ data: new Float32Array([-1e-8, -1e-6, -1e-4, -1e-2]), shape: [4] }], tf.elu, 1e-5, 0);
      });

      test('tensors whose values lie on a SharedArrayBuffer (the addon wrote through a null pointer)', async () => {
        const shared = new Float32Array(new SharedArrayBuffer(4 * 70000));
        shared.set(values(70000, 7));
        await parity('exp shared', [{ data: shared, shape: [70000] }], tf.exp);
        await parity('mul shared', [{ data: shared, shape: [70000] }, input([70000], 8)], tf.mul);
        await parity('matMul shared', [{ data: shared.subarray(0, 70 * 100), shape: [70, 100] }, input([100, 30], 9)], (a, b) => tf.matMul(a, b), 1e-5, 1e-5);
      });

      test('broadcasting binary ops of rank 1-5 and their gradients', async () => {
        const pairs: [Arr, Arr][] = [
          [[33], [33]], [[3, 7], [7]], [[3, 1], [1, 7]], [[1], [3, 33]], [[], [7, 3]], [[7, 3], []],
          [[2, 1, 3, 1, 5], [4, 3, 1, 1]], [[2, 3, 4, 5, 6], [2, 1, 4, 1, 6]], [[7, 1, 1], [1, 3, 1]],
          [[4, 1, 33], [4, 7, 33]], [[2, 3, 1, 1], [3, 7, 5]], [[300, 130], [130]], [[300, 130], [300, 1]],
        ];
        const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
          ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['maximum', tf.maximum],
          ['minimum', tf.minimum], ['squaredDifference', tf.squaredDifference],
        ];
        let seed = 10;
        for (const [sa, sb] of pairs) {
          const a = input(sa, seed++);
          const b = input(sb, seed++, 0.5, 3);
          for (const [name, f] of ops) {
            await parity(`${name} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`, [a, b], f);
          }
          await parity(`pow ${JSON.stringify(sa)}`, [input(sa, seed++, 0.1, 2), b], tf.pow, 1e-5, 1e-6);
          for (const [name, f] of ops) {
            await parity(`${name} grad ${JSON.stringify(sa)} ${JSON.stringify(sb)}`, [a, b], gradsOf(f), 1e-5, 1e-5);
          }
          const cmp: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
            ['greater', tf.greater], ['greaterEqual', tf.greaterEqual], ['less', tf.less], ['lessEqual', tf.lessEqual],
            ['equal', tf.equal], ['notEqual', tf.notEqual],
          ];
          // integer-valued inputs so that equality happens
          const ia = { data: values(a.data.length, seed++, -3, 3).map(Math.round), shape: sa };
          const ib = { data: values(b.data.length, seed++, -3, 3).map(Math.round), shape: sb };
          for (const [name, f] of cmp) await parity(`${name} ${JSON.stringify(sa)}`, [ia, ib], f);
        }
        // int32 goes to the stock kernels
        const ia = { data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3], dtype: 'int32' as const };
        const ib = { data: Float32Array.from([7, 8, 9]), shape: [3], dtype: 'int32' as const };
        await parity('int32 add', [ia, ib], tf.add);
        await parity('int32 mul', [ia, ib], tf.mul);
        // NaN and infinite exponents as Math.pow: 1 ** NaN and (+-1) ** (+-Infinity) are NaN (C's pow gives 1)
        const base = { data: new Float32Array([1, 1, -1, -1, 1, 2, NaN, 0, -2, 1]), shape: [10] };
        const exponent = { data: new Float32Array([NaN, Infinity, Infinity, -Infinity, -Infinity, NaN, 0, 0, 3, 2]), shape: [10] };
        await parity('pow special', [base, exponent], tf.pow);
      });

      test('reductions over axes, with keepDims, and their gradients', async () => {
        const x = input([3, 7, 33], 20);
        const x5 = input([2, 3, 4, 5, 6], 21);
        const cases: [Inputs[number], number | number[] | null][] = [
          [x, 0], [x, 1], [x, 2], [x, -1], [x, [0, 2]], [x, [0, 1]], [x, [1, 2]], [x, null],
          [x5, [1, 3]], [x5, [0, 2, 4]], [x5, [4]], [x5, [0]], [x5, [1, 2, 3]],
          [input([1, 7, 1], 22), 1], [input([1, 7, 1], 22), [0, 2]],
          [input([100001], 23), 0], [input([300, 130], 24), 0], [input([300, 130], 24), 1], [input([20, 300, 13], 25), [0, 2]],
        ];
        for (const [inp, axis] of cases) {
          const ax = axis ?? undefined;
          for (const keepDims of [false, true]) {
            const tag = `${JSON.stringify(inp.shape)} axis ${JSON.stringify(axis)} keepDims ${keepDims}`;
            await parity(`sum ${tag}`, [inp], (t) => tf.sum(t, ax, keepDims), 1e-5, 1e-5);
            await parity(`mean ${tag}`, [inp], (t) => tf.mean(t, ax, keepDims), 1e-5, 1e-6);
            await parity(`max ${tag}`, [inp], (t) => tf.max(t, ax, keepDims), 0, 0);
            await parity(`min ${tag}`, [inp], (t) => tf.min(t, ax, keepDims), 0, 0);
          }
          await parity(`sum grad ${JSON.stringify(axis)}`, [inp], gradsOf((t) => tf.sum(t, axis ?? undefined)), 1e-5, 1e-6);
          await parity(`mean grad ${JSON.stringify(axis)}`, [inp], gradsOf((t) => tf.mean(t, axis ?? undefined)), 1e-5, 1e-7);
          await parity(`max grad ${JSON.stringify(axis)}`, [inp], gradsOf((t) => tf.max(t, axis ?? undefined)), 1e-5, 1e-7);
          await parity(`min grad ${JSON.stringify(axis)}`, [inp], gradsOf((t) => tf.min(t, axis ?? undefined)), 1e-5, 1e-7);
        }
        const nan = { data: Float32Array.from([1, NaN, 3, 4, 5, 6]), shape: [2, 3] };
        for (const axis of [0, 1]) {
          await parity(`max NaN ${axis}`, [nan], (t) => tf.max(t, axis), 0, 0);
          await parity(`min NaN ${axis}`, [nan], (t) => tf.min(t, axis), 0, 0);
        }
        // a NaN anywhere in a whole-tensor max (the step's gradient statistics: max |g| must be NaN for the
        // step to be skipped), short and long enough to be cut into partitions, in the first, a middle and the
        // last partition; and a column's NaN in a later partition of a reduction over the rows
        for (const n of [5, 9, 70_000]) {
          for (const at of [0, Math.floor(n / 2), n - 1]) {
            const v = values(n, n + at, -2, 2);
            v[at] = NaN;
            for (const f of [tf.max, tf.min]) await parity(`${f === tf.max ? 'max' : 'min'} of ${n} with NaN at ${at}`, [{ data: v, shape: [n] }], (t) => f(t), 0, 0);
          }
        }
        const rows = values(40_000 * 3, 26, -2, 2);
        rows[39_000 * 3 + 1] = NaN;
        for (const f of [tf.max, tf.min]) await parity(`${f === tf.max ? 'max' : 'min'} over rows with NaN in a late partition`, [{ data: rows, shape: [40_000, 3] }], (t) => f(t, 0), 0, 0);
        await parity('sum of int32 (stock)', [{ data: Float32Array.from([1, 2, 3, 4]), shape: [2, 2], dtype: 'int32' }], (t) => tf.sum(t, 1));
      });

      test('softmax on the last axis and its gradient', async () => {
        for (const shape of [[7], [1, 1], [3, 33], [2, 4, 65, 65], [5, 8], [2, 3, 16]]) {
          const x = input(shape, 30, -8, 8);
          await parity(`softmax ${JSON.stringify(shape)}`, [x], (t) => tf.softmax(t), 1e-5, 1e-7);
          await parity(`softmax grad ${JSON.stringify(shape)}`, [x], gradsOf((t) => tf.softmax(t)), 1e-4, 1e-6);
          await parity(`logSoftmax ${JSON.stringify(shape)}`, [x], (t) => tf.logSoftmax(t), 1e-5, 1e-5);
        }
        const masked = { data: Float32Array.from([1, -Infinity, 2, -Infinity, -Infinity, -Infinity, 1000, 0, -1000]), shape: [3, 3] };
        await parity('softmax with -inf', [masked], (t) => tf.softmax(t), 1e-6, 1e-7);
      });

      test('transposes of rank 2-5 (float32 and int32)', async () => {
        const cases: [Arr, Arr][] = [
          [[3, 7], [1, 0]], [[1, 7], [1, 0]], [[300, 200], [1, 0]], [[2, 3, 4], [0, 2, 1]], [[2, 3, 4], [2, 0, 1]],
          [[2, 3, 4], [1, 0, 2]], [[64, 65, 33], [0, 2, 1]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4, 5], [3, 2, 1, 0]],
          [[2, 3, 4, 5], [0, 1, 3, 2]], [[8, 65, 4, 16], [0, 2, 1, 3]], [[8, 4, 65, 16], [0, 2, 1, 3]],
          [[2, 3, 1, 5, 7], [4, 0, 3, 2, 1]], [[2, 3, 4, 5, 6], [0, 3, 1, 4, 2]], [[3, 4, 5], [0, 1, 2]],
        ];
        let seed = 40;
        for (const [shape, perm] of cases) {
          const x = input(shape, seed++);
          await parity(`transpose ${JSON.stringify(shape)} ${JSON.stringify(perm)}`, [x], (t) => tf.transpose(t, perm), 0, 0);
          const xi = { data: values(x.data.length, seed++, -1000, 1000).map(Math.round), shape, dtype: 'int32' as const };
          await parity(`transpose int32 ${JSON.stringify(shape)}`, [xi], (t) => tf.transpose(t, perm), 0, 0);
        }
        await parity('transpose grad', [input([2, 3, 4, 5], 50)], gradsOf((t) => tf.transpose(t, [2, 0, 3, 1])), 0, 0);
      });

      test('more dimensions than the addon takes, and a transpose with a repeated axis: the stock kernels', async () => {
        // rank 9-10 after merging what can be merged: alternating broadcast, reversed axes, every other axis reduced
        const a10 = [2, 1, 2, 1, 2, 1, 2, 1, 2, 1];
        const b10 = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2];
        await parity('add rank 10', [input(a10, 60), input(b10, 61)], (x, y) => tf.add(x, y!), 0, 0);
        await parity('greater rank 10', [input(a10, 62), input(b10, 63)], (x, y) => tf.greater(x, y!), 0, 0);
        const s9 = [2, 3, 2, 3, 2, 3, 2, 3, 2];
        await parity('transpose rank 9', [input(s9, 64)], (t) => tf.transpose(t, [8, 7, 6, 5, 4, 3, 2, 1, 0]), 0, 0);
        await parity('sum rank 9', [input(s9, 65)], (t) => tf.sum(t, [0, 2, 4, 6, 8]), 1e-5, 1e-6);
        await parity('slice rank 9', [input(s9, 66)], (t) => tf.slice(t, [1, 1, 0, 1, 0, 1, 0, 1, 1], [1, 2, 2, 2, 2, 2, 2, 2, 1]), 0, 0);
        await parity('concat rank 9', [input(s9, 67), input(s9, 68)], (x, y) => tf.concat([x, y!], 3), 0, 0);
        await parity('pad rank 9', [input(s9, 69)], (t) => tf.pad(t, s9.map((_, i) => [i % 2, 1] as [number, number]), 0.5), 0, 0);
        // tf.transpose takes a repeated axis: a [2, 2] tensor of the diagonal's pattern, not 6 values under a [2, 2] shape
        await parity('transpose repeated axis', [input([2, 3], 70)], (t) => tf.transpose(t, [0, 0]), 0, 0);
        await parity('transpose repeated axis, large', [input([2, 4000], 71)], (t) => tf.add(tf.transpose(t, [1, 1]), 1), 0, 0);
      });

      test('slice, split, concat and pad (float32 and int32)', async () => {
        let seed = 200;
        const slices: [Arr, Arr, Arr][] = [
          [[7], [2], [3]], [[3, 7], [1, 2], [2, 4]], [[3, 7], [1, 0], [2, 7]], [[64, 65, 64], [0, 0, 0], [64, 1, 64]],
          [[64, 65, 64], [0, 1, 0], [64, 64, 64]], [[2, 3, 4, 5], [1, 1, 0, 2], [1, 2, 4, 3]], [[2, 3, 4, 5, 6], [0, 1, 1, 0, 3], [2, 1, 3, 5, 3]],
          [[5, 1, 7], [1, 0, 6], [3, 1, 1]],
        ];
        for (const [shape, begin, sz] of slices) {
          const x = input(shape, seed++);
          await parity(`slice ${JSON.stringify(shape)} ${JSON.stringify(begin)} ${JSON.stringify(sz)}`, [x], (t) => tf.slice(t, begin, sz), 0, 0);
          const xi = { data: values(x.data.length, seed++, -99, 99).map(Math.round), shape, dtype: 'int32' as const };
          await parity(`slice int32 ${JSON.stringify(shape)}`, [xi], (t) => tf.slice(t, begin, sz), 0, 0);
        }
        const splits: [Arr, number[] | number, number][] = [
          [[6, 5], 3, 0], [[6, 5], [1, 4], 1], [[64, 65, 64], [1, 64], 1], [[3, 6, 4], [2, 1, 3], 1], [[2, 3, 12], 4, 2], [[3, 4, 5, 6], [2, 0, 4], 3],
        ];
        for (const [shape, parts, axis] of splits) {
          await parity(`split ${JSON.stringify(shape)} ${JSON.stringify(parts)} axis ${axis}`, [input(shape, seed++)], (t) => tf.split(t, parts, axis), 0, 0);
        }
        const concats: [Arr[], number][] = [
          [[[3, 2], [3, 5]], 1], [[[3, 2], [4, 2], [1, 2]], 0], [[[64, 1, 64], [64, 64, 64]], 1], [[[2, 3, 4], [2, 3, 1], [2, 3, 0], [2, 3, 7]], 2],
          [[[2, 1, 3, 4, 5], [2, 2, 3, 4, 5]], 1], [[[7], [0], [9]], 0],
        ];
        for (const [shapes, axis] of concats) {
          const xs = shapes.map((sh) => input(sh, seed++));
          await parity(`concat ${JSON.stringify(shapes)} axis ${axis}`, xs, (...ts) => tf.concat(ts, axis), 0, 0);
          const xi = xs.map((x) => ({ ...x, data: x.data.map((v) => Math.round(v * 50)), dtype: 'int32' as const }));
          await parity(`concat int32 ${JSON.stringify(shapes)}`, xi, (...ts) => tf.concat(ts, axis), 0, 0);
        }
        const pads: [Arr, [number, number][], number][] = [
          [[3], [[1, 2]], 0], [[3, 4], [[0, 1], [2, 0]], 0], [[3, 4], [[-1, 0], [0, 1]], 0.5], [[2, 3, 4], [[1, 1], [0, 0], [2, 3]], 1.5], [[2, 3, 4, 5, 2], [[0, 1], [1, 0], [0, 0], [2, 2], [1, 0]], -2],
        ];
        // a negative padding (tf.pad takes one: it crops) is the stock kernel's
        for (const [shape, p, c] of pads) {
          await parity(`pad ${JSON.stringify(shape)} ${JSON.stringify(p)} ${c}`, [input(shape, seed++)], (t) => tf.pad(t, p, c), 0, 0);
        }
        await parity('slice, pad, concat, split gradients', [input([4, 7, 6], seed++), input([4, 2, 6], seed++)], gradsOf((a, b) => {
          const s = tf.slice(a, [1, 2, 0], [2, 3, 6]);
          const c = tf.concat([tf.pad(s, [[1, 1], [0, 0], [2, 1]], 0.5), tf.slice(tf.pad(b, [[0, 0], [1, 0], [1, 2]]), [0, 0, 0], [4, 3, 9])], 0);
          const [p, q] = tf.split(c, [3, 5], 0);
          return tf.add(tf.mul(p!, 2), tf.sum(q!, 0));
        }), 1e-6, 1e-6);
        await parity('concat grad path (split of the gradient)', [input([4, 1, 6], seed++), input([4, 5, 6], seed++)], (a, b) => {
          const [p, q] = tf.split(tf.concat([a, b], 1), [1, 5], 1);
          return tf.add(tf.sum(p!, 1), tf.sum(q!, 1));
        }, 1e-6, 1e-6);
      });

      test('matMul: odd shapes, transposes, broadcast batch dims, gradients', async () => {
        const cases: [Arr, Arr][] = [
          [[1, 1], [1, 1]], [[3, 7], [7, 33]], [[33, 1], [1, 7]], [[1, 33], [33, 1]], [[5, 3, 7], [5, 7, 4]],
          [[3, 4], [2, 4, 5]], [[2, 3, 4], [4, 5]], [[4, 2, 3, 4], [2, 4, 5]], [[2, 1, 3, 4], [1, 4, 5]],
          [[300, 64], [64, 130]], [[64, 65, 16], [64, 16, 65]], [[4, 160, 64], [64, 192]], [[7, 0], [0, 3]],
        ];
        let seed = 60;
        for (const [sa, sb] of cases) {
          for (const ta of [false, true]) {
            for (const tb of [false, true]) {
              const ra = sa.length;
              const rb = sb.length;
              const shapeA = ta ? [...sa.slice(0, -2), sa[ra - 1]!, sa[ra - 2]!] : sa;
              const shapeB = tb ? [...sb.slice(0, -2), sb[rb - 1]!, sb[rb - 2]!] : sb;
              const a = input(shapeA, seed++);
              const b = input(shapeB, seed++);
              const f = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, ta, tb);
              const tag = `${JSON.stringify(shapeA)}${ta ? 'T' : ''} x ${JSON.stringify(shapeB)}${tb ? 'T' : ''}`;
              await parity(`matMul ${tag}`, [a, b], f, 1e-4, 1e-4);
              if (a.data.length + b.data.length < 40000) await parity(`matMul grad ${tag}`, [a, b], gradsOf(f), 1e-4, 1e-4);
            }
          }
        }
        // both operands broadcast: the stock kernel allocates max(batchA, batchB) matrices only, so the
        // reference broadcasts explicitly first
        for (const [sa, sb] of [[[2, 1, 3, 4], [1, 5, 4, 6]], [[3, 1, 7, 1, 5], [4, 1, 5, 2]], [[1, 2, 5, 3], [3, 1, 3, 4]]] as [Arr, Arr][]) {
          const a = input(sa, seed++);
          const b = input(sb, seed++);
          const batch = tf.backend_util.assertAndGetBroadcastShape(sa.slice(0, -2), sb.slice(0, -2));
          await parityRef(`matMul ${JSON.stringify(sa)} x ${JSON.stringify(sb)}`, [a, b], (x, y) => tf.matMul(x, y), (x, y) =>
            tf.matMul(tf.broadcastTo(x, [...batch, ...sa.slice(-2)]), tf.broadcastTo(y, [...batch, ...sb.slice(-2)])), 1e-4, 1e-4);
        }
      });

      test('fused matMul: bias layouts and activations', async () => {
        const a = input([2, 5, 7], 80);
        const b = input([7, 33], 81);
        const biases: Inputs[number][] = [input([33], 82), input([1, 33], 83), input([5, 33], 84), input([], 85), input([2, 1, 1], 86)];
        for (const activation of ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const) {
          for (const bias of biases) {
            const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
              tf.fused.matMul({ a: x, b: y, bias: z, activation, leakyreluAlpha: 0.15 });
            await parity(`fused ${activation} bias ${JSON.stringify(bias.shape)}`, [a, b, bias], f, 1e-4, 1e-5);
          }
          const g = (x: tf.Tensor, y: tf.Tensor) => tf.fused.matMul({ a: x, b: y, activation, transposeB: true });
          await parity(`fused ${activation} no bias, transposeB`, [a, input([33, 7], 87)], g, 1e-4, 1e-5);
        }
        for (const activation of ['linear', 'relu'] as const) {
          const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.fused.matMul({ a: x, b: y, bias: z, activation });
          // 2-D operands: tfjs's fused gradient does not sum over broadcast batch dims
          await parity(`fused ${activation} grad`, [input([10, 7], 90), b, biases[0]!], gradsOf(f), 1e-4, 1e-4);
        }
        await parity('fused prelu (stock)', [input([5, 7], 88), b, input([33], 89)], (x, y, z) =>
          tf.fused.matMul({ a: x, b: y, activation: 'prelu', preluActivationWeights: z }), 1e-4, 1e-4);
      });

      test('a two-layer network has the same gradients on both backends', async () => {
        const shapes = { x: [6, 9, 12], w1: [12, 24], b1: [24], g: [24], w2: [24, 5], labels: [6, 9, 5] };
        const inputs = Object.entries(shapes).map(([k, s], i) => input(s, 100 + i, k === 'g' ? 0.5 : -1, k === 'g' ? 1.5 : 1));
        const net = (x: tf.Tensor, w1: tf.Tensor, b1: tf.Tensor, g: tf.Tensor, w2: tf.Tensor, labels: tf.Tensor): tf.Tensor => {
          const h = tf.add(tf.matMul(x, w1), b1);
          const gelu = tf.mul(tf.mul(h, 0.5), tf.add(1, tf.erf(tf.div(h, Math.SQRT2))));
          const { mean, variance } = tf.moments(gelu, -1, true);
          const ln = tf.mul(tf.mul(tf.sub(gelu, mean), tf.rsqrt(tf.add(variance, 1e-5))), g);
          const logits = tf.matMul(ln, w2);
          const attn = tf.softmax(tf.matMul(logits, logits, false, true));
          const mixed = tf.matMul(attn, logits);
          const p = tf.softmax(tf.transpose(mixed, [1, 0, 2]));
          return tf.neg(tf.mean(tf.sum(tf.mul(tf.transpose(labels, [1, 0, 2]), tf.log(p)), -1)));
        };
        const grads = (...xs: tf.Tensor[]) => {
          const { value, grads: g } = tf.valueAndGrads((...ys: tf.Tensor[]) => net(...(ys as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])))(xs);
          return [value, ...g.slice(0, 5)];
        };
        await parity('two-layer network loss and gradients', inputs, grads, 1e-4, 1e-5);
      });

      test('recycled output buffers never leak into results or into arrays a caller holds', async () => {
        await tf.setBackend('native');
        const backend = tf.backend() as unknown as { freeListBytes(): number };
        const n = 4096;
        const x = tf.tensor(values(n, 300), [64, 64]);
        // values read out stay intact after dispose and later kernels
        const t = tf.exp(x);
        const held = t.dataSync();
        const copy = Float32Array.from(held);
        t.dispose();
        // outputs of the same size but other values: a recycled `held` would be overwritten with them
        for (let i = 0; i < 5; i++) tf.dispose(tf.neg(tf.exp(tf.mul(x, 0.5))));
        assert.deepEqual(Array.from(held), Array.from(copy), 'array returned by dataSync changed');
        // a view (stock contiguous slice) keeps its base alive
        const base = tf.mul(x, 2);
        const view = tf.slice(base, [8, 0], [16, 64]);
        base.dispose();
        for (let i = 0; i < 5; i++) tf.dispose(tf.mul(x, 3));
        const want = Array.from(values(n, 300).subarray(8 * 64, 24 * 64)).map((v) => Math.fround(v * 2));
        assert.deepEqual(Array.from(view.dataSync()), want, 'slice view changed after its base was disposed');
        view.dispose();
        // arrays full of NaN go back to the free list; outputs built from them must not show stale values
        const before = backend.freeListBytes();
        tf.tidy(() => {
          for (let i = 0; i < 4; i++) tf.div(tf.sub(x, x), tf.sub(x, x));
        });
        assert.ok(backend.freeListBytes() > before, 'disposed outputs are recycled');
        const held2 = backend.freeListBytes();
        assert.equal(releaseNativeFreeList(), held2);
        assert.equal(backend.freeListBytes(), 0);
        tf.tidy(() => {
          for (let i = 0; i < 4; i++) tf.div(tf.sub(x, x), tf.sub(x, x));
        });
        const inputs: Inputs = [input([64, 64], 301)];
        await parity('pad into recycled memory', [input([62, 62], 302)], (a) => tf.pad(a, [[1, 1], [1, 1]]), 0, 0);
        await parity('concat into recycled memory', [input([32, 64], 303), input([32, 64], 304)], (a, b) => tf.concat([a, b], 0), 0, 0);
        await parity('matMul with K = 0 into recycled memory', [input([64, 0], 305), input([0, 64], 306)], (a, b) => tf.matMul(a, b), 0, 0);
        await parity('sum with nothing reduced into recycled memory', inputs, (a) => tf.sum(tf.reshape(a, [64, 64, 1]), 2), 0, 0);
        x.dispose();
      });

      test('kernels leave no tensors or buffers behind', async () => {
        await tf.setBackend('native');
        const backend = tf.backend() as unknown as { numDataIds(): number };
        const x = tf.tensor(values(3 * 7 * 33, 7), [3, 7, 33]);
        const w = tf.tensor(values(33 * 5, 8), [33, 5]);
        const bias = tf.tensor(values(5, 9), [5]);
        const before = tf.memory().numTensors;
        const ids = backend.numDataIds();
        const run = () => {
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
            const y = tf.fused.matMul({ a: tf.reshape(a, [21, 33]), b, bias: c, activation: 'relu' });
            const s = tf.softmax(tf.mul(tf.exp(tf.neg(y)), tf.erf(y)));
            return tf.sum(tf.mean(tf.transpose(tf.sub(s, tf.max(s, 1, true))), 0));
          })([x, w, bias]);
          const m = tf.matMul(tf.reshape(x, [3, 1, 7, 33]), tf.reshape(tf.tile(w, [2, 1]), [1, 2, 33, 5]));
          return [...g, m, tf.maximum(tf.squaredDifference(x, 1), tf.rsqrt(tf.abs(x)))];
        };
        tf.tidy(() => {
          run();
        });
        assert.equal(tf.memory().numTensors, before, 'tensors');
        assert.equal(backend.numDataIds(), ids, 'backend buffers');
        tf.dispose([x, w, bias]);
      });
    });
  }
});
