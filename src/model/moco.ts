/**
 * MoCo v3 with a ViT, as the official moco/builder.py (MoCo_ViT): a base encoder (ViT + 3-layer
 * projector as `head`), a momentum encoder that starts as its copy, a 2-layer predictor, and the
 * symmetrised contrastive loss ctr(q1, k2) + ctr(q2, k1). Single process: keys are not gathered.
 *
 * Tensors are named as the official state dict (without `module.`); internal layouts differ
 * (Linear [in, out], patch projection [p·p·C, D]) and convert exactly with toTorch/fromTorch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../engine/rng.ts';
import { EMA, fusedKernels, hasKernel, packed } from '../engine/webgpu-kernels.ts';
import { validateModelConfig, type MocoModelConfig } from './archs.ts';
import { contrastiveLoss, l2normalize } from './layers.ts';
import { applyBnRecord, buildMlp, disposeBnRecords, mlpForward, mlpParamSpecs, type BnRecord, type MlpLayer } from './mlp.ts';
import { fromTorchLayout, tensorFromTorchValues, toTorchLayout, type ParamSpec } from './params.ts';
import { vitForward, vitParamSpecs, type Params } from './vit.ts';

export type { MocoModelConfig } from './archs.ts';

const BASE = 'base_encoder.';
const MOMENTUM = 'momentum_encoder.';
const PRED = 'predictor.';
const PATCH_W = `${BASE}patch_embed.proj.weight`;
const PATCH_B = `${BASE}patch_embed.proj.bias`;

// tfjs variable names are global; a per-instance prefix lets several models coexist
let instances = 0;

/** ctr of builder.py: keys are normalised here and carry no gradient. */
export function ctrLoss(q: tf.Tensor2D, k: tf.Tensor2D, T: number): tf.Scalar {
  return tf.tidy(() => contrastiveLoss(q, l2normalize(k), T));
}

/** Two views of the same images: labels = arange(N) pair row i of one with row i of the other. */
function checkViews(x1: tf.Tensor4D, x2: tf.Tensor4D): void {
  if (x1.shape.join(',') !== x2.shape.join(',')) throw new Error(`the two views differ in shape: [${x1.shape}] vs [${x2.shape}]`);
}

/** One micro-batch: rows [offset, offset + size) of the batch. */
interface Chunk {
  offset: number;
  size: number;
  batch: number;
}

/** The micro-batches of a batch of B (one chunk of B when microBatch is null or >= B). */
function microBatches(B: number, microBatch: number | null): Chunk[] {
  const size = microBatch === null || microBatch >= B ? B : microBatch;
  if (B % size !== 0) throw new Error(`micro-batch ${size} does not divide the batch ${B}`);
  return Array.from({ length: B / size }, (_, i) => ({ offset: i * size, size, batch: B }));
}

function chunkOf(x: tf.Tensor4D, c: Chunk): tf.Tensor4D {
  return c.size === c.batch ? x : tf.slice(x, [c.offset, 0, 0, 0], [c.size, -1, -1, -1]);
}

/** Running sums of a step's loss terms and their gradients, each term scaled by `scale`; frees what it replaces. */
class GradSum {
  private readonly grads = new Map<string, tf.Tensor>();
  private loss: tf.Scalar | null = null;

  constructor(
    private readonly names: readonly string[],
    private readonly scale: number,
  ) {}

  /** Adds a term, which it takes over: a kernel that fails on the way frees what of the term is not yet summed. */
  add(term: { value: tf.Scalar; grads: tf.Tensor[] }): void {
    const pending = new Set<tf.Tensor>([...term.grads, term.value]);
    try {
      this.names.forEach((n, i) => {
        const g = term.grads[i]!;
        const prev = this.grads.get(n);
        const scaled = this.scaled(g);
        pending.delete(g);
        pending.add(scaled);
        if (prev) {
          this.grads.set(n, tf.add(prev, scaled));
          prev.dispose();
          scaled.dispose();
        } else this.grads.set(n, scaled);
        pending.delete(scaled);
      });
      const v = this.scaled(term.value);
      pending.delete(term.value);
      pending.add(v);
      if (this.loss) {
        const next = tf.add<tf.Scalar>(this.loss, v);
        this.loss.dispose();
        v.dispose();
        this.loss = next;
      } else this.loss = v;
      pending.delete(v);
    } catch (e) {
      tf.dispose([...pending]);
      throw e;
    }
  }

  /** t x scale as a new tensor (t itself when scale is 1); t is disposed when replaced. */
  private scaled<T extends tf.Tensor>(t: T): T {
    if (this.scale === 1) return t;
    const s = tf.mul<T>(t, this.scale);
    t.dispose();
    return s;
  }

