import { tf } from '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BaseOptimizer, createOptimizer, OptimizerStateError, type Optimizer, type OptimizerConfig } from '../../src/optim/index.ts';
import type { ParamGrad } from '../../src/optim/optimizer.ts';
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
    const kept = opt.stateTensors();
    assert.ok(good.size > 0);
    assert.deepEqual([...kept.keys()], [...good.keys()], 'old state kept');
    for (const [k, t] of kept) assert.ok(t === good.get(k) && !t.isDisposed, `old state kept: ${k}`);
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

  it('refuses step counts that no run could have saved, a slot of another dtype or name, and keeps the old state', () => {
    const opt = createOptimizer(configs[0]!, ndimOf);
    const p = variables(P0);
    step(opt, p, 1);
    step(opt, p, 2);
    const good = opt.stateTensors();
    const json = opt.stateJson();
    const refused = (t: Map<string, tf.Tensor>, j: Record<string, unknown>, re: RegExp) =>
      assert.throws(() => opt.loadState(t, j), (e: unknown) => e instanceof OptimizerStateError && re.test(e.message), re.source);
    refused(good, { ...json, stepCount: 1.5 }, /^adamw state: stepCount must be a non-negative integer, got 1\.5$/);
    refused(good, { ...json, steps: undefined }, /^adamw state: steps must be an object of per-parameter step counts$/);
    refused(good, { ...json, steps: [2, 2, 1] }, /^adamw state: steps must be an object of per-parameter step counts$/);
    refused(good, { ...json, steps: { ...(json.steps as object), 'late.weight': 0 } }, /^adamw state: steps\['late\.weight'\] must be a positive integer, got 0$/);
    refused(good, { ...json, steps: { ...(json.steps as object), 'late.weight': 3 } }, /^adamw state: steps\['late\.weight'\] = 3 exceeds stepCount 2$/);
    refused(good, { ...json, steps: { ...(json.steps as object), other: 1 } }, /^adamw state: steps\['other'\] given but its slot tensors are missing$/);
    const int = tf.zeros([2], 'int32');
    const f = tf.zeros([2]);
    refused(new Map([['blocks.0.bias.exp_avg', int], ['blocks.0.bias.exp_avg_sq', f]]), { name: 'adamw', stepCount: 1, steps: { 'blocks.0.bias': 1 } }, /^adamw state: 'blocks\.0\.bias\.exp_avg' has dtype int32, expected float32$/);
    // a slot with no parameter name before it
    refused(new Map([['.exp_avg', f], ['.exp_avg_sq', f]]), { name: 'adamw', stepCount: 1, steps: { '': 1 } }, /^adamw state: unexpected tensor '\.exp_avg'/);
    assert.equal(opt.stepCount, 2);
    assert.deepEqual(opt.stateJson(), json);
    assert.deepEqual(snapshot(opt.stateTensors()), snapshot(good));
    // the state of an optimizer saved before its first step (a checkpoint at step 0) loads, freeing the slots it replaces
    const held = tf.memory().numTensors;
    opt.loadState(new Map(), { name: 'adamw', stepCount: 0, steps: {} });
    assert.equal(tf.memory().numTensors, held - 6);
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 0, steps: {} });
    assert.equal(opt.stateTensors().size, 0);
    tf.dispose([int, f]);
    disposeAll(p);
    opt.dispose();
  });

  it('the state of LARS and SGD is its step count alone: no per-parameter steps saved', () => {
    for (const cfg of configs.filter((c) => c.name === 'lars' || c.name === 'sgd')) {
      const opt = createOptimizer(cfg, ndimOf);
      const p = variables(P0);
      step(opt, p, 1);
      step(opt, p, 2);
      assert.deepEqual(opt.stateJson(), { name: cfg.name, stepCount: 2 });
      disposeAll(p);
      opt.dispose();
    }
  });

  it('a step refuses a non-finite lr, a gradient not float32, and any use after dispose(), changing nothing', () => {
    const opt = createOptimizer(configs[0]!, ndimOf);
    const p = variables(P0);
    step(opt, p, 1);
    const before = snapshot(p);
    const state = snapshot(opt.stateTensors());
    const g = grads(2);
    for (const lr of [NaN, Infinity]) assert.throws(() => opt.step(p, g, lr), (e: unknown) => e instanceof RangeError && e.message === `adamw: lr must be a finite number, got ${lr}`);
    const gi = new Map([['blocks.0.bias', tf.tensor1d([1, 2], 'int32')]]);
    assert.throws(() => opt.step(p, gi, 0.1), /^Error: adamw: 'blocks\.0\.bias' must be float32 \(parameter float32, gradient int32\)$/);
    assert.deepEqual(snapshot(p), before);
    assert.deepEqual(snapshot(opt.stateTensors()), state);
    assert.equal(opt.stepCount, 1);
    // the map given out is a copy: changing it leaves the optimizer's own
    const given = opt.stateTensors();
    given.clear();
    assert.equal(opt.stateTensors().size, 4);
    opt.dispose();
    assert.throws(() => opt.step(p, g, 0.1), /^Error: adamw: step\(\) after dispose\(\)$/);
    assert.deepEqual(snapshot(p), before);
    disposeAll(p, g, gi);
  });
});

