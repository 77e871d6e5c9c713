/**
 * Gradients for the kernels the engine tests differentiate through. The Node build of tfjs-core
 * registers none. Transcribed from tfjs-core's src/gradients/*_grad.ts, plus a sum over broadcast
 * dims where tfjs's own BatchMatMul and Maximum/Minimum gradients lack it (they fail on the broadcast
 * shapes tested here). Registered only when none is present; both backends run the same gradient
 * code, so parity of gradients tests the kernels, not these formulas.
 */
import * as tf from '@tensorflow/tfjs-core';

type T = tf.Tensor;
const f32 = (t: T) => tf.cast(t, 'float32');

/** Sum a broadcast gradient back to the input's shape. */
function reduceTo(dy: T, shape: number[]): T {
  const axes = tf.backend_util.getReductionAxes(shape, dy.shape);
  const r = axes.length > 0 ? tf.sum(dy, axes) : dy;
  return tf.reshape(r, shape);
}

function keptShape(shape: number[], axis: number | number[]): number[] {
  const out = shape.slice();
  for (const a of tf.util.parseAxisParam(axis, shape)) out[a] = 1;
  return out;
}

const unary = (kernelName: string, f: (dy: T, x: T) => T): tf.GradConfig => ({
  kernelName,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => ({ x: () => f(dy as T, saved[0] as T) }),
});
const fromOutput = (kernelName: string, f: (dy: T, y: T) => T): tf.GradConfig => ({
  kernelName,
  outputsToSave: [true],
  gradFunc: (dy, saved) => ({ x: () => f(dy as T, saved[0] as T) }),
});
const binary = (kernelName: string, fa: (dy: T, a: T, b: T) => T, fb: (dy: T, a: T, b: T) => T): tf.GradConfig => ({
  kernelName,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved as T[];
    return { a: () => reduceTo(fa(dy as T, a!, b!), a!.shape), b: () => reduceTo(fb(dy as T, a!, b!), b!.shape) };
  },
});

