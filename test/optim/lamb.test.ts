import '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { assertClose, disposeAll, norm, tensors, values, variables } from './util.ts';

const cfg: OptimizerConfig = {
  name: 'lamb', weightDecay: 0.1, betas: [0.9, 0.999], eps: 0.01, momentum: 0, trustCoefficient: 0,
};
const ndimOf = (name: string) => (name === 'W' ? 2 : 1);

const P0 = { W: [0.5, -1.0, 2.0, 0.25], b: [0.0, -0.5] };
const G1 = { W: [0.1, -0.3, 0.05, 2.0], b: [0.4, 0.0] };

const params = (p = P0) => variables({ W: [[2, 2], p.W], b: [[2], p.b] });
const grads = (g = G1) => tensors({ W: [[2, 2], g.W], b: [[2], g.b] });

/**
 * One LAMB step at t = 1 in float64: the Adam direction is a = g/(|g| + eps) (m̂ = g, sqrt(v̂) = |g|),
 * u = a + wd·p, r = ‖p‖/‖u‖ (1 if a norm is 0), p ← p − lr·r·u.
 */
function lambStep1(p: number[], g: number[], lr: number, wd: number, trust: boolean): number[] {
  const u = g.map((gi, i) => gi / (Math.abs(gi) + 0.01) + wd * p[i]!);
  const r = trust && norm(p) > 0 && norm(u) > 0 ? norm(p) / norm(u) : 1;
  return p.map((pi, i) => pi - lr * r * u[i]!);
}

/**
 * timm's `Lamb.step` (timm/optim/lamb.py, no clipping, always_adapt off) in float64 over several steps: moments,
 * bias corrections at t, u = m̂/(sqrt(v̂) + eps) + wd·p, trust ‖p‖/‖u‖ where both norms are > 0.
 */
function lambSteps(p0: number[], gs: number[][], lrs: number[], wd: number, eps: number, [b1, b2]: [number, number]): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  gs.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
    }
    const u = p.map((pi, i) => m[i]! / (1 - b1 ** t) / (Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** t) + eps) + wd * pi);
    const r = wd !== 0 && norm(p) > 0 && norm(u) > 0 ? norm(p) / norm(u) : 1;
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - lrs[k]! * r * u[i]!;
  });
  return p;
}

