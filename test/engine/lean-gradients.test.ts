import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { assertModelGradients } from '../../src/engine/gradients.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { tinyConfig, images } from '../model/util.ts';

type Grads = { value: tf.Tensor; grads: tf.Tensor[] };
const engine = tf.engine() as unknown as { gradients: (...a: unknown[]) => Grads; runKernelFunc: (p: unknown) => unknown; state: { numBytes: number } };

/** Runs f with tfjs's own Engine.gradients (the lean one is an instance property over the prototype's). */
function withStock<T>(f: () => T): T {
  const lean = Object.getOwnPropertyDescriptor(engine, 'gradients');
  assert.ok(lean, 'the lean backward is installed');
  delete (engine as { gradients?: unknown }).gradients;
  try {
    return f();
  } finally {
    Object.defineProperty(engine, 'gradients', lean);
  }
}

/** f's result, and the most tensor bytes alive at any kernel while it ran. */
function peakBytes<T>(f: () => T): { out: T; peak: number } {
  const orig = engine.runKernelFunc;
  let peak = 0;
  engine.runKernelFunc = function (this: unknown, p: unknown) {
    const r = orig.call(this, p);
    peak = Math.max(peak, engine.state.numBytes);
    return r;
  };
  try {
    return { out: f(), peak };
  } finally {
    engine.runKernelFunc = orig;
  }
}

const read = (g: Grads) => ({ value: Array.from(g.value.dataSync()), grads: g.grads.map((t) => Array.from(t.dataSync())) });
const dispose = (g: Grads) => [g.value, ...g.grads].forEach((t) => t.dispose());

test('the lean backward gives tfjs-core\'s gradients bit for bit on a graph with reuse, identity gradients, unused outputs and a custom gradient', () => {
  const x = tf.tensor2d([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]]);
  const w = tf.tensor2d([[0.5, -0.2], [1.5, 0.3], [-0.7, 0.9]]);
  const square = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [a, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save([a]);
    return { value: tf.square(a), gradFunc: (dy: tf.Tensor, [s]: tf.Tensor[]) => tf.mul(dy, tf.mul(s!, 2)) };
  });
  const f = (xx: tf.Tensor, ww: tf.Tensor) => {
    const h = tf.matMul(xx as tf.Tensor2D, ww as tf.Tensor2D); // used three times below
    const [a, b] = tf.split(tf.tanh(h), 2, 1); // b is not used
    const s = square(tf.add(h, tf.reshape(a!, [2, 1])) as tf.Tensor);
    void b;
    return tf.sum(tf.add(tf.mul(s, h), tf.softmax(h)));
  };
  const before = tf.memory().numTensors;
  const lean = tf.valueAndGrads(f)([x, w]) as unknown as Grads;
  const stock = withStock(() => tf.valueAndGrads(f)([x, w]) as unknown as Grads);
  assert.deepEqual(read(lean), read(stock));
  dispose(lean);
  dispose(stock);
  assert.equal(tf.memory().numTensors, before, 'nothing left behind');
  [x, w].forEach((t) => t.dispose());
});

test('a MoCo v3 step: the lean backward\'s gradients equal tfjs-core\'s bit for bit, with a lower memory peak', () => {
  const x1 = images('lean1', 8, 8).t;
  const x2 = images('lean2', 8, 8).t;
  const stepOf = () => {
    const model = new MoCoViT(tinyConfig(), 11);
    const { out, peak } = peakBytes(() => model.step(x1, x2, 0.99, null));
    const r = { loss: out.loss.dataSync()[0]!, grads: [...out.grads].map(([n, g]) => [n, Array.from(g.dataSync())] as const), peak };
    out.loss.dispose();
    out.grads.forEach((g) => g.dispose());
    model.dispose();
    return r;
  };
  const before = tf.memory().numTensors;
  const lean = stepOf();
  const stock = withStock(stepOf);
  assert.equal(lean.loss, stock.loss);
  assert.deepEqual(lean.grads, stock.grads);
  assert.ok(lean.peak < 0.8 * stock.peak, `peak ${lean.peak} B (lean) vs ${stock.peak} B (tfjs)`);
  assert.equal(tf.memory().numTensors, before);
  [x1, x2].forEach((t) => t.dispose());
});

test('a backward that fails frees what the forward made and the tape saved, but never the caller\'s tensors (f returning an input or a variable)', () => {
  const x = tf.tensor1d([1, 2, 3]);
  const v = tf.variable(tf.tensor1d([4, 5, 6]));
  const before = tf.memory().numTensors;
  // no op between x and y: no gradient to compute, an error, with y the caller's own tensor
  assert.throws(() => tf.grads((a: tf.Tensor) => a)([x]), /Cannot compute gradient of y=f\(x\)/);
  assert.throws(() => tf.valueAndGrads(() => v)([x]), /Cannot compute gradient of y=f\(x\)/);
  assert.equal(x.isDisposed, false);
  assert.equal(v.isDisposed, false);
  assert.deepEqual(Array.from(v.dataSync()), [4, 5, 6]);
  // a y the forward made, with nothing leading to x: freed with the error
  assert.throws(() => tf.valueAndGrads(() => tf.mul(v, 2))([x]), /Cannot compute gradient of y=f\(x\)/);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  v.dispose();
});

