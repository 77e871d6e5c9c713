/**
 * moco3's WGSL kernels (src/engine/webgpu-kernels.ts) against the stock tfjs kernels they replace, both on
 * the webgpu backend (on CI: Mesa's lavapipe, installed by .ci/run). No adapter fails the test.
 */
import { tf } from '../helpers/tf.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkWebGpuErrors, closeWebGpu, registerWebGpuBackend } from '../../src/engine/webgpu.ts';
import { ADAMW, ATTENTION_BWD, ATTENTION_FWD, attentionFits, BATCHNORM_FWD, COLUMN_SUM, EMA, GRAD_STATS, fusedKernel, fusedKernels, GELU_BWD, GELU_FWD, LAMB, LAMB_GROUP, LARS, LARS_GROUP, LAYERNORM_BWD, LAYERNORM_FWD, PACK, packed, rowAttentionBytes, setAttentionVariant, setPackLimit, SOFTMAX_BWD, UNPACK, moco3Packing, packingDefault, useMoco3Kernels, useMoco3Packing } from '../../src/engine/webgpu-kernels.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { tinyConfig } from '../model/util.ts';
import { gelu, layerNorm, linear, normalize, softmax, type NormStats } from '../../src/model/layers.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { Lamb } from '../../src/optim/lamb.ts';
import { Lars } from '../../src/optim/lars.ts';
import { globalNorm, WEBGPU_ADDN_INPUTS, type Optimizer } from '../../src/optim/optimizer.ts';
import { attention } from '../../src/model/vit.ts';
import { gradStats } from '../../src/train/metrics.ts';

before(async () => {
  const a = await registerWebGpuBackend({ allowSoftware: true });
  assert.equal(typeof a, 'object', `no WebGPU adapter: ${String(a)}`);
  // the backend chose per adapter; the tests below say which way they run, packed unless they say not
  assert.equal(moco3Packing(), packingDefault((a as { software: boolean }).software));
  useMoco3Packing(true);
});

test('packed group updates by default on a hardware adapter only; MOCO3_WEBGPU_PACK overrides either way', () => {
  assert.equal(packingDefault(false, undefined), true);
  assert.equal(packingDefault(true, undefined), false);
  assert.equal(packingDefault(true, '1'), true);
  assert.equal(packingDefault(false, '0'), false);
  assert.equal(packingDefault(false, ''), true);
});
after(async () => {
  useMoco3Kernels(true);
  process.stderr.write(`moco3 webgpu kernels vs stock, max |diff| / max |stock|:\n${[...relErrors].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}\n`);
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
  // a dispatch the device refused leaves both sides zero: equal, unless its error is read here
  checkWebGpuErrors('the test');
  return v;
}

/** max |a − b| / max |b|, kept per label for the summary printed at the end */
const relErrors = new Map<string, number>();
async function relDiff(label: string, a: tf.Tensor, b: tf.Tensor): Promise<number> {
  assert.deepEqual(a.shape, b.shape, label);
  const d = tf.tidy(() => tf.stack([tf.max(tf.abs(tf.sub(a, b))), tf.max(tf.abs(b))]));
  const [num, den] = (await d.data()) as Float32Array;
  d.dispose();
  checkWebGpuErrors(label);
  const r = num! / den!;
  relErrors.set(label, Math.max(relErrors.get(label) ?? 0, r));
  return r;
}

/** Runs f with moco3's kernels on, then off (the stock composition), both on webgpu. */
function bothWays<T>(f: () => T): [T, T] {
  try {
    useMoco3Kernels(true);
    const a = f();
    useMoco3Kernels(false);
    return [a, f()];
  } finally {
    useMoco3Kernels(true);
  }
}

// one row per chunk; D above the workgroup size (4 columns per thread); rows > 2048: 3 rows per chunk, the last one short
// 70001 rows: more workgroups than a dispatch's dimension takes (65535), the 2-D dispatch
for (const [rows, D] of [[3, 37], [130, 200], [4201, 24], [70001, 3]] as const) {
  test(`LayerNorm forward and backward, [${rows}, ${D}]: fused kernels = stock kernels on webgpu`, async () => {
    const before = tf.memory().numTensors;
    const [x, w, b, dy] = tf.tidy(() => [
      tf.add(tf.mul(tf.randomNormal([rows, D], 0, 1, 'float32', 5), 2), 0.7),
      tf.randomNormal([D], 1, 0.3, 'float32', 6),
      tf.randomNormal([D], 0, 0.3, 'float32', 7),
      tf.randomNormal([rows, D], 0, 1, 'float32', 8),
    ]);
    const f = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) => {
          const y = layerNorm(xi as tf.Tensor2D, wi as tf.Tensor1D, bi as tf.Tensor1D, 1e-6);
          return tf.sum(tf.mul(y, dy!));
        })([x!, w!, b!]);
        return [layerNorm(x! as tf.Tensor2D, w! as tf.Tensor1D, b! as tf.Tensor1D, 1e-6), value, ...grads];
      });
    const [fused, stock] = bothWays(f);
    // the fused path ran moco3's kernel
    const prof = await tf.profile(() => tf.tidy(() => layerNorm(x! as tf.Tensor2D, w! as tf.Tensor1D, b! as tf.Tensor1D)));
    assert.ok(prof.kernelNames.includes(LAYERNORM_FWD), `kernels run: ${prof.kernelNames.join(', ')}`);
    assert.ok(!prof.kernelNames.includes('Rsqrt'), 'no stock LayerNorm kernels');
    const names = ['y', 'value', 'dx', 'dgamma', 'dbeta'];
    for (let i = 0; i < names.length; i++) {
      const r = await relDiff(`LayerNorm ${names[i]}`, fused[i]!, stock[i]!);
      // float32 noise: different summation orders over D or rows; a wrong kernel is off by O(1)
      assert.ok(r <= 2e-5, `LayerNorm ${names[i]} [${rows}, ${D}]: relative difference ${r}`);
    }
    // the saved statistics are the rows' mean and 1/sqrt(var + eps)
    const [y, mean, rstd] = fusedKernels(LAYERNORM_FWD, { x, gamma: w, beta: b }, { eps: 1e-6 })!;
    const mom = tf.moments(x!, 1);
    const wantRstd = tf.tidy(() => tf.rsqrt(tf.add(mom.variance, 1e-6)));
    assert.ok((await relDiff('LayerNorm mean', mean!, mom.mean)) <= 2e-5);
    assert.ok((await relDiff('LayerNorm rstd', rstd!, wantRstd)) <= 2e-5);
    tf.dispose([x!, w!, b!, dy!, ...fused, ...stock, prof.result as tf.Tensor, y!, mean!, rstd!, mom.mean, mom.variance, wantRstd]);
    assert.equal(tf.memory().numTensors, before);
  });
}

