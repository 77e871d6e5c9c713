/**
 * moco3's own WGSL kernels on the `webgpu` backend, registered under moco3's kernel names the way
 * src/engine/native-kernels.ts puts C++ kernels on the CPU. Each replaces a chain of stock kernels (one or
 * two dispatches instead of 4-35, no copies or transposes between them): the model and the optimizers call
 * them through `fusedKernel(s)` when `hasKernel` says the active backend has them, and run the stock
 * composition otherwise. docs/ENGINES.md lists them with their measured agreement with the stock kernels.
 *
 *   Moco3GeluFwd       y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2))          (stock: Mul, Erf, Add, Mul, Mul)
 *   Moco3GeluBwd       dx = dy·(Φ(x) + x·φ(x)), φ the normal density (stock: 7 elementwise kernels)
 *   Moco3LayerNormFwd  y, mean, rstd of a LayerNorm over the rows of [n, D]: one dispatch, a workgroup per
 *                      row (stock: Mean, Sub, Square, Mean, Add, Rsqrt, Mul, Mul, Add)
 *   Moco3LayerNormBwd  dx, dγ, dβ from dy, x and the saved mean and rstd: two dispatches, dx and per-chunk
 *                      partial sums of dγ, dβ, then the sum over chunks (stock: ~10 kernels)
 *   Moco3BatchNormFwd  y, mean, biased variance and rstd of a BatchNorm1d in train mode over the rows of
 *                      [n, F]: one dispatch, a workgroup per 16 columns (stock: 9, the means over axis 0
 *                      with a transpose each)
 *   Moco3BatchNormBwd  dx, dγ, dβ: one dispatch, the same way (stock: 11)
 *   Moco3ColumnSum     Σ over the rows of [n, F] (a bias's gradient): per-chunk column sums, then their sum;
 *                      the stock Sum over axis 0 transposes the whole tensor first
 *   Moco3AttentionFwd  softmax(q·kᵀ·scale)·v per head, from the qkv projection [B·N, 3D] to the merged heads
 *                      [B·N, D] (and the probabilities, saved): one dispatch, no transposes (stock: 10
 *                      kernels, 6 of them copies). A workgroup per head and image, a thread per query row,
 *                      k and v in workgroup memory where they fit; beyond 256 tokens a workgroup per query row
 *   Moco3AttentionBwd  d(qkv) from d(out): one dispatch per head and image (dq with the scores' gradient, then
 *                      dk, dv), or two with a workgroup per row (stock: 16)
 *   Moco3AdamW         p, m, v after one AdamW step of a parameter (src/optim/adamw.ts): one dispatch
 *                      (stock: 14 elementwise kernels)
 *   Moco3Lamb          p, m, v after one LAMB step (src/optim/lamb.ts): two dispatches, the moments with
 *                      per-workgroup sums of p² and u², then the trust ratio and the update (stock: 35)
 *   Moco3Lars          p, mu after one LARS step (src/optim/lars.ts): two dispatches, the same way (stock: 26).
 *                      Both run the packed group's kernels below on a group of one parameter
 *   Moco3GradStats     [max |g|, Σ g²] of a gradient (the logged statistics, src/train/metrics.ts): one
 *                      dispatch, one workgroup striding over the tensor (stock: Abs, Max, Square, Sum)
 *   Moco3Ema           θk·m + θq·(1 − m), the momentum encoder's update of a parameter: one dispatch (stock: 3)
 *   Moco3SoftmaxBwd    dx = y·dy − y·Σ(y·dy) over the last axis (the attention's softmax): one dispatch, a
 *                      workgroup per row (stock: Mul, Sum, Mul, Sub); the forward is the stock Softmax kernel,
 *                      already one dispatch. The model's attention uses it only without Moco3Attention*
 *   Moco3Pack          several tensors laid end to end in one flat tensor, and Moco3Unpack, the way back:
 *                      buffer-to-buffer copies in the command stream, no dispatch. With them the optimizers
 *                      and the momentum update run one dispatch per parameter group instead of one per
 *                      parameter (`packed` below)
 *
 * erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the same formula as tfjs's own Erf kernels. The
 * kernels with several outputs are dispatched by `runMulti`, which records them in the backend's own
 * command stream (so they order with the stock kernels, count in profiles and need no read-back); it uses
 * internals of @tensorflow/tfjs-backend-webgpu 4.22.0 (the version package.json pins), checked at
 * registration: without them only the GELU kernels are registered.
 */
import * as tf from '@tensorflow/tfjs-core';

export const GELU_FWD = 'Moco3GeluFwd';
export const GELU_BWD = 'Moco3GeluBwd';
export const LAYERNORM_FWD = 'Moco3LayerNormFwd';
export const LAYERNORM_BWD = 'Moco3LayerNormBwd';
export const BATCHNORM_FWD = 'Moco3BatchNormFwd';
export const BATCHNORM_BWD = 'Moco3BatchNormBwd';
export const COLUMN_SUM = 'Moco3ColumnSum';
export const ATTENTION_FWD = 'Moco3AttentionFwd';
export const ATTENTION_BWD = 'Moco3AttentionBwd';
export const ADAMW = 'Moco3AdamW';
export const LAMB = 'Moco3Lamb';
export const LARS = 'Moco3Lars';
export const SOFTMAX_BWD = 'Moco3SoftmaxBwd';
export const EMA = 'Moco3Ema';
export const GRAD_STATS = 'Moco3GradStats';
export const LAMB_GROUP = 'Moco3LambGroup';
export const LARS_GROUP = 'Moco3LarsGroup';
export const PACK = 'Moco3Pack';
export const UNPACK = 'Moco3Unpack';

interface Program {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  size: boolean;
  getUserCode(): string;
}
interface WebGpuBackendLike {
  runWebGPUProgram(program: Program, inputs: tf.TensorInfo[], dtype: tf.DataType): tf.TensorInfo;
}
/** The backend internals `runMulti` uses (tfjs-backend-webgpu 4.22.0, src/backend_webgpu.ts). */
interface WebGpuInternals {
  device: {
    limits: Record<string, number>;
    createShaderModule(d: { code: string; label?: string }): unknown;
    createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string }; label?: string }): unknown;
  };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  uploadToGPU(dataId: tf.DataId): void;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  recordAndSubmit(program: RawProgram, output: tf.TensorInfo, inputs: tf.TensorInfo[], uniforms: Array<{ type: string; data: number[] }>): void;
}
/** What the copies of Moco3Pack / Moco3Unpack use besides `WebGpuInternals` (same source). */
interface CopyInternals {
  tensorMap: { get(dataId: tf.DataId): { resource: unknown } | undefined };
  commandEncoder: { copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number, size: number): void } | null;
  commandQueueOwnedIds: WeakSet<object>;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
}
interface RawProgram {
  pipeline: unknown;
  dispatch: [number, number, number];
  size: false;
  /** recordAndSubmit names timed dispatches by `program.constructor.name` */
  constructor: { name: string };
}
interface WebGpuUtil {
  flatDispatchLayout(shape: number[]): { x: number[] };
  computeDispatch(layout: { x: number[] }, shape: number[], wg: [number, number, number]): [number, number, number];
}

const ERF = `
fn moco3Erf(v : f32) -> f32 {
  let p = 0.3275911;
  let a1 = 0.254829592;
  let a2 = -0.284496736;
  let a3 = 1.421413741;
  let a4 = -1.453152027;
  let a5 = 1.061405429;
  let s = sign(v);
  let x = abs(v);
  let t = 1.0 / (1.0 + p * x);
  return s * (1.0 - (((((a5 * t + a4) * t) + a3) * t + a2) * t + a1) * t * exp(-x * x));
}`;

function elementwise(util: WebGpuUtil, key: string, shape: number[], inputs: string[], body: string): Program {
  const workgroupSize: [number, number, number] = [128, 1, 1];
  const dispatchLayout = util.flatDispatchLayout(shape);
  return {
    outputShape: shape,
    shaderKey: key,
    dispatchLayout,
    dispatch: util.computeDispatch(dispatchLayout, shape, workgroupSize),
    variableNames: inputs,
    workgroupSize,
    size: true,
    getUserCode: () => `${ERF}
fn main(index : i32) {
  if (index < uniforms.size) {
    ${body}
  }
}`,
  };
}

/** One storage binding of a `runMulti` shader: the WGSL array name and the tensor bound to it. */
interface Bound {
  name: string;
  t: tf.TensorInfo;
  /** the WGSL element type (f32 unless said) */
  type?: 'i32';
}
interface MultiSpec {
  /** the kernel's name in profiles */
  label: string;
  /** the shader variant: equal keys must give equal `code` */
  key: string;
  outputs: Array<{ name: string; shape: number[] }>;
  inputs: Bound[];
  /** scalar uniforms, in this order: `uniforms.<name>` in the shader */
  uniforms: Array<[string, 'f32' | 'i32', number]>;
  workgroupSize: number;
  /** number of workgroups; the shader's `kernel(group, lid)` runs once per workgroup and thread */
  groups: number;
  /** WGSL defining `fn kernel(group : i32, lid : i32)` (and whatever it needs) */
  code: string;
}

const pipelines = new WeakMap<object, Map<string, unknown>>();

/**
 * Runs one compute shader with several outputs on the webgpu backend and returns the outputs. The shader
 * is moco3's own (not the backend's generated prelude); the dispatch goes through the backend's
 * `recordAndSubmit`, whose binding order is [first output, the other bound tensors, uniforms] and whose
 * uniform block starts with NAN, INFINITY and a shape and strides per bound tensor: each tensor is bound
 * as rank 1, so those are two i32 each, declared as padding here.
 */
