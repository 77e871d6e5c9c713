import '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { assertClose, disposeAll, tensors, variables } from './util.ts';

const cfg: OptimizerConfig = {
  name: 'sgd', weightDecay: 0.5, betas: [0.9, 0.999], eps: 0, momentum: 0.9, trustCoefficient: 0,
};
const ndimOf = () => 1;

describe('SGD with momentum (torch.optim.SGD)', () => {
  it('two steps: buf = d, then 0.9·buf + d', () => {
    const opt = createOptimizer(cfg, ndimOf);
    const p = variables({ w: [[3], [0.5, -1.0, 2.0]] });
    const g1 = tensors({ w: [[3], [0.1, -0.3, 0.05]] });
    const g2 = tensors({ w: [[3], [-0.2, 0.1, 0.0]] });
    opt.step(p, g1, 0.1);
    // d = g + 0.5·p = [0.35, −0.8, 1.05] = buf; p = p − 0.1·d
    assertClose(opt.stateTensors().get('w.momentum_buffer')!, [0.35, -0.8, 1.05], 'buf 1');
    assertClose(p.get('w')!, [0.465, -0.92, 1.895], 'w 1');
    opt.step(p, g2, 0.2);
    // d = [−0.2 + 0.2325, 0.1 − 0.46, 0 + 0.9475]; buf = [0.315 + 0.0325, −0.72 − 0.36, 0.945 + 0.9475]
    assertClose(opt.stateTensors().get('w.momentum_buffer')!, [0.3475, -1.08, 1.8925], 'buf 2');
    // p = [0.465 − 0.2·0.3475, −0.92 + 0.2·1.08, 1.895 − 0.2·1.8925]
    assertClose(p.get('w')!, [0.3955, -0.704, 1.5165], 'w 2');
    assert.deepEqual(opt.stateJson(), { name: 'sgd', stepCount: 2 });
    disposeAll(p, g1, g2);
    opt.dispose();
  });

  it('momentum 0 keeps no buffer', () => {
    const opt = createOptimizer({ ...cfg, momentum: 0 }, ndimOf);
    const p = variables({ w: [[3], [0.5, -1.0, 2.0]] });
    const g = tensors({ w: [[3], [0.1, -0.3, 0.05]] });
    opt.step(p, g, 0.1);
    opt.step(p, g, 0.1);
    // p1 = [0.465, −0.92, 1.895]; d = g + 0.5·p1 = [0.3325, −0.76, 0.9975]
    assertClose(p.get('w')!, [0.465 - 0.03325, -0.92 + 0.076, 1.895 - 0.09975], 'w');
    assert.equal(opt.stateTensors().size, 0);
    disposeAll(p, g);
    opt.dispose();
  });
});