// fewer rows than row lanes, columns not a multiple of a workgroup's; more rows; without γ and β (the
// predictor's last BatchNorm)
for (const [n, F, affine] of [[4, 37, true], [300, 50, true], [300, 50, false]] as const) {
  test(`BatchNorm forward and backward, [${n}, ${F}]${affine ? '' : ', no affine'}: fused kernels = stock kernels on webgpu`, async () => {
    const before = tf.memory().numTensors;
    const [x, w, b, dy] = tf.tidy(() => [
      tf.add(tf.mul(tf.randomNormal([n, F], 0, 1, 'float32', 40), 3), 1.5),
      tf.randomNormal([F], 1, 0.3, 'float32', 41),
      tf.randomNormal([F], 0, 0.3, 'float32', 42),
      tf.randomNormal([n, F], 0, 1, 'float32', 43),
    ]);
    const bn = (xi: tf.Tensor, wi?: tf.Tensor, bi?: tf.Tensor, onStats?: (s: NormStats) => void) =>
      normalize(xi as tf.Tensor2D, 0, 1e-5, wi as tf.Tensor1D | undefined, bi as tf.Tensor1D | undefined, onStats);
    const f = () =>
      tf.tidy(() => {
        const stats: NormStats[] = [];
        const { value, grads } = affine
          ? tf.valueAndGrads((xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(bn(xi, wi, bi), dy!)))([x!, w!, b!])
          : tf.valueAndGrads((xi: tf.Tensor) => tf.sum(tf.mul(bn(xi), dy!)))([x!]);
        const y = affine ? bn(x!, w!, b!, (st) => stats.push(st)) : bn(x!, undefined, undefined, (st) => stats.push(st));
        return [y, value, ...grads, stats[0]!.mean, stats[0]!.varBiased];
      });
    const [fused, stock] = bothWays(f);
    const prof = await tf.profile(() => tf.tidy(() => tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(affine ? bn(xi, w!, b!) : bn(xi), dy!)))(x!)));
    assert.ok(prof.kernelNames.includes(BATCHNORM_FWD) && !prof.kernelNames.includes('Rsqrt'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const names = ['y', 'value', 'dx', ...(affine ? ['dgamma', 'dbeta'] : []), 'mean', 'variance'];
    assert.equal(fused.length, names.length);
    for (let i = 0; i < names.length; i++) {
      const r = await relDiff(`BatchNorm ${names[i]}`, fused[i]!, stock[i]!);
      assert.ok(r <= 2e-5, `BatchNorm ${names[i]} [${n}, ${F}]: relative difference ${r}`);
    }
    tf.dispose([x!, w!, b!, dy!, ...fused, ...stock, prof.result as tf.Tensor]);
    assert.equal(tf.memory().numTensors, before);
  });
}