describe('optimizer config', () => {
  it('createOptimizer refuses settings outside their ranges, one line naming the setting, and takes those at the edges', () => {
    const refused = (cfg: OptimizerConfig, msg: string) =>
      assert.throws(() => createOptimizer(cfg, ndimOf), (e: unknown) => e instanceof RangeError && e.message === `optimizer config: ${msg}`, msg);
    const [adamw, lamb, lars, sgd] = configs as [OptimizerConfig, OptimizerConfig, OptimizerConfig, OptimizerConfig];
    refused({ ...adamw, name: 'adam' as OptimizerConfig['name'] }, "unknown optimizer 'adam' (one of adamw, lamb, lars, sgd)");
    for (const weightDecay of [-0.1, Infinity, NaN]) refused({ ...sgd, weightDecay }, `weightDecay must be >= 0, got ${weightDecay}`);
    for (const betas of [[1, 0.999], [0.9, 1], [0.9, 1.5], [-0.1, 0.9]] as [number, number][]) {
      for (const cfg of [adamw, lamb]) refused({ ...cfg, betas }, `betas must be in [0, 1), got [${betas}]`);
    }
    refused({ ...adamw, eps: -1e-8 }, 'eps must be >= 0, got -1e-8');
    refused({ ...lamb, lambMaxGradNorm: 0 }, 'lambMaxGradNorm must be > 0 or null, got 0');
    refused({ ...lars, trustCoefficient: 0 }, 'trustCoefficient must be > 0, got 0');
    for (const cfg of [lars, sgd]) refused({ ...cfg, momentum: -0.5 }, 'momentum must be >= 0, got -0.5');
    // the edges: no weight decay, betas and eps of 0, no clipping, no momentum
    const edges: OptimizerConfig[] = [
      { ...adamw, weightDecay: 0, betas: [0, 0], eps: 0 },
      { ...lamb, lambMaxGradNorm: null },
      { ...lamb, lambMaxGradNorm: undefined },
      { ...lars, momentum: 0 },
      { ...sgd, momentum: 0, weightDecay: 0 },
    ];
    for (const cfg of edges) createOptimizer(cfg, ndimOf).dispose();
  });
});

/** An optimizer that records what a packed group update would be given, and applies it: p - lr g, slots g and 2 g. */
class PackedProbe extends BaseOptimizer {
  readonly name = 'adamw' as const;
  protected readonly slotNames = ['exp_avg', 'exp_avg_sq'];
  protected readonly perParamSteps = true;
  groups: Array<{ t: number; lists: string[][] } | null> = [];
  private readonly names = new Map<tf.Tensor, string>();

