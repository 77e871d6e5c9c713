/**
 * An independent float64 plain-JS MoCo v3 forward, written from the official PyTorch code (timm 0.4.9
 * VisionTransformer, vits.py, moco/builder.py) on PyTorch-layout weights: Linear [out, in], conv
 * [D, C, p, p], NCHW-free (images NHWC). Loops only, no tfjs, so it shares no code with src/model.
 */

export interface RefTensor {
  data: Float64Array;
  shape: number[];
}
export type RefState = Map<string, RefTensor>;

export interface RefDims {
  imageSize: number;
  patchSize: number;
  inChans: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  projHidden: number;
  projDim: number;
  predHidden: number;
  temperature: number;
}

type Mat = Float64Array[];

function get(S: RefState, name: string): Float64Array {
  const t = S.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t.data;
}

/** High-accuracy erf: Taylor series below 3, continued fraction of erfc above. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

/** y = W x + b for W [out, in] (nn.Linear). */
function linearRow(W: Float64Array, b: Float64Array | null, x: Float64Array, out: number): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < inp; i++) s += W[o * inp + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

export function layerNorm(x: Float64Array, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (const v of x) mean += v;
  mean /= n;
  let vr = 0;
  for (const v of x) vr += (v - mean) ** 2;
  vr /= n;
  const r = 1 / Math.sqrt(vr + eps);
  return x.map((v, i) => (v - mean) * r * w[i]! + b[i]!);
}

/** Batch statistics per feature over rows: mean and biased variance. */
export function batchStats(X: Mat): { mean: Float64Array; varBiased: Float64Array } {
  const F = X[0]!.length;
  const mean = new Float64Array(F);
  const vr = new Float64Array(F);
  for (const r of X) for (let f = 0; f < F; f++) mean[f]! += r[f]! / X.length;
  for (const r of X) for (let f = 0; f < F; f++) vr[f]! += (r[f]! - mean[f]!) ** 2 / X.length;
  return { mean, varBiased: vr };
}

/** Patch embedding as the PyTorch conv: out[n][d] = b[d] + Σ W[d,c,ky,kx]·img[y·p+ky, x·p+kx, c]. */
export function patchEmbedConv(W: Float64Array, bias: Float64Array, img: Float64Array, imgOffset: number, S: number, C: number, p: number, D: number): Mat {
  const g = S / p;
  const out: Mat = [];
  for (let gy = 0; gy < g; gy++) {
    for (let gx = 0; gx < g; gx++) {
      const t = new Float64Array(D);
      for (let d = 0; d < D; d++) {
        let s = bias[d]!;
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < p; ky++) {
            for (let kx = 0; kx < p; kx++) {
              s += W[((d * C + c) * p + ky) * p + kx]! * img[imgOffset + ((gy * p + ky) * S + gx * p + kx) * C + c]!;
            }
          }
        }
        t[d] = s;
      }
      out.push(t);
    }
  }
  return out;
}

/** timm VisionTransformer.forward_features for one image: class token after the final LayerNorm. */
function backboneOne(S: RefState, pre: string, c: RefDims, img: Float64Array, off: number): Float64Array {
  const D = c.dim;
  const H = c.heads;
  const hd = D / H;
  const hidden = Math.round(D * c.mlpRatio);
  const patches = patchEmbedConv(get(S, `${pre}patch_embed.proj.weight`), get(S, `${pre}patch_embed.proj.bias`), img, off, c.imageSize, c.inChans, c.patchSize, D);
  const cls = get(S, `${pre}cls_token`);
  const pos = get(S, `${pre}pos_embed`);
  let x: Mat = [Float64Array.from(cls), ...patches].map((t, n) => t.map((v, d) => v + pos[n * D + d]!));
  const N = x.length;
  for (let i = 0; i < c.depth; i++) {
    const b = `${pre}blocks.${i}.`;
    const h = x.map((t) => layerNorm(t, get(S, `${b}norm1.weight`), get(S, `${b}norm1.bias`), 1e-6));
    const qkv = h.map((t) => linearRow(get(S, `${b}attn.qkv.weight`), get(S, `${b}attn.qkv.bias`), t, 3 * D));
    // reshape(B, N, 3, H, hd): feature s·D + head·hd + j
    const o: Mat = Array.from({ length: N }, () => new Float64Array(D));
    for (let head = 0; head < H; head++) {
      for (let n = 0; n < N; n++) {
        const scores = new Float64Array(N);
        for (let m = 0; m < N; m++) {
          let s = 0;
          for (let j = 0; j < hd; j++) s += qkv[n]![head * hd + j]! * qkv[m]![D + head * hd + j]!;
          scores[m] = s * hd ** -0.5;
        }
        const mx = Math.max(...scores);
        let z = 0;
        for (let m = 0; m < N; m++) z += Math.exp(scores[m]! - mx);
        for (let m = 0; m < N; m++) {
          const a = Math.exp(scores[m]! - mx) / z;
          for (let j = 0; j < hd; j++) o[n]![head * hd + j]! += a * qkv[m]![2 * D + head * hd + j]!;
        }
      }
    }
    const attnOut = o.map((t) => linearRow(get(S, `${b}attn.proj.weight`), get(S, `${b}attn.proj.bias`), t, D));
    x = x.map((t, n) => t.map((v, d) => v + attnOut[n]![d]!));
    const h2 = x.map((t) => layerNorm(t, get(S, `${b}norm2.weight`), get(S, `${b}norm2.bias`), 1e-6));
    const m = h2.map((t) =>
      linearRow(get(S, `${b}mlp.fc2.weight`), get(S, `${b}mlp.fc2.bias`), linearRow(get(S, `${b}mlp.fc1.weight`), get(S, `${b}mlp.fc1.bias`), t, hidden).map(gelu), D),
    );
    x = x.map((t, n) => t.map((v, d) => v + m[n]![d]!));
  }
  return layerNorm(x[0]!, get(S, `${pre}norm.weight`), get(S, `${pre}norm.bias`), 1e-6);
}