// one chunk; many chunks of 16 rows, the last one short; many column groups
for (const [n, F] of [[3, 5], [1500, 37], [70, 1000]] as const) {
  test(`linear on webgpu, [${n}, 4] x [4, ${F}]: column sums for the bias's gradient, the bias in the matmul, transposed operands in place = the stock path`, async () => {
    const before = tf.memory().numTensors;
    const [x, w, b, dy] = tf.tidy(() => [
      tf.randomNormal([n, 4], 0, 1, 'float32', 50),
      tf.randomNormal([4, F], 0, 1, 'float32', 51),
      tf.randomNormal([F], 0, 1, 'float32', 52),
      tf.add(tf.randomNormal([n, F], 0, 1, 'float32', 53), 0.5),
    ]);
    const s = fusedKernel(COLUMN_SUM, { x: dy! })!;
    const want = tf.sum(dy!, 0);
    assert.ok((await relDiff('column sum', s, want)) <= 2e-6);
    // through linear(): value and gradients
    const f = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(linear(xi as tf.Tensor2D, wi as tf.Tensor2D, bi as tf.Tensor1D), dy!)))([x!, w!, b!]);
        return [linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), value, ...grads];
      });
    const [fused, stock] = bothWays(f);
    const prof = await tf.profile(() => f());
    const ran = prof.kernelNames;
    assert.ok(ran.includes(COLUMN_SUM) && ran.includes('_FusedMatMul') && !ran.includes('Transpose') && !ran.includes('Add'), `kernels run: ${ran.join(', ')}`);
    const names = ['y', 'value', 'dx', 'dw', 'db'];
    for (let i = 0; i < names.length; i++) {
      const label = names[i] === 'db' ? 'column sum' : `linear ${names[i]}`;
      assert.ok((await relDiff(label, fused[i]!, stock[i]!)) <= 2e-6, `linear ${names[i]}`);
    }
    tf.dispose([x!, w!, b!, dy!, s, want, ...fused, ...stock, ...(prof.result as tf.Tensor[])]);
    assert.equal(tf.memory().numTensors, before);
  });
}

test('the per-row attention needs a row of scores in workgroup memory: past the device limit the stock path runs', () => {
  // hand-counted: scores N floats and q (dO) hd floats, each rounded to 16 bytes, and 64 vec2 + 64 floats
  assert.equal(rowAttentionBytes(3840, 64), 3840 * 4 + 64 * 4 + 512 + 256);
  assert.equal(rowAttentionBytes(3841, 64), 3844 * 4 + 64 * 4 + 512 + 256);
  assert.equal(rowAttentionBytes(65, 12), 68 * 4 + 12 * 4 + 768);
  const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits.maxComputeWorkgroupStorageSize;
  // WebGPU's default 16 KiB holds 3,840 tokens of head size 64
  assert.ok(rowAttentionBytes(3840, 64) <= 16384 && rowAttentionBytes(3841, 64) > 16384);
  const most = Math.floor((limit - 768 - 64 * 4) / 16) * 4;
  assert.deepEqual([attentionFits(65, 16), attentionFits(257, 64), attentionFits(most, 64), attentionFits(most + 1, 64)], [true, true, true, false]);
  // a forced variant: per head from the buffers, any length (a thread's rows in registers); per head staged,
  // while 2·N·hd floats fit; per row, the same bound as auto's
  const staged = Math.floor(limit / (2 * 64 * 4));
  assert.equal(attentionFits(staged + 1, 64), true, 'auto at this length runs per head, from the buffers where staging does not fit');
  setAttentionVariant('head');
  try {
    assert.deepEqual([attentionFits(staged, 64), attentionFits(staged + 1, 64)], [true, false]);
  } finally {
    setAttentionVariant('auto');
  }
  for (const [v, want] of [['head', false], ['head-unstaged', true], ['row', false]] as const) {
    setAttentionVariant(v);
    try {
      assert.equal(attentionFits(most + 1, 64), want, v);
      assert.equal(attentionFits(65, 16), true, v);
    } finally {
      setAttentionVariant('auto');
    }
  }
});

