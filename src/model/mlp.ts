/**
 * `_build_mlp` of the official builder.py: Linear(bias=False) layers; hidden layers followed by
 * BatchNorm1d → ReLU, the last by BatchNorm1d(affine=False) when `lastBn`. Indices follow
 * nn.Sequential (Linear i, BN i+1, ReLU i+2), so names match the state dict.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ones, torchLinearDefault, zeros } from './init.ts';
import { linear, normalize, type NormStats } from './layers.ts';
import type { ParamSpec } from './params.ts';
import type { Params } from './vit.ts';

export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;

export interface MlpLayer {
  /** Sequential index of the Linear */
  linear: number;
  inDim: number;
  outDim: number;
  /** Sequential index of the BatchNorm1d, or null (last layer with lastBn = false) */
  bn: number | null;
  affine: boolean;
  relu: boolean;
}

export function buildMlp(numLayers: number, inputDim: number, mlpDim: number, outputDim: number, lastBn = true): MlpLayer[] {
  const layers: MlpLayer[] = [];
  let idx = 0;
  for (let l = 0; l < numLayers; l++) {
    const dim1 = l === 0 ? inputDim : mlpDim;
    const dim2 = l === numLayers - 1 ? outputDim : mlpDim;
    const hidden = l < numLayers - 1;
    const lin = idx++;
    const bn = hidden || lastBn ? idx++ : null;
    if (hidden) idx++; // ReLU
    layers.push({ linear: lin, inDim: dim1, outDim: dim2, bn, affine: hidden, relu: hidden });
  }
  return layers;
}

/** Parameters and BN buffers, state-dict order. */
export function mlpParamSpecs(layers: MlpLayer[]): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (const L of layers) {
    specs.push({
      name: `${L.linear}.weight`,
      torchShape: [L.outDim, L.inDim],
      layout: 'linear',
      buffer: false,
      init: (rng) => torchLinearDefault(rng, L.outDim, L.inDim),
    });
    if (L.bn === null) continue;
    const v = (suffix: string, init: (n: number) => Float32Array, buffer: boolean): ParamSpec => ({
      name: `${L.bn}.${suffix}`,
      torchShape: [L.outDim],
      layout: 'same',
      buffer,
      init: () => init(L.outDim),
    });
    if (L.affine) specs.push(v('weight', ones, false), v('bias', zeros, false));
    specs.push(v('running_mean', zeros, true), v('running_var', ones, true), {
      name: `${L.bn}.num_batches_tracked`,
      torchShape: [],
      layout: 'same',
      buffer: true,
      init: () => new Float32Array(1),
    });
  }
  return specs;
}

/** Batch statistics of one BatchNorm1d forward, for the running-buffer update. */
export interface BnRecord extends NormStats {
  /** relative name of the BN module (`1`, `4`, ...) */
  layer: string;
  /** batch size */
  n: number;
}

/** Train-mode forward (BN on batch statistics); each BN's statistics go to `sink` when given. */
export function mlpForward(x: tf.Tensor2D, layers: MlpLayer[], P: Params, sink: BnRecord[] | null): tf.Tensor2D {
  let h = x;
  for (const L of layers) {
    h = linear(h, P(`${L.linear}.weight`) as tf.Tensor2D);
    if (L.bn !== null) {
      const layer = String(L.bn);
      const onStats = sink ? (s: NormStats) => sink.push({ ...s, layer, n: h.shape[0] }) : undefined;
      if (h.shape[0] < 2) throw new Error('BatchNorm1d in train mode needs more than 1 sample per batch');
      h = L.affine
        ? normalize(h, 0, BN_EPS, P(`${layer}.weight`) as tf.Tensor1D, P(`${layer}.bias`) as tf.Tensor1D, onStats)
        : normalize(h, 0, BN_EPS, undefined, undefined, onStats);
    }
    if (L.relu) h = tf.relu(h);
  }
  return h;
}

/** The statistics of BatchNorm forwards whose update will not run (the step failed): freed. */
export function disposeBnRecords(records: BnRecord[]): void {
  for (const r of records) tf.dispose([r.mean, r.varBiased]);
}

/**
 * PyTorch's running-buffer update (momentum 0.1): running_mean ← 0.9·rm + 0.1·mean,
 * running_var ← 0.9·rv + 0.1·var_unbiased (var·n/(n−1)), num_batches_tracked += 1.
 * Disposes the record's tensors.
 */
export function applyBnRecord(rec: BnRecord, runningMean: tf.Variable, runningVar: tf.Variable, tracked: tf.Variable): void {
  tf.tidy(() => {
    const mom = BN_MOMENTUM;
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - mom), tf.mul(rec.mean, mom)));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - mom), tf.mul(rec.varBiased, (mom * rec.n) / (rec.n - 1))));
    tracked.assign(tf.add(tracked, 1));
  });
  rec.mean.dispose();
  rec.varBiased.dispose();
}
