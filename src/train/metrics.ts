/** Per-group gradient norms and the metrics file. */
import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../engine/files.ts';

export type MetricRow = Record<string, number | null>;

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
      const inf = tf.max(tf.stack(gs.map((g) => tf.max(tf.abs(g)))));
      const sq = tf.addN(gs.map((g) => tf.sum(tf.square(g))));
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

export function appendMetric(path: string, row: MetricRow): void {
  appendFileSync(path, `${JSON.stringify(row, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}\n`);
}

/** Read metrics.jsonl; a torn last line (a killed process) is dropped. Non-finite values are stored as strings. */
export function readMetrics(path: string): MetricRow[] {
  if (!existsSync(path)) return [];
  const rows: MetricRow[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const obj = JSON.parse(line) as Record<string, unknown>;
      const row: MetricRow = {};
      for (const [k, v] of Object.entries(obj)) row[k] = typeof v === 'string' ? Number(v) : (v as number | null);
      rows.push(row);
    } catch {
      /* torn line */
    }
  }
  return rows;
}

/** Keep the rows of steps <= step (resume from a checkpoint at `step`). */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const keep = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false;
      }
    });
  writeFileAtomic(path, keep.length ? `${keep.join('\n')}\n` : '');
}