test('where the attention kernels do not fit, the model composes the stock kernels: the same values, no moco3 attention kernel run', async () => {
  // forced per head and staged, a head of 64 whose 2·N·64 floats pass the device's workgroup memory
  const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits.maxComputeWorkgroupStorageSize;
  const N = Math.floor(limit / (2 * 64 * 4)) + 1;
  const [B, D, heads] = [1, 64, 1];
  const before = tf.memory().numTensors;
  const params = new Map<string, tf.Tensor>([
    ['a.qkv.weight', tf.randomNormal([D, 3 * D], 0, 0.2, 'float32', 70)],
    ['a.qkv.bias', tf.zeros([3 * D])],
    ['a.proj.weight', tf.randomNormal([D, D], 0, 0.2, 'float32', 71)],
    ['a.proj.bias', tf.zeros([D])],
  ]);
  const P = (n: string) => params.get(n)!;
  const x = tf.randomNormal([B * N, D], 0, 1, 'float32', 72) as tf.Tensor2D;
  setAttentionVariant('head');
  try {
    assert.equal(attentionFits(N, 64), false);
    const prof = await tf.profile(() => tf.tidy(() => attention(x, B, N, heads, P, 'a.')));
    assert.ok(!prof.kernelNames.includes(ATTENTION_FWD) && prof.kernelNames.includes('Softmax'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const [fell, stock] = bothWays(() => tf.tidy(() => attention(x, B, N, heads, P, 'a.')));
    assert.deepEqual(await fell.data(), await stock.data());
    tf.dispose([fell, stock, prof.result as tf.Tensor]);
  } finally {
    setAttentionVariant('auto');
  }
  tf.dispose([x, ...params.values()]);
  assert.equal(tf.memory().numTensors, before);
});

// 65 tokens (more than a workgroup), head size 16; one head of size 128 (more than a workgroup); 257 tokens; the
// variants: a workgroup per head and image (k, v in workgroup memory, or read from the buffer), a workgroup
// per query row
for (const [B, N, D, heads, variant] of [
  [3, 65, 48, 3, 'head'],
  [2, 5, 128, 1, 'head'],
  [3, 65, 48, 3, 'head-unstaged'],
  [3, 65, 48, 3, 'row'],
  [2, 5, 128, 1, 'row'],
  // forced past auto's 256 tokens: a thread takes a second key row (head size 4: staged, 2·257·4 floats fit
  // WebGPU's default 16 KiB of workgroup memory, as on any device)
  [1, 257, 4, 1, 'head'],
  [1, 257, 4, 1, 'head-unstaged'],
] as const) {
  test(`attention (qkv to merged heads) forward and backward, B ${B}, N ${N}, D ${D}, ${heads} heads, per ${variant}: moco3's kernels = the stock path on webgpu`, async (t) => {
    setAttentionVariant(variant);
    t.after(() => setAttentionVariant('auto'));
    const before = tf.memory().numTensors;
    const params = new Map<string, tf.Tensor>([
      ['a.qkv.weight', tf.randomNormal([D, 3 * D], 0, 0.3, 'float32', 60)],
      ['a.qkv.bias', tf.randomNormal([3 * D], 0, 0.1, 'float32', 61)],
      ['a.proj.weight', tf.randomNormal([D, D], 0, 0.2, 'float32', 62)],
      ['a.proj.bias', tf.randomNormal([D], 0, 0.1, 'float32', 63)],
    ]);
    const P = (n: string) => params.get(n)!;
    const [x, dy] = tf.tidy(() => [tf.randomNormal([B * N, D], 0, 1, 'float32', 64), tf.randomNormal([B * N, D], 0, 1, 'float32', 65)]);
    const loss = (xi: tf.Tensor, w: tf.Tensor) => {
      const Pw = (n: string) => (n === 'a.qkv.weight' ? w : P(n));
      return tf.sum(tf.mul(attention(xi as tf.Tensor2D, B, N, heads, Pw, 'a.'), dy!));
    };
    const f = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads(loss)([x!, P('a.qkv.weight')]);
        return [attention(x! as tf.Tensor2D, B, N, heads, P, 'a.'), value, ...grads];
      });
    const [fused, stock] = bothWays(f);
    const prof = await tf.profile(() => tf.tidy(() => tf.grads(loss)([x!, P('a.qkv.weight')])));
    assert.ok(prof.kernelNames.includes(ATTENTION_FWD) && prof.kernelNames.includes(ATTENTION_BWD) && !prof.kernelNames.includes('Softmax'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const names = ['out', 'value', 'dx', 'dWqkv'];
    for (let i = 0; i < names.length; i++) {
      const r = await relDiff(`attention per ${variant} ${names[i]}`, fused[i]!, stock[i]!);
      assert.ok(r <= 2e-5, `attention ${names[i]}: relative difference ${r}`);
    }
    tf.dispose([x!, dy!, ...params.values(), ...fused, ...stock, ...(prof.result as tf.Tensor[])]);
    assert.equal(tf.memory().numTensors, before);
  });
}

// an attention's scores [heads·batch, tokens, tokens] (65 columns: more than the workgroup), and a 3x5
for (const shape of [[6, 65, 65], [3, 5]] as const) {
  test(`softmax backward, [${shape}]: moco3's kernel = the stock gradient on webgpu`, async () => {
    const before = tf.memory().numTensors;
    const [x, dy] = tf.tidy(() => [tf.mul(tf.randomNormal([...shape], 0, 1, 'float32', 30), 4), tf.randomNormal([...shape], 0, 1, 'float32', 31)]);
    const f = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((xi: tf.Tensor) => tf.sum(tf.mul(softmax(xi), dy!)))([x!]);
        return [softmax(x!), value, grads[0]!];
      });
    const [fused, stock] = bothWays(f);
    const prof = await tf.profile(() => tf.tidy(() => tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(softmax(xi), dy!)))(x!)));
    assert.ok(prof.kernelNames.includes(SOFTMAX_BWD) && !prof.kernelNames.includes('Sub'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const names = ['y', 'value', 'dx'];
    for (let i = 0; i < names.length; i++) {
      const r = await relDiff(`softmax ${names[i]}`, fused[i]!, stock[i]!);
      assert.ok(r <= 2e-6, `softmax ${names[i]}: relative difference ${r}`);
    }
    tf.dispose([x!, dy!, ...fused, ...stock, prof.result as tf.Tensor]);
    assert.equal(tf.memory().numTensors, before);
  });
}

