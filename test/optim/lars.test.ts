import '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { assertClose, disposeAll, norm, tensors, values, variables } from './util.ts';

// trust coefficient 0.1 (official 0.001) so that the scaled step is large against float32 noise
const cfg: OptimizerConfig = {
  name: 'lars', weightDecay: 0.1, betas: [0.9, 0.999], eps: 0, momentum: 0.9, trustCoefficient: 0.1,
};
// PyTorch ndim: W (2-D) and Wflat (stored flat in tfjs, 2-D in PyTorch) are weights; b is a bias
const ndimOf = (name: string) => (name === 'b' ? 1 : 2);

const P0 = { W: [0.5, -1.0, 2.0, 0.25], b: [0.3, -0.5] };
const G1 = { W: [0.1, -0.3, 0.05, 2.0], b: [0.4, -0.2] };
const G2 = { W: [-0.2, 0.1, 0.3, -1.0], b: [0.1, 0.1] };

describe('LARS (moco/optimizer.py)', () => {
  it('two steps: trust-scaled decay on weights, plain momentum SGD on biases', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = variables({ W: [[2, 2], P0.W], Wflat: [[4], P0.W], b: [[2], P0.b] });
    const g1 = tensors({ W: [[2, 2], G1.W], Wflat: [[4], G1.W], b: [[2], G1.b] });
    const g2 = tensors({ W: [[2, 2], G2.W], Wflat: [[4], G2.W], b: [[2], G2.b] });

    opt.step(p, g1, 0.5);
    // W: dp = g + 0.1·p = [0.15, −0.4, 0.25, 2.025]; ‖p‖² = 5.3125, ‖dp‖² = 4.345625
    const dp1 = [0.15, -0.4, 0.25, 2.025];
    const q1 = (0.1 * Math.sqrt(5.3125)) / Math.sqrt(4.345625);
    const mu1 = dp1.map((x) => q1 * x); // mu = 0.9·0 + q·dp
    const w1 = P0.W.map((x, i) => x - 0.5 * mu1[i]!);
    assertClose(p.get('W')!, w1, 'W step 1');
    assertClose(p.get('Wflat')!, w1, 'Wflat step 1');
    assertClose(opt.stateTensors().get('W.mu')!, mu1, 'mu step 1');
    // b: no decay, no scaling: mu = g, p = [0.3 − 0.5·0.4, −0.5 + 0.5·0.2]
    assertClose(p.get('b')!, [0.1, -0.4], 'b step 1');

    opt.step(p, g2, 0.25);
    const dp2 = G2.W.map((x, i) => x + 0.1 * w1[i]!);
    const q2 = (0.1 * norm(w1)) / norm(dp2);
    const mu2 = mu1.map((m, i) => 0.9 * m + q2 * dp2[i]!);
    const w2 = w1.map((x, i) => x - 0.25 * mu2[i]!);
    assertClose(p.get('W')!, w2, 'W step 2');
    assertClose(p.get('Wflat')!, w2, 'Wflat step 2');
    // b: mu = 0.9·[0.4, −0.2] + [0.1, 0.1] = [0.46, −0.08]; p = [0.1 − 0.25·0.46, −0.4 + 0.25·0.08]
    assertClose(opt.stateTensors().get('b.mu')!, [0.46, -0.08], 'b.mu');
    assertClose(p.get('b')!, [-0.015, -0.38], 'b step 2');
    assert.deepEqual(opt.stateJson(), { name: 'lars', stepCount: 2 });
    disposeAll(p, g1, g2);
    opt.dispose();
  });

  it('q = 1 when ‖p‖ = 0, and when ‖dp‖ = 0', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = variables({ W: [[2, 2], [0, 0, 0, 0]] });
    const g = tensors({ W: [[2, 2], G1.W] });
    opt.step(p, g, 0.5);
    // dp = g + 0.1·0 = g, q = 1 ⇒ p = −0.5·g
    assertClose(p.get('W')!, G1.W.map((x) => -0.5 * x), 'W');
    disposeAll(p, g);
    opt.dispose();

    const noDecay = createOptimizer({ ...cfg, weightDecay: 0 }, ndimOf);
    const p2 = variables({ W: [[2, 2], P0.W] });
    const zero = tensors({ W: [[2, 2], [0, 0, 0, 0]] });
    noDecay.step(p2, zero, 0.5); // dp = 0 ⇒ q = 1 (not NaN) and p stays
    assert.deepEqual(values(p2.get('W')), P0.W);
    disposeAll(p2, zero);
    noDecay.dispose();
  });
});
