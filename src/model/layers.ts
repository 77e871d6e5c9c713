/**
 * Differentiable building blocks with hand-written backward passes. Every matmul gradient uses an
 * explicit rank ≤ 3 transpose and a plain matMul: tfjs's own gradient uses transposed-operand matmuls,
 * which wasm runs on a slow scalar loop (docs/ENGINES.md). Nothing here uses conv2d or gather (no wasm
 * gradient for them).
 */
import * as tf from '@tensorflow/tfjs-core';
import '../engine/gradients.ts';
import {
  ATTENTION_BWD,
  ATTENTION_FWD,
  BATCHNORM_BWD,
  BATCHNORM_FWD,
  COLUMN_SUM,
  fusedKernel,
  fusedKernels,
  GELU_BWD,
  GELU_FWD,
  hasKernel,
  LAYERNORM_BWD,
  LAYERNORM_FWD,
  SOFTMAX_BWD,
} from '../engine/webgpu-kernels.ts';

type T = tf.Tensor;

/** Minimal typing around tf.customGrad: forward gets the inputs and `save`, returns value + backward. */
function custom<R extends tf.Tensor>(
  f: (inputs: T[], save: tf.GradSaveFunc) => { value: R; gradFunc: (dy: R, saved: T[]) => T[] },
): (...inputs: T[]) => R {
  const g = tf.customGrad((...args: Array<T | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    // saved once the value is computed: tfjs keeps a copy of each saved tensor out of every tidy, and a
    // kernel failing after the save (out of memory) would leave those copies with no tape node to free them
    let toSave: T[] | null = null;
    const r = f(args as T[], (ts) => void (toSave = ts));
    if (toSave) save(toSave);
    return { value: r.value, gradFunc: (dy: T, saved: T[]) => r.gradFunc(dy as R, saved) };
  });
  return (...inputs: T[]) => g(...inputs) as R;
}

const transpose2 = (x: T) => tf.transpose(x, [1, 0]);
const transpose3 = (x: T) => tf.transpose(x, [0, 2, 1]);
/** Σ over the rows of [n, F] (a bias's gradient): one moco3 kernel where the backend has it (webgpu's stock Sum over axis 0 transposes first). */
const sumRows = (x: T): T => (x.rank === 2 ? fusedKernel(COLUMN_SUM, { x }) : null) ?? tf.sum(x, 0);

/**
 * Where moco3's webgpu kernels run, the matmuls of `linear` use what the webgpu backend does well: the bias
 * added in the matmul's epilogue (_FusedMatMul) and transposed operands read in place; elsewhere the explicit
 * transposes above (wasm's transposed-operand matmul is a scalar loop).
 */
const onGpu = () => tf.getBackend() === 'webgpu' && hasKernel(GELU_FWD);
const matMulBias = (x: T, w: T, b: T): tf.Tensor2D =>
  onGpu() ? (tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }) as tf.Tensor2D) : (tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b) as tf.Tensor2D);
/** aᵀ·b */
const matMulTA = (a: T, b: T): tf.Tensor2D => (onGpu() ? tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, true, false) : tf.matMul(transpose2(a) as tf.Tensor2D, b as tf.Tensor2D));
/** a·bᵀ */
const matMulTB = (a: T, b: T): tf.Tensor2D => (onGpu() ? tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true) : tf.matMul(a as tf.Tensor2D, transpose2(b) as tf.Tensor2D));

const linearBias = custom<tf.Tensor2D>(([x, w, b], save) => {
  save([x!, w!]);
  return {
    value: matMulBias(x!, w!, b!),
    gradFunc: (dy, [xs, ws]) => [matMulTB(dy, ws!), matMulTA(xs!, dy), sumRows(dy)],
  };
});

const linearNoBias = custom<tf.Tensor2D>(([x, w], save) => {
  save([x!, w!]);
  return {
    value: tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D),
    gradFunc: (dy, [xs, ws]) => [matMulTB(dy, ws!), matMulTA(xs!, dy)],
  };
});