  result(): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
    return { loss: this.loss!, grads: this.grads };
  }

  /** Frees the sums (a step that failed partway: its caller never gets them). */
  dispose(): void {
    for (const g of this.grads.values()) g.dispose();
    this.grads.clear();
    this.loss?.dispose();
    this.loss = null;
  }
}

export class MoCoViT {
  readonly cfg: MocoModelConfig;
  /** every state-dict tensor (parameters and BN buffers), internal layout, state-dict order */
  readonly vars = new Map<string, tf.Variable>();
  private readonly specs = new Map<string, ParamSpec>();
  private readonly projector: MlpLayer[];
  private readonly predictor: MlpLayer[];
  /** base_encoder.parameters(): what the momentum update iterates (no BN buffers) */
  private readonly baseParams: string[] = [];
  private readonly gradList: string[];
  private readonly trainList: string[];
  private readonly paramFns = new Map<string, Params>();
  private disposed = false;
  private readonly encoderOnly: boolean;

  /**
   * Momentum encoder = copy of the base encoder (builder.py: param_m.data.copy_(param_b.data)).
   * `encoderOnly`: the base encoder alone (evaluation reads features, never trains): no momentum encoder,
   * no predictor; step() and loss() are not available.
   */
  constructor(cfg: MocoModelConfig, seed: number, opts: { encoderOnly?: boolean } = {}) {
    validateModelConfig(cfg);
    this.cfg = { ...cfg };
    const tag = `moco${instances++}`;
    this.projector = buildMlp(3, cfg.dim, cfg.projHidden, cfg.projDim);
    this.predictor = buildMlp(2, cfg.projDim, cfg.predHidden, cfg.projDim);
    const encoder = [...vitParamSpecs(cfg), ...mlpParamSpecs(this.projector).map((s) => ({ ...s, name: `head.${s.name}` }))];
    const predictor = mlpParamSpecs(this.predictor);

    const values = new Map<string, Float32Array>();
    for (const s of encoder) values.set(s.name, s.init(new Rng(seed, 'init', BASE + s.name)));
    const add = (name: string, spec: ParamSpec, vals: Float32Array, trainable: boolean) => {
      const full: ParamSpec = { ...spec, name };
      this.specs.set(name, full);
      const init = tensorFromTorchValues(full, vals);
      try {
        this.vars.set(name, tf.variable(init, trainable, `${tag}/${name}`));
      } finally {
        init.dispose();
      }
    };
    const frozen = cfg.patchProj === 'frozen';
    const trainableBase = (name: string) => !name.endsWith('pos_embed') && !(frozen && (name === PATCH_W || name === PATCH_B));
    this.encoderOnly = opts.encoderOnly ?? false;
    const built = this.encoderOnly ? [] : predictor;
    try {
      for (const s of encoder) add(BASE + s.name, s, values.get(s.name)!, !s.buffer && trainableBase(BASE + s.name));
      if (!this.encoderOnly) for (const s of encoder) add(MOMENTUM + s.name, s, values.get(s.name)!, false);
      for (const s of built) add(PRED + s.name, s, s.init(new Rng(seed, 'init', PRED + s.name)), !s.buffer);
    } catch (e) {
      // a model that could not be built (out of memory) leaves none of its variables
      this.dispose();
      throw e;
    }

    for (const s of encoder) if (!s.buffer) this.baseParams.push(BASE + s.name);
    const predParams = built.filter((s) => !s.buffer).map((s) => PRED + s.name);
    this.gradList = [...this.baseParams.filter((n) => n !== `${BASE}pos_embed`), ...predParams];
    this.trainList = this.gradList.filter((n) => this.vars.get(n)!.trainable);
  }

  /** What the optimizer updates: base encoder (minus pos_embed, minus a frozen patch projection) + predictor. */
  trainableNames(): string[] {
    return this.trainList.slice();
  }

  /** trainableNames() plus a frozen patch projection, whose gradient is measured but never applied. */
  gradNames(): string[] {
    return this.gradList.slice();
  }

  private groups: ReadonlyMap<string, readonly string[]> | null = null;

  /** Metric groups → parameter names (all within gradNames()); built once, read every step. */
  paramGroups(): ReadonlyMap<string, readonly string[]> {
    if (this.groups) return this.groups;
    const g = new Map<string, string[]>();
    g.set('patch_proj', [PATCH_W, PATCH_B]);
    g.set('cls_token', [`${BASE}cls_token`]);
    for (let i = 0; i < this.cfg.depth; i++) g.set(`block${i}`, this.gradList.filter((n) => n.startsWith(`${BASE}blocks.${i}.`)));
    g.set('norm', [`${BASE}norm.weight`, `${BASE}norm.bias`]);
    g.set('projector', this.gradList.filter((n) => n.startsWith(`${BASE}head.`)));
    g.set('predictor', this.gradList.filter((n) => n.startsWith(PRED)));
    this.groups = g;
    return g;
  }

