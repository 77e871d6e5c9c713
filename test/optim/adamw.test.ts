import '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { assertClose, disposeAll, tensors, values, variables } from './util.ts';

// Large lr·wd and eps so that every term of the rule moves the result well above float32 noise.
const cfg: OptimizerConfig = {
  name: 'adamw', weightDecay: 0.5, betas: [0.9, 0.999], eps: 0.01, momentum: 0, trustCoefficient: 0,
};
const ndimOf = (name: string) => (name === 'W' ? 2 : 1);

const P0 = { W: [0.5, -1.0, 2.0, 0.25], b: [0.0, -0.5] };
const G1 = { W: [0.1, -0.3, 0.05, 2.0], b: [0.4, 0.0] };
const G2 = { W: [-0.2, 0.1, 0.3, -1.0], b: [0.1, 0.3] };

const params = () => variables({ W: [[2, 2], P0.W], b: [[2], P0.b] });
const grads = (g: typeof G1) => tensors({ W: [[2, 2], g.W], b: [[2], g.b] });

describe('AdamW (torch.optim.AdamW)', () => {
  it('first step: p·(1 − lr·wd) − lr·g/(|g| + eps), decay on the bias too', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g = grads(G1);
    opt.step(p, g, 0.1);
    // t = 1: m/(1−β1) = g and sqrt(v)/sqrt(1−β2) = |g|, so the step is lr·g/(|g| + eps); 1 − lr·wd = 0.95
    assertClose(p.get('W')!, [
      0.5 * 0.95 - (0.1 * 0.1) / (0.1 + 0.01), // 0.384090909
      -1.0 * 0.95 + (0.1 * 0.3) / (0.3 + 0.01), // -0.853225806
      2.0 * 0.95 - (0.1 * 0.05) / (0.05 + 0.01), // 1.816666667
      0.25 * 0.95 - (0.1 * 2.0) / (2.0 + 0.01), // 0.137997512
    ], 'W');
    // zero gradient: only the decay (and no 0/0 thanks to eps)
    assertClose(p.get('b')!, [0 - (0.1 * 0.4) / (0.4 + 0.01), -0.5 * 0.95], 'b');
    const s = opt.stateTensors();
    assertClose(s.get('W.exp_avg')!, G1.W.map((x) => 0.1 * x), 'exp_avg', { atol: 0 }); // (1 − β1)·g
    assertClose(s.get('W.exp_avg_sq')!, G1.W.map((x) => 0.001 * x * x), 'exp_avg_sq', { atol: 0 }); // (1 − β2)·g²
    assert.equal(opt.stepCount, 1);
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 1, steps: { W: 1, b: 1 } });
    assert.ok(!g.get('W')!.isDisposed, 'grads are left to the caller');
    disposeAll(p, g);
    opt.dispose();
  });

  it('second step uses the t = 2 bias corrections', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g1 = grads(G1);
    const g2 = grads(G2);
    opt.step(p, g1, 0.1);
    const p1 = values(p.get('W'));
    opt.step(p, g2, 0.05);
    // bc1 = 1 − 0.9² = 0.19, bc2 = 1 − 0.999² = 0.001999; lr = 0.05 so 1 − lr·wd = 0.975
    const expected = P0.W.map((_, i) => {
      const m = 0.9 * (0.1 * G1.W[i]!) + 0.1 * G2.W[i]!;
      const v = 0.999 * (0.001 * G1.W[i]! ** 2) + 0.001 * G2.W[i]! ** 2;
      const denom = Math.sqrt(v) / Math.sqrt(0.001999) + 0.01;
      return p1[i]! * 0.975 - ((0.05 / 0.19) * m) / denom;
    });
    assertClose(p.get('W')!, expected, 'W after step 2');
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 2, steps: { W: 2, b: 2 } });
    disposeAll(p, g1, g2);
    opt.dispose();
  });

  it('a step at lr = 0 leaves p unchanged but advances the moments and t', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g1 = grads(G1);
    const g2 = grads(G2);
    opt.step(p, g1, 0);
    assert.deepEqual(values(p.get('W')), P0.W);
    assertClose(opt.stateTensors().get('W.exp_avg')!, G1.W.map((x) => 0.1 * x), 'exp_avg', { atol: 0 });
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 1, steps: { W: 1, b: 1 } });
    opt.step(p, g2, 0.1);
    // t = 2 corrections on moments that include g1; p was not decayed at lr = 0
    const expected = P0.W.map((p0, i) => {
      const m = 0.9 * (0.1 * G1.W[i]!) + 0.1 * G2.W[i]!;
      const v = 0.999 * (0.001 * G1.W[i]! ** 2) + 0.001 * G2.W[i]! ** 2;
      return p0 * 0.95 - ((0.1 / 0.19) * m) / (Math.sqrt(v) / Math.sqrt(0.001999) + 0.01);
    });
    assertClose(p.get('W')!, expected, 'W');
    disposeAll(p, g1, g2);
    opt.dispose();
  });

  it('updates only parameters that have a gradient', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g = tensors({ W: [[2, 2], G1.W], other: [[1], [1]] });
    opt.step(p, g, 0.1);
    assert.deepEqual(values(p.get('b')), P0.b);
    assert.deepEqual([...opt.stateTensors().keys()], ['W.exp_avg', 'W.exp_avg_sq']);
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 1, steps: { W: 1 } });
    disposeAll(p, g);
    opt.dispose();
  });

  it('rejects a gradient of the wrong shape', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = params();
    const g = tensors({ W: [[4], G1.W] });
    assert.throws(() => opt.step(p, g, 0.1), /gradient of 'W' has shape \[4\], parameter \[2, 2\]/);
    disposeAll(p, g);
    opt.dispose();
  });
});