  protected update(pairs: ParamGrad[], lr: number): void {
    for (const { name, p, g } of pairs) (this.names.set(p, name), this.names.set(g, `grad ${name}`));
    const group = this.packedGroup(pairs);
    const slotName = (t: tf.Tensor) => pairs.flatMap(({ name }) => this.slotNames.filter((s) => this.slot(name, s) === t).map((s) => `${name}.${s}`))[0];
    this.groups.push(group && { t: group.t, lists: group.lists.map((l) => l.map((t) => this.names.get(t) ?? slotName(t) ?? '?')) });
    if (group) {
      this.assignPacked(pairs, [pairs.map(({ p, g }) => tf.sub(p, tf.mul(g, lr))), pairs.map(({ g }) => g), pairs.map(({ g }) => tf.mul(g, 2))]);
    } else {
      for (const { name, p, g } of pairs) {
        this.nextStep(name);
        p.assign(tf.sub(p, tf.mul(g, lr)));
        this.setSlot(name, 'exp_avg', g);
        this.setSlot(name, 'exp_avg_sq', tf.mul(g, 2));
      }
    }
  }
}

describe('packed group updates', () => {
  it('are offered only a regular group: two or more parameters at one step, each variable once, all with slots or none', () => {
    const opt = new PackedProbe();
    const p = variables(P0);
    // step 1: 'late.weight' has no gradient, the other two pack fresh (no slots yet)
    step(opt, p, 1);
    assert.deepEqual(opt.groups[0], { t: 1, lists: [['blocks.0.weight', 'blocks.0.bias'], ['grad blocks.0.weight', 'grad blocks.0.bias']] });
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 1, steps: { 'blocks.0.weight': 1, 'blocks.0.bias': 1 } });
    // the packed results written back: each parameter its own, each slot its own
    const g1 = P0['blocks.0.bias']![1].map((x, i) => Math.sin(3 + i) * (1 + x));
    const near = (a: number[], b: number[], what: string) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-6, `${what}: ${a} vs ${b}`));
    near(values(p.get('blocks.0.bias')), P0['blocks.0.bias']![1].map((x, i) => x - 0.1 * g1[i]!), 'blocks.0.bias');
    near(values(opt.stateTensors().get('blocks.0.bias.exp_avg')), g1, 'exp_avg');
    near(values(opt.stateTensors().get('blocks.0.bias.exp_avg_sq')), g1.map((v) => 2 * v), 'exp_avg_sq');
    // step 2: 'late.weight' at its first step beside two at their second: not packed
    step(opt, p, 2);
    assert.equal(opt.groups[1], null);
    // step 3: all three at their own steps 3, 3, 2: not packed; two at step 3 with slots: packed, slots last
    step(opt, p, 3);
    assert.equal(opt.groups[2], null);
    const two = new Map([...p].filter(([k]) => k !== 'late.weight'));
    const g = grads(4);
    opt.step(two, g, 0.1);
    assert.deepEqual(opt.groups[3], {
      t: 4,
      lists: [
        ['blocks.0.weight', 'blocks.0.bias'],
        ['grad blocks.0.weight', 'grad blocks.0.bias'],
        ['blocks.0.weight.exp_avg', 'blocks.0.bias.exp_avg'],
        ['blocks.0.weight.exp_avg_sq', 'blocks.0.bias.exp_avg_sq'],
      ],
    });
    assert.deepEqual(opt.stateJson(), { name: 'adamw', stepCount: 4, steps: { 'blocks.0.weight': 4, 'blocks.0.bias': 4, 'late.weight': 2 } });
    // one variable under two names, or a single parameter: not packed
    const w = p.get('blocks.0.bias')!;
    const twice = new Map([['a', w], ['b', w]]);
    const gt = new Map([['a', tf.zeros([2])], ['b', tf.zeros([2])]]);
    opt.step(twice, gt, 0.1);
    assert.equal(opt.groups[4], null);
    opt.step(new Map([['blocks.0.bias', w]]), g, 0.1);
    assert.equal(opt.groups[5], null);
    disposeAll(p, g, gt);
    opt.dispose();
  });
});
