/** Helpers shared by the optimizer tests. */
import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';

/**
 * float32 results against float64 references: |a − e| ≤ rtol·|e| + atol. The defaults allow a few float32
 * roundings; every formula slip the tests guard against moves the values by far more.
 */
export function assertClose(
  actual: tf.Tensor | ArrayLike<number>,
  expected: readonly number[],
  what = '',
  { rtol = 2e-6, atol = 1e-7 }: { rtol?: number; atol?: number } = {},
): void {
  const a = Array.from(actual instanceof tf.Tensor ? actual.dataSync() : actual);
  assert.equal(a.length, expected.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i]! - expected[i]!) <= rtol * Math.abs(expected[i]!) + atol;
    assert.ok(ok, `${what}[${i}]: got ${a[i]}, expected ${expected[i]} (all: ${a.join(', ')})`);
  }
}

export function variables(spec: Record<string, [number[], number[]]>): Map<string, tf.Variable> {
  return new Map(Object.entries(spec).map(([k, [shape, values]]) => [k, tf.variable(tf.tensor(values, shape), true)]));
}

export function tensors(spec: Record<string, [number[], number[]]>): Map<string, tf.Tensor> {
  return new Map(Object.entries(spec).map(([k, [shape, values]]) => [k, tf.tensor(values, shape)]));
}

export function disposeAll(...maps: Array<Map<string, tf.Tensor>>): void {
  for (const m of maps) for (const t of m.values()) t.dispose();
}

export const values = (t: tf.Tensor | undefined): number[] => {
  assert.ok(t !== undefined, 'tensor missing');
  return Array.from(t.dataSync());
};

/** Euclidean norm in float64. */
export const norm = (xs: readonly number[]): number => Math.sqrt(xs.reduce((s, x) => s + x * x, 0));