function runMulti(backend: WebGpuInternals, spec: MultiSpec): tf.TensorInfo[] {
  // no work, or an input of no element (a tensor of size 0): Dawn refuses a binding of size 0, and the failed
  // command buffer took the work queued with it. The outputs are then what the stock kernels give: empty, or
  // zeros where they sum over nothing (LayerNorm's dγ and dβ over no rows)
  if (spec.groups === 0 || spec.inputs.some((b) => tf.util.sizeFromShape(b.t.shape) === 0) || spec.outputs.every((o) => tf.util.sizeFromShape(o.shape) === 0)) {
    return spec.outputs.map((o) => backend.makeTensorInfo(o.shape, 'float32', new Float32Array(tf.util.sizeFromShape(o.shape))));
  }
  const outs = spec.outputs.map((o) => backend.makeTensorInfo(o.shape, 'float32'));
  const bound: Bound[] = [...spec.outputs.map((o, i) => ({ name: o.name, t: outs[i]! })), ...spec.inputs];
  for (const b of bound) backend.uploadToGPU(b.t.dataId);
  let cache = pipelines.get(backend);
  if (!cache) pipelines.set(backend, (cache = new Map()));
  let pipeline = cache.get(spec.key);
  if (!pipeline) {
    const pads = bound.map((_, i) => `_s${i} : i32, _t${i} : i32,`).join(' ');
    const own = spec.uniforms.map(([n, ty]) => `${n} : ${ty},`).join(' ');
    const decl = bound
      .map((b, i) => `@group(0) @binding(${i}) var<storage, ${i < spec.outputs.length ? 'read_write' : 'read'}> ${b.name} : array<${b.type ?? 'f32'}>;`)
      .join('\n');
    const code = `struct Uniforms { NAN : f32, INFINITY : f32, ${pads} ${own} };
${decl}
@group(0) @binding(${bound.length}) var<uniform> uniforms : Uniforms;
const WG : i32 = ${spec.workgroupSize};
${spec.code}
@compute @workgroup_size(${spec.workgroupSize})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  kernel(i32(wid.y * nwg.x + wid.x), i32(lid));
}`;
    const module = backend.device.createShaderModule({ code, label: spec.label });
    pipeline = backend.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: spec.label });
    cache.set(spec.key, pipeline);
  }
  const maxX = backend.device.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  const x = Math.min(spec.groups, maxX);
  const program: RawProgram = { pipeline, dispatch: [x, Math.ceil(spec.groups / x), 1], size: false, constructor: { name: spec.label } };
  const flat = bound.map((b) => ({ dataId: b.t.dataId, shape: [tf.util.sizeFromShape(b.t.shape)], dtype: b.t.dtype }));
  const uniforms = spec.uniforms.map(([, ty, v]) => ({ type: ty === 'f32' ? 'float32' : 'int32', data: [v] }));
  backend.recordAndSubmit(program, flat[0]!, flat.slice(1), uniforms);
  return outs;
}

/**
 * Copies float32 ranges between tensors' GPU buffers in the backend's command stream, ordered with its
 * dispatches: `[src, srcOffset, dst, dstOffset, count]` in elements. Like `recordAndSubmit`, it marks the
 * buffers as used by the pending commands, so a tensor disposed before the submit keeps its buffer until then.
 */
function copyRanges(backend: WebGpuInternals & CopyInternals, copies: Array<[tf.TensorInfo, number, tf.TensorInfo, number, number]>): void {
  for (const [src, , dst] of copies) {
    backend.uploadToGPU(src.dataId);
    backend.uploadToGPU(dst.dataId);
  }
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  for (const [src, so, dst, d, n] of copies) {
    if (n === 0) continue;
    backend.commandEncoder!.copyBufferToBuffer(backend.tensorMap.get(src.dataId)!.resource, so * 4, backend.tensorMap.get(dst.dataId)!.resource, d * 4, n * 4);
    backend.commandQueueOwnedIds.add(src.dataId as object);
    backend.commandQueueOwnedIds.add(dst.dataId as object);
  }
}