/** y = x·w (+ b): x [n, in], w [in, out] (PyTorch's weight transposed), b [out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  return b ? linearBias(x, w, b) : linearNoBias(x, w);
}

/** linear() of an input that needs no gradient (the patchified image): skips dx. */
export function linearConstInput(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor2D {
  const f = custom<tf.Tensor2D>(([wi, bi], save) => {
    save([x]);
    return {
      value: matMulBias(x, wi!, bi!),
      gradFunc: (dy, [xs]) => [matMulTA(xs!, dy), sumRows(dy)],
    };
  });
  return f(w, b);
}

/**
 * tf.reshape whose gradient holds no tensor. tfjs's Reshape saves its input for the backward (it needs only its
 * shape), which keeps that input's buffer alive until the backward reaches it: in attention, where qkv is
 * reshaped, transposed and split, three copies of qkv that nothing else needs. Same gradient, reshape(dy).
 */
export function view<R extends tf.Rank>(x: tf.Tensor, shape: number[]): tf.Tensor<R> {
  const from = x.shape;
  return custom<tf.Tensor>(([xi]) => ({ value: tf.reshape(xi!, shape), gradFunc: (dy) => [tf.reshape(dy, from)] }))(x) as tf.Tensor<R>;
}

/** x·s for a constant s, saving nothing (tfjs's Mul saves both operands: here x, a buffer nothing else needs). */
export function scale<R extends tf.Tensor>(x: R, s: number): R {
  return custom<tf.Tensor>(([xi]) => ({ value: tf.mul(xi!, s), gradFunc: (dy) => [tf.mul(dy, s)] }))(x) as R;
}

/**
 * a + b of one shape, saving nothing (tfjs's Add saves both operands, for their shapes: a residual connection
 * would keep the block's input and its branch's output alive until the backward). Same gradient, dy to both.
 */
export function addSame<R extends tf.Tensor>(a: R, b: R): R {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) throw new Error(`addSame: shapes [${a.shape}] and [${b.shape}] differ`);
  const shape = a.shape;
  return custom<tf.Tensor>(([ai, bi]) => ({ value: tf.add(ai!, bi!), gradFunc: (dy) => [tf.reshape(dy, shape), tf.reshape(dy, shape)] }))(a, b) as R;
}

/** a·bᵀ for rank 2 or batched rank 3, with gradients for both operands. */
export const matMulNT = custom<tf.Tensor>(([a, b], save) => {
  save([a!, b!]);
  const tr = a!.rank === 3 ? transpose3 : transpose2;
  return {
    value: tf.matMul(a as tf.Tensor3D, tr(b!) as tf.Tensor3D),
    // d(a·bᵀ): da = dy·b, db = dyᵀ·a
    gradFunc: (dy, [as, bs]) => [tf.matMul(dy as tf.Tensor3D, bs as tf.Tensor3D), tf.matMul(tr(dy) as tf.Tensor3D, as as tf.Tensor3D)],
  };
}) as <R extends tf.Tensor2D | tf.Tensor3D>(a: R, b: R) => R;

/** Batched a·b, a [G, n, k], b [G, k, m]. */
export const bmm = custom<tf.Tensor3D>(([a, b], save) => {
  save([a!, b!]);
  return {
    value: tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D),
    gradFunc: (dy, [as, bs]) => [tf.matMul(dy, transpose3(bs!) as tf.Tensor3D), tf.matMul(transpose3(as!) as tf.Tensor3D, dy)],
  };
}) as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;

/**
 * GELU in its erf form 0.5·x·(1 + erf(x/√2)) (PyTorch nn.GELU default), not the tanh approximation; erf as
 * TensorFlow.js computes it on every backend (Abramowitz-Stegun 7.1.26, within 1.5e-7; native/src/kernels.inc).
 */
export const gelu = custom<tf.Tensor>(([x], save) => {
  // one fused kernel each way where the backend has moco3's (webgpu: src/engine/webgpu-kernels.ts; native:
  // native/src/kernels.inc, the same bits as the composition below)
  const fused = x!.dtype === 'float32' ? fusedKernel(GELU_FWD, { x: x! }) : null;
  if (fused) {
    save([x!]);
    return { value: fused, gradFunc: (dy, [xs]) => [fusedKernel(GELU_BWD, { x: xs!, dy })!] };
  }
  // Φ(x) is computed again in the backward rather than saved: one tensor of the MLP's width less per block (as
  // PyTorch's GELU, which saves x alone), the same values
  const cdfOf = (v: T) => tf.mul(0.5, tf.add(1, tf.erf(tf.mul(v, Math.SQRT1_2))));
  save([x!]);
  return {
    value: tf.mul(x!, cdfOf(x!)),
    // d/dx = Φ(x) + x·φ(x)
    gradFunc: (dy, [xs]) => [tf.mul(dy, tf.add(cdfOf(xs!), tf.mul(xs!, tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(xs!)))))))],
  };
}) as <R extends tf.Tensor>(x: R) => R;

const fusedSoftmax = custom<tf.Tensor>(([x], save) => {
  const y = tf.softmax(x!);
  save([y]);
  return { value: y, gradFunc: (dy, [ys]) => [fusedKernel(SOFTMAX_BWD, { y: ys!, dy })!] };
});

/** Softmax over the last axis; the backward is one moco3 kernel where the backend has it (webgpu, where the
 * attention normally runs as a whole in moco3's kernels: fusedAttention). */
export function softmax<R extends tf.Tensor>(x: R): R {
  return (hasKernel(SOFTMAX_BWD) ? fusedSoftmax(x) : tf.softmax(x)) as R;
}