test("the momentum encoder's update: moco3's kernel = k·m + q·(1 − m) by the stock kernels on webgpu", async () => {
  const before = tf.memory().numTensors;
  const [k, q] = [tf.randomNormal([70, 33], 0, 1, 'float32', 70), tf.randomNormal([70, 33], 0, 1, 'float32', 71)];
  const [fused] = fusedKernels(EMA, { k, q }, { m: 0.99 })!;
  const stock = tf.tidy(() => tf.add(tf.mul(k, 0.99), tf.mul(q, 1 - 0.99)));
  const change = tf.tidy(() => tf.sub(fused!, k));
  const stockChange = tf.tidy(() => tf.sub(stock, k));
  assert.ok((await relDiff('momentum update change', change, stockChange)) <= 1e-6);
  tf.dispose([k, q, fused!, stock, change, stockChange]);
  assert.equal(tf.memory().numTensors, before);
});

test('tensors of no element: moco3\'s multi-output kernels give empty outputs, dispatch nothing (Dawn refused a binding of size 0, and the work queued with it was lost)', async () => {
  const before = tf.memory().numTensors;
  const [k, q] = [tf.zeros([0]), tf.zeros([0])];
  const [ema] = fusedKernels(EMA, { k, q }, { m: 0.99 })!;
  const [x, g, b] = [tf.zeros([0, 4]), tf.ones([4]), tf.zeros([4])];
  const ln = fusedKernels(LAYERNORM_FWD, { x, gamma: g, beta: b }, { eps: 1e-6 })!;
  // work queued after them still runs
  const [p, m] = [tf.ones([5]), tf.fill([5], 3)];
  const [after] = fusedKernels(EMA, { k: p, q: m }, { m: 0.5 })!;
  assert.deepEqual(Array.from(await after!.data()), [2, 2, 2, 2, 2]);
  checkWebGpuErrors('the test');
  assert.deepEqual([ema!.shape, ...ln.map((t) => t.shape)], [[0], [0, 4], [0], [0]]);
  assert.deepEqual(await Promise.all([ema!, ...ln].map(async (t) => Array.from(await t.data()))), [[], [], [], []]);
  // LayerNorm's backward over no rows: dx empty, dγ and dβ sums over nothing, zeros
  const bwd = fusedKernels(LAYERNORM_BWD, { dy: x, x, mean: ln[1]!, rstd: ln[2]!, gamma: g }, {})!;
  assert.deepEqual(await Promise.all(bwd.map(async (t) => Array.from(await t.data()))), [[], [0, 0, 0, 0], [0, 0, 0, 0]]);
  checkWebGpuErrors('the test');
  tf.dispose([k, q, ema!, x, g, b, ...ln, p, m, after!, ...bwd]);
  assert.equal(tf.memory().numTensors, before);
});

test('the global gradient norm (LAMB with optim.max_grad_norm) of 160 gradients on webgpu: AddNs the device takes, the hand-computed value', async () => {
  const before = tf.memory().numTensors;
  // gradient i holds 3 values of i + 1: Σ sum(g²) = 3 Σ (i + 1)²
  const gs = Array.from({ length: 160 }, (_, i) => tf.fill([3], i + 1));
  const prof = await tf.profile(() => tf.tidy(() => globalNorm(gs)));
  const addNs = prof.kernels.filter((k) => k.name === 'AddN');
  assert.ok(addNs.length > 1 && addNs.every((k) => k.inputShapes.length <= WEBGPU_ADDN_INPUTS), addNs.map((k) => k.inputShapes.length).join(','));
  const n = tf.tidy(() => globalNorm(gs));
  const v = (await n.data())[0]!;
  checkWebGpuErrors('the test');
  const expected = Math.sqrt(3 * Array.from({ length: 160 }, (_, i) => (i + 1) ** 2).reduce((a, b) => a + b));
  assert.ok(Math.abs(v - expected) / expected < 1e-6, `${v} vs ${expected}`);
  tf.dispose([n, ...gs, prof.result as tf.Tensor]);
  assert.equal(tf.memory().numTensors, before);
});