describe('LAMB', () => {
  it('three steps against timm\'s step: the bias corrections at t = 2 and 3, the moments carried', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const gs = [G1, { W: [-0.2, 0.1, 0.3, -1.0], b: [0.1, 0.2] }, { W: [0.05, 0.05, -0.4, 0.5], b: [-0.3, 0.1] }];
    const lrs = [0.1, 0.05, 0.02];
    gs.forEach((g, k) => {
      const gt = grads(g);
      opt.step(p, gt, lrs[k]!);
      disposeAll(gt);
    });
    for (const name of ['W', 'b'] as const) {
      const want = lambSteps(P0[name], gs.map((g) => g[name]), lrs, 0.1, 0.01, [0.9, 0.999]);
      assertClose(p.get(name)!, want, name, { rtol: 1e-5, atol: 1e-6 });
    }
    assert.deepEqual(opt.stateJson(), { name: 'lamb', stepCount: 3, steps: { W: 3, b: 3 } });
    disposeAll(p);
    opt.dispose();
  });

  it('trust ratio 1 when the decayed update is exactly 0 with p and wd not 0 (not ‖p‖/0)', () => {
    // betas 0: m̂ = g and sqrt(v̂) = |g| exactly; g = 0.5, eps 0.5: m̂/(sqrt(v̂) + eps) = 0.5, which wd·p = 0.5·(−1) cancels
    const opt = createOptimizer({ ...cfg, betas: [0, 0], eps: 0.5, weightDecay: 0.5 }, ndimOf);
    const p = params({ W: [-1, -1, -1, -1], b: [-1, -1] });
    const g = grads({ W: [0.5, 0.5, 0.5, 0.5], b: [0.5, 0.5] });
    opt.step(p, g, 0.1);
    assert.deepEqual([values(p.get('W')!), values(p.get('b')!)], [[-1, -1, -1, -1], [-1, -1]]);
    disposeAll(p, g);
    opt.dispose();
  });

  it('one step: trust ratio ‖p‖/‖u‖ on the weight and on the bias', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g = grads();
    opt.step(p, g, 0.1);
    // W: u = [0.1/0.11 + 0.05, −0.3/0.31 − 0.1, 0.05/0.06 + 0.2, 2/2.01 + 0.025], ‖p‖ = sqrt(5.3125)
    assertClose(p.get('W')!, lambStep1(P0.W, G1.W, 0.1, 0.1, true), 'W');
    // b: u = [0.4/0.41 + 0, 0 − 0.05], ‖p‖ = 0.5
    assertClose(p.get('b')!, lambStep1(P0.b, G1.b, 0.1, 0.1, true), 'b');
    assertClose(opt.stateTensors().get('W.exp_avg')!, G1.W.map((x) => 0.1 * x), 'exp_avg', { atol: 0 });
    assertClose(opt.stateTensors().get('W.exp_avg_sq')!, G1.W.map((x) => 0.001 * x * x), 'exp_avg_sq', { atol: 0 });
    assert.deepEqual(opt.stateJson(), { name: 'lamb', stepCount: 1, steps: { W: 1, b: 1 } });
    disposeAll(p, g);
    opt.dispose();
  });

  it('lambExcludeBiasNorm: ndim ≤ 1 gets no decay and trust 1 (by PyTorch ndim, not tfjs rank)', () => {
    const opt = createOptimizer({ ...cfg, lambExcludeBiasNorm: true }, (n) => (n === 'W' ? 2 : 1));
    // b2d is stored [1, 2] in tfjs but is a bias in PyTorch terms
    const p = variables({ W: [[2, 2], P0.W], b: [[2], P0.b], b2d: [[1, 2], P0.b] });
    const g = tensors({ W: [[2, 2], G1.W], b: [[2], G1.b], b2d: [[1, 2], G1.b] });
    opt.step(p, g, 0.1);
    assertClose(p.get('W')!, lambStep1(P0.W, G1.W, 0.1, 0.1, true), 'W');
    // p − lr·g/(|g| + eps) = [0 − 0.1·0.4/0.41, −0.5 − 0]
    const b = [-(0.1 * 0.4) / 0.41, -0.5];
    assertClose(p.get('b')!, b, 'b');
    assertClose(p.get('b2d')!, b, 'b2d');
    disposeAll(p, g);
    opt.dispose();
  });

  it('weight decay 0: no parameter is adapted (timm: `weight_decay != 0 or always_adapt`), Adam with clipping', () => {
    const opt = createOptimizer({ ...cfg, weightDecay: 0 }, ndimOf);
    const p = params();
    const g = grads();
    opt.step(p, g, 0.1);
    // u = g/(|g| + eps), r = 1 (with the trust ratio W would move ‖p‖/‖u‖ = 1.24 times as far)
    assertClose(p.get('W')!, lambStep1(P0.W, G1.W, 0.1, 0, false), 'W');
    assertClose(p.get('b')!, lambStep1(P0.b, G1.b, 0.1, 0, false), 'b');
    disposeAll(p, g);
    opt.dispose();
  });

  it('lambMaxGradNorm clips by the global gradient norm', () => {
    const opt = createOptimizer({ ...cfg, lambMaxGradNorm: 0.5 }, ndimOf);
    const p = params();
    const g = grads();
    opt.step(p, g, 0.1);
    // ‖g‖² = 0.01 + 0.09 + 0.0025 + 4 + 0.16 + 0 = 4.2625; g ← g / (sqrt(4.2625)/0.5)
    const c = Math.sqrt(4.2625) / 0.5;
    const gc = { W: G1.W.map((x) => x / c), b: G1.b.map((x) => x / c) };
    assertClose(opt.stateTensors().get('W.exp_avg')!, gc.W.map((x) => 0.1 * x), 'exp_avg', { atol: 0 });
    assertClose(p.get('W')!, lambStep1(P0.W, gc.W, 0.1, 0.1, true), 'W');
    assertClose(p.get('b')!, lambStep1(P0.b, gc.b, 0.1, 0.1, true), 'b');
    assert.deepEqual(values(g.get('W')), Array.from(new Float32Array(G1.W)), 'grads untouched');
    opt.dispose();

    // below the threshold nothing is scaled: sqrt(4.2625)/100 < 1
    const loose = createOptimizer({ ...cfg, lambMaxGradNorm: 100 }, ndimOf);
    loose.step(p, g, 0.1);
    assertClose(loose.stateTensors().get('W.exp_avg')!, G1.W.map((x) => 0.1 * x), 'exp_avg unclipped', { atol: 0 });
    disposeAll(p, g);
    loose.dispose();
  });

  it('trust ratio is 1 when ‖p‖ = 0, and when the update is 0', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params({ W: [0, 0, 0, 0], b: [0.3, -0.5] });
    const g = grads({ W: G1.W, b: [0, 0] });
    opt.step(p, g, 0.1);
    // W: u = g/(|g| + eps) + 0.1·0, r = 1 ⇒ p = −0.1·u
    assertClose(p.get('W')!, G1.W.map((x) => (-0.1 * x) / (Math.abs(x) + 0.01)), 'W');
    // b: u = 0 + 0.1·p ≠ 0, r = ‖p‖/‖0.1·p‖ = 10 ⇒ p − 0.1·10·0.1·p = 0.9·p
    assertClose(p.get('b')!, [0.3 * 0.9, -0.5 * 0.9], 'b');
    opt.dispose();

    const noDecay = createOptimizer({ ...cfg, weightDecay: 0 }, ndimOf);
    noDecay.step(p, g, 0.1); // b: u = 0 ⇒ r = 1, not 0/0
    assertClose(p.get('b')!, [0.3 * 0.9, -0.5 * 0.9], 'b unchanged');
    disposeAll(p, g);
    noDecay.dispose();
  });
});
