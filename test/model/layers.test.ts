/**
 * Hand-written backward passes against central differences of float64 plain-JS forwards, and the
 * patch projection against a plain-JS convolution. (tfjs-core's Node build registers no gradients,
 * so "tfjs autodiff of matMul" is not available as a reference; float64 differences are stricter.)
 */
import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bmm, contrastiveLoss, gelu, layerNorm, linear, linearConstInput, matMulNT, normalize, patchify, l2normalize } from '../../src/model/layers.ts';
import { MODEL_GRADIENT_KERNELS, assertModelGradients } from '../../src/engine/gradients.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { patchEmbed } from '../../src/model/vit.ts';
import { erf, patchEmbedConv, refCtr } from './reference.ts';
import { assertClose, numGrad, randn, tinyConfig } from './util.ts';

const f64 = (t: tf.Tensor) => Float64Array.from(t.dataSync());

/**
 * Checks d/dinputs Σ(R ⊙ op(inputs)) from tf.grads against float64 central differences of `ref`
 * (the same op in plain JS). R is a fixed random cotangent.
 */
function checkGrad(
  what: string,
  shapes: number[][],
  op: (...xs: tf.Tensor[]) => tf.Tensor,
  ref: (xs: Float64Array[]) => Float64Array,
  opts: { rtol?: number; atol?: number; std?: number } = {},
): void {
  const xs = shapes.map((s, i) => randn(`${what}-x${i}`, s.reduce((a, b) => a * b, 1), opts.std ?? 1));
  const ts = xs.map((x, i) => tf.tensor(x, shapes[i]));
  const y = tf.tidy(() => op(...ts));
  const R = Float64Array.from(randn(`${what}-r`, y.size));
  const Rt = tf.tensor(Float32Array.from(R), y.shape);
  // forward matches the reference
  const x64 = xs.map((x) => Float64Array.from(x));
  assertClose(y.dataSync(), ref(x64), 1e-5, 1e-5, `${what} forward`);
  const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(op(...a), Rt)))(ts);
  grads.forEach((g, i) => {
    const fd = numGrad((xi) => {
      const all = x64.map((x, j) => (j === i ? xi : x));
      return ref(all).reduce((a, v, k) => a + v * R[k]!, 0);
    }, x64[i]!);
    assertClose(g.dataSync(), fd, opts.rtol ?? 1e-4, opts.atol ?? 1e-4, `${what} d/dx${i}`);
  });
  tf.dispose([...ts, y, Rt, ...grads]);
}

/** [n,k]·[k,m] in float64 (row-major). */
function mm(a: Float64Array, b: Float64Array, n: number, k: number, m: number, bT = false): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * (bT ? b[j * k + t]! : b[t * m + j]!);
      out[i * m + j] = s;
    }
  return out;
}

