/**
 * moco3's own WGSL kernels on the `webgpu` backend, registered under moco3's kernel names the way
 * src/engine/native-kernels.ts puts C++ kernels on the CPU. Each replaces a chain of stock kernels (one
 * dispatch, one pass over memory, instead of 4-7): the model calls them through `fusedKernel` when the
 * active backend has them, and falls back to the stock composition otherwise.
 *
 *   Moco3GeluFwd  y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2))          (stock: Mul, Erf, Add, Mul, Mul)
 *   Moco3GeluBwd  dx = dy·(Φ(x) + x·φ(x)), φ the normal density (stock: 7 elementwise kernels)
 *
 * erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the same formula as tfjs's own Erf kernels.
 */
import * as tf from '@tensorflow/tfjs-core';

export const GELU_FWD = 'Moco3GeluFwd';
export const GELU_BWD = 'Moco3GeluBwd';

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

/** Registers the kernels on `webgpu` (the backend package must be loaded). Idempotent. */
export function registerWebGpuKernels(util: WebGpuUtil): string[] {
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
  return names;
}

/** Runs moco3 kernel `name` when the active backend has it, else returns null (the caller composes it). */
export function fusedKernel(name: string, inputs: Record<string, tf.Tensor>): tf.Tensor | null {
  if (!tf.getKernel(name, tf.getBackend())) return null;
  return tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap) as tf.Tensor;
}