export function refBackbone(S: RefState, pre: string, c: RefDims, imgs: Float64Array, B: number): Mat {
  const per = c.imageSize * c.imageSize * c.inChans;
  return Array.from({ length: B }, (_, b) => backboneOne(S, pre, c, imgs, b * per));
}

/** _build_mlp forward in train mode; `bnInputs` holds what each BatchNorm1d saw. */
export function refMlp(S: RefState, pre: string, numLayers: number, X: Mat, bnInputs?: Map<string, Mat>): Mat {
  let h = X;
  let idx = 0;
  for (let l = 0; l < numLayers; l++) {
    const W = get(S, `${pre}${idx}.weight`);
    const out = W.length / h[0]!.length;
    h = h.map((r) => linearRow(W, null, r, out));
    idx++;
    const bn = `${pre}${idx}`;
    bnInputs?.set(bn, h);
    const { mean, varBiased } = batchStats(h);
    const last = l === numLayers - 1;
    const gamma = last ? null : get(S, `${bn}.weight`);
    const beta = last ? null : get(S, `${bn}.bias`);
    h = h.map((r) =>
      r.map((v, f) => {
        const y = (v - mean[f]!) / Math.sqrt(varBiased[f]! + 1e-5);
        return gamma ? y * gamma[f]! + beta![f]! : y;
      }),
    );
    idx++;
    if (!last) {
      h = h.map((r) => r.map((v) => Math.max(v, 0)));
      idx++;
    }
  }
  return h;
}

function l2n(r: Float64Array): Float64Array {
  const n = Math.max(Math.sqrt(r.reduce((a, v) => a + v * v, 0)), 1e-12);
  return r.map((v) => v / n);
}

/** ctr of builder.py: CrossEntropy(q̂·k̂ᵀ/T, arange(N)) · 2T. */
export function refCtr(q: Mat, k: Mat, T: number): number {
  const qn = q.map(l2n);
  const kn = k.map(l2n);
  let loss = 0;
  for (let i = 0; i < qn.length; i++) {
    const logits = kn.map((kr) => kr.reduce((a, v, j) => a + v * qn[i]![j]!, 0) / T);
    const mx = Math.max(...logits);
    const lse = mx + Math.log(logits.reduce((a, v) => a + Math.exp(v - mx), 0));
    loss += lse - logits[i]!;
  }
  return (loss / qn.length) * 2 * T;
}

export interface RefForward {
  loss: number;
  /** BN inputs per layer name (e.g. `base_encoder.head.1`) for view 1 and view 2 */
  bn1: Map<string, Mat>;
  bn2: Map<string, Mat>;
}

/** builder.py forward: ctr(q1, k2) + ctr(q2, k1). */
export function refForward(S: RefState, c: RefDims, x1: Float64Array, x2: Float64Array, B: number): RefForward {
  const bn1 = new Map<string, Mat>();
  const bn2 = new Map<string, Mat>();
  const enc = (pre: string, x: Float64Array, bn: Map<string, Mat>) => refMlp(S, `${pre}head.`, 3, refBackbone(S, pre, c, x, B), bn);
  const q1 = refMlp(S, 'predictor.', 2, enc('base_encoder.', x1, bn1), bn1);
  const q2 = refMlp(S, 'predictor.', 2, enc('base_encoder.', x2, bn2), bn2);
  const k1 = enc('momentum_encoder.', x1, bn1);
  const k2 = enc('momentum_encoder.', x2, bn2);
  return { loss: refCtr(q1, k2, c.temperature) + refCtr(q2, k1, c.temperature), bn1, bn2 };
}
