/**
 * Weighted kNN classifier on L2-normalised features (InstDisc / the MoCo CIFAR demo): cosine similarity,
 * the k nearest bank entries vote for their class with weight exp(sim / t) (computed as exp((sim - max sim) / t),
 * the same ranking without overflow); top-1 and top-5 of the votes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkWebGpuErrors, readBack } from '../engine/webgpu.ts';

export interface KnnOptions {
  k: number;
  t: number;
  numClasses: number;
  /** queries per chunk (bounds the [chunk, bank] similarity matrix) */
  chunk?: number;
}

export interface KnnResult {
  top1: number;
  top5: number;
  n: number;
}

/**
 * Class scores for each query, [Q, numClasses], row-major. Features need not be normalised. `voted`, when given
 * ([Q, numClasses]), is set to 1 where a neighbour voted for the class (its weight may underflow to 0 at a small t).
 */
export async function knnScores(bank: tf.Tensor2D, bankLabels: Int32Array, queries: tf.Tensor2D, opts: KnnOptions, voted?: Uint8Array): Promise<Float64Array> {
  const [nBank] = bank.shape;
  const [nq] = queries.shape;
  if (bankLabels.length !== nBank) throw new Error(`kNN: ${bankLabels.length} bank labels for ${nBank} bank features`);
  const C = opts.numClasses;
  // a label past the classes would vote in the next query's row
  const bad = bankLabels.findIndex((y) => y < 0 || y >= C);
  if (bad >= 0) throw new Error(`kNN: bank label ${bankLabels[bad]} at ${bad} is not a class of ${C} (0-${C - 1})`);
  const k = Math.min(opts.k, nBank);
  const chunk = opts.chunk ?? Math.max(1, Math.floor(4_000_000 / Math.max(1, nBank)));
  const scores = new Float64Array(nq * C);
  const bankN = tf.tidy(() => l2normalize(bank));
  try {
    for (let s = 0; s < nq; s += chunk) {
      const e = Math.min(nq, s + chunk);
      const [vals, idx] = tf.tidy(() => {
        const q = l2normalize(tf.slice(queries, [s, 0], [e - s, -1]));
        const sim = tf.matMul(q, bankN, false, true);
        const { values, indices } = tf.topk(sim, k, true);
        return [values, indices];
      });
      let v: Float32Array | Int32Array | Uint8Array;
      let ix: Float32Array | Int32Array | Uint8Array;
      try {
        v = await readBack(vals.data(), 'the kNN evaluation');
        ix = await readBack(idx.data(), 'the kNN evaluation');
        checkWebGpuErrors('the kNN evaluation');
      } finally {
        // also when a read or the device fails: nothing is left behind
        vals.dispose();
        idx.dispose();
      }
      for (let i = 0; i < e - s; i++) {
        const row = (s + i) * C;
        // exp(sim / t) scaled by exp(-max sim / t) per query: the same ranking, no overflow at small t
        const top = v[i * k]!;
        for (let j = 0; j < k; j++) {
          const label = bankLabels[ix[i * k + j]!]!;
          scores[row + label]! += Math.exp((v[i * k + j]! - top) / opts.t);
          if (voted) voted[row + label] = 1;
        }
      }
    }
  } finally {
    bankN.dispose();
  }
  return scores;
}

function l2normalize(x: tf.Tensor2D): tf.Tensor2D {
  const norm = tf.maximum(tf.norm(x, 'euclidean', 1, true), 1e-12);
  return tf.div(x, norm) as tf.Tensor2D;
}

/**
 * Top-1 / top-5 accuracy (in %) of score rows against labels; ties go to the lower class index. `voted` (a
 * kNN's, knnScores): a class no neighbour voted for is no hit: with fewer than 5 classes voted for (k=1), the
 * lowest-numbered unvoted classes counted as top-5 hits.
 */
export function topkAccuracy(scores: Float64Array, labels: Int32Array, numClasses: number, opts: { voted?: Uint8Array } = {}): KnnResult {
  const n = labels.length;
  let top1 = 0;
  let top5 = 0;
  for (let i = 0; i < n; i++) {
    const row = scores.subarray(i * numClasses, (i + 1) * numClasses);
    const y = labels[i]!;
    // rank of the true class = number of classes scored strictly higher (or equal with a lower index);
    // a query with a NaN score (a diverged encoder or probe: NaN features or logits) is a miss
    const got = opts.voted?.subarray(i * numClasses, (i + 1) * numClasses);
    let rank = row.some(Number.isNaN) || (got && !got[y]) ? Infinity : 0;
    for (let c = 0; c < numClasses && rank !== Infinity; c++) {
      // a class no neighbour voted for ranks below every voted one, whatever its (underflowed) score
      if (got && !got[c]) continue;
      if (row[c]! > row[y]! || (row[c] === row[y] && c < y)) rank++;
    }
    if (rank === 0) top1++;
    if (rank < 5) top5++;
  }
  return { top1: (100 * top1) / Math.max(1, n), top5: (100 * top5) / Math.max(1, n), n };
}

export async function knnAccuracy(
  bank: tf.Tensor2D,
  bankLabels: Int32Array,
  queries: tf.Tensor2D,
  queryLabels: Int32Array,
  opts: KnnOptions,
): Promise<KnnResult> {
  const voted = new Uint8Array(queries.shape[0] * opts.numClasses);
  const scores = await knnScores(bank, bankLabels, queries, opts, voted);
  return topkAccuracy(scores, queryLabels, opts.numClasses, { voted });
}
