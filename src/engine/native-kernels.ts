/**
 * moco3's native kernels for the `native` backend (a MathBackendCPU whose hot kernels call the C++
 * addon). Every kernel handles float32 only and hands anything else (other dtypes, empty tensors,
 * unusual attributes) to the stock `cpu` kernel of the same name, so results and gradients match it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

type TensorInfo = tf.TensorInfo;
type KernelFunc = tf.KernelFunc;
type KernelArgs = Parameters<KernelFunc>[0];

/** The addon's functions (native/src/addon.cc). Outputs are allocated here and filled in place. */
export interface NativeAddon {
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  binary(op: number, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], out: Float32Array): void;
  compare(op: number, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], out: Uint8Array): void;
  softmax(x: Float32Array, out: Float32Array, n: number): void;
  reduce(op: number, x: Float32Array, shape: number[], axes: number[], out: Float32Array, mean: boolean): void;
  transpose(x: Float32Array | Int32Array, shape: number[], perm: number[], out: Float32Array | Int32Array): void;
  matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    nb: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    aStride: number,
    bStride: number,
    aIdx: Int32Array | null,
    bIdx: Int32Array | null,
  ): void;
  biasAct(out: Float32Array, n: number, bias: Float32Array | null, act: number, alpha: number): void;
  copyBox(
    x: Float32Array | Int32Array,
    xShape: number[],
    xBegin: number[],
    size: number[],
    out: Float32Array | Int32Array,
    outShape: number[],
    outBegin: number[],
  ): void;
  setThreads(n: number): number;
  /** parallelJobs / guardedJobs: kernels split over threads / run alone because workers lagged (busy machine) */
  info(): { blas: string; threads: number; isa: string; parallelJobs: number; guardedJobs: number };
  /** GELU of x into out (dy null), or its backward dy * GELU'(x); absent from addons built before it existed */
  gelu?(x: Float32Array, dy: Float32Array | null, out: Float32Array): void;
  /** LayerNorm of x [rows, D] into y, with each row's mean and 1/sqrt(var + eps); absent from addons built before it existed */
  layerNorm?(x: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number, y: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  /** its backward: dx, dgamma, dbeta; scratch [rows, D] is overwritten */
  layerNormBwd?(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    scratch: Float32Array,
  ): void;
  /** SIGKILL for this process when its parent `parentPid` ends, even while stopped (false: not available); absent from addons built before it existed */
  dieWithParent?(parentPid: number): boolean;
  /** points fd 2 at a temporary file (false: could not); absent from addons built before it existed */
  holdStderr?(): boolean;
  /** points fd 2 back and returns what was written to it meanwhile */
  releaseStderr?(): string;
}

// op codes: the enums UnaryOp, BinaryOp, CompareOp, ReduceOp of native/src/kernels.h (test/engine/opcodes.test.ts checks them)
const U = {
  Neg: 0, Exp: 1, Log: 2, Sqrt: 3, Rsqrt: 4, Square: 5, Abs: 6, Relu: 7, Step: 8, Erf: 9, Sigmoid: 10, Tanh: 11,
  Reciprocal: 12, Relu6: 13, LeakyRelu: 14, Elu: 15,
} as const;
const B = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6, Pow: 7 } as const;
const C = { Greater: 0, GreaterEqual: 1, Less: 2, LessEqual: 3, Equal: 4, NotEqual: 5 } as const;
const R = { Sum: 0, Max: 1, Min: 2 } as const;
export const NATIVE_OP_CODES = { UnaryOp: U, BinaryOp: B, CompareOp: C, ReduceOp: R } as const;
const ACT: Record<string, number> = { linear: -1, relu: U.Relu, relu6: U.Relu6, elu: U.Elu, sigmoid: U.Sigmoid, leakyrelu: U.LeakyRelu };

function f32(backend: MathBackendCPU, t: TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : null;
}

/** Values of a float32 or int32 tensor (4-byte elements the copy kernels move as raw bits). */
function words(backend: MathBackendCPU, t: TensorInfo): Float32Array | Int32Array | null {
  const v = backend.data.get(t.dataId).values;
  if (t.dtype === 'float32' && v instanceof Float32Array) return v;
  if (t.dtype === 'int32' && v instanceof Int32Array) return v;
  return null;
}

/** A float32 output the kernel overwrites entirely: recycled by the native backend when it can. */
function outF32(backend: MathBackendCPU, n: number): Float32Array {
  const b = backend as MathBackendCPU & { takeF32?: (n: number) => Float32Array };
  return b.takeF32 ? b.takeF32(n) : new Float32Array(n);
}

