/** MoCoViT: loss at init, momentum update, BN buffers, frozen projection, layouts, memory. */
import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MoCoViT } from '../../src/model/moco.ts';
import { modelConfig } from '../../src/model/archs.ts';
import { batchStats, refForward } from './reference.ts';
import { assertClose, images, perturbAll, tinyConfig, torchState } from './util.ts';

const disposeStep = (r: { loss: tf.Scalar; grads: Map<string, tf.Tensor> }) => tf.dispose([r.loss, ...r.grads.values()]);

describe('MoCoViT', () => {
  it('untrained loss ≈ 4·T·ln(B) (B = 32, T = 0.2)', () => {
    // At init q̂·k̂ between unrelated 256-d vectors is ~N(0, 1/256), so logits are nearly uniform:
    // each term is 2T·(ln B + σ²/2 + …) with σ = 1/(T·√256), i.e. ~1.4% above 4T·ln B; inputs are
    // independent noise, so positives are not favoured. 5% leaves room for seed-to-seed spread
    // (measured 0.999-1.02 over seeds); a bug in the loss (missing ×2T, mean vs sum, wrong T) is off by ≥2x.
    const cfg = modelConfig('vit-smoke', { projHidden: 256, projDim: 256, predHidden: 256, temperature: 0.2, patchProj: 'frozen' });
    const model = new MoCoViT(cfg, 0);
    const B = 32;
    const a = images('u1', B, cfg.imageSize);
    const b = images('u2', B, cfg.imageSize);
    const l = model.loss(a.t, b.t);
    const ratio = l.dataSync()[0]! / (4 * 0.2 * Math.log(B));
    assert.ok(Math.abs(ratio - 1) < 0.05, `loss / 4T ln B = ${ratio}`);
    tf.dispose([l, a.t, b.t]);
    model.dispose();
  });

  it('momentumUpdate: θk ← m·θk + (1−m)·θq exactly in float32, over parameters only', () => {
    const model = new MoCoViT(tinyConfig({ patchProj: 'frozen' }), 1);
    perturbAll(model, 0.5); // base and momentum now differ everywhere
    // make BN buffers differ too, to see they are left alone
    const buf = 'momentum_encoder.head.1.running_mean';
    model.vars.get(buf)!.assign(tf.fill(model.vars.get(buf)!.shape, 0.25));
    const before = new Map([...model.vars].map(([n, v]) => [n, v.dataSync().slice()]));
    const m = 0.9;
    model.momentumUpdate(m);
    let params = 0;
    for (const [name, v] of model.vars) {
      const now = v.dataSync();
      if (name.startsWith('momentum_encoder.') && !model.bufferNames().includes(name)) {
        const q = before.get(name.replace('momentum_encoder.', 'base_encoder.'))!;
        const k = before.get(name)!;
        const want = k.map((kv, i) => Math.fround(Math.fround(kv * Math.fround(m)) + Math.fround(q[i]! * Math.fround(1 - m))));
        assert.deepEqual(now, want, name);
        params++;
      } else {
        assert.deepEqual(now, before.get(name), `${name} untouched`);
      }
    }
    // backbone + projector, pos_embed and frozen projection included (base_encoder.parameters())
    const expected = [...model.vars.keys()].filter((n) => n.startsWith('base_encoder.') && !model.bufferNames().includes(n)).length;
    assert.equal(params, expected);
    model.dispose();
  });

  it('step() updates the momentum encoder before computing keys (loss equals loss() after the step with m = 0)', () => {
    const model = new MoCoViT(tinyConfig(), 2);
    perturbAll(model, 0.3);
    const a = images('s1', 6, 8);
    const b = images('s2', 6, 8);
    const lossBefore = model.loss(a.t, b.t);
    const r = model.step(a.t, b.t, 0); // m = 0: momentum encoder := base encoder
    const lossAfter = model.loss(a.t, b.t);
    assert.equal(r.loss.dataSync()[0], lossAfter.dataSync()[0]);
    assert.ok(Math.abs(lossBefore.dataSync()[0]! - lossAfter.dataSync()[0]!) > 1e-3, 'the update changed the keys');
    for (const [n, v] of model.vars) {
      if (n.startsWith('base_encoder.') && !model.bufferNames().includes(n)) {
        assert.deepEqual(model.vars.get(n.replace('base_encoder.', 'momentum_encoder.'))!.dataSync(), v.dataSync(), n);
      }
    }
    tf.dispose([lossBefore, lossAfter, a.t, b.t]);
    disposeStep(r);
    model.dispose();
  });

  it('BN running buffers after one step: view 1 then view 2, momentum 0.1, unbiased running_var, tracked += 2', () => {
    const cfg = tinyConfig();
    const model = new MoCoViT(cfg, 3);
    perturbAll(model, 0.3);
    const B = 5;
    const a = images('bn1', B, 8);
    const b = images('bn2', B, 8);
    // m = 1 keeps the momentum encoder exactly as in S, so the reference sees the same weights
    const ref = refForward(torchState(model), cfg, a.data, b.data, B);
    disposeStep(model.step(a.t, b.t, 1));
    const layers = ['base_encoder.head.1', 'base_encoder.head.4', 'base_encoder.head.7', 'momentum_encoder.head.1', 'momentum_encoder.head.4', 'momentum_encoder.head.7', 'predictor.1', 'predictor.4'];
    for (const L of layers) {
      const s1 = batchStats(ref.bn1.get(L)!);
      const s2 = batchStats(ref.bn2.get(L)!);
      const unb = (v: Float64Array) => v.map((x) => (x * B) / (B - 1));
      // rm: 0 → 0.9·0 + 0.1·μ1 → 0.9·(0.1·μ1) + 0.1·μ2 ; rv: 1 → 0.9 + 0.1·s1² → 0.9·(…) + 0.1·s2²
      const rm = s1.mean.map((m1, f) => 0.9 * (0.1 * m1) + 0.1 * s2.mean[f]!);
      const v1 = unb(s1.varBiased);
      const v2 = unb(s2.varBiased);
      const rv = v1.map((x, f) => 0.9 * (0.9 * 1 + 0.1 * x) + 0.1 * v2[f]!);
      assertClose(model.vars.get(`${L}.running_mean`)!.dataSync(), rm, 1e-5, 1e-6, `${L}.running_mean`);
      assertClose(model.vars.get(`${L}.running_var`)!.dataSync(), rv, 1e-5, 1e-6, `${L}.running_var`);
      assert.equal(model.vars.get(`${L}.num_batches_tracked`)!.dataSync()[0], 2, `${L}.num_batches_tracked`);
      // the order matters: swapping the views gives different buffers
      const swapped = [...s2.mean.map((m2, f) => 0.09 * m2 + 0.1 * s1.mean[f]!), ...v2.map((x, f) => 0.81 + 0.09 * x + 0.1 * v1[f]!)];
      assert.ok(swapped.some((x, f) => Math.abs(x - [...rm, ...rv][f]!) > 1e-3), `${L}: views distinguishable`);
    }
    assert.equal(model.bufferNames().length, 3 * layers.length);
    tf.dispose([a.t, b.t]);
    model.dispose();
  });

  it('loss() and features() change nothing', () => {
    const model = new MoCoViT(tinyConfig(), 4);
    const before = new Map([...model.vars].map(([n, v]) => [n, v.dataSync().slice()]));
    const a = images('n1', 4, 8);
    const b = images('n2', 4, 8);
    const f = model.features(a.t);
    assert.deepEqual(f.shape, [4, 8]);
    tf.dispose([model.loss(a.t, b.t), f, a.t, b.t]);
    for (const [n, v] of model.vars) assert.deepEqual(v.dataSync(), before.get(n), n);
    model.dispose();
  });

  it('frozen patch projection: not trainable, but its gradient is measured (non-zero)', () => {
    const frozen = new MoCoViT(tinyConfig({ patchProj: 'frozen' }), 5);
    const learned = new MoCoViT(tinyConfig({ patchProj: 'learned' }), 5);
    const W = 'base_encoder.patch_embed.proj.weight';
    const b = 'base_encoder.patch_embed.proj.bias';
    for (const n of [W, b]) {
      assert.ok(!frozen.trainableNames().includes(n), `${n} frozen`);
      assert.ok(frozen.gradNames().includes(n), `${n} measured`);
      assert.ok(learned.trainableNames().includes(n), `${n} learned`);
      assert.equal(frozen.vars.get(n)!.trainable, false);
    }
    assert.deepEqual(learned.trainableNames(), learned.gradNames());
    assert.deepEqual(frozen.trainableNames(), frozen.gradNames().filter((n) => n !== W && n !== b));
    for (const n of frozen.gradNames()) {
      assert.ok(n.startsWith('base_encoder.') || n.startsWith('predictor.'), n);
      assert.ok(!frozen.bufferNames().includes(n) && !n.endsWith('pos_embed'), n);
    }
    const x1 = images('fz1', 4, 8);
    const x2 = images('fz2', 4, 8);
    const r = frozen.step(x1.t, x2.t, 0.99);
    assert.deepEqual([...r.grads.keys()], frozen.gradNames());
    for (const n of [W, b]) assert.ok(tf.max(tf.abs(r.grads.get(n)!)).dataSync()[0]! > 0, `${n} gradient non-zero`);
    // groups partition the measured parameters
    const grouped = [...frozen.paramGroups().values()].flat();
    assert.deepEqual([...grouped].sort(), frozen.gradNames().sort());
    assert.deepEqual([...frozen.paramGroups().keys()], ['patch_proj', 'cls_token', 'block0', 'block1', 'norm', 'projector', 'predictor']);
    disposeStep(r);
    tf.dispose([x1.t, x2.t]);
    frozen.dispose();
    learned.dispose();
  });

  it('float32 central differences of loss() agree with step() gradients (tiny model, loose tolerance)', () => {
    const model = new MoCoViT(tinyConfig(), 6);
    perturbAll(model, 0.2);
    const a = images('fd1', 6, 8);
    const b = images('fd2', 6, 8);
    const r = model.step(a.t, b.t, 1); // m = 1: keys unchanged
    for (const name of ['base_encoder.blocks.0.attn.qkv.weight', 'base_encoder.patch_embed.proj.weight', 'predictor.0.weight']) {
      const g = r.grads.get(name)!.dataSync();
      let i = 0;
      for (let j = 1; j < g.length; j++) if (Math.abs(g[j]!) > Math.abs(g[i]!)) i = j;
      const v = model.vars.get(name)!;
      const orig = v.dataSync().slice();
      const at = (delta: number) => {
        const p = orig.slice();
        p[i] = p[i]! + delta;
        v.assign(tf.tensor(p, v.shape));
        const l = model.loss(a.t, b.t);
        const out = l.dataSync()[0]!;
        l.dispose();
        return out;
      };
      const h = 3e-3;
      const fd = (at(h) - at(-h)) / (2 * h);
      v.assign(tf.tensor(orig, v.shape));
      // float32 loss ≈ 2 carries ~1e-7 rounding; /2h gives ~1e-4 noise on top of O(h²) truncation
      assertClose([g[i]!], [fd], 0.05, 1e-3, `${name}[${i}]`);
    }
    disposeStep(r);
    tf.dispose([a.t, b.t]);
    model.dispose();
  });

  it('PyTorch layout: shapes, exact round trip, Linear transposed', () => {
    const cfg = tinyConfig();
    const model = new MoCoViT(cfg, 7);
    const D = cfg.dim;
    const shapes: Record<string, number[]> = {
      'base_encoder.cls_token': [1, 1, D],
      'base_encoder.pos_embed': [1, 5, D],
      'base_encoder.patch_embed.proj.weight': [D, 3, 4, 4],
      'base_encoder.blocks.1.attn.qkv.weight': [3 * D, D],
      'base_encoder.blocks.1.mlp.fc1.weight': [2 * D, D],
      'base_encoder.head.0.weight': [16, D],
      'base_encoder.head.7.num_batches_tracked': [],
      'momentum_encoder.head.6.weight': [8, 16],
      'predictor.3.weight': [8, 16],
      'predictor.4.running_var': [8],
    };
    for (const [n, s] of Object.entries(shapes)) assert.deepEqual(model.torchShape(n), s, n);
    assert.ok(!model.vars.has('predictor.4.weight') && !model.vars.has('base_encoder.head.7.weight'), 'last BN has no affine');
    for (const [n, v] of model.vars) {
      const t = model.toTorch(n, v);
      assert.deepEqual(t.shape, model.torchShape(n), n);
      const back = model.fromTorch(n, t);
      assert.deepEqual(back.shape, v.shape, n);
      assert.deepEqual(back.dataSync(), v.dataSync(), `${n} round trip`);
      tf.dispose([t, back]);
    }
    // Linear: torch W [out, in] with y = x·Wᵀ
    const n = 'base_encoder.head.0.weight';
    const Wt = model.toTorch(n, model.vars.get(n)!);
    const w = Wt.arraySync() as number[][];
    const internal = model.vars.get(n)!.arraySync() as number[][];
    assert.equal(internal[2]![5], w[5]![2]);
    // assignTorch loads a PyTorch tensor
    const twice = tf.mul(Wt, 2);
    const held = tf.memory().numTensors;
    model.assignTorch(n, twice);
    assert.equal(tf.memory().numTensors, held, 'assignTorch keeps no tensor of its own');
    twice.dispose();
    assert.equal((model.vars.get(n)!.arraySync() as number[][])[2]![5], 2 * w[5]![2]!);
    assert.throws(() => model.fromTorch(n, tf.zeros([D, 16])), /expected PyTorch shape/);
    assert.throws(() => model.torchShape('base_encoder.nope'), /no tensor named/);
    Wt.dispose();
    model.dispose();
  });

  it('step() refuses views of different shapes, a micro-batch that does not divide the batch and a batch of 1 (BatchNorm), leaving no tensor', () => {
    const model = new MoCoViT(tinyConfig(), 10);
    const a = images('r1', 4, 8);
    const b = images('r2', 6, 8);
    const one = images('r3', 1, 8);
    const before = new Map([...model.vars].map(([n, v]) => [n, v.dataSync().slice()]));
    const start = tf.memory().numTensors;
    assert.throws(() => model.step(a.t, b.t, 0.9), /the two views differ in shape/);
    assert.throws(() => model.step(a.t, a.t, 0.9, 3), /micro-batch 3 does not divide the batch 4/);
    // refused before anything moved: the momentum encoder is as it was
    for (const [n, v] of model.vars) assert.deepEqual(v.dataSync(), before.get(n), n);
    assert.throws(() => model.step(one.t, one.t, 0.9), /more than 1 sample/);
    assert.throws(() => model.loss(a.t, b.t), /the two views differ in shape/);
    assert.equal(tf.memory().numTensors, start);
    tf.dispose([a.t, b.t, one.t]);
    model.dispose();
  });

  it('features() refuses images of another size or channel count', () => {
    const model = new MoCoViT(tinyConfig(), 11);
    const start = tf.memory().numTensors;
    for (const shape of [[2, 8, 8, 1], [2, 8, 12, 3], [2, 12, 8, 3]] as const) {
      const x = tf.zeros([...shape]) as tf.Tensor4D;
      assert.throws(() => model.features(x), /expected images \[B, 8, 8, 3\]/, String(shape));
      x.dispose();
    }
    assert.equal(tf.memory().numTensors, start);
    model.dispose();
  });

  it('encoder-only: the base encoder alone, with the full model\'s features; step() and loss() refused; nothing usable after dispose()', () => {
    const full = new MoCoViT(tinyConfig(), 12);
    const enc = new MoCoViT(tinyConfig(), 12, { encoderOnly: true });
    const base = [...full.vars.keys()].filter((n) => n.startsWith('base_encoder.'));
    assert.deepEqual([...enc.vars.keys()], base);
    assert.ok(base.length > 0 && base.length < full.vars.size);
    const a = images('e1', 3, 8);
    const f1 = full.features(a.t);
    const f2 = enc.features(a.t);
    assert.deepEqual(f2.dataSync(), f1.dataSync());
    assert.throws(() => enc.step(a.t, a.t, 0.9), /encoder-only/);
    assert.throws(() => enc.loss(a.t, a.t), /encoder-only/);
    enc.dispose();
    full.dispose();
    for (const m of [enc, full]) {
      assert.throws(() => m.features(a.t), /used after dispose/);
      assert.throws(() => m.step(a.t, a.t, 0.9), /used after dispose/);
    }
    tf.dispose([f1, f2, a.t]);
  });

  it('modelConfig: the official ViT-S/16 and ViT-B/16 at 224 px, with the official heads (4096, 256, 4096, T 0.2) and a frozen patch projection unless told', () => {
    const heads = { projHidden: 4096, projDim: 256, predHidden: 4096, temperature: 0.2 };
    assert.deepEqual(modelConfig('vit-small'), { dim: 384, depth: 12, heads: 12, mlpRatio: 4, patchSize: 16, imageSize: 224, inChans: 3, ...heads, patchProj: 'frozen' });
    assert.deepEqual(modelConfig('vit-base'), { dim: 768, depth: 12, heads: 12, mlpRatio: 4, patchSize: 16, imageSize: 224, inChans: 3, ...heads, patchProj: 'frozen' });
    const smoke = modelConfig('vit-smoke', { patchProj: 'learned', temperature: 0.1 });
    assert.deepEqual([smoke.dim, smoke.depth, smoke.heads, smoke.patchProj, smoke.temperature], [32, 2, 4, 'learned', 0.1]);
    assert.throws(() => modelConfig('vit-huge'), /unknown arch 'vit-huge'/);
    // what cannot build a ViT is refused when the model is built
    for (const [over, why] of [
      [{ heads: 3 }, /dim 8 must be divisible by heads 3/],
      [{ temperature: 0 }, /temperature must be > 0/],
      [{ mlpRatio: 1.3 }, /mlpRatio 1.3 must give an integer hidden width/],
      [{ patchSize: 3 }, /imageSize 8 is not a multiple of patchSize 3/],
    ] as const) {
      assert.throws(() => new MoCoViT(tinyConfig(over), 0), why, JSON.stringify(over));
    }
  });

  it('no tensor leaks: numTensors flat over 5 steps, loss() and features()', () => {
    const model = new MoCoViT(tinyConfig({ patchProj: 'frozen' }), 8);
    const a = images('m1', 4, 8);
    const b = images('m2', 4, 8);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      disposeStep(model.step(a.t, b.t, 0.99));
      assert.equal(tf.memory().numTensors, start, `after step ${i + 1}`);
    }
    tf.dispose([model.loss(a.t, b.t), model.features(a.t)]);
    assert.equal(tf.memory().numTensors, start);
    const nVars = model.vars.size;
    model.dispose();
    assert.equal(tf.memory().numTensors, start - nVars);
    tf.dispose([a.t, b.t]);
  });

  it('a step that fails partway (out of memory in a later loss term or micro-batch) leaves no tensor behind', () => {
    const model = new MoCoViT(tinyConfig({ patchProj: 'frozen' }), 9);
    const a = images('f1', 4, 8);
    const b = images('f2', 4, 8);
    const start = tf.memory().numTensors;
    const inner = model as unknown as { lossTerm: (...args: unknown[]) => unknown };
    const lossTerm = inner.lossTerm.bind(model);
    // whole batch: the second term fails; micro-batches of 2: the fourth (view 2's second chunk)
    for (const [micro, failAt] of [[null, 2], [2, 4]] as const) {
      let calls = 0;
      inner.lossTerm = (...args: unknown[]) => {
        if (++calls === failAt) throw new Error('out of memory');
        return lossTerm(...args);
      };
      assert.throws(() => model.step(a.t, b.t, 0.99, micro), /out of memory/);
      assert.equal(calls, failAt);
      assert.equal(tf.memory().numTensors, start, `micro-batch ${micro}`);
    }
    inner.lossTerm = lossTerm;
    disposeStep(model.step(a.t, b.t, 0.99));
    assert.equal(tf.memory().numTensors, start);
    model.dispose();
    tf.dispose([a.t, b.t]);
  });
});
