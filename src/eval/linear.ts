/**
 * Linear probe of main_lincls.py (docs/MOCOV3.md "Evaluation"): on frozen features (the base encoder's class token
 * after its final LayerNorm), one Linear(D, classes) with weight ~ N(0, 0.01²) and zero bias, trained
 * with SGD momentum 0.9, no weight decay, lr = base_lr x batch / 256 on a per-epoch cosine with no
 * warmup, cross-entropy; top-1 / top-5 on the test features.
 *
 * The features of the training images come from a `ProbeTrainSource`: precomputed once (no
 * augmentation: `cachedSource`), or recomputed per batch from augmented views (eval/offline.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkWebGpuErrors, readBack } from '../engine/webgpu.ts';
import { Rng } from '../engine/rng.ts';
import { Sgd } from '../optim/sgd.ts';
import { probeLrAt, scaledLr } from '../optim/schedule.ts';
import { topkAccuracy } from './knn.ts';
import { InputError } from '../config/errors.ts';

export interface ProbeOptions {
  numClasses: number;
  epochs: number;
  /** the lr used is baseLr x batchSize / 256 */
  baseLr: number;
  batchSize: number;
  seed: number;
  /** SGD momentum (0.9) */
  momentum?: number;
  /** weight decay (0) */
  weightDecay?: number;
  onEpoch?: (e: ProbeEpoch) => void;
  /** called after each batch, once Node has had a turn (signal handlers run): throws to stop the probe */
  check?: () => void;
}

export interface ProbeEpoch {
  epoch: number;
  epochs: number;
  lr: number;
  loss: number;
  trainTop1: number;
  seconds: number;
}

export interface ProbeTrainSource {
  n: number;
  labels: Int32Array;
  /** true when features() recomputes augmented views (each epoch sees new crops) */
  augmented: boolean;
  /** [idx.length, D] features of the training images `idx` in this epoch; the probe disposes them */
  features(idx: Int32Array, epoch: number, batch: number): tf.Tensor2D;
}

export interface ProbeResult {
  top1: number;
  top5: number;
  n: number;
  /** peak lr (scaled) */
  lr: number;
  epochs: number;
  /** mean training loss of each epoch */
  losses: number[];
  trainTop1: number[];
}

/** Training features computed once (no augmentation): each epoch reshuffles the same rows. */
export function cachedSource(features: tf.Tensor2D, labels: Int32Array): ProbeTrainSource {
  if (features.shape[0] !== labels.length) throw new Error(`linear probe: ${labels.length} labels for ${features.shape[0]} feature rows`);
  return {
    n: labels.length,
    labels,
    augmented: false,
    features: (idx) => tf.tidy(() => tf.gather(features, tf.tensor1d(idx, 'int32')) as tf.Tensor2D),
  };
}

/** The probe's head: logits = x W + b, W [D, C] (PyTorch's head.weight is Wᵀ). */
export class LinearHead {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(dim: number, numClasses: number, seed: number) {
    const w = new Rng(seed, 'probe', 'init').fillNormal(new Float32Array(dim * numClasses), 0, 0.01);
    const w0 = tf.tensor2d(w, [dim, numClasses]);
    const b0 = tf.zeros([numClasses]);
    this.weight = tf.variable(w0, true);
    this.bias = tf.variable(b0, true);
    tf.dispose([w0, b0]);
  }

  logits(x: tf.Tensor2D): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.weight), this.bias) as tf.Tensor2D;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias.dispose();
  }
}

/** Mean softmax cross-entropy of logits against integer labels. */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const picked = tf.sum(tf.mul(logits, tf.oneHot(labels, logits.shape[1])), 1);
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), picked)) as tf.Scalar;
  });
}

/**
 * Loss, correct count and the gradient of the mean cross-entropy, in closed form (the Node build of
 * tfjs-core registers no gradients): dlogits = (softmax - onehot) / B, dW = xᵀ dlogits, db = Σ dlogits.
 */
export function headGradients(head: LinearHead, x: tf.Tensor2D, labels: tf.Tensor1D): { loss: tf.Scalar; hits: tf.Scalar; dW: tf.Tensor2D; db: tf.Tensor1D } {
  return tf.tidy(() => {
    const logits = head.logits(x);
    const onehot = tf.oneHot(labels, logits.shape[1]);
    const lse = tf.logSumExp(logits, 1, true);
    const loss = tf.mean(tf.sub(tf.squeeze(lse, [1]), tf.sum(tf.mul(logits, onehot), 1))) as tf.Scalar;
    const dlogits = tf.div(tf.sub(tf.exp(tf.sub(logits, lse)), onehot), x.shape[0]) as tf.Tensor2D;
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'int32')) as tf.Scalar;
    return { loss, hits, dW: tf.matMul(x, dlogits, true, false), db: tf.sum(dlogits, 0) as tf.Tensor1D };
  });
}

/**
 * The probe's loss went non-finite in an epoch: its lr is too large for these features. Its head would score
 * every test image a miss (0%, below chance), so no accuracy is given.
 */
export class ProbeDiverged extends InputError {
  override name = 'ProbeDiverged';
  constructor(
    readonly epoch: number,
    readonly lr: number,
    readonly what: string,
    /** whose probe: a run's, or a baseline's */
    readonly whose = 'the linear probe',
    /** what set its lr */
    note = '',
  ) {
    super(`${whose} diverged: ${what} in epoch ${epoch} at lr ${lr.toPrecision(3)}${note ? ` (${note})` : ''}`);
  }
}

