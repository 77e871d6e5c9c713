/**
 * What the training loop hands its units, against the official recipe worked out here by hand: the lr and
 * momentum of every step (main_moco.py's adjust_learning_rate and adjust_moco_momentum, the lr scaled by
 * batch / 256), the optimizer the config names with its rank rules and keys, the gradient norms of a metrics
 * row, and the step that is skipped when a gradient is not finite. The units themselves are tested on their
 * own (test/optim, test/eval); these tests fail where the wiring between them is wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../helpers/tf.ts';
import type { BackendInfo } from '../../src/engine/backend.ts';
import { augmentConfigOf, dataOptionsOf, modelConfigOf, optimizerOf } from '../../src/components/index.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { BaseOptimizer } from '../../src/optim/optimizer.ts';
import { trainRun } from '../../src/train/loop.ts';
import { gradStats, statsToRow } from '../../src/train/metrics.ts';
import { trainStep } from '../../src/train/step.ts';
import type { Optimizer } from '../../src/optim/index.ts';
import { tempDir } from '../helpers/tmp.ts';
import { tinyConfig } from '../helpers/tiny.ts';

const backend: BackendInfo = { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null };

// the tiny run of test/helpers/tiny.ts, its kNN monitor off
const tiny = (sets: string[] = []) => tinyConfig(['train.knn_every_epochs=null', ...sets]);

test('every step gets the lr of the official schedule (base x batch / 256, linear warmup, half cosine) and the cosine momentum, as its metrics row says', async () => {
  // batch 16 of 64 images: 4 steps an epoch, 3 epochs (12 steps), 1 of warmup; base lr 0.01 -> 0.01 x 16/256
  const c = tiny(['optim.batch_size=16', 'optim.epochs=3', 'optim.warmup_epochs=1', 'optim.base_lr=0.01', 'moco.momentum=0.99']);
  const peak = 0.000625;
  const want = Array.from({ length: 12 }, (_, s) => {
    const e = s / 4;
    const lr = e < 1 ? peak * e : peak * 0.5 * (1 + Math.cos((Math.PI * (e - 1)) / 2));
    const m = 1 - 0.5 * (1 + Math.cos((Math.PI * e) / 3)) * 0.01;
    return { lr, m };
  });
  const lrs: number[] = [];
  const ms: number[] = [];
  const opt = BaseOptimizer.prototype as unknown as { step: (...a: unknown[]) => void };
  const model = MoCoViT.prototype as unknown as { step: (...a: unknown[]) => unknown };
  const [optStep, modelStep] = [opt.step, model.step];
  opt.step = function (this: unknown, ...a: unknown[]) {
    lrs.push(a[2] as number);
    return optStep.apply(this, a);
  };
  model.step = function (this: unknown, ...a: unknown[]) {
    ms.push(a[2] as number);
    return modelStep.apply(this, a);
  };
  const dir = tempDir('moco3-wiring-');
  try {
    await trainRun({ config: c, runDir: dir, backend });
  } finally {
    opt.step = optStep;
    model.step = modelStep;
  }
  assert.equal(lrs.length, 12);
  assert.equal(ms.length, 12);
  for (let s = 0; s < 12; s++) {
    assert.ok(Math.abs(lrs[s]! - want[s]!.lr) <= 1e-15, `step ${s + 1}: lr ${lrs[s]} != ${want[s]!.lr}`);
    assert.ok(Math.abs(ms[s]! - want[s]!.m) <= 1e-15, `step ${s + 1}: momentum ${ms[s]} != ${want[s]!.m}`);
  }
  // the row of step s+1 logs the lr and momentum that step ran with
  const rows = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).filter((r) => typeof r.loss === 'number');
  assert.deepEqual(rows.map((r) => r.step), Array.from({ length: 12 }, (_, i) => i + 1));
  for (const r of rows) {
    assert.ok(Math.abs(r.lr! - want[r.step! - 1]!.lr) <= 1e-15, `row ${r.step}: lr ${r.lr}`);
    assert.ok(Math.abs(r.momentum! - want[r.step! - 1]!.m) <= 1e-15, `row ${r.step}: momentum ${r.momentum}`);
  }
});

test("the config's optimizer gets its rank rules from the model: LARS leaves biases and norms untrust-scaled, LAMB's lamb_exclude_bias_norm reaches it", () => {
  const c = tiny(['optim.name=lars', 'optim.weight_decay=0.1', 'optim.momentum=0.9']);
  const model = new MoCoViT(modelConfigOf(c), 3);
  const opt = optimizerOf(c, model);
  const names = model.trainableNames();
  const bias = names.find((n) => n.endsWith('.bias') && model.torchShape(n).length === 1)!;
  const weight = names.find((n) => n.endsWith('.weight') && model.torchShape(n).length === 2)!;
  const norm = names.find((n) => /norm/.test(n) && n.endsWith('.weight') && model.torchShape(n).length === 1)!;
  const grads = new Map(names.map((n) => [n, tf.randomNormal(model.vars.get(n)!.shape, 0, 1, 'float32', 5)] as const));
  try {
    opt.step(model.vars, grads, 0.1);
    const slots = opt.stateTensors();
    const mu = (n: string) => slots.get([...slots.keys()].find((k) => k.startsWith(`${n}.`) || k.startsWith(`${n}/`))!)!;
    // a bias (rank 1): mu = g, no decay and no trust ratio
    assert.deepEqual(Array.from(mu(bias).dataSync()), Array.from(grads.get(bias)!.dataSync()));
    // a weight: mu = trust x (g + wd p), not g
    const g = grads.get(weight)!.dataSync();
    const m = mu(weight).dataSync();
    assert.ok(Math.abs(m[0]! - g[0]!) > 1e-6, 'the weight is scaled');
  } finally {
    opt.dispose();
    tf.dispose([...grads.values()]);
    model.dispose();
  }
  // LAMB with and without the exemption: a norm's weight (rank 1, at 1: a bias at 0 has no decay and trust 1
  // either way) moves differently, so the key reached the optimizer
  const after = (exclude: boolean) => {
    const cl = tiny(['optim.name=lamb', 'optim.weight_decay=0.1', `optim.lamb_exclude_bias_norm=${exclude}`]);
    const m2 = new MoCoViT(modelConfigOf(cl), 3);
    const o2 = optimizerOf(cl, m2);
    const gs = new Map(m2.trainableNames().map((n) => [n, tf.randomNormal(m2.vars.get(n)!.shape, 0, 1, 'float32', 5)] as const));
    try {
      o2.step(m2.vars, gs, 0.1);
      return Array.from(m2.vars.get(norm)!.dataSync());
    } finally {
      o2.dispose();
      tf.dispose([...gs.values()]);
      m2.dispose();
    }
  };
  assert.notDeepEqual(after(true), after(false));
});

test('a metrics row: per group the largest |g| and the L2 norm over its gradients, by name; a group without gradients 0', () => {
  const grads = new Map<string, tf.Tensor>([
    ['a.x', tf.tensor1d([3, -4])],
    ['a.y', tf.tensor2d([[12]])],
    ['b.z', tf.tensor1d([-2])],
  ]);
  const groups = new Map([
    ['a', ['a.x', 'a.y']],
    ['b', ['b.z']],
    ['c', ['c.gone']],
  ]);
  const loss = tf.scalar(1.5);
  const t = gradStats(loss, grads, groups);
  try {
    const row = statsToRow(t.dataSync(), groups);
    assert.deepEqual(row, { loss: 1.5, 'grad_inf/a': 12, 'grad_l2/a': 13, 'grad_inf/b': 2, 'grad_l2/b': 2, 'grad_inf/c': 0, 'grad_l2/c': 0 });
  } finally {
    tf.dispose([t, loss, ...grads.values()]);
  }
});

test('a step whose gradient is not finite (the loss finite) is not applied, and says so', async () => {
  for (const bad of [Infinity, NaN]) {
    let applied = 0;
    const fake = {
      step: () => ({ loss: tf.scalar(2), grads: new Map([['w', tf.tensor1d([1, bad])]]) }),
      paramGroups: () => new Map([['g', ['w']]]),
      trainableNames: () => ['w'],
      vars: new Map(),
    } as unknown as MoCoViT;
    const opt = { step: () => void applied++ } as unknown as Optimizer;
    const before = tf.memory().numTensors;
    const r = await trainStep(fake, opt, tf.zeros([1, 1, 1, 1]) as tf.Tensor4D, tf.zeros([1, 1, 1, 1]) as tf.Tensor4D, { momentum: 0.99, lr: 0.1, microBatch: null });
    assert.equal(r.finite, false, String(bad));
    assert.equal(applied, 0, String(bad));
    assert.equal(r.stats[0], 2);
    assert.equal(tf.memory().numTensors, before, 'nothing left behind');
  }
});

test('the run config reaches the model, the data and the augmentation each from its own key; the data seed is 0 whatever the run seed', () => {
  const c = tiny(['seed=7', 'moco.proj_hidden=24', 'moco.proj_dim=12', 'moco.pred_hidden=20', 'moco.temperature=0.3', 'model.patch_proj=learned', 'augment.crop_min=0.3', 'augment.blur_sigma=[0.2,1.5]']);
  assert.deepEqual(modelConfigOf(c), {
    imageSize: 8,
    patchSize: 4,
    inChans: 3,
    dim: 8,
    depth: 2,
    heads: 2,
    mlpRatio: 2,
    projHidden: 24,
    projDim: 12,
    predHidden: 20,
    temperature: 0.3,
    patchProj: 'learned',
  });
  const d = dataOptionsOf(c);
  assert.deepEqual([d.trainSize, d.testSize, d.imageSize, d.syntheticImageSize, d.seed], [64, 32, 8, 8, 0]);
  assert.equal(d.name, c.data.name);
  const aug = augmentConfigOf(c, { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] });
  assert.deepEqual(aug, { preset: c.augment.preset, imageSize: 8, cropMin: 0.3, mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6], blurSigma: [0.2, 1.5] });
});

test('every optim.* key reaches the optimizer the config names (none left at its default)', () => {
  const model = new MoCoViT(modelConfigOf(tiny()), 3);
  // the options each optimizer was built with
  const optsOf = (sets: string[]) => {
    const o = optimizerOf(tiny(sets), model);
    try {
      return (o as unknown as { opts: Record<string, unknown> }).opts;
    } finally {
      o.dispose();
    }
  };
  try {
    const common = ['optim.weight_decay=0.07', 'optim.betas=[0.8,0.95]', 'optim.eps=0.001', 'optim.momentum=0.7', 'optim.trust_coefficient=0.02'];
    assert.deepEqual(optsOf(['optim.name=adamw', ...common]), { weightDecay: 0.07, betas: [0.8, 0.95], eps: 0.001 });
    const lamb = ['optim.name=lamb', ...common, 'optim.lamb_exclude_bias_norm=true', 'optim.max_grad_norm=3'];
    assert.deepEqual(optsOf(lamb), { weightDecay: 0.07, betas: [0.8, 0.95], eps: 0.001, excludeBiasNorm: true, maxGradNorm: 3 });
    assert.deepEqual(optsOf(['optim.name=lars', ...common]), { weightDecay: 0.07, momentum: 0.7, trustCoefficient: 0.02 });
    assert.deepEqual(optsOf(['optim.name=sgd', ...common]), { weightDecay: 0.07, momentum: 0.7 });
  } finally {
    model.dispose();
  }
});

test("a step runs its forward and backward inside the caller's guard: the error the guard gives is the step's, and nothing is left behind", async () => {
  let guarded = 0;
  const fake = {
    step: () => {
      throw new Error('kernel: out of memory');
    },
    paramGroups: () => new Map(),
    trainableNames: () => [],
    vars: new Map(),
  } as unknown as MoCoViT;
  const opt = { step: () => assert.fail('no update after a failed step') } as unknown as Optimizer;
  const guard = <T>(f: () => T): T => {
    guarded++;
    try {
      return f();
    } catch (e) {
      throw new Error(`explained: ${(e as Error).message}`);
    }
  };
  const before = tf.memory().numTensors;
  const x1 = tf.zeros([1, 1, 1, 1]) as tf.Tensor4D;
  const x2 = tf.zeros([1, 1, 1, 1]) as tf.Tensor4D;
  await assert.rejects(trainStep(fake, opt, x1, x2, { momentum: 0.99, lr: 0.1, microBatch: null, guard }), /^Error: explained: kernel: out of memory$/);
  assert.equal(guarded, 1);
  assert.equal(tf.memory().numTensors, before, 'the views freed too');
});

test('a training step applies the gradient of every trainable parameter and of nothing else (the frozen patch projection, pos_embed and BatchNorm counts stay)', async () => {
  // plain SGD at its first step: p - lr x g, so each moved weight gives back its own gradient
  const c = tiny(['optim.name=sgd', 'optim.weight_decay=0', 'optim.momentum=0', 'model.patch_proj=frozen']);
  const model = new MoCoViT(modelConfigOf(c), 5);
  const twin = new MoCoViT(modelConfigOf(c), 5);
  const opt = optimizerOf(c, model);
  const x = tf.randomNormal([4, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.randomNormal([4, 8, 8, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
  const ref = twin.step(x, y, 0.99);
  const before = new Map([...model.vars].map(([n, v]) => [n, v.dataSync().slice()]));
  const lr = 0.5;
  const r = await trainStep(model, opt, x.clone(), y.clone(), { momentum: 0.99, lr, microBatch: null });
  assert.equal(r.finite, true);
  const trainable = new Set(model.trainableNames());
  let moved = 0;
  for (const [n, v] of model.vars) {
    if (!n.startsWith('base_encoder.') && !n.startsWith('predictor.')) continue;
    const now = v.dataSync();
    const was = before.get(n)!;
    if (trainable.has(n)) {
      const g = ref.grads.get(n)!.dataSync();
      was.forEach((p, i) => assert.ok(Math.abs(now[i]! - (p - lr * g[i]!)) <= 1e-6 * (1 + Math.abs(p - lr * g[i]!)), `${n}[${i}]: ${now[i]} vs ${p} - ${lr} x ${g[i]}`));
      moved++;
    } else if (!n.endsWith('running_mean') && !n.endsWith('running_var') && !n.endsWith('num_batches_tracked')) {
      assert.deepEqual(now, was, `${n} not trained`);
    }
  }
  assert.ok(moved === trainable.size && !trainable.has('base_encoder.patch_embed.proj.weight') && !trainable.has('base_encoder.pos_embed'));
  tf.dispose([x, y, ref.loss, ...ref.grads.values()]);
  opt.dispose();
  model.dispose();
  twin.dispose();
});