describe('layers: hand-written gradients', () => {
  it('linear with and without bias (x·w + b, w [in, out])', () => {
    checkGrad('lin', [[5, 3], [3, 4], [4]], (x, w, b) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), ([x, w, b]) =>
      mm(x!, w!, 5, 3, 4).map((v, i) => v + b![i % 4]!),
    );
    checkGrad('lin-nb', [[6, 4], [4, 2]], (x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D), ([x, w]) => mm(x!, w!, 6, 4, 2));
    checkGrad('lin-cx', [[3, 4], [4]], (w, b) => linearConstInput(tf.tensor2d(randn('cx', 15), [5, 3]), w as tf.Tensor2D, b as tf.Tensor1D), ([w, b]) =>
      mm(Float64Array.from(randn('cx', 15)), w!, 5, 3, 4).map((v, i) => v + b![i % 4]!),
    );
  });

  it('a·bᵀ (rank 2 and batched) and batched a·b', () => {
    checkGrad('nt2', [[4, 3], [5, 3]], (a, b) => matMulNT(a as tf.Tensor2D, b as tf.Tensor2D), ([a, b]) => mm(a!, b!, 4, 3, 5, true));
    const G = 3;
    const batched = (a: Float64Array, b: Float64Array, n: number, k: number, m: number, bT: boolean) => {
      const out: number[] = [];
      for (let g = 0; g < G; g++) out.push(...mm(a.subarray(g * n * k, (g + 1) * n * k), b.subarray(g * k * m, (g + 1) * k * m), n, k, m, bT));
      return Float64Array.from(out);
    };
    checkGrad('nt3', [[G, 4, 2], [G, 5, 2]], (a, b) => matMulNT(a as tf.Tensor3D, b as tf.Tensor3D), ([a, b]) => batched(a!, b!, 4, 2, 5, true));
    checkGrad('bmm', [[G, 4, 5], [G, 5, 2]], (a, b) => bmm(a as tf.Tensor3D, b as tf.Tensor3D), ([a, b]) => batched(a!, b!, 4, 5, 2, false));
  });

  it('exact GELU 0.5x(1+erf(x/√2))', () => {
    checkGrad('gelu', [[40]], (x) => gelu(x), ([x]) => x!.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), { std: 2 });
    // and not the tanh approximation: they differ by ~1e-4 around |x| ≈ 2
    const y = gelu(tf.tensor1d([2]));
    assert.ok(Math.abs(y.dataSync()[0]! - 0.5 * 2 * (1 + erf(2 / Math.SQRT2))) < 2e-6);
    y.dispose();
  });

  const normRef = (x: Float64Array, rows: number, cols: number, axis: 0 | 1, eps: number, g?: Float64Array, b?: Float64Array) => {
    const out = new Float64Array(x.length);
    const groups = axis === 1 ? rows : cols;
    const len = axis === 1 ? cols : rows;
    const at = (gi: number, j: number) => (axis === 1 ? gi * cols + j : j * cols + gi);
    for (let gi = 0; gi < groups; gi++) {
      let mean = 0;
      for (let j = 0; j < len; j++) mean += x[at(gi, j)]! / len;
      let vr = 0;
      for (let j = 0; j < len; j++) vr += (x[at(gi, j)]! - mean) ** 2 / len;
      for (let j = 0; j < len; j++) {
        const k = at(gi, j);
        const f = k % cols;
        out[k] = ((x[k]! - mean) / Math.sqrt(vr + eps)) * (g ? g[f]! : 1) + (b ? b[f]! : 0);
      }
    }
    return out;
  };

  it('LayerNorm (eps 1e-6) and train-mode BatchNorm1d (eps 1e-5, biased variance), with and without affine', () => {
    checkGrad('ln', [[4, 6], [6], [6]], (x, g, b) => layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D), ([x, g, b]) => normRef(x!, 4, 6, 1, 1e-6, g, b), {
      rtol: 1e-3,
    });
    checkGrad('bn', [[5, 3], [3], [3]], (x, g, b) => normalize(x as tf.Tensor2D, 0, 1e-5, g as tf.Tensor1D, b as tf.Tensor1D), ([x, g, b]) =>
      normRef(x!, 5, 3, 0, 1e-5, g, b), { rtol: 1e-3 },
    );
    checkGrad('bn-noaff', [[7, 4]], (x) => normalize(x as tf.Tensor2D, 0, 1e-5), ([x]) => normRef(x!, 7, 4, 0, 1e-5), { rtol: 1e-3 });
  });

  it('BatchNorm reports batch mean and biased variance', () => {
    const x = tf.tensor2d([1, 10, 2, 20, 6, 30], [3, 2]);
    let got: number[][] = [];
    const y = normalize(x, 0, 1e-5, undefined, undefined, (s) => {
      got = [Array.from(s.mean.dataSync()), Array.from(s.varBiased.dataSync())];
      tf.dispose([s.mean, s.varBiased]);
    });
    assertClose(got[0]!, [3, 20], 1e-6, 0, 'mean');
    assertClose(got[1]!, [14 / 3, 200 / 3], 1e-6, 0, 'biased var');
    tf.dispose([x, y]);
  });

  it('contrastive loss: value and dq equal CE(q̂·k̂ᵀ/T, arange)·2T in float64', () => {
    const N = 6;
    const C = 5;
    const T = 0.2;
    const k = randn('ctr-k', N * C);
    const kn = l2normalize(tf.tensor2d(k, [N, C]));
    const rows = (a: Float64Array) => Array.from({ length: N }, (_, i) => a.subarray(i * C, (i + 1) * C));
    const kRows = rows(Float64Array.from(k));
    checkGrad('ctr', [[N, C]], (q) => tf.reshape(contrastiveLoss(q as tf.Tensor2D, kn, T), [1]), ([q]) => Float64Array.of(refCtr(rows(q!), kRows, T)));
    kn.dispose();
  });

  it('gradients registered for the stock kernels on the tape (concat, slice, split, softmax, relu, broadcast add/mul)', () => {
    assert.ok(MODEL_GRADIENT_KERNELS.includes('Concat'));
    assertModelGradients();
    checkGrad('concat-slice', [[2, 1, 3], [2, 4, 3]], (a, b) => tf.slice(tf.concat([a!, b!], 1), [0, 1, 0], [2, 3, 3]), ([a, b]) => {
      const out: number[] = [];
      for (let i = 0; i < 2; i++) {
        const rowsAll = [a!.subarray(i * 3, i * 3 + 3), ...[0, 1, 2, 3].map((r) => b!.subarray((i * 4 + r) * 3, (i * 4 + r + 1) * 3))];
        for (const r of rowsAll.slice(1, 4)) out.push(...r);
      }
      return Float64Array.from(out);
    });
    checkGrad('split-transpose', [[6, 2, 3]], (x) => {
      const [p, q, r] = tf.split(tf.transpose(x!, [1, 0, 2]), 3, 1);
      return tf.add(tf.mul(p!, 2), tf.sub(q!, tf.relu(r!)));
    }, ([x]) => {
      // x [6,2,3] → t [2,6,3]; split axis 1 into 3 of [2,2,3]
      const out = new Float64Array(12);
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < 2; j++)
          for (let c = 0; c < 3; c++) {
            const t = (jj: number) => x![(jj * 2 + i) * 3 + c]!;
            out[(i * 2 + j) * 3 + c] = 2 * t(j) + t(2 + j) - Math.max(t(4 + j), 0);
          }
      return out;
    });
    checkGrad('mean', [[3, 4]], (x) => tf.mean(tf.mul(x!, x!), 1, true), ([x]) =>
      Float64Array.from([0, 1, 2].map((i) => [0, 1, 2, 3].reduce((a, j) => a + x![i * 4 + j]! ** 2, 0) / 4)),
    );
    checkGrad('softmax-bcast', [[3, 4], [1, 4]], (x, b) => tf.softmax(tf.mul(tf.add(x!, b!), b!)), ([x, b]) => {
      const out = new Float64Array(12);
      for (let i = 0; i < 3; i++) {
        const z = [0, 1, 2, 3].map((j) => (x![i * 4 + j]! + b![j]!) * b![j]!);
        const m = Math.max(...z);
        const s = z.reduce((a, v) => a + Math.exp(v - m), 0);
        z.forEach((v, j) => (out[i * 4 + j] = Math.exp(v - m) / s));
      }
      return out;
    });
  });
});