/** Sums a value over the workgroup (WG a power of two); every thread gets the sum. */
const WG_SUM2 = `
var<workgroup> red : array<vec2<f32>, WG>;
fn wgSum2(v : vec2<f32>, lid : i32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2; s > 0; s = s / 2) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/** LayerNorm forward, a workgroup per row: mean, then the variance about it (two passes, as the stock ops). */
const LN_FWD_CODE = `${WG_SUM2}
fn kernel(row : i32, lid : i32) {
  if (row >= uniforms.rows) { return; }
  let D = uniforms.D;
  let base = row * D;
  var s = 0.0;
  for (var c = lid; c < D; c = c + WG) { s = s + X[base + c]; }
  let mean = wgSum2(vec2<f32>(s, 0.0), lid).x / f32(D);
  var q = 0.0;
  for (var c = lid; c < D; c = c + WG) { let d = X[base + c] - mean; q = q + d * d; }
  let rstd = inverseSqrt(wgSum2(vec2<f32>(q, 0.0), lid).x / f32(D) + uniforms.eps);
  for (var c = lid; c < D; c = c + WG) { Y[base + c] = (X[base + c] - mean) * rstd * G[c] + B[c]; }
  if (lid == 0) { MEAN[row] = mean; RSTD[row] = rstd; }
}`;

/**
 * LayerNorm backward, part 1: a workgroup per chunk of rows writes dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)),
 * dx̂ = dy·γ, and the chunk's sums of dy·x̂ and dy per column (thread lid owns columns lid + k·WG, k < K).
 */
const lnBwdCode = (K: number) => `${WG_SUM2}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.chunks) { return; }
  let D = uniforms.D;
  var pg : array<f32, ${K}>;
  var pb : array<f32, ${K}>;
  let r0 = g * uniforms.R;
  let r1 = min(uniforms.rows, r0 + uniforms.R);
  for (var r = r0; r < r1; r = r + 1) {
    let mean = MEAN[r];
    let rstd = RSTD[r];
    let base = r * D;
    var ab = vec2<f32>(0.0, 0.0);
    for (var k = 0; k < ${K}; k = k + 1) {
      let c = lid + k * WG;
      if (c < D) {
        let xh = (X[base + c] - mean) * rstd;
        let dy = DY[base + c];
        let dxh = dy * G[c];
        ab = ab + vec2<f32>(dxh, dxh * xh);
        pg[k] = pg[k] + dy * xh;
        pb[k] = pb[k] + dy;
      }
    }
    let m = wgSum2(ab, lid) / f32(D);
    for (var k = 0; k < ${K}; k = k + 1) {
      let c = lid + k * WG;
      if (c < D) {
        let xh = (X[base + c] - mean) * rstd;
        DX[base + c] = rstd * ((DY[base + c] * G[c] - m.x) - xh * m.y);
      }
    }
  }
  for (var k = 0; k < ${K}; k = k + 1) {
    let c = lid + k * WG;
    if (c < D) { P[g * 2 * D + c] = pg[k]; P[g * 2 * D + D + c] = pb[k]; }
  }
}`;

/** LayerNorm backward, part 2: a workgroup per column sums the chunks' partial dγ and dβ. */
const LN_BWD_SUM_CODE = `${WG_SUM2}
fn kernel(c : i32, lid : i32) {
  if (c >= uniforms.D) { return; }
  let D = uniforms.D;
  var s = vec2<f32>(0.0, 0.0);
  for (var g = lid; g < uniforms.chunks; g = g + WG) { s = s + vec2<f32>(P[g * 2 * D + c], P[g * 2 * D + D + c]); }
  let t = wgSum2(s, lid);
  if (lid == 0) { DG[c] = t.x; DB[c] = t.y; }
}`;

/** AdamW, one thread per element, in the operation order of src/optim/adamw.ts. */
const ADAMW_CODE = `
fn kernel(g : i32, lid : i32) {
  let i = g * WG + lid;
  if (i >= uniforms.n) { return; }
  let gr = GR[i];
  var m0 = 0.0;
  var v0 = 0.0;
  if (uniforms.fresh == 0) { m0 = M[i]; v0 = V[i]; }
  let m = m0 * uniforms.beta1 + gr * uniforms.omb1;
  let v = v0 * uniforms.beta2 + (gr * uniforms.omb2) * gr;
  let denom = sqrt(v) / uniforms.sqrtBc2 + uniforms.eps;
  P1[i] = P[i] * uniforms.decay + (m * uniforms.negStep) / denom;
  M1[i] = m;
  V1[i] = v;
}`;


/**
 * The norms of LAMB and LARS: at most NORM_GROUPS workgroups stride over a parameter, each writes its sums
 * (PART[2g], PART[2g + 1]); the update kernel's workgroups each add them up again (≤ NORM_GROUPS values).
 */
const NORM_GROUPS = 256;
const normGroups = (n: number) => Math.min(NORM_GROUPS, Math.ceil(n / 256));

/**
 * LAMB and LARS over a packed group of parameters (Moco3Pack), two dispatches for the whole group; a single
 * parameter is a group of one. Every workgroup belongs to one parameter (a segment), found by a binary
 * search of the segment table SEG, 8 i32 per segment: [offset, length, first norm workgroup, norm
 * workgroups, first update workgroup, adapt (1: decay and trust ratio), 0, 0]. A segment's sums are taken
 * by the same strides and in the same order whatever else is packed with it, so a parameter's update is bit
 * for bit the same packed or alone.
 */
const SEGMENTS = `
fn segOf(g : i32, col : i32) -> i32 {
  var lo = 0;
  var hi = uniforms.S - 1;
  loop {
    if (lo >= hi) { break; }
    let mid = (lo + hi + 1) / 2;
    if (SEG[mid * 8 + col] <= g) { lo = mid; } else { hi = mid - 1; }
  }
  return lo;
}
fn segNorms(s : i32, lid : i32) -> vec2<f32> {
  var acc = vec2<f32>(0.0, 0.0);
  if (SEG[s * 8 + 5] == 1) {
    let pb = SEG[s * 8 + 2];
    for (var j = lid; j < SEG[s * 8 + 3]; j = j + WG) { acc = acc + vec2<f32>(PART[2 * (pb + j)], PART[2 * (pb + j) + 1]); }
  }
  return sqrt(wgSum2(acc, lid));
}`;

const LAMB_GROUP_MOMENTS_CODE = `${WG_SUM2}${SEGMENTS}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.groups) { return; }
  let s = segOf(g, 2);
  let off = SEG[s * 8];
  let n = SEG[s * 8 + 1];
  let stride = SEG[s * 8 + 3] * WG;
  var wd = 0.0;
  if (SEG[s * 8 + 5] == 1) { wd = uniforms.wd; }
  var acc = vec2<f32>(0.0, 0.0);
  for (var i = (g - SEG[s * 8 + 2]) * WG + lid; i < n; i = i + stride) {
    let e = off + i;
    let gr = GR[e];
    var m0 = 0.0;
    var v0 = 0.0;
    if (uniforms.fresh == 0) { m0 = M[e]; v0 = V[e]; }
    let m = m0 * uniforms.beta1 + gr * uniforms.omb1;
    let v = v0 * uniforms.beta2 + (gr * uniforms.omb2) * gr;
    M1[e] = m;
    V1[e] = v;
    let p = P[e];
    let u = (m / uniforms.bc1) / (sqrt(v) / uniforms.sqrtBc2 + uniforms.eps) + p * wd;
    acc = acc + vec2<f32>(p * p, u * u);
  }
  let t = wgSum2(acc, lid);
  if (lid == 0) { PART[2 * g] = t.x; PART[2 * g + 1] = t.y; }
}`;

const LAMB_GROUP_APPLY_CODE = `${WG_SUM2}${SEGMENTS}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.groups) { return; }
  let s = segOf(g, 4);
  let nrm = segNorms(s, lid);
  let adapt = SEG[s * 8 + 5] == 1;
  var trust = 1.0;
  var wd = 0.0;
  if (adapt) { wd = uniforms.wd; }
  if (adapt && nrm.x > 0.0 && nrm.y > 0.0) { trust = nrm.x / nrm.y; }
  let i = (g - SEG[s * 8 + 4]) * WG + lid;
  if (i >= SEG[s * 8 + 1]) { return; }
  let e = SEG[s * 8] + i;
  let p = P[e];
  let u = (M1[e] / uniforms.bc1) / (sqrt(V1[e]) / uniforms.sqrtBc2 + uniforms.eps) + p * wd;
  P1[e] = p + (u * trust) * uniforms.negLr;
}`;

const LARS_GROUP_NORMS_CODE = `${WG_SUM2}${SEGMENTS}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.groups) { return; }
  let s = segOf(g, 2);
  let off = SEG[s * 8];
  let n = SEG[s * 8 + 1];
  let stride = SEG[s * 8 + 3] * WG;
  var acc = vec2<f32>(0.0, 0.0);
  for (var i = (g - SEG[s * 8 + 2]) * WG + lid; i < n; i = i + stride) {
    let p = P[off + i];
    let dp = GR[off + i] + p * uniforms.wd;
    acc = acc + vec2<f32>(p * p, dp * dp);
  }
  let t = wgSum2(acc, lid);
  if (lid == 0) { PART[2 * g] = t.x; PART[2 * g + 1] = t.y; }
}`;

const LARS_GROUP_APPLY_CODE = `${WG_SUM2}${SEGMENTS}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.groups) { return; }
  let s = segOf(g, 4);
  let nrm = segNorms(s, lid);
  let adapt = SEG[s * 8 + 5] == 1;
  var q = 1.0;
  if (adapt && nrm.x > 0.0 && nrm.y > 0.0) { q = (nrm.x * uniforms.tc) / nrm.y; }
  let i = (g - SEG[s * 8 + 4]) * WG + lid;
  if (i >= SEG[s * 8 + 1]) { return; }
  let e = SEG[s * 8] + i;
  let p = P[e];
  var dp = GR[e];
  if (adapt) { dp = (dp + p * uniforms.wd) * q; }
  var mu0 = 0.0;
  if (uniforms.fresh == 0) { mu0 = MU[e]; }
  let mu = mu0 * uniforms.momentum + dp;
  MU1[e] = mu;
  P1[e] = p + mu * uniforms.negLr;
}`;

/** The segment table of a packed group (SEGMENTS) and its workgroup counts. */
function segmentTable(sizes: readonly number[], adapt: readonly boolean[]): { table: Int32Array; normGroups: number; applyGroups: number } {
  const table = new Int32Array(sizes.length * 8);
  let off = 0;
  let ng = 0;
  let ag = 0;
  sizes.forEach((n, s) => {
    const parts = normGroups(n);
    table.set([off, n, ng, parts, ag, adapt[s] ? 1 : 0, 0, 0], s * 8);
    off += n;
    ng += parts;
    ag += Math.ceil(n / 256);
  });
  return { table, normGroups: ng, applyGroups: ag };
}

/** The attributes of Moco3LambGroup / Moco3LarsGroup besides the optimizer's: the packed parameters. */
export interface GroupAttrs {
  /** elements of each parameter, in the packed order */
  sizes: number[];
  /** per parameter: decay and trust ratio (LAMB without the exclusion, LARS for ndim > 1) */
  adapt: boolean[];
}

/** LAMB's scalars for one step (src/optim/lamb.ts); `adapt` false: no trust ratio (and wd is then 0). */
export interface LambAttrs {
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  step: number;
  adapt: boolean;
}
/** LARS's scalars for one step (src/optim/lars.ts); `adapt` false: ndim ≤ 1, no decay, no trust ratio. */
export interface LarsAttrs {
  lr: number;
  weightDecay: number;
  momentum: number;
  trustCoefficient: number;
  adapt: boolean;
}


/** Softmax backward, a workgroup per row, in the stock gradient's order: dy·y − Σ(dy·y)·y. */
const SOFTMAX_BWD_CODE = `${WG_SUM2}
fn kernel(row : i32, lid : i32) {
  if (row >= uniforms.rows) { return; }
  let C = uniforms.cols;
  let base = row * C;
  var s = 0.0;
  for (var c = lid; c < C; c = c + WG) { s = s + DY[base + c] * Y[base + c]; }
  let t = wgSum2(vec2<f32>(s, 0.0), lid).x;
  for (var c = lid; c < C; c = c + WG) { let y = Y[base + c]; DX[base + c] = DY[base + c] * y - t * y; }
}`;


/**
 * BatchNorm1d over the rows of [n, F]: a workgroup of BN_COLS columns × BN_LANES row lanes; lane l reads
 * rows l, l + BN_LANES, ... (neighbouring threads read neighbouring columns), and `laneSum` adds the lanes.
 */
const BN_COLS = 16;
const BN_LANES = 16;
const BN_COMMON = `
const CW : i32 = ${BN_COLS};
const L : i32 = ${BN_LANES};
var<workgroup> red4 : array<vec4<f32>, WG>;
fn laneSum(v : vec4<f32>, lid : i32) -> vec4<f32> {
  red4[lid] = v;
  workgroupBarrier();
  for (var s = L / 2; s > 0; s = s / 2) {
    if (lid < s * CW) { red4[lid] = red4[lid] + red4[lid + s * CW]; }
    workgroupBarrier();
  }
  let r = red4[lid % CW];
  workgroupBarrier();
  return r;
}`;

/** BatchNorm forward: the mean, then the variance about it (as the stock ops), then y. */
const BN_FWD_CODE = `${BN_COMMON}
fn kernel(g : i32, lid : i32) {
  let F = uniforms.F;
  let n = uniforms.n;
  let col = g * CW + lid % CW;
  let lane = lid / CW;
  let ok = col < F;
  var s = 0.0;
  if (ok) { for (var r = lane; r < n; r = r + L) { s = s + X[r * F + col]; } }
  let mean = laneSum(vec4<f32>(s, 0.0, 0.0, 0.0), lid).x / f32(n);
  var q = 0.0;
  if (ok) { for (var r = lane; r < n; r = r + L) { let d = X[r * F + col] - mean; q = q + d * d; } }
  let varB = laneSum(vec4<f32>(q, 0.0, 0.0, 0.0), lid).x / f32(n);
  let rstd = inverseSqrt(varB + uniforms.eps);
  if (ok) {
    for (var r = lane; r < n; r = r + L) {
      var y = (X[r * F + col] - mean) * rstd;
      if (uniforms.affine == 1) { y = y * G[col] + B[col]; }
      Y[r * F + col] = y;
    }
    if (lane == 0) { MEAN[col] = mean; VAR[col] = varB; RSTD[col] = rstd; }
  }
}`;

/** BatchNorm backward: the column sums of dx̂, dx̂·x̂, dy·x̂ and dy, then dx (the formula of src/model/layers.ts). */
const BN_BWD_CODE = `${BN_COMMON}
fn kernel(g : i32, lid : i32) {
  let F = uniforms.F;
  let n = uniforms.n;
  let col = g * CW + lid % CW;
  let lane = lid / CW;
  let ok = col < F;
  var mean = 0.0;
  var rstd = 0.0;
  var gam = 1.0;
  var s = vec4<f32>(0.0, 0.0, 0.0, 0.0);
  if (ok) {
    mean = MEAN[col];
    rstd = RSTD[col];
    if (uniforms.affine == 1) { gam = G[col]; }
    for (var r = lane; r < n; r = r + L) {
      let xh = (X[r * F + col] - mean) * rstd;
      let dy = DY[r * F + col];
      var dxh = dy;
      if (uniforms.affine == 1) { dxh = dy * gam; }
      s = s + vec4<f32>(dxh, dxh * xh, dy * xh, dy);
    }
  }
  let t = laneSum(s, lid);
  let m1 = t.x / f32(n);
  let m2 = t.y / f32(n);
  if (ok) {
    for (var r = lane; r < n; r = r + L) {
      let xh = (X[r * F + col] - mean) * rstd;
      var dxh = DY[r * F + col];
      if (uniforms.affine == 1) { dxh = dxh * gam; }
      DX[r * F + col] = rstd * ((dxh - m1) - xh * m2);
    }
    if (lane == 0) { DG[col] = t.z; DB[col] = t.w; }
  }
}`;


/** Column sums, part 1: workgroup g sums BN_COLS columns over one chunk of R rows (row lanes as BatchNorm's). */
const COLSUM_CODE = `${BN_COMMON}
fn kernel(g : i32, lid : i32) {
  let F = uniforms.F;
  let cg = g % uniforms.colGroups;
  let chunk = g / uniforms.colGroups;
  let col = cg * CW + lid % CW;
  let lane = lid / CW;
  let ok = col < F && chunk < uniforms.chunks;
  var s = 0.0;
  if (ok) {
    let r1 = min(uniforms.n, (chunk + 1) * uniforms.R);
    for (var r = chunk * uniforms.R + lane; r < r1; r = r + L) { s = s + X[r * F + col]; }
  }
  let t = laneSum(vec4<f32>(s, 0.0, 0.0, 0.0), lid).x;
  if (ok && lane == 0) { S[chunk * F + col] = t; }
}`;

/** Column sums, part 2: a workgroup per column adds the chunks' sums. */
const COLSUM_TOTAL_CODE = `${WG_SUM2}
fn kernel(c : i32, lid : i32) {
  if (c >= uniforms.F) { return; }
  var s = 0.0;
  for (var g = lid; g < uniforms.chunks; g = g + WG) { s = s + P[g * uniforms.F + c]; }
  let t = wgSum2(vec2<f32>(s, 0.0), lid).x;
  if (lid == 0) { S[c] = t; }
}`;


/**
 * Attention of the heads of qkv [B·N, 3D] (features (s, h, d): s = q, k, v; h a head; d < HD), as the
 * model's stock path (src/model/vit.ts). Workgroup g = (bh, i), bh = h·B + b: query row i of head h of
 * image b. NT (tokens) and HD (head size) are compile-time constants.
 */
const attnCommon = (N: number, hd: number) => `${WG_SUM2}
const NT : i32 = ${N};
const HD : i32 = ${hd};
var<workgroup> mx : array<f32, WG>;
fn wgMax(v : f32, lid : i32) -> f32 {
  mx[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2; s > 0; s = s / 2) {
    if (lid < s) { mx[lid] = max(mx[lid], mx[lid + s]); }
    workgroupBarrier();
  }
  let r = mx[0];
  workgroupBarrier();
  return r;
}
/** offset of feature 0 of head h, part s (0 q, 1 k, 2 v) of token t of image b in qkv */
fn qkvAt(b : i32, t : i32, s : i32, h : i32) -> i32 {
  return (b * NT + t) * 3 * uniforms.D + s * uniforms.D + h * HD;
}`;

/** Forward: scores of row i against every key (q pre-scaled, as the stock path), softmax, then p·v. */
const attnFwdCode = (N: number, hd: number) => `${attnCommon(N, hd)}
var<workgroup> qs : array<f32, HD>;
var<workgroup> sc : array<f32, NT>;
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.total) { return; }
  let bh = g / NT;
  let i = g % NT;
  let h = bh / uniforms.B;
  let b = bh % uniforms.B;
  let q0 = qkvAt(b, i, 0, h);
  for (var d = lid; d < uniforms.hd; d = d + WG) { qs[d] = QKV[q0 + d] * uniforms.scale; }
  workgroupBarrier();
  var m = -3.402823e38;
  for (var j = lid; j < uniforms.nt; j = j + WG) {
    let k0 = qkvAt(b, j, 1, h);
    var s = 0.0;
    for (var d = 0; d < uniforms.hd; d = d + 1) { s = s + qs[d] * QKV[k0 + d]; }
    sc[j] = s;
    m = max(m, s);
  }
  let rowMax = wgMax(m, lid);
  var sum = 0.0;
  for (var j = lid; j < uniforms.nt; j = j + WG) { let e = exp(sc[j] - rowMax); sc[j] = e; sum = sum + e; }
  let total = wgSum2(vec2<f32>(sum, 0.0), lid).x;
  for (var j = lid; j < uniforms.nt; j = j + WG) { let p = sc[j] / total; sc[j] = p; PR[g * NT + j] = p; }
  workgroupBarrier();
  for (var d = lid; d < uniforms.hd; d = d + WG) {
    var o = 0.0;
    for (var j = 0; j < uniforms.nt; j = j + 1) { o = o + sc[j] * QKV[qkvAt(b, j, 2, h) + d]; }
    O[(b * NT + i) * uniforms.D + h * HD + d] = o;
  }
}`;

/**
 * Backward, part 1, workgroup (bh, i): dP_ij = dO_i·v_j, dS_ij = dP_ij·P_ij − (Σ_j dP_ij·P_ij)·P_ij (the
 * softmax's stock gradient), saved for part 2, and dq_i = (Σ_j dS_ij·k_j)·scale.
 */
const attnBwdCode = (N: number, hd: number) => `${attnCommon(N, hd)}
var<workgroup> dos : array<f32, HD>;
var<workgroup> ds : array<f32, NT>;
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.total) { return; }
  let bh = g / NT;
  let i = g % NT;
  let h = bh / uniforms.B;
  let b = bh % uniforms.B;
  let o0 = (b * NT + i) * uniforms.D + h * HD;
  for (var d = lid; d < uniforms.hd; d = d + WG) { dos[d] = DO[o0 + d]; }
  workgroupBarrier();
  var t = 0.0;
  for (var j = lid; j < uniforms.nt; j = j + WG) {
    let v0 = qkvAt(b, j, 2, h);
    var dp = 0.0;
    for (var d = 0; d < uniforms.hd; d = d + 1) { dp = dp + dos[d] * QKV[v0 + d]; }
    let pdp = dp * PR[g * NT + j];
    ds[j] = pdp;
    t = t + pdp;
  }
  let tt = wgSum2(vec2<f32>(t, 0.0), lid).x;
  for (var j = lid; j < uniforms.nt; j = j + WG) { let s = ds[j] - tt * PR[g * NT + j]; ds[j] = s; DS[g * NT + j] = s; }
  workgroupBarrier();
  for (var d = lid; d < uniforms.hd; d = d + WG) {
    var acc = 0.0;
    for (var j = 0; j < uniforms.nt; j = j + 1) { acc = acc + ds[j] * QKV[qkvAt(b, j, 1, h) + d]; }
    DQ[o0 + d] = acc * uniforms.scale;
  }
}`;

/**
 * Backward, part 2, workgroup (bh, j): dk_j = Σ_i dS_ij·(q_i·scale), dv_j = Σ_i P_ij·dO_i, written with dq_j
 * into d(qkv) in the layout of qkv.
 */
const attnBwdKvCode = (N: number, hd: number) => `${attnCommon(N, hd)}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.total) { return; }
  let bh = g / NT;
  let j = g % NT;
  let h = bh / uniforms.B;
  let b = bh % uniforms.B;
  for (var d = lid; d < uniforms.hd; d = d + WG) {
    var dk = 0.0;
    var dv = 0.0;
    for (var i = 0; i < uniforms.nt; i = i + 1) {
      let e = (bh * NT + i) * NT + j;
      dk = dk + DS[e] * (QKV[qkvAt(b, i, 0, h) + d] * uniforms.scale);
      dv = dv + PR[e] * DO[(b * NT + i) * uniforms.D + h * HD + d];
    }
    DQKV[qkvAt(b, j, 0, h) + d] = DQ[(b * NT + j) * uniforms.D + h * HD + d];
    DQKV[qkvAt(b, j, 1, h) + d] = dk;
    DQKV[qkvAt(b, j, 2, h) + d] = dv;
  }
}`;

/**
 * The attention with a workgroup per head and image (g = h·B + b) and a thread per query (or key) row; the
 * same operations in the same order as the row kernels. Every thread reads the same k, v (q, dO) element
 * at the same time; `staged`: those are first copied to workgroup memory (when 2·N·HD floats fit it),
 * otherwise read from the buffers. A1/B1 read k/v, A2/B2 q·scale/dO (the backward's key rows).
 */
const attnHeadCommon = (N: number, hd: number, staged: boolean) => `
const NT : i32 = ${N};
const HD : i32 = ${hd};
var<private> pb : i32;
var<private> ph : i32;
fn qkvAt(b : i32, t : i32, s : i32, h : i32) -> i32 {
  return (b * NT + t) * 3 * uniforms.D + s * uniforms.D + h * HD;
}
${
  staged
    ? `var<workgroup> sa : array<f32, ${N * hd}>;
var<workgroup> sb : array<f32, ${N * hd}>;
fn A1(t : i32, d : i32) -> f32 { return sa[t * HD + d]; }
fn B1(t : i32, d : i32) -> f32 { return sb[t * HD + d]; }
fn stage1(lid : i32) {
  for (var e = lid; e < uniforms.nt * uniforms.hd; e = e + WG) {
    sa[e] = QKV[qkvAt(pb, e / HD, 1, ph) + e % HD];
    sb[e] = QKV[qkvAt(pb, e / HD, 2, ph) + e % HD];
  }
}`
    : `fn A1(t : i32, d : i32) -> f32 { return QKV[qkvAt(pb, t, 1, ph) + d]; }
fn B1(t : i32, d : i32) -> f32 { return QKV[qkvAt(pb, t, 2, ph) + d]; }
fn stage1(lid : i32) {}`
}`;

const attnHeadPhase2 = (staged: boolean) =>
  staged
    ? `fn A2(t : i32, d : i32) -> f32 { return sa[t * HD + d]; }