  /** BN running buffers (running_mean, running_var, num_batches_tracked) of all three MLPs. */
  bufferNames(): string[] {
    return [...this.specs.values()].filter((s) => s.buffer).map((s) => s.name);
  }

  private spec(name: string): ParamSpec {
    const s = this.specs.get(name);
    if (!s) throw new Error(`no tensor named '${name}' in the model`);
    return s;
  }

  torchShape(name: string): number[] {
    return this.spec(name).torchShape.slice();
  }

  /** Internal → PyTorch layout (new tensor; num_batches_tracked stays float32, shape []). */
  toTorch(name: string, t: tf.Tensor): tf.Tensor {
    const s = this.spec(name);
    return toTorchLayout(s.layout, s.torchShape, t);
  }

  /** PyTorch → internal layout (new tensor, float32). */
  fromTorch(name: string, t: tf.Tensor): tf.Tensor {
    const s = this.spec(name);
    return tf.tidy(() => fromTorchLayout(s.layout, s.torchShape, t.dtype === 'float32' ? t : tf.cast(t, 'float32')));
  }

  /** Overwrite one state-dict tensor from a PyTorch-layout tensor (checkpoint load). */
  assignTorch(name: string, t: tf.Tensor): void {
    const v = this.fromTorch(name, t);
    this.vars.get(name)!.assign(v);
    v.dispose();
  }

  private params(prefix: string): Params {
    let f = this.paramFns.get(prefix);
    if (!f) {
      f = (name: string) => {
        const v = this.vars.get(prefix + name);
        if (!v) throw new Error(`no tensor named '${prefix + name}'`);
        return v;
      };
      this.paramFns.set(prefix, f);
    }
    return f;
  }

  /** backbone + projector (an encoder of builder.py: `head` is the projector) */
  private encode(x: tf.Tensor4D, prefix: string, bn: BnRecord[] | null): tf.Tensor2D {
    const P = this.params(prefix);
    const head = this.params(`${prefix}head.`);
    return mlpForward(vitForward(x, this.cfg, P), this.projector, head, bn);
  }

  private predict(z: tf.Tensor2D, bn: BnRecord[] | null): tf.Tensor2D {
    return mlpForward(z, this.predictor, this.params(PRED), bn);
  }

  /** Fold batch statistics into the running buffers of the BNs under `prefix`, in record order. */
  private updateBn(prefix: string, records: BnRecord[]): void {
    for (const r of records) {
      const p = `${prefix}${r.layer}.`;
      applyBnRecord(r, this.vars.get(`${p}running_mean`)!, this.vars.get(`${p}running_var`)!, this.vars.get(`${p}num_batches_tracked`)!);
    }
  }

  /** θk ← m·θk + (1−m)·θq over base_encoder.parameters() (pos_embed and a frozen projection included, BN buffers not). */
  momentumUpdate(m: number): void {
    tf.tidy(() => {
      // one dispatch for the whole encoder where the backend packs tensors (webgpu: src/engine/webgpu-kernels.ts)
      const ks = this.baseParams.map((n) => this.vars.get(MOMENTUM + n.slice(BASE.length))!);
      const all = hasKernel(EMA) ? packed([ks, this.baseParams.map((n) => this.vars.get(n)!)], ([k, q]) => fusedKernels(EMA, { k, q }, { m })!) : null;
      if (all) {
        ks.forEach((k, i) => k.assign(all[0]![i]!));
        return;
      }
      for (const n of this.baseParams) {
        const k = this.vars.get(MOMENTUM + n.slice(BASE.length))!;
        // one dispatch where the backend has moco3's kernel (webgpu: src/engine/webgpu-kernels.ts)
        const fused = fusedKernels(EMA, { k, q: this.vars.get(n)! }, { m });
        k.assign(fused ? fused[0]! : tf.add(tf.mul(k, m), tf.mul(this.vars.get(n)!, 1 - m)));
      }
    });
  }

