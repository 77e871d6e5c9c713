/**
 * What every moco3 optimizer shares: the config, the interface the training loop sees, and the
 * bookkeeping of per-parameter state (slot tensors, step counts, checkpoints). The update rules live one
 * per file (adamw.ts, lamb.ts, lars.ts, sgd.ts); `createOptimizer` is in index.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { OptimizerName } from '../config/schema.ts';

export type { OptimizerName };

export interface OptimizerConfig {
  name: OptimizerName;
  weightDecay: number;
  /** AdamW, LAMB */
  betas: [number, number];
  /** AdamW, LAMB */
  eps: number;
  /** LARS, SGD */
  momentum: number;
  /** LARS */
  trustCoefficient: number;
  /** LAMB: parameters with PyTorch ndim <= 1 get no weight decay and trust ratio 1 (default false) */
  lambExcludeBiasNorm?: boolean;
  /** LAMB: clip gradients by their global L2 norm to this value before the update; null/undefined = off */
  lambMaxGradNorm?: number | null;
}

export interface Optimizer {
  readonly name: OptimizerName;
  /** number of step() calls so far (PyTorch's 'step' state) */
  readonly stepCount: number;
  /**
   * Updates variables in place from grads (keyed by parameter name; only names present in `grads` and in
   * `params` are updated). lr is the lr of this iteration. Does not dispose grads.
   */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void;
  /**
   * Slot tensors keyed '<param name>.<slot>' with PyTorch's slot names (exp_avg, exp_avg_sq for AdamW/LAMB;
   * mu for LARS; momentum_buffer for SGD). The tensors are the optimizer's own: read them, do not dispose them.
   */
  stateTensors(): Map<string, tf.Tensor>;
  /** scalar state as JSON: { name, stepCount, steps? } (steps: per-parameter step counts, AdamW/LAMB) */
  stateJson(): Record<string, unknown>;
  /**
   * Replaces the state with copies of `tensors` and the scalars of `json`, after validating names, dtypes and
   * shapes (against `params` when given, else against each parameter at its next step). Throws
   * OptimizerStateError and leaves the old state in place when anything is wrong.
   */
  loadState(tensors: Map<string, tf.Tensor>, json: Record<string, unknown>, params?: Map<string, tf.Variable>): void;
  dispose(): void;
}

export class OptimizerStateError extends Error {}

/** PyTorch ndim of a parameter by name; the tfjs layout may differ, so rank rules go through this. */
export type NdimOf = (name: string) => number;

/** One parameter's share of a step. */
export interface ParamGrad {
  name: string;
  p: tf.Variable;
  g: tf.Tensor;
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;



/**
 * Owns the slot variables and step counts; subclasses implement `update`, which runs inside one tf.tidy.
 */
export abstract class BaseOptimizer implements Optimizer {
  abstract readonly name: OptimizerName;
  /** PyTorch's state names for each parameter's slot tensors */
  protected abstract readonly slotNames: readonly string[];
  /** Adam family: PyTorch keeps a 'step' per parameter */
  protected abstract readonly perParamSteps: boolean;

  private count = 0;
  /** '<param>.<slot>' -> non-trainable variable */
  private slots = new Map<string, tf.Variable>();
  private steps = new Map<string, number>();
  private disposed = false;

  get stepCount(): number {
    return this.count;
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    if (this.disposed) throw new Error(`${this.name}: step() after dispose()`);
    if (!Number.isFinite(lr)) throw new RangeError(`${this.name}: lr must be a finite number, got ${lr}`);
    const pairs: ParamGrad[] = [];
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (g === undefined) continue;
      if (!tf.util.arraysEqual(g.shape, p.shape)) {
        throw new Error(`${this.name}: gradient of '${name}' has shape ${shapeStr(g.shape)}, parameter ${shapeStr(p.shape)}`);
      }
      if (g.dtype !== 'float32' || p.dtype !== 'float32') {
        throw new Error(`${this.name}: '${name}' must be float32 (parameter ${p.dtype}, gradient ${g.dtype})`);
      }
      for (const s of this.slotNames) {
        const v = this.slots.get(`${name}.${s}`);
        if (v !== undefined && !tf.util.arraysEqual(v.shape, p.shape)) {
          throw new OptimizerStateError(
            `${this.name}: state '${name}.${s}' has shape ${shapeStr(v.shape)} but parameter '${name}' has ${shapeStr(p.shape)}`,
          );
        }
      }
      pairs.push({ name, p, g });
    }
    tf.tidy(() => this.update(pairs, lr));
    this.count++;
  }