function alloc(backend: MathBackendCPU, dtype: tf.DataType, n: number): Float32Array | Int32Array {
  return dtype === 'int32' ? new Int32Array(n) : outF32(backend, n);
}

function size(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The most dimensions the addon's strided kernels take (native/src/addon.cc): more go to the stock kernels. */
const MAX_RANK = 8;

/**
 * moco3's own kernels, which the cpu backend has no counterpart of: GELU and LayerNorm forward and backward in
 * one pass each (src/model/layers.ts runs them where the active backend has them, its composition of stock ops
 * elsewhere; the native kernels give its bits). Each pair is absent with an addon built before it.
 */
export function nativeMoco3KernelConfigs(
  addon: NativeAddon,
  backendName: string,
  names: { geluFwd: string; geluBwd: string; layerNormFwd: string; layerNormBwd: string },
): tf.KernelConfig[] {
  const f32Of = (backend: MathBackendCPU, t: TensorInfo, kernel: string): Float32Array => {
    const v = f32(backend, t);
    if (!v) throw new Error(`${kernel}: expected float32 values, got ${t.dtype}`);
    return v;
  };
  const configs: tf.KernelConfig[] = [];
  const gelu = addon.gelu?.bind(addon);
  if (gelu) {
    configs.push(
      {
        kernelName: names.geluFwd,
        backendName,
        kernelFunc: (args: KernelArgs) => {
          const backend = args.backend as MathBackendCPU;
          const x = args.inputs.x as TensorInfo;
          const xv = f32Of(backend, x, names.geluFwd);
          const out = outF32(backend, xv.length);
          if (xv.length > 0) gelu(xv, null, out);
          return backend.makeTensorInfo(x.shape, 'float32', out);
        },
      },
      {
        kernelName: names.geluBwd,
        backendName,
        kernelFunc: (args: KernelArgs) => {
          const backend = args.backend as MathBackendCPU;
          const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
          if (!sameShape(x.shape, dy.shape)) throw new Error(`${names.geluBwd}: x [${x.shape}] and dy [${dy.shape}] differ`);
          const xv = f32Of(backend, x, names.geluBwd);
          const dv = f32Of(backend, dy, names.geluBwd);
          const out = outF32(backend, xv.length);
          if (xv.length > 0) gelu(xv, dv, out);
          return backend.makeTensorInfo(x.shape, 'float32', out);
        },
      },
    );
  }
  const layerNorm = addon.layerNorm?.bind(addon);
  const layerNormBwd = addon.layerNormBwd?.bind(addon);
  if (layerNorm && layerNormBwd) {
    /** [rows, D] of a 2D x, and that gamma (and the others given) have D elements */
    const dimsOf = (kernel: string, x: TensorInfo, perRow: TensorInfo[], perColumn: TensorInfo[]): [number, number] => {
      if (x.shape.length !== 2) throw new Error(`${kernel}: expected a 2D x, got [${x.shape}]`);
      const [rows, D] = x.shape as [number, number];
      for (const t of perColumn) if (size(t.shape) !== D) throw new Error(`${kernel}: [${t.shape}] for ${D} features`);
      for (const t of perRow) if (size(t.shape) !== rows) throw new Error(`${kernel}: [${t.shape}] for ${rows} rows`);
      return [rows, D];
    };
    configs.push(
      {
        kernelName: names.layerNormFwd,
        backendName,
        // outputs y [rows, D], mean [rows], rstd [rows] (webgpu's kernel's)
        kernelFunc: (args: KernelArgs) => {
          const backend = args.backend as MathBackendCPU;
          const { x, gamma, beta } = args.inputs as Record<'x' | 'gamma' | 'beta', TensorInfo>;
          const k = names.layerNormFwd;
          const [rows, D] = dimsOf(k, x, [], [gamma, beta]);
          const y = outF32(backend, rows * D);
          const mean = outF32(backend, rows);
          const rstd = outF32(backend, rows);
          // no features: the Mean kernel's NaN for an empty row, as the composition gives
          if (D === 0) (mean.fill(NaN), rstd.fill(NaN));
          else if (rows > 0) layerNorm(f32Of(backend, x, k), f32Of(backend, gamma, k), f32Of(backend, beta, k), Number((args.attrs as { eps: number }).eps), y, mean, rstd);
          return [backend.makeTensorInfo([rows, D], 'float32', y), backend.makeTensorInfo([rows], 'float32', mean), backend.makeTensorInfo([rows], 'float32', rstd)];
        },
      },
      {
        kernelName: names.layerNormBwd,
        backendName,
        // outputs dx [rows, D], dgamma [D], dbeta [D]
        kernelFunc: (args: KernelArgs) => {
          const backend = args.backend as MathBackendCPU;
          const { dy, x, mean, rstd, gamma } = args.inputs as Record<'dy' | 'x' | 'mean' | 'rstd' | 'gamma', TensorInfo>;
          const k = names.layerNormBwd;
          const [rows, D] = dimsOf(k, x, [mean, rstd], [gamma]);
          if (!sameShape(x.shape, dy.shape)) throw new Error(`${k}: x [${x.shape}] and dy [${dy.shape}] differ`);
          const dx = outF32(backend, rows * D);
          const dgamma = outF32(backend, D);
          const dbeta = outF32(backend, D);
          if (rows === 0) (dgamma.fill(0), dbeta.fill(0));
          else if (D > 0) {
            // dy·x̂ before its column sum, in a buffer the backend recycles once freed
            const scratch = backend.makeTensorInfo([rows, D], 'float32', outF32(backend, rows * D));
            try {
              layerNormBwd(f32Of(backend, dy, k), f32Of(backend, x, k), f32Of(backend, mean, k), f32Of(backend, rstd, k), f32Of(backend, gamma, k), dx, dgamma, dbeta, f32(backend, scratch)!);
            } finally {
              backend.disposeData(scratch.dataId);
            }
          }
          return [backend.makeTensorInfo([rows, D], 'float32', dx), backend.makeTensorInfo([D], 'float32', dgamma), backend.makeTensorInfo([D], 'float32', dbeta)];
        },
      },
    );
  }
  return configs;
}

/** Kernel configs for the backend `backendName`; `stock` gives the cpu kernel to fall back on. */
export function nativeKernelConfigs(addon: NativeAddon, backendName: string, stock: (name: string) => KernelFunc): tf.KernelConfig[] {
  const configs: tf.KernelConfig[] = [];
  const add = (kernelName: string, make: (fallback: KernelFunc) => KernelFunc) => {
    configs.push({ kernelName, backendName, kernelFunc: make(stock(kernelName)) });
  };

  // ---- unary
  for (const [name, op] of Object.entries(U)) {
    add(name, (fallback) => (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const x = args.inputs.x as TensorInfo;
      const xv = f32(backend, x);
      if (!xv) return fallback(args);
      const alpha = op === U.Step || op === U.LeakyRelu ? Number((args.attrs as { alpha?: number }).alpha ?? 0) : 0;
      const out = outF32(backend, xv.length);
      addon.unary(op, xv, out, alpha);
      return backend.makeTensorInfo(x.shape, 'float32', out);
    });
  }

  // ---- binary with broadcasting: arithmetic (float32 out) and comparisons (bool out)
  const broadcastPair = (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const av = f32(backend, a);
    const bv = f32(backend, b);
    if (!av || !bv || av.length === 0 || bv.length === 0 || Math.max(a.shape.length, b.shape.length) > MAX_RANK) return null;
    return { backend, a, b, av, bv, shape: tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape) };
  };
  for (const [name, op] of Object.entries(B)) {
    add(name, (fallback) => (args: KernelArgs) => {
      const p = broadcastPair(args);
      if (!p) return fallback(args);
      const out = outF32(p.backend, size(p.shape));
      addon.binary(op, p.av, p.a.shape, p.bv, p.b.shape, out);
      return p.backend.makeTensorInfo(p.shape, 'float32', out);
    });
  }
  for (const [name, op] of Object.entries(C)) {
    add(name, (fallback) => (args: KernelArgs) => {
      const p = broadcastPair(args);
      if (!p) return fallback(args);
      const out = new Uint8Array(size(p.shape));
      addon.compare(op, p.av, p.a.shape, p.bv, p.b.shape, out);
      return p.backend.makeTensorInfo(p.shape, 'bool', out);
    });
  }

  // ---- softmax over the last axis
  add('Softmax', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const logits = args.inputs.logits as TensorInfo;
    const dim = Number((args.attrs as { dim?: number }).dim ?? -1);
    const rank = logits.shape.length;
    const xv = f32(backend, logits);
    if (!xv || xv.length === 0 || rank === 0 || (dim !== -1 && dim !== rank - 1)) return fallback(args);
    const out = outF32(backend, xv.length);
    addon.softmax(xv, out, logits.shape[rank - 1]!);
    return backend.makeTensorInfo(logits.shape, 'float32', out);
  });

  // ---- reductions
  const reduction = (name: string, op: number, mean: boolean, axisAttr: 'axis' | 'reductionIndices') =>
    add(name, (fallback) => (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const x = args.inputs.x as TensorInfo;
      const xv = f32(backend, x);
      if (!xv || xv.length === 0 || x.shape.length > MAX_RANK) return fallback(args);
      const attrs = args.attrs as Record<string, unknown>;
      const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape);
      const [outShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
      const out = outF32(backend, size(outShape));
      addon.reduce(op, xv, x.shape, axes, out, mean);
      const shape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
      return backend.makeTensorInfo(shape, 'float32', out);
    });
  reduction('Sum', R.Sum, false, 'axis');
  reduction('Mean', R.Sum, true, 'axis');
  reduction('Max', R.Max, false, 'reductionIndices');
  reduction('Min', R.Min, false, 'axis');

  // ---- transpose (float32 and int32)
  add('Transpose', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs.x as TensorInfo;
    const perm = (args.attrs as { perm: number[] }).perm;
    const v = backend.data.get(x.dataId).values;
    const ok = (x.dtype === 'float32' && v instanceof Float32Array) || (x.dtype === 'int32' && v instanceof Int32Array);
    // a repeated axis (tf.transpose does not refuse one) would make a tensor of other size than its values
    if (!ok || v.length === 0 || perm.length !== x.shape.length || perm.length > MAX_RANK || new Set(perm).size !== perm.length) return fallback(args);
    const shape = perm.map((p) => x.shape[p]!);
    const out = alloc(backend, x.dtype, v.length);
    addon.transpose(v, x.shape, perm, out);
    return backend.makeTensorInfo(shape, x.dtype, out);
  });

  // ---- copies: slice, split, concat, pad (float32 and int32)
  const stockSlice = stock('Slice');
  /** A strided slice copy; contiguous slices go to the stock kernel, which returns a view. */
  const sliceOf = (backend: MathBackendCPU, x: TensorInfo, begin: number[], sz: number[], args: KernelArgs): TensorInfo => {
    const v = words(backend, x);
    if (!v || size(sz) === 0 || x.shape.length > MAX_RANK || tf.slice_util.isSliceContinous(x.shape, begin, sz)) {
      return stockSlice({ ...args, inputs: { x }, attrs: { begin, size: sz } }) as TensorInfo;
    }
    const out = alloc(backend, x.dtype, size(sz));
    addon.copyBox(v, x.shape, begin, sz, out, sz, sz.map(() => 0));
    return backend.makeTensorInfo(sz, x.dtype, out);
  };
  add('Slice', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs.x as TensorInfo;
    if (!words(backend, x)) return fallback(args);
    const { begin, size: sz } = args.attrs as unknown as tf.SliceAttrs;
    const [b, s] = tf.slice_util.parseSliceParams(x, begin, sz);
    tf.slice_util.assertParamsValid(x, b, s);
    return sliceOf(backend, x, b, s, args);
  });
  add('SplitV', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs.x as TensorInfo;
    if (!words(backend, x)) return fallback(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const sz = x.shape.slice();
      sz[ax] = s;
      const t = sliceOf(backend, x, begin.slice(), sz, args);
      begin[ax] += s;
      return t;
    });
  });
  add('Concat', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const list = args.inputs as unknown as TensorInfo[];
    if (list.length === 0 || list[0]!.shape.length > MAX_RANK) return fallback(args);
    const dtype = list[0]!.dtype;
    if (!list.every((t) => t.dtype === dtype && words(backend, t) !== null)) return fallback(args);
    const { axis } = args.attrs as unknown as tf.ConcatAttrs;
    const ax = tf.util.parseAxisParam(axis, list[0]!.shape)[0]!;
    const shapes = list.map((t) => t.shape);
    tf.backend_util.assertParamsConsistent(shapes, ax);
    const outShape = tf.backend_util.computeOutShape(shapes, ax);
    const parts = list.filter((t) => size(t.shape) > 0);
    if (size(outShape) === 0 || parts.length <= 1) return fallback(args);
    const out = alloc(backend, dtype, size(outShape));
    const at = outShape.map(() => 0);
    for (const t of parts) {
      addon.copyBox(words(backend, t)!, t.shape, t.shape.map(() => 0), t.shape, out, outShape, at.slice());
      at[ax] += t.shape[ax]!;
    }
    return backend.makeTensorInfo(outShape, dtype, out);
  });
  add('PadV2', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const x = args.inputs.x as TensorInfo;
    const v = words(backend, x);
    if (!v || v.length === 0 || x.shape.length > MAX_RANK) return fallback(args);
    const { paddings, constantValue } = args.attrs as unknown as tf.PadV2Attrs;
    if (paddings.some((p) => p[0] < 0 || p[1] < 0)) return fallback(args);
    const outShape = paddings.map((p, i) => p[0] + x.shape[i]! + p[1]);
    const out = alloc(backend, x.dtype, size(outShape));
    out.fill(constantValue); // recycled arrays hold old values

    addon.copyBox(v, x.shape, x.shape.map(() => 0), x.shape, out, outShape, paddings.map((p) => p[0]));
    return backend.makeTensorInfo(outShape, x.dtype, out);
  });

  // ---- matmul
  /** Runs a (batched, broadcast) product; null when the case is not handled here. */
  const matmul = (backend: MathBackendCPU, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean) => {
    const av = f32(backend, a);
    const bv = f32(backend, b);
    const ra = a.shape.length;
    const rb = b.shape.length;
    if (!av || !bv || ra < 2 || rb < 2) return null;
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const ka = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    if (ka !== kb) return null;
    const aBatch = a.shape.slice(0, -2);
    const bBatch = b.shape.slice(0, -2);
    const outBatch = tf.backend_util.assertAndGetBroadcastShape(aBatch, bBatch);
    const nb = size(outBatch);
    const out = outF32(backend, nb * m * n);
    const shape = [...outBatch, m, n];
    if (out.length === 0) return { out, shape };
    const plan = (inBatch: number[], matSize: number): { stride: number; idx: Int32Array | null } => {
      if (size(inBatch) === 1) return { stride: 0, idx: null };
      const padded = [...new Array<number>(outBatch.length - inBatch.length).fill(1), ...inBatch];
      if (sameShape(padded, outBatch)) return { stride: matSize, idx: null };
      // general broadcast: batch offsets per output batch
      const idx = new Int32Array(nb);
      const inStrides = new Array<number>(padded.length);
      let s = 1;
      for (let d = padded.length - 1; d >= 0; d--) {
        inStrides[d] = padded[d] === 1 ? 0 : s;
        s *= padded[d]!;
      }
      for (let i = 0; i < nb; i++) {
        let rem = i;
        let off = 0;
        for (let d = outBatch.length - 1; d >= 0; d--) {
          const od = outBatch[d]!;
          off += (rem % od) * inStrides[d]!;
          rem = Math.floor(rem / od);
        }
        idx[i] = off;
      }
      return { stride: 0, idx };
    };
    const pa = plan(aBatch, m * ka);
    const pb = plan(bBatch, ka * n);
    addon.matmul(av, bv, out, nb, m, n, ka, transposeA, transposeB, pa.stride, pb.stride, pa.idx, pb.idx);
    return { out, shape };
  };

  add('BatchMatMul', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const r = matmul(backend, a, b, !!transposeA, !!transposeB);
    if (!r) return fallback(args);
    return backend.makeTensorInfo(r.shape, 'float32', r.out);
  });

  add('_FusedMatMul', (fallback) => (args: KernelArgs) => {
    const backend = args.backend as MathBackendCPU;
    const { a, b, bias } = args.inputs as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo };
    const attrs = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number };
    const act = ACT[attrs.activation ?? 'linear'];
    if (act === undefined) return fallback(args);
    const biasV = bias ? f32(backend, bias) : null;
    if (bias && !biasV) return fallback(args);
    const r = matmul(backend, a, b, !!attrs.transposeA, !!attrs.transposeB);
    if (!r) return fallback(args);
    const n = r.shape[r.shape.length - 1]!;
    let out = r.out;
    let shape = r.shape;
    if (bias && biasV) {
      shape = tf.backend_util.assertAndGetBroadcastShape(r.shape, bias.shape);
      const rowBias = biasV.length === 1 || bias.shape[bias.shape.length - 1] === n;
      if (sameShape(shape, r.shape) && rowBias && biasV.length <= n) {
        if (out.length > 0) addon.biasAct(out, n, biasV, -1, 0);
      } else {
        // rare bias layouts: a broadcasting add (in place when the shape does not grow)
        const dst = sameShape(shape, r.shape) ? out : outF32(backend, size(shape));
        if (dst.length > 0) addon.binary(B.Add, out, r.shape, biasV, bias.shape, dst);
        out = dst;
      }
    }
    if (act >= 0 && out.length > 0) addon.biasAct(out, shape[shape.length - 1]!, null, act, Number(attrs.leakyreluAlpha ?? 0.2));
    return backend.makeTensorInfo(shape, 'float32', out);
  });

  return configs;
}