/**
 * softmax(q·kᵀ·hd^-0.5)·v of every head, from the qkv projection [B·N, 3D] (features (s, h, j)) to the
 * merged heads [B·N, D] (features (h, j)), by moco3's kernels (webgpu): the probabilities are saved for the
 * backward, which gives d(qkv) in qkv's layout.
 */
export function fusedAttention(qkv: tf.Tensor2D, B: number, N: number, heads: number): tf.Tensor2D {
  const attrs = { B, N, heads };
  const f = custom<tf.Tensor2D>(([x], save) => {
    const [o, probs] = fusedKernels(ATTENTION_FWD, { qkv: x }, attrs)!;
    save([x!, probs!]);
    return { value: o as tf.Tensor2D, gradFunc: (dy, [xs, p]) => fusedKernels(ATTENTION_BWD, { dy, qkv: xs, probs: p }, attrs)! };
  });
  return f(qkv);
}

/** Batch statistics of a BatchNorm forward: mean and biased variance, [F]. */
export interface NormStats {
  mean: tf.Tensor1D;
  varBiased: tf.Tensor1D;
}

/**
 * (x − mean)/sqrt(var + eps) [· γ + β] over `axis` of a 2D x, biased variance. axis 1 = LayerNorm
 * (per row), axis 0 = BatchNorm1d in train mode (per feature over the batch). `onStats` receives
 * the batch statistics (kept: the receiver disposes them).
 */
export function normalize(
  x: tf.Tensor2D,
  axis: 0 | 1,
  eps: number,
  gamma?: tf.Tensor1D,
  beta?: tf.Tensor1D,
  onStats?: (s: NormStats) => void,
): tf.Tensor2D {
  const affine = gamma !== undefined;
  if (affine !== (beta !== undefined)) throw new Error('normalize: give both gamma and beta or neither');
  if (axis === 0 && hasKernel(BATCHNORM_FWD)) return fusedBatchNorm(x, eps, gamma, beta, onStats);
  const f = custom<tf.Tensor2D>((ins, save) => {
    const xi = ins[0] as tf.Tensor2D;
    const mean = tf.mean(xi, axis, true);
    const xc = tf.sub(xi, mean);
    const varB = tf.mean(tf.square(xc), axis, true);
    const rstd = tf.rsqrt(tf.add(varB, eps));
    const xhat = tf.mul(xc, rstd) as tf.Tensor2D;
    if (onStats) {
      // made together, then kept: a failure between the two leaves neither (kept tensors escape every tidy)
      const st = tf.tidy(() => ({ mean: tf.reshape(mean, [-1]) as tf.Tensor1D, varBiased: tf.reshape(varB, [-1]) as tf.Tensor1D }));
      onStats({ mean: tf.keep(st.mean), varBiased: tf.keep(st.varBiased) });
    }
    save(affine ? [xhat, rstd, ins[1]!] : [xhat, rstd]);
    return {
      value: affine ? (tf.add(tf.mul(xhat, ins[1]!), ins[2]!) as tf.Tensor2D) : xhat,
      gradFunc: (dy, [xh, r, g]) => {
        const dxhat = affine ? tf.mul(dy, g!) : dy;
        // dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), means over the normalised axis
        const dx = tf.mul(r!, tf.sub(tf.sub(dxhat, tf.mean(dxhat, axis, true)), tf.mul(xh!, tf.mean(tf.mul(dxhat, xh!), axis, true))));
        return affine ? [dx, tf.sum(tf.mul(dy, xh!), 0), tf.sum(dy, 0)] : [dx];
      },
    };
  });
  return affine ? f(x, gamma!, beta!) : f(x);
}

/** LayerNorm by moco3's kernels (webgpu: src/engine/webgpu-kernels.ts): one dispatch forward, two backward. */
const fusedLayerNorm = (eps: number) =>
  custom<tf.Tensor2D>(([x, w, b], save) => {
    const [y, mean, rstd] = fusedKernels(LAYERNORM_FWD, { x, gamma: w, beta: b }, { eps })!;
    save([x!, mean!, rstd!, w!]);
    return {
      value: y as tf.Tensor2D,
      gradFunc: (dy, [xs, m, r, ws]) => fusedKernels(LAYERNORM_BWD, { dy, x: xs, mean: m, rstd: r, gamma: ws })!,
    };
  });