fn B2(t : i32, d : i32) -> f32 { return sb[t * HD + d]; }
fn stage2(lid : i32) {
  for (var e = lid; e < uniforms.nt * uniforms.hd; e = e + WG) {
    sa[e] = QKV[qkvAt(pb, e / HD, 0, ph) + e % HD] * uniforms.scale;
    sb[e] = DO[(pb * NT + e / HD) * uniforms.D + ph * HD + e % HD];
  }
}`
    : `fn A2(t : i32, d : i32) -> f32 { return QKV[qkvAt(pb, t, 0, ph) + d] * uniforms.scale; }
fn B2(t : i32, d : i32) -> f32 { return DO[(pb * NT + t) * uniforms.D + ph * HD + d]; }
fn stage2(lid : i32) {}`;

const attnHeadFwdCode = (N: number, hd: number, staged: boolean) => `${attnHeadCommon(N, hd, staged)}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.heads) { return; }
  let h = g / uniforms.B;
  let b = g % uniforms.B;
  pb = b;
  ph = h;
  stage1(lid);
  workgroupBarrier();
  for (var i = lid; i < uniforms.nt; i = i + WG) {
    var q : array<f32, HD>;
    let q0 = qkvAt(b, i, 0, h);
    for (var d = 0; d < uniforms.hd; d = d + 1) { q[d] = QKV[q0 + d] * uniforms.scale; }
    var s : array<f32, NT>;
    var m = -3.402823e38;
    for (var j = 0; j < uniforms.nt; j = j + 1) {
      var acc = 0.0;
      for (var d = 0; d < uniforms.hd; d = d + 1) { acc = acc + q[d] * A1(j, d); }
      s[j] = acc;
      m = max(m, acc);
    }
    var sum = 0.0;
    for (var j = 0; j < uniforms.nt; j = j + 1) { let e = exp(s[j] - m); s[j] = e; sum = sum + e; }
    let base = (g * NT + i) * NT;
    for (var j = 0; j < uniforms.nt; j = j + 1) { let p = s[j] / sum; s[j] = p; PR[base + j] = p; }
    let o0 = (b * NT + i) * uniforms.D + h * HD;
    for (var d = 0; d < uniforms.hd; d = d + 1) {
      var o = 0.0;
      for (var j = 0; j < uniforms.nt; j = j + 1) { o = o + s[j] * B1(j, d); }
      O[o0 + d] = o;
    }
  }
}`;

const attnHeadBwdCode = (N: number, hd: number, staged: boolean) => `${attnHeadCommon(N, hd, staged)}
${attnHeadPhase2(staged)}
fn kernel(g : i32, lid : i32) {
  if (g >= uniforms.heads) { return; }
  let h = g / uniforms.B;
  let b = g % uniforms.B;
  pb = b;
  ph = h;
  stage1(lid);
  workgroupBarrier();
  // query rows: dS (kept in DS for the key rows below) and dq
  for (var i = lid; i < uniforms.nt; i = i + WG) {
    var dob : array<f32, HD>;
    let o0 = (b * NT + i) * uniforms.D + h * HD;
    for (var d = 0; d < uniforms.hd; d = d + 1) { dob[d] = DO[o0 + d]; }
    let base = (g * NT + i) * NT;
    var ds : array<f32, NT>;
    var t = 0.0;
    for (var j = 0; j < uniforms.nt; j = j + 1) {
      var dp = 0.0;
      for (var d = 0; d < uniforms.hd; d = d + 1) { dp = dp + dob[d] * B1(j, d); }
      let pdp = dp * PR[base + j];
      ds[j] = pdp;
      t = t + pdp;
    }
    for (var j = 0; j < uniforms.nt; j = j + 1) { let s = ds[j] - t * PR[base + j]; ds[j] = s; DS[base + j] = s; }
    let q0 = qkvAt(b, i, 0, h);
    for (var d = 0; d < uniforms.hd; d = d + 1) {
      var acc = 0.0;
      for (var j = 0; j < uniforms.nt; j = j + 1) { acc = acc + ds[j] * A1(j, d); }
      DQKV[q0 + d] = acc * uniforms.scale;
    }
  }
  storageBarrier();
  workgroupBarrier();
  stage2(lid);
  workgroupBarrier();
  // key rows: dk_j = Σ_i dS_ij·(q_i·scale), dv_j = Σ_i P_ij·dO_i
  for (var j = lid; j < uniforms.nt; j = j + WG) {
    var dk : array<f32, HD>;
    var dv : array<f32, HD>;
    // zeroed for each row this thread takes: a driver may keep the previous row's sums in them (lavapipe does)
    for (var d = 0; d < uniforms.hd; d = d + 1) { dk[d] = 0.0; dv[d] = 0.0; }
    for (var i = 0; i < uniforms.nt; i = i + 1) {
      let e = (g * NT + i) * NT + j;
      let s = DS[e];
      let p = PR[e];
      for (var d = 0; d < uniforms.hd; d = d + 1) { dk[d] = dk[d] + s * A2(i, d); dv[d] = dv[d] + p * B2(i, d); }
    }
    let k0 = qkvAt(b, j, 1, h);
    let v0 = qkvAt(b, j, 2, h);
    for (var d = 0; d < uniforms.hd; d = d + 1) { DQKV[k0 + d] = dk[d]; DQKV[v0 + d] = dv[d]; }
  }
}`;

export type AttentionVariant = 'auto' | 'row' | 'head' | 'head-unstaged';
let attentionVariant: AttentionVariant = 'auto';
/**
 * Which attention kernels run. auto: a workgroup per head and image up to 256 tokens (staged in workgroup
 * memory where it fits), a workgroup per query row beyond; the others force one (the tests run each).
 */
export function setAttentionVariant(v: AttentionVariant): void {
  attentionVariant = v;
}

/**
 * Bytes of workgroup memory the per-row attention kernels (past 256 tokens, or forced) declare: a row of N
 * scores and one of head_dim features (q, or dO), beside the reductions' 64 vec2 and 64 floats; each array
 * rounded up to 16 bytes, as a compiler may align it.
 */
export function rowAttentionBytes(N: number, hd: number): number {
  const f32s = (n: number) => Math.ceil(n / 4) * 16;
  return f32s(N) + f32s(hd) + 64 * 8 + 64 * 4;
}

/**
 * Whether moco3's attention kernels take N tokens of head size hd on the active backend's device: per row
 * (past 256 tokens), the row's scores must fit its maxComputeWorkgroupStorageSize (WebGPU's default 16 KiB:
 * 3,840 tokens at head size 64). Where they do not, src/model/vit.ts composes the stock kernels, which have no
 * such bound.
 */
export function attentionFits(N: number, hd: number): boolean {
  if (attentionVariant === 'head-unstaged' || (attentionVariant === 'auto' && N <= 256)) return true;
  const limit = (tf.backend() as unknown as Partial<WebGpuInternals>).device?.limits.maxComputeWorkgroupStorageSize ?? 16384;
  // forced per head and staged (the tests'): k and v (q and dO) of every token in workgroup memory
  if (attentionVariant === 'head') return 2 * N * hd * 4 <= limit;
  return rowAttentionBytes(N, hd) <= limit;
}

/** The attention kernels' attributes: images B, tokens N, heads; the scale is head_dim^-0.5. */
export interface AttentionAttrs {
  B: number;
  N: number;
  heads: number;
}

/**
 * max |g| and Σ g² of a tensor: one workgroup strides over it, then a tree over the threads. Inf and NaN are
 * found by their exponent bits (whatever the compiler assumes about them): any NaN gives NaN for both, else
 * any ±Inf gives Inf for both, as the stock kernels do; the step skips the update on either.
 */
const GRAD_STATS_CODE = `
var<workgroup> st : array<vec2<f32>, WG>;
var<workgroup> bad : array<u32, WG>;
fn kernel(g : i32, lid : i32) {
  var v = vec2<f32>(0.0, 0.0);
  var flag = 0u;
  for (var i = lid; i < uniforms.n; i = i + WG) {
    let x = X[i];
    let bits = bitcast<u32>(x);
    if ((bits & 0x7f800000u) == 0x7f800000u) {
      flag = max(flag, select(1u, 2u, (bits & 0x007fffffu) != 0u));
    } else {
      v = vec2<f32>(max(v.x, abs(x)), v.y + x * x);
    }
  }
  st[lid] = v;
  bad[lid] = flag;
  workgroupBarrier();
  for (var s = WG / 2; s > 0; s = s / 2) {
    if (lid < s) {
      st[lid] = vec2<f32>(max(st[lid].x, st[lid + s].x), st[lid].y + st[lid + s].y);
      bad[lid] = max(bad[lid], bad[lid + s]);
    }
    workgroupBarrier();
  }
  if (lid == 0) {
    var r = st[0];
    if (bad[0] == 1u) { r = vec2<f32>(uniforms.INFINITY, uniforms.INFINITY); }
    if (bad[0] == 2u) { r = vec2<f32>(uniforms.NAN, uniforms.NAN); }
    S[0] = r.x;
    S[1] = r.y;
  }
}`;

/** The momentum update, in the stock order: k·m + q·(1 − m). */
const EMA_CODE = `
fn kernel(g : i32, lid : i32) {
  let i = g * WG + lid;
  if (i >= uniforms.n) { return; }
  K1[i] = K[i] * uniforms.m + Q[i] * uniforms.omm;
}`;

/** Rows of a chunk in the LayerNorm backward: about 2048 chunks, enough workgroups for a large GPU. */
const lnChunkRows = (rows: number) => Math.max(1, Math.ceil(rows / 2048));

/** AdamW's scalars for one step, as src/optim/adamw.ts computes them (float64, then float32 uniforms). */
export interface AdamWAttrs {
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** the parameter's step count after this step (1 on the first) */
  step: number;
}

/** Whether the backend class has what `runMulti` uses (`device` is an instance field, checked at use). */
function hasInternals(proto: unknown): boolean {
  const o = proto as Record<string, unknown> | null;
  return !!o && ['recordAndSubmit', 'makeTensorInfo', 'uploadToGPU', 'disposeData'].every((f) => typeof o[f] === 'function');
}
/** Whether it also has what `copyRanges` uses (the fields are instance fields, checked at use). */
function hasCopyInternals(proto: unknown): boolean {
  const o = proto as Record<string, unknown> | null;
  return !!o && ['ensureCommandEncoderReady', 'endComputePassEncoder'].every((f) => typeof o[f] === 'function');
}

/**
 * Registers the kernels on `webgpu` (the backend package must be loaded); `backendProto` is the prototype
 * of its WebGPUBackend class: the kernels that need `runMulti` are registered only when it has the
 * internals. Idempotent. Returns the names registered.
 */
export function registerWebGpuKernels(util: WebGpuUtil, backendProto?: unknown): string[] {
  const names: string[] = [];
  const add = (kernelName: string, kernelFunc: tf.KernelFunc) => {
    if (!tf.getKernel(kernelName, 'webgpu')) tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc });
    names.push(kernelName);
  };
  add(GELU_FWD, ({ inputs, backend }) => {
    const x = (inputs as { x: tf.TensorInfo }).x;
    const prog = elementwise(util, 'moco3_gelu_fwd', x.shape, ['X'], `let x = X[index];\n    setOutputAtIndex(index, 0.5 * x * (1.0 + moco3Erf(x * 0.7071067811865476)));`);
    return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(prog, [x], 'float32');
  });
  add(GELU_BWD, ({ inputs, backend }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const prog = elementwise(
      util,
      'moco3_gelu_bwd',
      x.shape,
      ['X', 'DY'],
      `let x = X[index];
    let cdf = 0.5 * (1.0 + moco3Erf(x * 0.7071067811865476));
    let pdf = 0.3989422804014327 * exp(-0.5 * x * x);
    setOutputAtIndex(index, DY[index] * (cdf + x * pdf));`,
    );
    return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(prog, [x, dy], 'float32');
  });
  if (!hasInternals(backendProto)) return names;
  const internals = (backend: unknown) => backend as WebGpuInternals;
  add(LAYERNORM_FWD, ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const [rows, D] = x.shape as [number, number];
    return runMulti(internals(backend), {
      label: LAYERNORM_FWD,
      key: 'moco3_ln_fwd',
      outputs: [
        { name: 'Y', shape: [rows, D] },
        { name: 'MEAN', shape: [rows] },
        { name: 'RSTD', shape: [rows] },
      ],
      inputs: [
        { name: 'X', t: x },
        { name: 'G', t: gamma },
        { name: 'B', t: beta },
      ],
      uniforms: [
        ['rows', 'i32', rows],
        ['D', 'i32', D],
        ['eps', 'f32', Number((attrs as { eps: number }).eps)],
      ],
      workgroupSize: 64,
      groups: rows,
      code: LN_FWD_CODE,
    });
  });
  add(LAYERNORM_BWD, ({ inputs, backend }) => {
    const { dy, x, mean, rstd, gamma } = inputs as Record<'dy' | 'x' | 'mean' | 'rstd' | 'gamma', tf.TensorInfo>;
    const b = internals(backend);
    const [rows, D] = x.shape as [number, number];
    const WG = 64;
    const K = Math.ceil(D / WG);
    const R = lnChunkRows(rows);
    const chunks = Math.ceil(rows / R);
    const [dx, partial] = runMulti(b, {
      label: LAYERNORM_BWD,
      key: `moco3_ln_bwd_${K}`,
      outputs: [
        { name: 'DX', shape: [rows, D] },
        { name: 'P', shape: [chunks, 2, D] },
      ],
      inputs: [
        { name: 'DY', t: dy },
        { name: 'X', t: x },
        { name: 'MEAN', t: mean },
        { name: 'RSTD', t: rstd },
        { name: 'G', t: gamma },
      ],
      uniforms: [
        ['rows', 'i32', rows],
        ['D', 'i32', D],
        ['R', 'i32', R],
        ['chunks', 'i32', chunks],
      ],
      workgroupSize: WG,
      groups: chunks,
      code: lnBwdCode(K),
    });
    const [dgamma, dbeta] = runMulti(b, {
      label: `${LAYERNORM_BWD}Sum`,
      key: 'moco3_ln_bwd_sum',
      outputs: [
        { name: 'DG', shape: [D] },
        { name: 'DB', shape: [D] },
      ],
      inputs: [{ name: 'P', t: partial! }],
      uniforms: [
        ['D', 'i32', D],
        ['chunks', 'i32', chunks],
      ],
      workgroupSize: WG,
      groups: D,
      code: LN_BWD_SUM_CODE,
    });
    b.disposeData(partial!.dataId);
    return [dx!, dgamma!, dbeta!];
  });
  add(ADAMW, ({ inputs, backend, attrs }) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo | undefined>;
    const a = attrs as unknown as AdamWAttrs;
    const n = tf.util.sizeFromShape(p!.shape);
    const fresh = m === undefined || v === undefined;
    return runMulti(internals(backend), {
      label: ADAMW,
      key: 'moco3_adamw',
      outputs: [
        { name: 'P1', shape: p!.shape },
        { name: 'M1', shape: p!.shape },
        { name: 'V1', shape: p!.shape },
      ],
      // before the first step the moments are zero: the parameter stands in for them, unread
      inputs: [
        { name: 'P', t: p! },
        { name: 'GR', t: g! },
        { name: 'M', t: m ?? p! },
        { name: 'V', t: v ?? p! },
      ],
      uniforms: [
        ['n', 'i32', n],
        ['fresh', 'i32', fresh ? 1 : 0],
        ['decay', 'f32', 1 - a.lr * a.weightDecay],
        ['beta1', 'f32', a.beta1],
        ['omb1', 'f32', 1 - a.beta1],
        ['beta2', 'f32', a.beta2],
        ['omb2', 'f32', 1 - a.beta2],
        ['sqrtBc2', 'f32', Math.sqrt(1 - a.beta2 ** a.step)],
        ['eps', 'f32', a.eps],
        ['negStep', 'f32', -a.lr / (1 - a.beta1 ** a.step)],
      ],
      workgroupSize: 256,
      groups: Math.ceil(n / 256),
      code: ADAMW_CODE,
    });
  });
  /** A one-parameter optimizer kernel (Moco3Lamb, Moco3Lars): its group kernel on a group of one. */
  const groupOfOne =
    <A extends { adapt: boolean }>(group: (backend: unknown, inputs: tf.NamedTensorInfoMap, a: Omit<A, 'adapt'> & GroupAttrs) => tf.TensorInfo[]): tf.KernelFunc =>
    ({ inputs, backend, attrs }) => {
      const a = attrs as unknown as A;
      return group(backend, inputs, { ...a, sizes: [tf.util.sizeFromShape(inputs.p!.shape)], adapt: [a.adapt] });
    };
  /** The segment table of a packed group, uploaded; disposed by the caller once the dispatches are recorded. */
  const uploadSegments = (b: WebGpuInternals, a: GroupAttrs, p: tf.TensorInfo | undefined, name: string) => {
    const n = a.sizes.reduce((x, y) => x + y, 0);
    if (!p || n !== tf.util.sizeFromShape(p.shape) || a.adapt.length !== a.sizes.length) {
      throw new Error(`${name}: segments of ${n} elements (${a.sizes.length} sizes, ${a.adapt.length} flags) for a packed group of ${p ? tf.util.sizeFromShape(p.shape) : 'no'} elements`);
    }
    const seg = segmentTable(a.sizes, a.adapt);
    const t = b.makeTensorInfo([seg.table.length], 'int32', seg.table as unknown as tf.backend_util.BackendValues);
    return { ...seg, t };
  };
  const lambGroup = (backend: unknown, inputs: tf.NamedTensorInfoMap, a: Omit<LambAttrs, 'adapt'> & GroupAttrs) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo | undefined>;
    const b = internals(backend);
    const seg = uploadSegments(b, a, p, LAMB_GROUP);
    const scalars: MultiSpec['uniforms'] = [
      ['S', 'i32', a.sizes.length],
      ['bc1', 'f32', 1 - a.beta1 ** a.step],
      ['sqrtBc2', 'f32', Math.sqrt(1 - a.beta2 ** a.step)],
      ['eps', 'f32', a.eps],
      ['wd', 'f32', a.weightDecay],
    ];
    const [m1, v1, part] = runMulti(b, {
      label: `${LAMB_GROUP}Moments`,
      key: 'moco3_lamb_group_moments',
      outputs: [
        { name: 'M1', shape: p!.shape },
        { name: 'V1', shape: p!.shape },
        { name: 'PART', shape: [seg.normGroups, 2] },
      ],
      inputs: [
        { name: 'P', t: p! },
        { name: 'GR', t: g! },
        { name: 'M', t: m ?? p! },
        { name: 'V', t: v ?? p! },
        { name: 'SEG', t: seg.t, type: 'i32' },
      ],
      uniforms: [
        ...scalars,
        ['groups', 'i32', seg.normGroups],
        ['fresh', 'i32', m === undefined || v === undefined ? 1 : 0],
        ['beta1', 'f32', a.beta1],
        ['omb1', 'f32', 1 - a.beta1],
        ['beta2', 'f32', a.beta2],
        ['omb2', 'f32', 1 - a.beta2],
      ],
      workgroupSize: 256,
      groups: seg.normGroups,
      code: LAMB_GROUP_MOMENTS_CODE,
    });
    const [p1] = runMulti(b, {
      label: `${LAMB_GROUP}Apply`,
      key: 'moco3_lamb_group_apply',
      outputs: [{ name: 'P1', shape: p!.shape }],
      inputs: [
        { name: 'P', t: p! },
        { name: 'M1', t: m1! },
        { name: 'V1', t: v1! },
        { name: 'PART', t: part! },
        { name: 'SEG', t: seg.t, type: 'i32' },
      ],
      uniforms: [...scalars, ['groups', 'i32', seg.applyGroups], ['negLr', 'f32', -a.lr]],
      workgroupSize: 256,
      groups: seg.applyGroups,
      code: LAMB_GROUP_APPLY_CODE,
    });
    b.disposeData(part!.dataId);
    b.disposeData(seg.t.dataId);
    return [p1!, m1!, v1!];
  };
  add(LAMB_GROUP, ({ inputs, backend, attrs }) => lambGroup(backend, inputs, attrs as unknown as LambAttrs & GroupAttrs));
  add(LAMB, groupOfOne<LambAttrs>(lambGroup));
  const larsGroup = (backend: unknown, inputs: tf.NamedTensorInfoMap, a: Omit<LarsAttrs, 'adapt'> & GroupAttrs) => {
    const { p, g, mu } = inputs as Record<'p' | 'g' | 'mu', tf.TensorInfo | undefined>;
    const b = internals(backend);
    const seg = uploadSegments(b, a, p, LARS_GROUP);
    const common: MultiSpec['uniforms'] = [
      ['S', 'i32', a.sizes.length],
      ['wd', 'f32', a.weightDecay],
    ];
    const [part] = runMulti(b, {
      label: `${LARS_GROUP}Norms`,
      key: 'moco3_lars_group_norms',
      outputs: [{ name: 'PART', shape: [seg.normGroups, 2] }],
      inputs: [
        { name: 'P', t: p! },
        { name: 'GR', t: g! },
        { name: 'SEG', t: seg.t, type: 'i32' },
      ],
      uniforms: [...common, ['groups', 'i32', seg.normGroups]],
      workgroupSize: 256,
      groups: seg.normGroups,
      code: LARS_GROUP_NORMS_CODE,
    });
    const [p1, mu1] = runMulti(b, {
      label: `${LARS_GROUP}Apply`,
      key: 'moco3_lars_group_apply',
      outputs: [
        { name: 'P1', shape: p!.shape },
        { name: 'MU1', shape: p!.shape },
      ],
      inputs: [
        { name: 'P', t: p! },
        { name: 'GR', t: g! },
        { name: 'MU', t: mu ?? p! },
        { name: 'PART', t: part! },
        { name: 'SEG', t: seg.t, type: 'i32' },
      ],
      uniforms: [
        ...common,
        ['groups', 'i32', seg.applyGroups],
        ['fresh', 'i32', mu === undefined ? 1 : 0],
        ['tc', 'f32', a.trustCoefficient],
        ['momentum', 'f32', a.momentum],
        ['negLr', 'f32', -a.lr],
      ],
      workgroupSize: 256,
      groups: seg.applyGroups,
      code: LARS_GROUP_APPLY_CODE,
    });
    b.disposeData(part!.dataId);
    b.disposeData(seg.t.dataId);
    return [p1!, mu1!];
  };
  add(LARS_GROUP, ({ inputs, backend, attrs }) => larsGroup(backend, inputs, attrs as unknown as LarsAttrs & GroupAttrs));
  add(LARS, groupOfOne<LarsAttrs>(larsGroup));
  add(SOFTMAX_BWD, ({ inputs, backend }) => {
    const { y, dy } = inputs as { y: tf.TensorInfo; dy: tf.TensorInfo };
    const cols = y.shape[y.shape.length - 1]!;
    const rows = tf.util.sizeFromShape(y.shape) / cols;
    return runMulti(internals(backend), {
      label: SOFTMAX_BWD,
      key: 'moco3_softmax_bwd',
      outputs: [{ name: 'DX', shape: y.shape }],
      inputs: [
        { name: 'Y', t: y },
        { name: 'DY', t: dy },
      ],
      uniforms: [
        ['rows', 'i32', rows],
        ['cols', 'i32', cols],
      ],
      workgroupSize: 64,
      groups: rows,
      code: SOFTMAX_BWD_CODE,
    })[0]!;
  });
  add(BATCHNORM_FWD, ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as Record<'x' | 'gamma' | 'beta', tf.TensorInfo | undefined>;
    const [n, F] = x!.shape as [number, number];
    const affine = gamma !== undefined && beta !== undefined;
    return runMulti(internals(backend), {
      label: BATCHNORM_FWD,
      key: 'moco3_bn_fwd',
      outputs: [
        { name: 'Y', shape: [n, F] },
        { name: 'MEAN', shape: [F] },
        { name: 'VAR', shape: [F] },
        { name: 'RSTD', shape: [F] },
      ],
      // without γ and β, x stands in for them, unread
      inputs: [
        { name: 'X', t: x! },
        { name: 'G', t: gamma ?? x! },
        { name: 'B', t: beta ?? x! },
      ],
      uniforms: [
        ['n', 'i32', n],
        ['F', 'i32', F],
        ['affine', 'i32', affine ? 1 : 0],
        ['eps', 'f32', Number((attrs as { eps: number }).eps)],
      ],
      workgroupSize: BN_COLS * BN_LANES,
      groups: Math.ceil(F / BN_COLS),
      code: BN_FWD_CODE,
    });
  });
  add(BATCHNORM_BWD, ({ inputs, backend }) => {
    const { dy, x, mean, rstd, gamma } = inputs as Record<'dy' | 'x' | 'mean' | 'rstd' | 'gamma', tf.TensorInfo | undefined>;
    const [n, F] = x!.shape as [number, number];
    return runMulti(internals(backend), {
      label: BATCHNORM_BWD,
      key: 'moco3_bn_bwd',
      outputs: [
        { name: 'DX', shape: [n, F] },
        { name: 'DG', shape: [F] },
        { name: 'DB', shape: [F] },
      ],
      inputs: [
        { name: 'DY', t: dy! },
        { name: 'X', t: x! },
        { name: 'MEAN', t: mean! },
        { name: 'RSTD', t: rstd! },
        { name: 'G', t: gamma ?? mean! },
      ],
      uniforms: [
        ['n', 'i32', n],
        ['F', 'i32', F],
        ['affine', 'i32', gamma === undefined ? 0 : 1],
      ],
      workgroupSize: BN_COLS * BN_LANES,
      groups: Math.ceil(F / BN_COLS),
      code: BN_BWD_CODE,
    });
  });
  add(COLUMN_SUM, ({ inputs, backend }) => {
    const x = (inputs as { x: tf.TensorInfo }).x;
    const b = internals(backend);
    const [n, F] = x.shape as [number, number];
    const colGroups = Math.ceil(F / BN_COLS);
    // about 1024 workgroups in all; chunks of at least one row per lane
    const R = Math.max(BN_LANES, Math.ceil(n / Math.max(1, Math.floor(1024 / colGroups))));
    const chunks = Math.ceil(n / R);
    const [part] = runMulti(b, {
      label: COLUMN_SUM,
      key: 'moco3_colsum',
      outputs: [{ name: 'S', shape: chunks === 1 ? [F] : [chunks, F] }],
      inputs: [{ name: 'X', t: x }],
      uniforms: [
        ['n', 'i32', n],
        ['F', 'i32', F],
        ['R', 'i32', R],
        ['chunks', 'i32', chunks],
        ['colGroups', 'i32', colGroups],
      ],
      workgroupSize: BN_COLS * BN_LANES,
      groups: colGroups * chunks,
      code: COLSUM_CODE,
    });
    if (chunks === 1) return part!;
    const [sum] = runMulti(b, {
      label: `${COLUMN_SUM}Total`,
      key: 'moco3_colsum_total',
      outputs: [{ name: 'S', shape: [F] }],
      inputs: [{ name: 'P', t: part! }],
      uniforms: [
        ['F', 'i32', F],
        ['chunks', 'i32', chunks],
      ],
      workgroupSize: 64,
      groups: F,
      code: COLSUM_TOTAL_CODE,
    });
    b.disposeData(part!.dataId);
    return sum!;
  });
  const attnDims = (qkv: tf.TensorInfo, attrs: unknown) => {
    const { B, N, heads } = attrs as AttentionAttrs;
    const D = qkv.shape[1]! / 3;
    const hd = D / heads;
    // loop bounds as uniforms (equal to the shader's constants NT, HD): constant trip counts get unrolled
    // in full by some compilers (lavapipe's LLVM: a minute for 9 tokens)
    const uniforms: MultiSpec['uniforms'] = [
      ['nt', 'i32', N],
      ['hd', 'i32', hd],
      ['B', 'i32', B],
      ['D', 'i32', D],
      ['total', 'i32', heads * B * N],
      ['scale', 'f32', hd ** -0.5],
    ];
    return { B, N, heads, D, hd, uniforms, groups: heads * B * N };
  };
  /** per head (staged or not) or per row: see setAttentionVariant */
  const attnPlan = (b: WebGpuInternals, N: number, hd: number): { perHead: boolean; staged: boolean } => {
    const fits = 2 * N * hd * 4 <= (b.device.limits.maxComputeWorkgroupStorageSize ?? 16384);
    if (attentionVariant === 'row') return { perHead: false, staged: false };
    if (attentionVariant === 'head') return { perHead: true, staged: true };
    if (attentionVariant === 'head-unstaged') return { perHead: true, staged: false };
    return { perHead: N <= 256, staged: fits };
  };
  const headWorkgroup = (N: number) => Math.min(256, Math.ceil(N / 32) * 32);
  add(ATTENTION_FWD, ({ inputs, backend, attrs }) => {
    const qkv = (inputs as { qkv: tf.TensorInfo }).qkv;
    const b = internals(backend);
    const a = attnDims(qkv, attrs);
    const outputs = [
      { name: 'O', shape: [a.B * a.N, a.D] },
      { name: 'PR', shape: [a.heads * a.B, a.N, a.N] },
    ];
    const plan = attnPlan(b, a.N, a.hd);
    if (plan.perHead) {
      return runMulti(b, {
        label: ATTENTION_FWD,
        key: `moco3_attn_head_fwd_${a.N}_${a.hd}_${plan.staged}`,
        outputs,
        inputs: [{ name: 'QKV', t: qkv }],
        uniforms: [...a.uniforms, ['heads', 'i32', a.heads * a.B]],
        workgroupSize: headWorkgroup(a.N),
        groups: a.heads * a.B,
        code: attnHeadFwdCode(a.N, a.hd, plan.staged),
      });
    }
    return runMulti(b, {
      label: ATTENTION_FWD,
      key: `moco3_attn_fwd_${a.N}_${a.hd}`,
      outputs,
      inputs: [{ name: 'QKV', t: qkv }],
      uniforms: a.uniforms,
      workgroupSize: 64,
      groups: a.groups,
      code: attnFwdCode(a.N, a.hd),
    });
  });
  add(ATTENTION_BWD, ({ inputs, backend, attrs }) => {
    const { dy, qkv, probs } = inputs as Record<'dy' | 'qkv' | 'probs', tf.TensorInfo>;
    const b = internals(backend);
    const a = attnDims(qkv, attrs);
    const plan = attnPlan(b, a.N, a.hd);
    if (plan.perHead) {
      const [dqkv, ds] = runMulti(b, {
        label: ATTENTION_BWD,
        key: `moco3_attn_head_bwd_${a.N}_${a.hd}_${plan.staged}`,
        outputs: [
          { name: 'DQKV', shape: qkv.shape },
          { name: 'DS', shape: [a.heads * a.B, a.N, a.N] },
        ],
        inputs: [
          { name: 'DO', t: dy },
          { name: 'QKV', t: qkv },
          { name: 'PR', t: probs },
        ],
        uniforms: [...a.uniforms, ['heads', 'i32', a.heads * a.B]],
        workgroupSize: headWorkgroup(a.N),
        groups: a.heads * a.B,
        code: attnHeadBwdCode(a.N, a.hd, plan.staged),
      });
      b.disposeData(ds!.dataId);
      return [dqkv!];
    }
    const [dq, ds] = runMulti(b, {
      label: ATTENTION_BWD,
      key: `moco3_attn_bwd_${a.N}_${a.hd}`,
      outputs: [
        { name: 'DQ', shape: [a.B * a.N, a.D] },
        { name: 'DS', shape: [a.heads * a.B, a.N, a.N] },
      ],
      inputs: [
        { name: 'DO', t: dy },
        { name: 'QKV', t: qkv },
        { name: 'PR', t: probs },
      ],
      uniforms: a.uniforms,
      workgroupSize: 64,
      groups: a.groups,
      code: attnBwdCode(a.N, a.hd),
    });
    const [dqkv] = runMulti(b, {
      label: `${ATTENTION_BWD}KV`,
      key: `moco3_attn_bwd_kv_${a.N}_${a.hd}`,
      outputs: [{ name: 'DQKV', shape: qkv.shape }],
      inputs: [
        { name: 'DO', t: dy },
        { name: 'QKV', t: qkv },
        { name: 'PR', t: probs },
        { name: 'DS', t: ds! },
        { name: 'DQ', t: dq! },
      ],
      uniforms: a.uniforms,
      workgroupSize: 64,
      groups: a.groups,
      code: attnBwdKvCode(a.N, a.hd),
    });
    b.disposeData(dq!.dataId);
    b.disposeData(ds!.dataId);
    return [dqkv!];
  });
  add(EMA, ({ inputs, backend, attrs }) => {
    const { k, q } = inputs as Record<'k' | 'q', tf.TensorInfo>;
    const m = Number((attrs as { m: number }).m);
    const n = tf.util.sizeFromShape(k.shape);
    return runMulti(internals(backend), {
      label: EMA,
      key: 'moco3_ema',
      outputs: [{ name: 'K1', shape: k.shape }],
      inputs: [
        { name: 'K', t: k },
        { name: 'Q', t: q },
      ],
      uniforms: [
        ['n', 'i32', n],
        ['m', 'f32', m],
        ['omm', 'f32', 1 - m],
      ],
      workgroupSize: 256,
      groups: Math.ceil(n / 256),
      code: EMA_CODE,
    });
  });
  add(GRAD_STATS, ({ inputs, backend }) => {
    const x = (inputs as { x: tf.TensorInfo }).x;
    return runMulti(internals(backend), {
      label: GRAD_STATS,
      key: 'moco3_grad_stats',
      outputs: [{ name: 'S', shape: [2] }],
      inputs: [{ name: 'X', t: x }],
      uniforms: [['n', 'i32', tf.util.sizeFromShape(x.shape)]],
      workgroupSize: 256,
      groups: 1,
      code: GRAD_STATS_CODE,
    });
  });
  if (hasCopyInternals(backendProto)) {
    const copier = (backend: unknown) => {
      const b = backend as WebGpuInternals & CopyInternals;
      if (!b.tensorMap || !b.commandQueueOwnedIds) throw new Error('moco3: the webgpu backend lacks the internals of Moco3Pack (tfjs-backend-webgpu 4.22.0)');
      return b;
    };
    add(PACK, ({ inputs, backend }) => {
      const b = copier(backend);
      const xs = Object.keys(inputs)
        .sort((a, c) => Number(a.slice(1)) - Number(c.slice(1)))
        .map((k) => (inputs as Record<string, tf.TensorInfo>)[k]!);
      for (const x of xs) if (x.dtype !== 'float32') throw new Error(`${PACK}: float32 tensors only, got ${x.dtype}`);
      const sizes = xs.map((x) => tf.util.sizeFromShape(x.shape));
      const out = b.makeTensorInfo([sizes.reduce((a, c) => a + c, 0)], 'float32');
      let at = 0;
      copyRanges(
        b,
        xs.map((x, i) => {
          const c: [tf.TensorInfo, number, tf.TensorInfo, number, number] = [x, 0, out, at, sizes[i]!];
          at += sizes[i]!;
          return c;
        }),
      );
      return out;
    });
    add(UNPACK, ({ inputs, backend, attrs }) => {
      const b = copier(backend);
      const x = (inputs as { x: tf.TensorInfo }).x;
      const shapes = (attrs as unknown as { shapes: number[][] }).shapes;
      // checked before any copy is recorded: a bad copy would invalidate the whole pending command encoder
      const total = shapes.reduce((a, sh) => a + tf.util.sizeFromShape(sh), 0);
      if (x.dtype !== 'float32' || total !== tf.util.sizeFromShape(x.shape)) {
        throw new Error(`${UNPACK}: shapes of ${total} elements from a ${x.dtype} tensor of ${tf.util.sizeFromShape(x.shape)}`);
      }
      const outs = shapes.map((sh) => b.makeTensorInfo(sh, 'float32'));
      let at = 0;
      copyRanges(
        b,
        outs.map((o) => {
          const n = tf.util.sizeFromShape(o.shape);
          const c: [tf.TensorInfo, number, tf.TensorInfo, number, number] = [x, at, o, 0, n];
          at += n;
          return c;
        }),
      );
      return outs;
    });
  }
  return names;
}

let enabled = true;
/** Switches the use of moco3's kernels on or off (tests compare them with the stock kernels this way). */
export function useMoco3Kernels(on: boolean): void {
  enabled = on;
}

/** True when the active backend has moco3 kernel `name` (and their use is on). */
export function hasKernel(name: string): boolean {
  return enabled && tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Runs moco3 kernel `name` when the active backend has it, else returns null (the caller composes it). */
export function fusedKernel(name: string, inputs: Record<string, tf.Tensor>): tf.Tensor | null {
  if (!hasKernel(name)) return null;
  return tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap) as tf.Tensor;
}

/** fusedKernel for a kernel with several outputs and attributes. */
export function fusedKernels(name: string, inputs: Record<string, tf.Tensor | undefined>, attrs: object = {}): tf.Tensor[] | null {
  if (!hasKernel(name)) return null;
  const present = Object.fromEntries(Object.entries(inputs).filter(([, t]) => t !== undefined)) as tf.NamedTensorMap;
  return tf.engine().runKernel(name, present, attrs as tf.NamedAttrMap) as unknown as tf.Tensor[];
}

/** Elements in one packed run at most (64 MiB of float32): bounds the copies held at once (`packed`). */
export const PACK_LIMIT = 1 << 24;
let packLimit = PACK_LIMIT;
/** Sets the elements of one packed group at most (tests split small tensors this way); returns the old value. */
export function setPackLimit(n: number): number {
  const old = packLimit;
  packLimit = n;
  return old;
}

/** [start, end) index ranges of `ts` whose sizes add up to at most the pack limit (a larger tensor alone). */
function packRanges(ts: readonly tf.Tensor[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i < ts.length; ) {
    let j = i;
    let size = 0;
    while (j < ts.length && (j === i || size + ts[j]!.size <= packLimit)) size += ts[j++]!.size;
    ranges.push([i, j]);
    i = j;
  }
  return ranges;
}

function pack(ts: readonly tf.Tensor[]): tf.Tensor1D {
  return tf.engine().runKernel(PACK, Object.fromEntries(ts.map((t, k) => [`x${k}`, t])) as tf.NamedTensorMap) as tf.Tensor1D;
}

let packing = true;
/**
 * Switches the packed group updates on or off, the other kernels staying on (off: one dispatch per
 * parameter). Returns the old setting. The backend sets it per adapter (`packingDefault`).
 */
export function useMoco3Packing(on: boolean): boolean {
  const old = packing;
  packing = on;
  return old;
}

/**
 * Packed group updates by default on a hardware adapter, where a dispatch costs far more than copying a
 * parameter at GPU bandwidth; off on a software one (lavapipe), where the copies are memcpys on the same
 * CPU cores and measured slower than the dispatches they save (docs/ENGINES.md). MOCO3_WEBGPU_PACK=1 or 0
 * overrides either way.
 */
export function packingDefault(software: boolean, env: string | undefined = process.env.MOCO3_WEBGPU_PACK): boolean {
  if (env === '1') return true;
  if (env === '0') return false;
  return !software;
}

/** Whether packed group updates are on. */
export function moco3Packing(): boolean {
  return packing;
}

/** Whether the active backend packs tensors (Moco3Pack and Moco3Unpack, with moco3's kernels on). */
export function canPack(): boolean {
  return packing && hasKernel(PACK) && hasKernel(UNPACK);
}

/**
 * Runs `f` on tensors laid end to end, one flat tensor per list of `lists` (the lists' tensors of equal
 * shapes, position by position), and returns its outputs cut back into tensors of those shapes, one list
 * per output; null when the backend has no Moco3Pack. The tensors are split into runs of at most
 * PACK_LIMIT elements and `f` runs once per run (`from`, `to`: the run's positions in the lists): where `f`
 * is one of moco3's elementwise kernels, one dispatch per parameter group instead of one per parameter.
 * Packing and unpacking are buffer copies, no dispatch; a run of one tensor (one larger than the limit) is
 * only reshaped. Each run's flat tensors are released once its results are cut back, so the copies held
 * at once stay within one run. Call inside tf.tidy.
 */
export function packed(lists: ReadonlyArray<readonly tf.Tensor[]>, f: (flat: tf.Tensor1D[], from: number, to: number) => tf.Tensor[]): tf.Tensor[][] | null {
  if (!canPack()) return null;
  const first = lists[0] ?? [];
  const outs: tf.Tensor[][] = [];
  for (const [i, j] of packRanges(first)) {
    const shapes = first.slice(i, j).map((t) => t.shape);
    const one = j - i === 1;
    const flat = lists.map((ts) => (one ? tf.reshape(ts[i]!, [-1]) : pack(ts.slice(i, j))) as tf.Tensor1D);
    const rs = tf.tidy(() => f(flat, i, j));
    rs.forEach((r, k) => {
      const parts = one ? [tf.reshape(r, shapes[0]!)] : (tf.engine().runKernel(UNPACK, { x: r }, { shapes } as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[]);
      (outs[k] ??= []).push(...parts);
    });
    // back to the backend now (their buffers stay in use until the recorded copies have run)
    tf.dispose([...flat, ...rs]);
  }
  return outs;
}