describe('patch projection', () => {
  it('patchify + matMul with the internal weight equals the PyTorch conv (torch-layout weight) in plain JS', () => {
    const cfg = tinyConfig({ imageSize: 8, patchSize: 4, dim: 8 });
    const model = new MoCoViT(cfg, 1);
    const B = 2;
    const img = randn('pimg', B * 8 * 8 * 3);
    const x = tf.tensor4d(img, [B, 8, 8, 3]);
    // non-zero bias so its placement is checked too
    model.vars.get('base_encoder.patch_embed.proj.bias')!.assign(tf.tensor1d(randn('pb', 8)));
    const P = (n: string) => model.vars.get(`base_encoder.${n}`)!;
    const got = tf.tidy(() => patchEmbed(x, cfg, P));
    const Wt = model.toTorch('base_encoder.patch_embed.proj.weight', P('patch_embed.proj.weight'));
    assert.deepEqual(Wt.shape, [8, 3, 4, 4]);
    const want: number[] = [];
    for (let b = 0; b < B; b++) {
      for (const row of patchEmbedConv(f64(Wt), f64(P('patch_embed.proj.bias')), Float64Array.from(img), b * 8 * 8 * 3, 8, 3, 4, 8)) want.push(...row);
    }
    assert.deepEqual(got.shape, [B * 4, 8]);
    assertClose(got.dataSync(), want, 1e-5, 1e-6, 'patch tokens (row-major)');
    tf.dispose([x, got, Wt]);
    model.dispose();
  });

  it('patchify order: rows are patches in row-major order, columns (py, px, c)', () => {
    // value = encoded coordinates
    const S = 4;
    const p = 2;
    const v = new Float32Array(S * S * 2);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 2; c++) v[(y * S + x) * 2 + c] = y * 100 + x * 10 + c;
    const t = tf.tensor4d(v, [1, S, S, 2]);
    const P = patchify(t, p);
    const rows = P.arraySync();
    // patch 1 = grid row 0, col 1: pixels (0,2),(0,3),(1,2),(1,3)
    assert.deepEqual(rows[1], [20, 21, 30, 31, 120, 121, 130, 131]);
    assert.deepEqual(rows[2], [200, 201, 210, 211, 300, 301, 310, 311]);
    tf.dispose([t, P]);
  });
});