test("the step's gradient statistics (max |g|, L2 per group): moco3's kernel = the stock kernels on webgpu, Inf and NaN included", async () => {
  const before = tf.memory().numTensors;
  // 1000 x 70: more elements than the workgroup's threads
  const grads = new Map<string, tf.Tensor>([
    ['a', tf.randomNormal([1000, 70], 0, 1, 'float32', 80)],
    ['b', tf.randomNormal([33], 0, 3, 'float32', 81)],
    ['c', tf.randomNormal([5, 7], 0, 1e-3, 'float32', 82)],
  ]);
  const groups = new Map([
    ['ab', ['a', 'b']],
    ['c', ['c']],
  ]);
  const loss = tf.scalar(1.5);
  const [fused, stock] = bothWays(() => gradStats(loss, grads, groups));
  const prof = await tf.profile(() => gradStats(loss, grads, groups));
  assert.ok(prof.kernelNames.includes(GRAD_STATS) && !prof.kernelNames.includes('Abs'), `kernels run: ${prof.kernelNames.join(', ')}`);
  // one dispatch per gradient (not packed: the sum of squares keeps the per-gradient order)
  assert.equal(prof.kernels.filter((k) => k.name === GRAD_STATS).length, 3);
  assert.ok(!prof.kernelNames.includes(PACK));
  assert.ok((await relDiff('gradient statistics', fused, stock)) <= 1e-6);
  // a non-finite gradient: Inf gives Inf, NaN gives NaN, as the stock kernels (the step then skips the update)
  for (const bad of [Infinity, NaN]) {
    const g = tf.tensor1d([1, -2, bad, 3]);
    const [f, s] = bothWays(() => gradStats(loss, new Map([['c', g]]), new Map([['c', ['c']]])));
    const [fv, sv] = [Array.from(await f.data()), Array.from(await s.data())];
    assert.deepEqual(fv.slice(1), sv.slice(1), `${bad}: fused ${fv}, stock ${sv}`);
    assert.ok(Number.isNaN(bad) ? Number.isNaN(fv[1]!) : fv[1] === Infinity);
    tf.dispose([g, f, s]);
  }
  tf.dispose([...grads.values(), loss, fused, stock, prof.result as tf.Tensor]);
  assert.equal(tf.memory().numTensors, before);
});

// stockOnly: a kernel of the stock update that moco3's update does not run (LAMB's clipping by the global norm is stock)
// kernel: moco3's kernel per parameter; group: the one for a packed group (AdamW's is the same, elementwise)
const OPTIMIZERS: Record<string, { kernel: string; group: string; stockOnly: string; make: () => Optimizer }> = {
  adamw: { kernel: ADAMW, group: ADAMW, stockOnly: 'Sqrt', make: () => new AdamW({ weightDecay: 0.1, betas: [0.9, 0.95], eps: 1e-8 }) },
  lamb: { kernel: LAMB, group: LAMB_GROUP, stockOnly: 'Greater', make: () => new Lamb({ weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-6, excludeBiasNorm: true, maxGradNorm: 1 }, (n) => (n === 'b' ? 1 : 2)) },
  // weight decay 0: no parameter adapted (timm's rule), Adam's step on every one
  'lamb (wd 0)': { kernel: LAMB, group: LAMB_GROUP, stockOnly: 'Sqrt', make: () => new Lamb({ weightDecay: 0, betas: [0.9, 0.999], eps: 1e-6, excludeBiasNorm: false, maxGradNorm: null }, (n) => (n === 'b' ? 1 : 2)) },
  lars: { kernel: LARS, group: LARS_GROUP, stockOnly: 'Greater', make: () => new Lars({ weightDecay: 1e-3, momentum: 0.9, trustCoefficient: 0.001 }, (n) => (n === 'b' ? 1 : 2)) },
};
for (const [optName, { kernel: single, group, stockOnly, make }] of Object.entries(OPTIMIZERS)) for (const pack of [true, false]) {
  const kernel = pack ? group : single;
  test(`${optName}: moco3's update kernel${pack ? ', one per packed group,' : ' per parameter'} = the stock update on webgpu, over three steps`, async (t) => {
    const was = useMoco3Packing(pack);
    t.after(() => useMoco3Packing(was));
    const before = tf.memory().numTensors;
    // w: not a multiple of the workgroup size; big: more elements than the norm kernels' threads (a strided loop);
    // b: PyTorch ndim 1 (no decay or trust ratio in LAMB with the exclusion and in LARS); z: zero, trust ratio 1
    const shapes: Record<string, number[]> = { w: [70, 33], big: [300, 260], b: [70], z: [5, 7] };
    const p0 = new Map(Object.entries(shapes).map(([n, sh], i) => [n, n === 'z' ? tf.zeros(sh) : tf.randomNormal(sh, 0, 0.5, 'float32', 9 + i)] as const));
    const grads = [0, 1, 2].map((s) => new Map(Object.entries(shapes).map(([n, sh], i) => [n, tf.randomNormal(sh, 0, 1e-2 * (s + 1), 'float32', 20 + 4 * s + i)] as const)));
    const run = () => {
      const opt = make();
      const params = new Map([...p0].map(([n, t]) => [n, tf.tidy(() => tf.variable(tf.clone(t)))] as const));
      for (const [s, g] of grads.entries()) opt.step(params, g, 1e-2 * (s + 1));
      return { opt, params };
    };
    const prof = await tf.profile(() => {
      const { opt, params } = run();
      opt.dispose();
      tf.dispose([...params.values()]);
    });
    assert.ok(prof.kernelNames.includes(kernel) && !prof.kernelNames.includes(stockOnly), `kernels run: ${prof.kernelNames.join(', ')}`);
    // packed: one kernel call per step for the four parameters; else one per parameter and step
    assert.equal(prof.kernels.filter((k) => k.name === kernel).length, grads.length * (pack ? 1 : grads[0]!.size));
    assert.equal(prof.kernelNames.includes(PACK), pack);
    const [fused, stock] = bothWays(run);
    // sums in another order (the norms): float32 noise
    // the parameters' change over the three steps (the parameters themselves would hide errors below their
    // ulp), held to float32 noise of the change plus 2 ulp of the largest weight (the rounding of p itself)
    for (const [n, p] of stock.params) {
      const d = tf.tidy(() => tf.stack([tf.max(tf.abs(tf.sub(fused.params.get(n)!, p))), tf.max(tf.abs(tf.sub(p, p0.get(n)!))), tf.max(tf.abs(p))]));
      const [diff, change, big] = (await d.data()) as Float32Array;
      d.dispose();
      const label = `${optName}${pack ? ' packed' : ''} param change`;
      relErrors.set(label, Math.max(relErrors.get(label) ?? 0, diff! / change!));
      assert.ok(diff! <= 2e-6 * change! + 2.4e-7 * big!, `${n}: |diff| ${diff}, change ${change}, |p| ${big}`);
    }
    for (const [k, t] of stock.opt.stateTensors()) {
      assert.ok((await relDiff(`${optName}${pack ? ' packed' : ''} ${k.slice(k.indexOf('.') + 1)}`, fused.opt.stateTensors().get(k)!, t)) <= 2e-6, k);
    }
    if (pack) {
      // the group kernel takes each parameter's sums as the per-parameter kernel does: bit for bit its result
      useMoco3Packing(false);
      const single = run();
      useMoco3Packing(true);
      for (const [n, p] of single.params) assert.deepEqual(await fused.params.get(n)!.data(), await p.data(), `${n}: packed = per parameter`);
      // split into runs at a pack limit of 3000 elements: [w], [big] alone (reshaped, no copies), [b, z]
      const old = setPackLimit(3000);
      let split: ReturnType<typeof run>;
      try {
        split = run();
      } finally {
        setPackLimit(old);
      }
      for (const [n, p] of single.params) assert.deepEqual(await split.params.get(n)!.data(), await p.data(), `${n}: packed in runs = per parameter`);
      for (const r of [single, split]) {
        r.opt.dispose();
        tf.dispose([...r.params.values()]);
      }
    }
    // every parameter moved (a test of the update, not of a no-op)
    for (const [n, p] of fused.params) {
      const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(p, p0.get(n)!))));
      assert.ok((await moved.data())[0]! > 0, `${n} moved`);
      moved.dispose();
    }
    for (const r of [fused, stock]) {
      r.opt.dispose();
      tf.dispose([...r.params.values()]);
    }
    tf.dispose([...p0.values(), ...grads.flatMap((g) => [...g.values()])]);
    assert.equal(tf.memory().numTensors, before);
  });
}

