import { tf } from '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptimizer, OptimizerStateError, type Optimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import { disposeAll, values, variables } from './util.ts';

const base = { weightDecay: 0.1, betas: [0.9, 0.999] as [number, number], eps: 1e-3, momentum: 0.9, trustCoefficient: 0.01 };
const configs: OptimizerConfig[] = [
  { name: 'adamw', ...base },
  { name: 'lamb', ...base, lambMaxGradNorm: 0.5, lambExcludeBiasNorm: true },
  { name: 'lars', ...base },
  { name: 'sgd', ...base },
];
const ndimOf = (name: string) => (name.endsWith('weight') ? 2 : 1);
const P0 = {
  'blocks.0.weight': [[3, 2], [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]],
  'blocks.0.bias': [[2], [0.3, -0.5]],
  'late.weight': [[2, 2], [1.0, 0.5, -0.5, 0.2]],
} as Record<string, [number[], number[]]>;

/** Gradients of step k; 'late.weight' gets none at step 1, so its own step count lags. */
function grads(k: number): Map<string, tf.Tensor> {
  const m = new Map<string, tf.Tensor>();
  for (const [name, [shape, v]] of Object.entries(P0)) {
    if (name === 'late.weight' && k === 1) continue;
    m.set(name, tf.tensor(v.map((x, i) => Math.sin(3 * k + i) * (1 + x)), shape));
  }
  return m;
}

function step(opt: Optimizer, p: Map<string, tf.Variable>, k: number): void {
  const g = grads(k);
  opt.step(p, g, 0.1 * k);
  disposeAll(g);
}

const snapshot = (p: Map<string, tf.Tensor>) => Object.fromEntries([...p].map(([k, v]) => [k, values(v)]));

describe('optimizer state round trip', () => {
  for (const cfg of configs) {
    it(`${cfg.name}: save after 2 steps, load into a fresh optimizer, 3rd step is identical`, () => {
      const a = createOptimizer(cfg, ndimOf);
      const pa = variables(P0);
      step(a, pa, 1);
      step(a, pa, 2);

      // through JSON and fresh tensors, as a checkpoint would
      const json = JSON.parse(JSON.stringify(a.stateJson())) as Record<string, unknown>;
      const saved = new Map([...a.stateTensors()].map(([k, t]) => [k, tf.tensor(t.dataSync(), t.shape)]));
      const pb = new Map([...pa].map(([k, v]) => [k, tf.variable(v.clone())]));
      const b = createOptimizer(cfg, ndimOf);
      b.loadState(saved, json, pb);
      disposeAll(saved); // loadState took copies
      assert.equal(b.stepCount, 2);
      assert.deepEqual(b.stateJson(), a.stateJson());
      if (cfg.name === 'adamw' || cfg.name === 'lamb') {
        assert.deepEqual(a.stateJson().steps, { 'blocks.0.weight': 2, 'blocks.0.bias': 2, 'late.weight': 1 });
      }

      // control: without the state the third step differs, so the comparison below can fail
      const c = createOptimizer(cfg, ndimOf);
      const pc = new Map([...pa].map(([k, v]) => [k, tf.variable(v.clone())]));
      step(c, pc, 3);

      step(a, pa, 3);
      step(b, pb, 3);
      assert.deepEqual(snapshot(pb), snapshot(pa));
      assert.deepEqual(snapshot(b.stateTensors()), snapshot(a.stateTensors()));
      assert.notDeepEqual(snapshot(pc), snapshot(pa));
      disposeAll(pa, pb, pc);
      a.dispose();
      b.dispose();
      c.dispose();
    });
  }

  it('rejects bad state with clear errors and keeps the old state', () => {
    const opt = createOptimizer(configs[0]!, ndimOf);
    const p = variables(P0);
    step(opt, p, 1);
    const good = opt.stateTensors();
    const json = opt.stateJson();
    const bias = tf.zeros([2]);
    const wrong = tf.zeros([3]);
    const load = (t: Map<string, tf.Tensor>, j: Record<string, unknown> = json, params?: Map<string, tf.Variable>) =>
      () => opt.loadState(t, j, params);

    assert.throws(load(good, { ...json, name: 'lars' }), /saved by optimizer 'lars', cannot load into 'adamw'/);
    assert.throws(load(new Map([['blocks.0.bias.mu', bias]])), /unexpected tensor 'blocks.0.bias.mu'.*exp_avg, exp_avg_sq/);
    assert.throws(load(new Map([['blocks.0.bias.exp_avg', bias]])), /'blocks.0.bias.exp_avg_sq' is missing/);
    assert.throws(
      load(new Map([['blocks.0.bias.exp_avg', bias], ['blocks.0.bias.exp_avg_sq', wrong]])),
      /'blocks.0.bias.exp_avg_sq' has shape \[3\]/,
    );
    assert.throws(
      load(new Map([['blocks.0.bias.exp_avg', wrong], ['blocks.0.bias.exp_avg_sq', wrong]]), { ...json, steps: { 'blocks.0.bias': 1 } }, p),
      /'blocks.0.bias' state has shape \[3\] but the parameter has \[2\]/,
    );
    assert.throws(
      load(new Map([['nope.exp_avg', bias], ['nope.exp_avg_sq', bias]]), { ...json, steps: { nope: 1 } }, p),
      /state for 'nope', which is not a parameter/,
    );
    assert.throws(load(good, { ...json, steps: {} }), /no step count for 'blocks.0.weight'/);
    assert.throws(load(good, { ...json, stepCount: -1 }), /stepCount must be a non-negative integer/);
    assert.ok([...opt.stateTensors().values()].every((t) => !t.isDisposed), 'old state kept');
    assert.equal(opt.stepCount, 1);

    // without params the shape check happens at the next step
    opt.loadState(new Map([['blocks.0.bias.exp_avg', wrong], ['blocks.0.bias.exp_avg_sq', wrong]]), {
      name: 'adamw', stepCount: 1, steps: { 'blocks.0.bias': 1 },
    });
    const g = grads(2);
    assert.throws(() => opt.step(p, g, 0.1), (e: unknown) =>
      e instanceof OptimizerStateError && /state 'blocks.0.bias.exp_avg' has shape \[3\] but parameter 'blocks.0.bias' has \[2\]/.test(e.message));
    disposeAll(p, g);
    bias.dispose();
    wrong.dispose();
    opt.dispose();
  });
});
