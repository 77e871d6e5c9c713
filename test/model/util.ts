import assert from 'node:assert/strict';
import { tf } from '../helpers/tf.ts';
import { Rng } from '../../src/engine/rng.ts';
import { modelConfig, type MocoModelConfig } from '../../src/model/archs.ts';
import type { MoCoViT } from '../../src/model/moco.ts';
import type { RefState } from './reference.ts';

/** vit-test (dim 8, depth 2, 2 heads, 8 px, patch 4) with small heads. */
export function tinyConfig(over: Partial<MocoModelConfig> = {}): MocoModelConfig {
  return modelConfig('vit-test', { projHidden: 16, projDim: 8, predHidden: 16, temperature: 0.2, patchProj: 'learned', ...over });
}

export function randn(seed: number | string, n: number, std = 1): Float32Array {
  return new Rng(0, 'test', seed).fillNormal(new Float32Array(n), 0, std);
}

export function images(seed: number | string, B: number, S: number, C = 3): { t: tf.Tensor4D; data: Float64Array } {
  const v = randn(`img-${seed}`, B * S * S * C);
  return { t: tf.tensor4d(v, [B, S, S, C]), data: Float64Array.from(v) };
}

/** Every state-dict tensor of the model in PyTorch layout, float64. */
export function torchState(model: MoCoViT): RefState {
  const S: RefState = new Map();
  for (const [name, v] of model.vars) {
    const t = model.toTorch(name, v);
    S.set(name, { data: Float64Array.from(t.dataSync()), shape: t.shape.slice() });
    t.dispose();
  }
  return S;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}[${i}]: got ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** Central differences of a float64 function. */
export function numGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const fp = f(x);
    x[i] = x0 - h;
    const fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Add noise to every parameter (not buffers) so biases, LN/BN affine and base≠momentum all matter. */
export function perturbAll(model: MoCoViT, std: number): void {
  let i = 0;
  const buffers = new Set(model.bufferNames());
  tf.tidy(() => {
    for (const [name, v] of model.vars) {
      if (buffers.has(name) || name.endsWith('pos_embed')) continue;
      v.assign(tf.add(v, tf.tensor(randn(`perturb-${i++}`, v.size, std), v.shape)));
    }
  });
}