  /** The update rule; runs inside tf.tidy. Write new values with `p.assign` and `setSlot`. */
  protected abstract update(pairs: ParamGrad[], lr: number): void;

  protected slot(name: string, slot: string): tf.Variable | undefined {
    return this.slots.get(`${name}.${slot}`);
  }

  /** Stores `value` as the slot (creating it on first use); the value may be a tidy intermediate. */
  protected setSlot(name: string, slot: string, value: tf.Tensor): void {
    const key = `${name}.${slot}`;
    const v = this.slots.get(key);
    if (v === undefined) this.slots.set(key, tf.variable(value, false));
    else v.assign(value);
  }

  /** The parameter's step count so far (0 before its first update). */
  protected stepsDone(name: string): number {
    return this.steps.get(name) ?? 0;
  }

  /**
   * What a packed group update (webgpu) needs of `pairs`: the step t they all take now, and the lists to
   * pack: parameters, gradients, then the slots in `slotNames` order (left out before the first step).
   * Null when the group is not regular: fewer than two, a variable under two names (per parameter it is
   * updated twice in a row), parameters at different steps, slots present for some only. The caller then
   * updates parameter by parameter.
   */
  protected packedGroup(pairs: ParamGrad[]): { t: number; lists: tf.Tensor[][] } | null {
    if (pairs.length < 2 || new Set(pairs.map((x) => x.p)).size !== pairs.length) return null;
    const t = this.stepsDone(pairs[0]!.name) + 1;
    const slots = this.slotNames.map((s) => pairs.map(({ name }) => this.slot(name, s)));
    const fresh = slots[0]?.[0] === undefined;
    if (pairs.some(({ name }, i) => this.stepsDone(name) + 1 !== t || slots.some((l) => (l[i] === undefined) !== fresh))) return null;
    return { t, lists: [pairs.map((x) => x.p), pairs.map((x) => x.g), ...(fresh ? [] : (slots as tf.Tensor[][]))] };
  }

  /** Writes a packed update's results back: out[0] the parameters, out[1 + k] slot k; counts the steps. */
  protected assignPacked(pairs: ParamGrad[], out: tf.Tensor[][]): void {
    pairs.forEach(({ name, p }, i) => {
      if (this.perParamSteps) this.nextStep(name);
      p.assign(out[0]![i]!);
      this.slotNames.forEach((s, k) => this.setSlot(name, s, out[k + 1]![i]!));
    });
  }

  /** Advances and returns the parameter's step count t (1 on its first update). */
  protected nextStep(name: string): number {
    const t = (this.steps.get(name) ?? 0) + 1;
    this.steps.set(name, t);
    return t;
  }

  stateTensors(): Map<string, tf.Tensor> {
    return new Map(this.slots);
  }

  stateJson(): Record<string, unknown> {
    const json: Record<string, unknown> = { name: this.name, stepCount: this.count };
    if (this.perParamSteps) json.steps = Object.fromEntries(this.steps);
    return json;
  }