test('a dy the caller passes weighs the gradients and stays the caller\'s (not disposed with the backward\'s own tensors)', () => {
  const x = tf.tensor1d([1, 2, 3]);
  const dy = tf.tensor1d([1, 0.5, -1]);
  const before = tf.memory().numTensors;
  // y = 2x^2 + x (x used twice): dy * (4x + 1)
  const [g] = tf.grads((a: tf.Tensor) => tf.add(tf.mul(tf.square(a), 2), a))([x], dy);
  assert.deepEqual(Array.from(g!.dataSync()), [5, 4.5, -13]);
  assert.equal(dy.isDisposed, false);
  assert.deepEqual(Array.from(dy.dataSync()), [1, 0.5, -1]);
  g!.dispose();
  assert.equal(tf.memory().numTensors, before, 'nothing left behind');
  [x, dy].forEach((t) => t.dispose());
});

test('the lean backward computes gradients only for inputs that depend on an x (an int32 index has none to give)', () => {
  const x = tf.tensor1d([10, 20, 30]);
  const indices = tf.tensor1d([2, 0, 2], 'int32');
  const w = tf.tensor1d([1, 2, 3]);
  // d/dx sum(w * x[indices]) = scatter of w onto the indices: [2, 0, 1 + 3]
  const [g] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.gather(a, indices), w)))([x]);
  assert.deepEqual(Array.from(g!.dataSync()), [2, 0, 4]);
  tf.dispose([x, indices, w, g!]);
});

test('what a node saved for its gradient is freed once that gradient has run, before the nodes before it run theirs', () => {
  const x = tf.tensor1d([1, -2, 3]);
  let savedBySecond: tf.Tensor | null = null;
  let freedInTime: boolean | null = null;
  /** y = x * c, saving x; its gradient notes what it saw */
  const scale = (c: number, onGrad: (saved: tf.Tensor) => void) =>
    tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [a, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([a]);
      return { value: tf.mul(a, c), gradFunc: (dy: tf.Tensor, [s]: tf.Tensor[]) => (onGrad(s!), tf.mul(dy, c)) };
    });
  const first = scale(2, () => (freedInTime = savedBySecond!.isDisposed));
  const second = scale(3, (s) => (savedBySecond = s));
  const before = tf.memory().numTensors;
  const [g] = tf.grads((a: tf.Tensor) => tf.sum(second(first(a) as tf.Tensor) as tf.Tensor))([x]);
  assert.deepEqual(Array.from(g!.dataSync()), [6, 6, 6]);
  assert.equal(freedInTime, true, "the second node's saved tensor was freed before the first node's gradient ran");
  g!.dispose();
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
});

test('a backward that fails frees a y that is the first tensor its forward made', () => {
  const x = tf.tensor1d([1, 2, 3]);
  const v = tf.variable(tf.tensor1d([4, 5, 6]));
  const before = tf.memory().numTensors;
  // neg makes one tensor, y itself; nothing leads from x to it
  assert.throws(() => tf.valueAndGrads(() => tf.neg(v))([x]), /Cannot compute gradient of y=f\(x\)/);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  v.dispose();
});

test("a custom gradient of another shape than its input is an error naming the op and both shapes, not a gradient broadcast on", () => {
  const x = tf.tensor2d([[1, 2], [3, 4]]);
  const before = tf.memory().numTensors;
  const wrong = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const a = args[0] as tf.Tensor;
    return { value: tf.mul(a, 2), gradFunc: (dy: tf.Tensor) => tf.sum(dy, 0) };
  });
  assert.throws(
    () => tf.grads((a: tf.Tensor) => tf.sum(tf.add(wrong(a) as tf.Tensor, a)))([x]),
    /^Error: Error in gradient for op \S+\. The gradient of input '\S+' has shape '2', which does not match the shape of the input '2,2'$/,
  );
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
});

test('a kernel with no gradient registered: assertModelGradients names it, and a backward through it is an error, not a gradient left out', () => {
  // tfjs-core's gradient registry (kernel_registry.ts), in its global namespace
  const registry = (globalThis as unknown as { _tfGlobals: Map<string, Map<string, unknown>> })._tfGlobals.get('gradRegistry')!;
  const softmax = registry.get('Softmax');
  assert.ok(softmax, 'Softmax has a gradient');
  const x = tf.tensor2d([[1, 2], [3, 5]]);
  const before = tf.memory().numTensors;
  registry.delete('Softmax');
  try {
    assert.throws(() => assertModelGradients(), /^Error: TensorFlow\.js has no gradient registered for Softmax$/);
    assert.throws(() => tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.softmax(a), a)))([x]), /gradient function not found for Softmax/);
  } finally {
    registry.set('Softmax', softmax);
  }
  assert.doesNotThrow(() => assertModelGradients());
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
});