  /**
   * One step's forward + backward of builder.py's forward(x1, x2, m):
   *
   *     self._update_momentum_encoder(m)                       # momentumUpdate(m)
   *     k1, k2 = self.momentum_encoder(x1), (x2)                # keys(x), no gradient
   *     q1, q2 = self.predictor(self.base_encoder(x1)), (x2)    # inside lossTerm
   *     return self.contrastive_loss(q1, k2) + self.contrastive_loss(q2, k1)
   *
   * builder.py computes q1, q2 first; here the momentum update and keys come first, so that each loss
   * term (and each micro-batch of it) can be back-propagated on its own: the same gradient sum with less
   * activation memory. The result is identical: the update touches only the momentum encoder, and every
   * BatchNorm still sees view 1 then view 2 (running buffers: base head and predictor on q1 then q2,
   * momentum head on k1 then k2). The caller disposes `loss` and the grads.
   */
  step(x1: tf.Tensor4D, x2: tf.Tensor4D, m: number, microBatch: number | null = null): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
    this.checkTrainable();
    checkViews(x1, x2);
    const chunks = microBatches(x1.shape[0], microBatch);
    this.momentumUpdate(m);
    // the mean over chunks = the mean over the batch
    const sum = new GradSum(this.gradList, 1 / chunks.length);
    let k1: tf.Tensor2D | null = null;
    let k2: tf.Tensor2D | null = null;
    try {
      k1 = this.keys(x1, chunks);
      k2 = this.keys(x2, chunks);
      for (const [x, k] of [[x1, k2], [x2, k1]] as const) {
        for (const c of chunks) sum.add(this.lossTerm(x, k, c)); // ctr(q1, k2), then ctr(q2, k1)
      }
      return sum.result();
    } catch (e) {
      // a term that fails (out of memory in the second view, a later micro-batch) leaves nothing behind
      sum.dispose();
      throw e;
    } finally {
      k1?.dispose();
      k2?.dispose();
    }
  }

  /**
   * Normalised keys of the momentum encoder for the whole batch, no gradient. With micro-batches BN
   * statistics are per chunk (like per-GPU BN without the official code's SyncBatchNorm); one tidy per chunk
   * frees its activations before the next.
   */
  private keys(x: tf.Tensor4D, chunks: Chunk[]): tf.Tensor2D {
    const parts: tf.Tensor2D[] = [];
    try {
      for (const c of chunks) {
        parts.push(
          tf.tidy(() => {
            const rec: BnRecord[] = [];
            try {
              const k = l2normalize(this.encode(chunkOf(x, c), MOMENTUM, rec));
              this.updateBn(`${MOMENTUM}head.`, rec);
              return k;
            } catch (e) {
              disposeBnRecords(rec);
              throw e;
            }
          }),
        );
      }
      return parts.length === 1 ? parts[0]! : (tf.concat(parts) as tf.Tensor2D);
    } finally {
      // the chunks' keys, once concatenated (or when a later chunk failed)
      if (parts.length > 1 || parts.length < chunks.length) parts.forEach((p) => p.dispose());
    }
  }

  /** ctr(q, k) of one chunk of queries against all keys of the batch (negatives = the full batch, as in the paper), with its gradients. */
  private lossTerm(x: tf.Tensor4D, k: tf.Tensor2D, c: Chunk): { value: tf.Scalar; grads: tf.Tensor[] } {
    const encRec: BnRecord[] = [];
    const predRec: BnRecord[] = [];
    const q = () => this.predict(this.encode(chunkOf(x, c), BASE, encRec), predRec);
    let r: { value: tf.Scalar; grads: tf.Tensor[] } | null = null;
    try {
      r = tf.valueAndGrads(() => contrastiveLoss(q(), k, this.cfg.temperature, 1e-12, c.offset))(this.gradList.map((n) => this.vars.get(n)!));
      this.updateBn(`${BASE}head.`, encRec);
      this.updateBn(PRED, predRec);
      return r;
    } catch (e) {
      // a failed term (out of memory) leaves neither its BatchNorm statistics (kept out of every tidy) nor its gradients
      disposeBnRecords([...encRec, ...predRec]);
      if (r) tf.dispose([r.value, ...r.grads]);
      throw e;
    }
  }

  /** The loss of the current weights, with no update at all (train-mode BN, buffers untouched). */
  loss(x1: tf.Tensor4D, x2: tf.Tensor4D): tf.Scalar {
    this.checkTrainable();
    checkViews(x1, x2);
    return tf.tidy(() => {
      const k1 = this.encode(x1, MOMENTUM, null);
      const k2 = this.encode(x2, MOMENTUM, null);
      const q1 = this.predict(this.encode(x1, BASE, null), null);
      const q2 = this.predict(this.encode(x2, BASE, null), null);
      return tf.add(ctrLoss(q1, k2, this.cfg.temperature), ctrLoss(q2, k1, this.cfg.temperature)) as tf.Scalar;
    });
  }

  /** Backbone feature for kNN / linear probe: class token after the base encoder's final LN, [B, dim]. */
  features(x: tf.Tensor4D): tf.Tensor2D {
    this.checkAlive();
    return tf.tidy(() => vitForward(x, this.cfg, this.params(BASE)));
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('MoCoViT used after dispose()');
  }

  private checkTrainable(): void {
    this.checkAlive();
    if (this.encoderOnly) throw new Error('MoCoViT built encoder-only (for evaluation): it has no step() or loss()');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vars.values()) v.dispose();
  }
}
