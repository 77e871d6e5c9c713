/**
 * The Node entry of @tensorflow/tfjs-core registers no gradients; the @tensorflow/tfjs bundle registers
 * TensorFlow.js's own gradient for every op (in the global registry that tfjs-core reads). Loaded once,
 * wherever the model is used.
 */
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/** Kernels the model back-propagates through that are not its own customGrad ops. */
export const MODEL_GRADIENT_KERNELS: readonly string[] = [
  'Add', 'Sub', 'Multiply', 'Reshape', 'Transpose', 'SplitV', 'Concat', 'Slice', 'Softmax', 'Relu', 'Sum', 'Mean',
];

/** Throws when a kernel the model needs has no gradient (a tfjs upgrade that moved the registry). */
export function assertModelGradients(): void {
  for (const k of MODEL_GRADIENT_KERNELS) {
    if (!tf.getGradient(k)) throw new Error(`TensorFlow.js has no gradient registered for ${k}`);
  }
}

/** The parts of tfjs-core's Engine (engine.ts, not exported as types) that the lean backward uses. */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): { value: tf.Tensor; grads: tf.Tensor[] };
}

/** The nodes of `tape` on a path from some x to y, each with only its inputs that depend on an x (as tfjs's tape.ts). */
function nodesFromXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [k, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[k] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

/**
 * tfjs-core's `Engine.gradients` with the memory of PyTorch's autograd: TensorFlow.js keeps every
 * intermediate gradient, and every tensor saved for the backward pass, until the whole backward pass ends,
 * so a training step peaks at about activations + all their gradients. Here each node's gradient runs in
 * its own tidy (custom gradients included), and once it has run, the gradients of its outputs and the
 * tensors it saved are freed: the peak is about the activations alone. The arithmetic, and its order, is
 * tfjs's: results are bitwise equal (test/engine/lean-gradients.test.ts).
 */
function leanGradients(this: EngineInternals, f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients = false) {
  if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
  if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  const y: unknown = this.scopedRun(() => this.startTape(), () => this.endTape(), () => this.tidy('forward', f));
  if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
  return leanBackward.call(this, y, xs, dy, allowNoGradients);
}

/** The backward pass of leanGradients, over the tape its forward recorded. */
function leanBackward(this: EngineInternals, y: tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor | undefined, allowNoGradients: boolean) {
  const tape = this.state.activeTape ?? [];
  const nodes = nodesFromXToY(tape, xs, y);
  if (!allowNoGradients && nodes.length === 0) {
    throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
  }
  const keep = new Set<number>(xs.map((x) => x.id));
  return this.tidy('backward', () => {
    const acc = new Map<number, tf.Tensor>();
    acc.set(y.id, dy ?? tf.ones(y.shape));
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!;
      if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
      const names = Object.keys(node.inputs);
      const dxs = this.tidy(() => {
        const fns = node.gradient!(dys);
        return names.map((name) => {
          const fn = fns[name];
          if (!fn) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(fns)}.`);
          return fn();
        });
      });
      const spent: tf.Tensor[] = [];
      names.forEach((name, j) => {
        const dx = dxs[j]!;
        const x = node.inputs[name]!;
        if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
        if (dx.shape.length !== x.shape.length || dx.shape.some((d, k) => d !== x.shape[k])) {
          throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
        }
        const cur = acc.get(x.id);
        if (cur == null) acc.set(x.id, dx);
        else {
          acc.set(x.id, tf.add(cur, dx));
          spent.push(cur, dx);
        }
      });
      // this node was the last user of its outputs' gradients and of what it saved
      node.outputs.forEach((o, j) => {
        const g = dys[j];
        if (g == null || keep.has(o.id)) return;
        acc.delete(o.id);
        spent.push(g);
      });
      if (spent.length > 0) {
        const live = new Set<tf.Tensor>(acc.values());
        for (const t of spent) if (t !== dy && !live.has(t)) t.dispose();
      }
      for (const t of node.saved ?? []) t.dispose();
    }
    const grads = xs.map((x) => acc.get(x.id)!);
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    this.state.activeTape = null;
    return { value: y, grads };
  });
}

let installed = false;

/**
 * Routes tf.grads / valueAndGrads / variableGrads (once per process) through leanGradients, or through
 * tfjs's own backward when MOCO3_LEAN_BACKWARD=0 (read at each call), and either way frees, when a kernel
 * fails in the forward or the backward (out of memory), what the tape saved for the backward (kept out of
 * every tidy) and the value that escaped the forward's tidy: they would outlive the step.
 */
function installGradients(): void {
  if (installed) return;
  const engine = tf.engine() as unknown as EngineInternals;
  const stock = engine.gradients;
  engine.gradients = function (this: EngineInternals, f, xs, dy, allowNoGradients) {
    // higher-order gradients need the tape intact: leave them to tfjs
    if (this.state.gradientDepth > 0) return stock.call(this, f, xs, dy, allowNoGradients);
    // the first id a tensor the forward makes gets (tfjs numbers tensors in one sequence, Engine.nextTensorId)
    const firstId = (this.constructor as unknown as { nextTensorId?: unknown }).nextTensorId;
    let y: unknown = null;
    const recorded = () => (y = f()) as tf.Tensor;
    try {
      return process.env.MOCO3_LEAN_BACKWARD === '0'
        ? stock.call(this, recorded, xs, dy, allowNoGradients)
        : leanGradients.call(this, recorded, xs, dy, allowNoGradients);
    } catch (e) {
      for (const node of this.state.activeTape ?? []) for (const t of node.saved ?? []) t.dispose();
      this.state.activeTape = null;
      // y, when the forward made it: f may return an input or a variable, which stay the caller's
      if (y instanceof tf.Tensor && !(y instanceof tf.Variable) && typeof firstId === 'number' && y.id >= firstId) y.dispose();
      throw e;
    }
  };
  installed = true;
}

installGradients();