export async function trainLinearProbe(train: ProbeTrainSource, dim: number, opts: ProbeOptions): Promise<{ head: LinearHead; losses: number[]; trainTop1: number[]; lr: number }> {
  const { numClasses, epochs, batchSize, seed } = opts;
  if (!(epochs >= 1) || !(batchSize >= 1)) throw new RangeError(`linear probe: epochs and batch size must be >= 1, got ${epochs}, ${batchSize}`);
  const lr = scaledLr(opts.baseLr, batchSize);
  const head = new LinearHead(dim, numClasses, seed);
  const sgd = new Sgd({ momentum: opts.momentum ?? 0.9, weightDecay: opts.weightDecay ?? 0 });
  const params = new Map<string, tf.Variable>([
    ['head.weight', head.weight],
    ['head.bias', head.bias],
  ]);
  const losses: number[] = [];
  const trainTop1: number[] = [];
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const t0 = performance.now();
      const lrNow = probeLrAt(epoch, { lr, epochs });
      const order = new Rng(seed, 'probe', 'order', epoch).permutation(train.n);
      let lossSum = 0;
      let correct = 0;
      let b = 0;
      for (let s = 0; s < train.n; s += batchSize, b++) {
        const idx = order.subarray(s, Math.min(train.n, s + batchSize));
        const y = Int32Array.from(idx, (i) => train.labels[i]!);
        const x = train.features(idx, epoch, b);
        const yt = tf.tensor1d(y, 'int32');
        let g: ReturnType<typeof headGradients> | null = null;
        try {
          g = headGradients(head, x, yt);
          sgd.step(params, new Map<string, tf.Tensor>([
            ['head.weight', g.dW],
            ['head.bias', g.db],
          ]), lrNow);
          // one read-back a batch (a GPU waits for each): the loss and the hit count together, the count exact in float32
          const both = tf.tidy(() => tf.stack([g!.loss, tf.cast(g!.hits, 'float32')]));
          try {
            const [l, h] = await readBack(both.data(), 'the linear probe');
            // a non-finite loss leaves the head non-finite for good: the rest of the epoch would only cost time
            if (!Number.isFinite(l)) throw new ProbeDiverged(epoch + 1, lrNow, `loss ${l}`);
            lossSum += l! * idx.length;
            correct += h!;
          } finally {
            both.dispose();
          }
          checkWebGpuErrors('the linear probe');
        } finally {
          for (const t of [x, yt, ...(g ? [g.loss, g.hits, g.dW, g.db] : [])]) t.dispose();
        }
        if (opts.check) {
          await new Promise<void>((r) => setImmediate(r));
          opts.check();
        }
      }
      if (!Number.isFinite(lossSum)) throw new ProbeDiverged(epoch + 1, lrNow, `loss ${lossSum / train.n}`); // finite batch losses summing past float64
      losses.push(lossSum / train.n);
      trainTop1.push((100 * correct) / train.n);
      opts.onEpoch?.({ epoch: epoch + 1, epochs, lr: lrNow, loss: lossSum / train.n, trainTop1: (100 * correct) / train.n, seconds: (performance.now() - t0) / 1000 });
    }
    // the losses are taken before each update: the last one can leave the head non-finite unseen
    const finite = tf.tidy(() => tf.logicalAnd(tf.all(tf.isFinite(head.weight)), tf.all(tf.isFinite(head.bias))));
    try {
      const [ok] = await readBack(finite.data(), 'the linear probe');
      if (!ok) throw new ProbeDiverged(epochs, probeLrAt(epochs - 1, { lr, epochs }), 'weights not finite after the last update');
    } finally {
      finite.dispose();
    }
  } catch (e) {
    head.dispose();
    throw e;
  } finally {
    sgd.dispose();
  }
  return { head, losses, trainTop1, lr };
}

/** Top-1 / top-5 (%) of the head on test features. */
export async function evaluateProbe(head: LinearHead, features: tf.Tensor2D, labels: Int32Array, numClasses: number, batch = 4096): Promise<{ top1: number; top5: number; n: number }> {
  const n = features.shape[0];
  const scores = new Float64Array(n * numClasses);
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    const l = tf.tidy(() => head.logits(tf.slice(features, [s, 0], [e - s, -1]) as tf.Tensor2D));
    try {
      scores.set(await readBack(l.data(), "the linear probe's evaluation"), s * numClasses);
      checkWebGpuErrors("the linear probe's evaluation");
    } finally {
      l.dispose();
    }
  }
  return topkAccuracy(scores, labels, numClasses);
}

/** Train on `train`, evaluate on the test features. */
export async function linearProbe(
  train: ProbeTrainSource,
  test: { features: tf.Tensor2D; labels: Int32Array },
  opts: ProbeOptions,
): Promise<ProbeResult> {
  const dim = test.features.shape[1];
  const { head, losses, trainTop1, lr } = await trainLinearProbe(train, dim, opts);
  try {
    const r = await evaluateProbe(head, test.features, test.labels, opts.numClasses);
    return { ...r, lr, epochs: opts.epochs, losses, trainTop1 };
  } finally {
    head.dispose();
  }
}