const configs: tf.GradConfig[] = [
  unary('Abs', (dy, x) => tf.mul(dy, tf.step(f32(x), -1))),
  unary('Cast', (dy) => tf.clone(dy)),
  { kernelName: 'Elu', outputsToSave: [true], gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel('EluGrad', { dy: dy as T, y: saved[0] as T }) as T }) },
  unary('Erf', (dy, x) => tf.mul(dy, tf.mul(2 / Math.sqrt(Math.PI), tf.exp(tf.neg(tf.square(x)))))),
  fromOutput('Exp', (dy, y) => tf.mul(dy, y)),
  {
    kernelName: 'LeakyRelu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as T;
      const { alpha } = attrs as unknown as tf.LeakyReluAttrs;
      return { x: () => tf.where(tf.greater(x, 0), dy as T, tf.mul(dy as T, alpha)) };
    },
  },
  unary('Log', (dy, x) => tf.div(dy, f32(x))),
  unary('Neg', (dy) => tf.neg(dy)),
  unary('Reciprocal', (dy, x) => tf.div(dy, tf.neg(tf.square(x)))),
  unary('Relu', (dy, x) => tf.mul(dy, f32(tf.step(x)))),
  unary('Relu6', (dy, x) => tf.mul(dy, f32(tf.mul(tf.lessEqual(x, 6), tf.step(x))))),
  unary('Rsqrt', (dy, x) => tf.div(dy, tf.neg(tf.mul(tf.pow(x, 1.5), 2)))),
  fromOutput('Sigmoid', (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(1, y)))),
  unary('Sqrt', (dy, x) => tf.div(dy, tf.mul(tf.sqrt(f32(x)), 2))),
  unary('Square', (dy, x) => tf.mul(dy, tf.mul(f32(x), 2))),
  fromOutput('Tanh', (dy, y) => tf.mul(tf.sub(1, tf.square(y)), dy)),
  binary('Add', (dy) => dy, (dy) => dy),
  binary('Sub', (dy) => dy, (dy) => tf.neg(dy)),
  binary('Multiply', (dy, _a, b) => tf.mul(dy, f32(b)), (dy, a) => tf.mul(dy, f32(a))),
  binary('RealDiv', (dy, _a, b) => tf.div(dy, f32(b)), (dy, a, b) => tf.neg(tf.div(tf.mul(dy, f32(a)), tf.square(b)))),
  binary('Maximum', (dy, a, b) => tf.mul(dy, f32(tf.greaterEqual(a, b))), (dy, a, b) => tf.mul(dy, f32(tf.less(a, b)))),
  binary('Minimum', (dy, a, b) => tf.mul(dy, f32(tf.lessEqual(a, b))), (dy, a, b) => tf.mul(dy, f32(tf.greater(a, b)))),
  binary('SquaredDifference', (dy, a, b) => tf.mul(dy, tf.mul(tf.sub(a, b), 2)), (dy, a, b) => tf.mul(dy, tf.mul(tf.sub(b, a), 2))),
  { kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as T, (saved[0] as T).shape) }) },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _saved, attrs) => {
      const { perm } = attrs as unknown as tf.TransposeAttrs;
      return { x: () => tf.transpose(dy as T, tf.backend_util.getUndoAxesPermutation(perm)) };
    },
  },
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as T;
      return { x: () => tf.mul(tf.reshape(dy as T, keptShape(x.shape, (attrs as unknown as tf.SumAttrs).axis)), tf.ones(x.shape)) };
    },
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as T;
      const kept = keptShape(x.shape, (attrs as unknown as tf.MeanAttrs).axis);
      const count = x.size / kept.reduce((a, b) => a * b, 1);
      return { x: () => tf.div(tf.mul(tf.reshape(dy as T, kept), tf.ones(x.shape)), count) };
    },
  },
  {
    kernelName: 'Max',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as T[];
      const kept = keptShape(x!.shape, (attrs as unknown as tf.MaxAttrs).reductionIndices);
      return { x: () => tf.mul(tf.reshape(dy as T, kept), f32(tf.equal(x!, tf.reshape(y!, kept)))) };
    },
  },
  {
    kernelName: 'Min',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as T[];
      const kept = keptShape(x!.shape, (attrs as unknown as tf.MinAttrs).axis);
      return { x: () => tf.mul(tf.reshape(dy as T, kept), f32(tf.equal(x!, tf.reshape(y!, kept)))) };
    },
  },
  {
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as T;
      const { begin, size } = attrs as unknown as tf.SliceAttrs;
      const [b, s] = tf.slice_util.parseSliceParams(x, begin, size);
      return { x: () => tf.pad(dy as T, x.shape.map((d, i) => [b[i]!, d - b[i]! - s[i]!] as [number, number])) };
    },
  },
  {
    kernelName: 'PadV2',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as T;
      const { paddings } = attrs as unknown as tf.PadV2Attrs;
      return { x: () => tf.slice(dy as T, paddings.map((p) => p[0]), x.shape) };
    },
  },
  {
    kernelName: 'SplitV',
    gradFunc: (dy, _saved, attrs) => {
      const { axis } = attrs as unknown as tf.SplitVAttrs;
      return { x: () => tf.concat(dy as T[], axis) };
    },
  },
  {
    kernelName: 'Concat',
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const xs = saved as T[];
      const { axis } = attrs as unknown as tf.ConcatAttrs;
      const ax = tf.util.parseAxisParam(axis, xs[0]!.shape)[0]!;
      const parts = tf.split(dy as T, xs.map((t) => t.shape[ax]!), ax);
      return Object.fromEntries(parts.map((p, i) => [String(i), () => p]));
    },
  },
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const y = saved[0] as T;
      const { dim } = attrs as unknown as tf.SoftmaxAttrs;
      return {
        logits: () => {
          const dyy = tf.mul(dy as T, y);
          return tf.sub(dyy, tf.mul(tf.sum(dyy, [dim], true), y));
        },
      };
    },
  },
  {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as T[];
      const { transposeA, transposeB } = attrs as unknown as tf.BatchMatMulAttrs;
      const d = dy as T;
      const mm = (x: T, y: T, tx: boolean, ty: boolean) => tf.matMul(x, y, tx, ty);
      let da: () => T;
      let db: () => T;
      if (!transposeA && !transposeB) {
        da = () => mm(d, b!, false, true);
        db = () => mm(a!, d, true, false);
      } else if (!transposeA && transposeB) {
        da = () => mm(d, b!, false, false);
        db = () => mm(d, a!, true, false);
      } else if (transposeA && !transposeB) {
        da = () => mm(b!, d, false, true);
        db = () => mm(a!, d, false, false);
      } else {
        da = () => mm(b!, d, true, true);
        db = () => mm(d, a!, true, true);
      }
      return { a: () => reduceTo(da(), a!.shape), b: () => reduceTo(db(), b!.shape) };
    },
  },
];

export function registerTestGradients(): void {
  for (const c of configs) if (!tf.getGradient(c.kernelName)) tf.registerGradient(c);
}

registerTestGradients();