  loadState(tensors: Map<string, tf.Tensor>, json: Record<string, unknown>, params?: Map<string, tf.Variable>): void {
    const fail = (msg: string): never => {
      throw new OptimizerStateError(`${this.name} state: ${msg}`);
    };
    if (json.name !== this.name) fail(`saved by optimizer '${String(json.name)}', cannot load into '${this.name}'`);
    const stepCount = json.stepCount;
    if (typeof stepCount !== 'number' || !Number.isInteger(stepCount) || stepCount < 0) {
      fail(`stepCount must be a non-negative integer, got ${JSON.stringify(stepCount)}`);
    }

    // group tensors by parameter; names may contain dots, so match the slot suffix
    const byParam = new Map<string, Map<string, tf.Tensor>>();
    for (const [key, t] of tensors) {
      const slot = this.slotNames.find((s) => key.endsWith(`.${s}`) && key.length > s.length + 1);
      if (slot === undefined) {
        fail(`unexpected tensor '${key}' (expected '<param>.<slot>' with slot in: ${this.slotNames.join(', ') || 'none'})`);
      }
      const param = key.slice(0, key.length - slot!.length - 1);
      if (t.dtype !== 'float32') fail(`'${key}' has dtype ${t.dtype}, expected float32`);
      const group = byParam.get(param) ?? new Map<string, tf.Tensor>();
      group.set(slot!, t);
      byParam.set(param, group);
    }
    for (const [param, group] of byParam) {
      for (const s of this.slotNames) if (!group.has(s)) fail(`'${param}.${s}' is missing`);
      const shape = group.get(this.slotNames[0]!)!.shape;
      for (const [s, t] of group) {
        if (!tf.util.arraysEqual(t.shape, shape)) {
          fail(`'${param}.${s}' has shape ${shapeStr(t.shape)}, '${param}.${this.slotNames[0]}' has ${shapeStr(shape)}`);
        }
      }
      if (params !== undefined) {
        const p = params.get(param);
        if (p === undefined) fail(`state for '${param}', which is not a parameter`);
        if (!tf.util.arraysEqual(p!.shape, shape)) {
          fail(`'${param}' state has shape ${shapeStr(shape)} but the parameter has ${shapeStr(p!.shape)}`);
        }
      }
    }

    const steps = new Map<string, number>();
    if (this.perParamSteps) {
      const raw = json.steps;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('steps must be an object of per-parameter step counts');
      for (const [param, t] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof t !== 'number' || !Number.isInteger(t) || t < 1) fail(`steps['${param}'] must be a positive integer, got ${JSON.stringify(t)}`);
        if ((t as number) > (stepCount as number)) fail(`steps['${param}'] = ${t} exceeds stepCount ${stepCount}`);
        if (!byParam.has(param)) fail(`steps['${param}'] given but its slot tensors are missing`);
        steps.set(param, t as number);
      }
      for (const param of byParam.keys()) if (!steps.has(param)) fail(`no step count for '${param}'`);
    }

    // all valid: swap in copies
    const slots = new Map<string, tf.Variable>();
    for (const [key, t] of tensors) slots.set(key, tf.tidy(() => tf.variable(t.clone(), false)));
    this.disposeSlots();
    this.slots = slots;
    this.steps = steps;
    this.count = stepCount as number;
  }

  private disposeSlots(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
  }

  dispose(): void {
    this.disposeSlots();
    this.steps.clear();
    this.disposed = true;
  }
}

/**
 * The inputs one AddN takes on webgpu: its shader binds every input and the output as storage buffers, and
 * WebGPU promises 8 a shader (lavapipe 16); a model's gradients are 40 to 160.
 */
export const WEBGPU_ADDN_INPUTS = 7;

/**
 * tf.addN, in AddNs of at most WEBGPU_ADDN_INPUTS inputs on webgpu (one AddN over all is refused there);
 * one AddN elsewhere, as before (the same sums, bit for bit).
 */
export function sumAll(xs: readonly tf.Tensor[]): tf.Tensor {
  if (xs.length <= WEBGPU_ADDN_INPUTS || tf.getBackend() !== 'webgpu') return tf.addN(xs as tf.Tensor[]);
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < xs.length; i += WEBGPU_ADDN_INPUTS) parts.push(tf.addN(xs.slice(i, i + WEBGPU_ADDN_INPUTS) as tf.Tensor[]));
  return sumAll(parts);
}

/** Global L2 norm of all gradients: sqrt(Σ sum(g²)). */
export function globalNorm(gs: readonly tf.Tensor[]): tf.Scalar {
  return tf.sqrt(sumAll(gs.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
}

/** L2 norm over all elements (torch.norm(p)). */
export function l2(x: tf.Tensor): tf.Scalar {
  return tf.sqrt(tf.sum(tf.square(x))) as tf.Scalar;
}