/** BatchNorm (normalize over axis 0) by moco3's kernels (webgpu): one dispatch forward, one backward. */
function fusedBatchNorm(x: tf.Tensor2D, eps: number, gamma?: tf.Tensor1D, beta?: tf.Tensor1D, onStats?: (s: NormStats) => void): tf.Tensor2D {
  const affine = gamma !== undefined;
  const f = custom<tf.Tensor2D>((ins, save) => {
    const [y, mean, varB, rstd] = fusedKernels(BATCHNORM_FWD, { x: ins[0], gamma: ins[1], beta: ins[2] }, { eps })!;
    if (onStats) onStats({ mean: tf.keep(mean!) as tf.Tensor1D, varBiased: tf.keep(varB!) as tf.Tensor1D });
    save(affine ? [ins[0]!, mean!, rstd!, ins[1]!] : [ins[0]!, mean!, rstd!]);
    return {
      value: y as tf.Tensor2D,
      gradFunc: (dy, [xs, m, r, g]) => {
        const [dx, dg, db] = fusedKernels(BATCHNORM_BWD, { dy, x: xs, mean: m, rstd: r, gamma: g })!;
        if (affine) return [dx!, dg!, db!];
        tf.dispose([dg!, db!]);
        return [dx!];
      },
    };
  });
  return affine ? f(x, gamma!, beta!) : f(x);
}

/** nn.LayerNorm over the last axis of [n, D]. */
export function layerNorm(x: tf.Tensor2D, w: tf.Tensor1D, b: tf.Tensor1D, eps = 1e-6): tf.Tensor2D {
  // one kernel each way where the backend has moco3's (webgpu; native for float32, the composition's bits)
  if (x.dtype === 'float32' && hasKernel(LAYERNORM_FWD)) return fusedLayerNorm(eps)(x, w, b);
  return normalize(x, 1, eps, w, b);
}

/** F.normalize(x, dim=1): x / max(‖x‖₂, 1e-12). */
export function l2normalize(x: tf.Tensor2D, eps = 1e-12): tf.Tensor2D {
  return tf.div(x, tf.maximum(tf.sqrt(tf.sum(tf.square(x), 1, true)), eps));
}

/**
 * NHWC images [B, S, S, C] → patches [B·g·g, p·p·C], rows in row-major patch order, columns in
 * (py, px, c) order. Rank-4 transpose only.
 */
export function patchify(x: tf.Tensor4D, p: number): tf.Tensor2D {
  const [B, H, W, C] = x.shape;
  if (H % p !== 0 || W % p !== 0) throw new Error(`image ${H}x${W} is not divisible into ${p}x${p} patches`);
  const gh = H / p;
  const gw = W / p;
  return tf.tidy(() => {
    const t = tf.transpose(tf.reshape(x, [B * gh, p, gw, p * C]), [0, 2, 1, 3]);
    return tf.reshape(t, [B * gh * gw, p * p * C]);
  });
}

/**
 * The contrastive loss of builder.py for queries q (un-normalised, with gradient) and normalised
 * constant keys k̂: CrossEntropy(q̂·k̂ᵀ/T, arange(N)) · 2T, q̂ = q / max(‖q‖, 1e-12). The positive
 * logit is Σ q̂⊙k̂ / T (the diagonal, without a gather). Backward by hand:
 * dq̂ = (2/N)(softmax(logits)·k̂ − k̂), then through the normalisation dq = (dq̂ − q̂⟨dq̂, q̂⟩)/‖q‖.
 */
export function contrastiveLoss(q: tf.Tensor2D, kn: tf.Tensor2D, T: number, eps = 1e-12, offset = 0): tf.Scalar {
  const N = q.shape[0];
  // the positive of query i is key offset + i (the official all_gather labels: arange(N) + N * rank)
  const kPos = offset === 0 && kn.shape[0] === N ? kn : (tf.slice(kn, [offset, 0], [N, -1]) as tf.Tensor2D);
  const f = custom<tf.Scalar>(([qi], save) => {
    const norm = tf.sqrt(tf.sum(tf.square(qi!), 1, true));
    const denom = tf.maximum(norm, eps);
    const qn = tf.div(qi!, denom) as tf.Tensor2D;
    const logits = tf.matMul(qn, transpose2(tf.div(kn, T)) as tf.Tensor2D); // [N, M]
    const pos = tf.div(tf.sum(tf.mul(qn, kPos), 1), T);
    const value = tf.mul(tf.mean(tf.sub(tf.logSumExp(logits, 1), pos)), 2 * T) as tf.Scalar;
    // below eps the denominator is the constant eps: no projection term
    const live = tf.cast(tf.greater(norm, eps), 'float32');
    save([qn, tf.softmax(logits), denom, live, kn, kPos]);
    return {
      value,
      gradFunc: (dy, [qns, p, d, lv, ks, kp]) => {
        const dqn = tf.mul(tf.mul(dy, 2 / N), tf.sub(tf.matMul(p as tf.Tensor2D, ks as tf.Tensor2D), kp!));
        const proj = tf.mul(tf.mul(qns!, tf.sum(tf.mul(dqn, qns!), 1, true)), lv!);
        return [tf.div(tf.sub(dqn, proj), d!)];
      },
    };
  });
  return f(q);
}