test('Moco3Pack / Moco3Unpack: tensors laid end to end and cut back, in runs split at the pack limit; nothing left behind', async () => {
  const before = tf.memory().numTensors;
  const shapes = [[3, 5], [7], [2, 2, 2], [1], [40]];
  const ts = shapes.map((sh, i) => tf.randomNormal(sh, 0, 1, 'float32', 100 + i));
  const want = await Promise.all(ts.map((t) => t.data()));
  const old = setPackLimit(24);
  try {
    // runs of at most 24 elements: [15, 7] 22, [8, 1] 9, [40] alone
    // f sees one flat tensor per list and run; its outputs come back in the inputs' shapes
    const seen: number[][] = [];
    const flats: tf.Tensor[] = [];
    const out = tf.tidy(() => packed([ts, ts], ([a, b]) => {
      seen.push([a!.size, b!.size]);
      flats.push(tf.keep(tf.clone(a!)));
      return [tf.add(a!, b!), tf.mul(a!, 3)];
    })!);
    assert.deepEqual(seen, [[22, 22], [9, 9], [40, 40]]);
    const flat = new Float32Array((await Promise.all(flats.map((r) => r.data()))).flatMap((d) => Array.from(d)));
    assert.deepEqual(flat, Float32Array.from(want.flatMap((d) => Array.from(d))));
    assert.deepEqual(out.map((o) => o.map((t) => t.shape)), [shapes, shapes]);
    for (const [i, t] of out[0]!.entries()) assert.deepEqual(await t.data(), want[i]!.map((v) => Math.fround(v + v)));
    for (const [i, t] of out[1]!.entries()) assert.deepEqual(await t.data(), want[i]!.map((v) => Math.fround(v * 3)));
    tf.dispose([...flats, ...out.flat()]);
  } finally {
    setPackLimit(old);
  }
  // wrong input: refused before any copy is recorded, and the backend keeps computing
  const i32 = tf.tensor1d([1, 2], 'int32');
  assert.throws(() => tf.engine().runKernel(PACK, { x0: i32, x1: ts[0]! }), /float32 tensors only/);
  const flat = tf.tidy(() => tf.reshape(ts[0]!, [-1]));
  assert.throws(() => tf.engine().runKernel(UNPACK, { x: flat }, { shapes: [[3], [13]] } as unknown as tf.NamedAttrMap), /shapes of 16 elements/);
  const after = tf.tidy(() => tf.add(ts[4]!, 1));
  assert.deepEqual(await after.data(), want[4]!.map((v) => Math.fround(v + 1)));
  tf.dispose([i32, flat, after, ...ts]);
  assert.equal(tf.memory().numTensors, before);
});

