/** Per-group gradient norms of a step and their metrics row (the file: src/runfolder/metrics.ts). */
import * as tf from '@tensorflow/tfjs-core';
import { fusedKernels, GRAD_STATS, hasKernel } from '../engine/webgpu-kernels.ts';
import { sumAll } from '../optim/optimizer.ts';
import type { MetricRow } from '../runfolder/metrics.ts';

/**
 * Loss and, per parameter group, the gradient's infinity norm (max |g|) and L2 norm, as one tensor
 * [loss, inf_0, l2_0, inf_1, l2_1, ...] so a step reads back once.
 */
export function gradStats(loss: tf.Scalar, grads: Map<string, tf.Tensor>, groups: ReadonlyMap<string, readonly string[]>): tf.Tensor1D {
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [tf.reshape(loss, [1])];
    for (const names of groups.values()) {
      const gs = names.map((n) => grads.get(n)).filter((g): g is tf.Tensor => g !== undefined);
      if (gs.length === 0) {
        parts.push(tf.zeros([2]));
        continue;
      }
      // one dispatch per gradient where the backend has moco3's kernel (webgpu: src/engine/webgpu-kernels.ts);
      // not packed: the kernel is one workgroup, and a packed group would add its squares in another order
      const fused = hasKernel(GRAD_STATS) ? (tf.stack(gs.map((g) => fusedKernels(GRAD_STATS, { x: g })![0]!)) as tf.Tensor2D) : null;
      const inf = fused ? tf.max(tf.slice(fused, [0, 0], [-1, 1])) : tf.max(tf.stack(gs.map((g) => tf.max(tf.abs(g)))));
      const sq = fused ? tf.sum(tf.slice(fused, [0, 1], [-1, 1])) : sumAll(gs.map((g) => tf.sum(tf.square(g))));
      parts.push(tf.reshape(inf, [1]), tf.reshape(tf.sqrt(sq), [1]));
    }
    return tf.concat(parts) as tf.Tensor1D;
  });
}

/** Names the values of gradStats: loss, grad_inf/<group>, grad_l2/<group>. */
export function statsToRow(values: ArrayLike<number>, groups: ReadonlyMap<string, readonly string[]>): MetricRow {
  const row: MetricRow = { loss: values[0]! };
  let i = 1;
  for (const g of groups.keys()) {
    row[`grad_inf/${g}`] = values[i]!;
    row[`grad_l2/${g}`] = values[i + 1]!;
    i += 2;
  }
  return row;
}