test('one variable under two names: the packed updates step aside, and it is updated twice as per parameter', async () => {
  const before = tf.memory().numTensors;
  const grads = new Map([['a', tf.randomNormal([30], 0, 0.1, 'float32', 70)], ['b', tf.randomNormal([30], 0, 0.1, 'float32', 71)], ['c', tf.randomNormal([4], 0, 0.1, 'float32', 72)]]);
  const run = (pack: boolean) => {
    const was = useMoco3Packing(pack);
    try {
      const v = tf.tidy(() => tf.variable(tf.randomNormal([30], 0, 0.5, 'float32', 73)));
      const c = tf.tidy(() => tf.variable(tf.randomNormal([4], 0, 0.5, 'float32', 74)));
      const opt = new AdamW({ weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-8 });
      opt.step(new Map([['a', v], ['b', v], ['c', c]]), grads, 1e-2);
      opt.dispose();
      return [v, c];
    } finally {
      useMoco3Packing(was);
    }
  };
  const [packedRun, single] = [run(true), run(false)];
  for (const [i, t] of single.entries()) assert.deepEqual(await packedRun[i]!.data(), await t.data());
  tf.dispose([...packedRun, ...single, ...grads.values()]);
  assert.equal(tf.memory().numTensors, before);
});

test("AdamW with parameters at different steps (one had no gradient before) updates each at its own step = the stock update", async () => {
  const before = tf.memory().numTensors;
  const shapes: Record<string, number[]> = { w: [9, 4], b: [4], c: [300] };
  const p0 = new Map(Object.entries(shapes).map(([n, sh], i) => [n, tf.randomNormal(sh, 0, 0.5, 'float32', 40 + i)] as const));
  const g = (s: number, names: string[]) => new Map(names.map((n, i) => [n, tf.randomNormal(shapes[n]!, 0, 0.1, 'float32', 50 + 3 * s + i)] as const));
  const grads = [g(0, ['w', 'b']), g(1, ['w', 'b', 'c']), g(2, ['w', 'b', 'c'])];
  const run = () => {
    const opt = new AdamW({ weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-8 });
    const params = new Map([...p0].map(([n, t]) => [n, tf.tidy(() => tf.variable(tf.clone(t)))] as const));
    for (const [s, gs] of grads.entries()) opt.step(params, gs, 1e-2 * (s + 1));
    return { opt, params };
  };
  const [fused, stock] = bothWays(run);
  assert.deepEqual(fused.opt.stateJson().steps, { w: 3, b: 3, c: 2 });
  for (const [n, p] of stock.params) assert.deepEqual(await fused.params.get(n)!.data(), await p.data(), n);
  for (const r of [fused, stock]) {
    r.opt.dispose();
    tf.dispose([...r.params.values()]);
  }
  tf.dispose([...p0.values(), ...grads.flatMap((m) => [...m.values()])]);
  assert.equal(tf.memory().numTensors, before);
});

test("the momentum encoder's update of a whole model: one dispatch = the stock update, parameter by parameter", async () => {
  const before = tf.memory().numTensors;
  const model = new MoCoViT(tinyConfig({ imageSize: 8, patchSize: 4, dim: 8 }), 3);
  // the base encoder away from the momentum encoder, so that the update moves every weight
  const names = [...model.vars.keys()].filter((n) => !n.startsWith('momentum_encoder.'));
  for (const [i, n] of names.entries()) {
    const v = model.vars.get(n)!;
    tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.1, 'float32', 200 + i))));
  }
  const k0 = new Map([...model.vars].filter(([n]) => n.startsWith('momentum_encoder.')).map(([n, v]) => [n, tf.clone(v)] as const));
  const prof = await tf.profile(() => model.momentumUpdate(0.9));
  assert.equal(prof.kernels.filter((k) => k.name === EMA).length, 1, `kernels run: ${prof.kernelNames.join(', ')}`);
  assert.ok(prof.kernelNames.includes(PACK) && prof.kernelNames.includes(UNPACK));
  const fused = new Map([...k0.keys()].map((n) => [n, tf.clone(model.vars.get(n)!)] as const));
  for (const [n, k] of k0) model.vars.get(n)!.assign(k);
  useMoco3Kernels(false);
  try {
    model.momentumUpdate(0.9);
  } finally {
    useMoco3Kernels(true);
  }
  assert.ok(k0.size > 10);
  for (const [n, f] of fused) {
    assert.deepEqual(await f.data(), await model.vars.get(n)!.data(), n);
    if (/running_|num_batches/.test(n)) continue; // BatchNorm buffers: not averaged
    const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(f, k0.get(n)!))));
    assert.ok((await moved.data())[0]! > 0, `${n} moved`);
    moved.dispose();
  }
  tf.dispose([...k0.values(), ...fused.values()]);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});

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
    await relDiff('GELU y', yF, yS);
    await relDiff('GELU dx', gF, gS);
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
