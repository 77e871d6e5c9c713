/** Initialisation as vits.py L31-47 and PyTorch defaults for the heads (docs/MOCOV3.md "Architecture"). */
import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MoCoViT } from '../../src/model/moco.ts';
import { modelConfig } from '../../src/model/archs.ts';
import { torchState } from './util.ts';

function stats(v: Float64Array): { min: number; max: number; mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    s += x;
    s2 += x * x;
    min = Math.min(min, x);
    max = Math.max(max, x);
  }
  const mean = s / v.length;
  return { min, max, mean, std: Math.sqrt(s2 / v.length - mean * mean) };
}

describe('initialisation', () => {
  // big enough for std estimates: the smallest tensor checked has 768 elements
  const cfg = modelConfig('vit-smoke', { dim: 32, projHidden: 64, projDim: 32, predHidden: 64, patchProj: 'frozen' });
  const D = cfg.dim;
  const p = cfg.patchSize;
  const hidden = D * cfg.mlpRatio;

  it('every weight is uniform within its bound with std ≈ bound/√3; biases 0, LN/BN 1/0, cls ~1e-6', () => {
    const model = new MoCoViT(cfg, 7);
    const S = torchState(model);
    const bounds = new Map<string, number>([
      ['base_encoder.patch_embed.proj.weight', Math.sqrt(6 / (3 * p * p + D))],
      ['base_encoder.head.0.weight', 1 / Math.sqrt(D)],
      ['base_encoder.head.3.weight', 1 / Math.sqrt(cfg.projHidden)],
      ['base_encoder.head.6.weight', 1 / Math.sqrt(cfg.projHidden)],
      ['predictor.0.weight', 1 / Math.sqrt(cfg.projDim)],
      ['predictor.3.weight', 1 / Math.sqrt(cfg.predHidden)],
    ]);
    for (let i = 0; i < cfg.depth; i++) {
      bounds.set(`base_encoder.blocks.${i}.attn.qkv.weight`, Math.sqrt(6 / (D + D)));
      bounds.set(`base_encoder.blocks.${i}.attn.proj.weight`, Math.sqrt(6 / (D + D)));
      bounds.set(`base_encoder.blocks.${i}.mlp.fc1.weight`, Math.sqrt(6 / (D + hidden)));
      bounds.set(`base_encoder.blocks.${i}.mlp.fc2.weight`, Math.sqrt(6 / (hidden + D)));
    }
    for (const [name, a] of bounds) {
      const st = stats(S.get(name)!.data);
      assert.ok(st.min >= -a && st.max <= a, `${name} within ±${a}`);
      assert.ok(st.max > 0.9 * a && st.min < -0.9 * a, `${name} fills ±${a}`);
      const n = S.get(name)!.data.length;
      // std of the sample std of U(±a) is about a·0.26/√n; allow 5 of those
      assert.ok(Math.abs(st.std - a / Math.sqrt(3)) < (5 * 0.26 * a) / Math.sqrt(n) + 1e-9, `${name} std ${st.std} vs ${a / Math.sqrt(3)}`);
      assert.ok(Math.abs(st.mean) < (5 * a) / Math.sqrt(3 * n), `${name} mean ${st.mean}`);
    }
    const checkedWeights = [...S.keys()].filter((n) => n.startsWith('base_encoder.') && S.get(n)!.shape.length >= 2 && !n.endsWith('pos_embed'));
    assert.deepEqual(
      checkedWeights.filter((n) => !bounds.has(n) && !n.endsWith('cls_token')),
      [],
      'every matrix has a bound',
    );

    const cls = stats(S.get('base_encoder.cls_token')!.data);
    assert.ok(cls.std > 0.7e-6 && cls.std < 1.3e-6, `cls std ${cls.std}`);
    for (const [name, t] of S) {
      if (!name.startsWith('base_encoder.') && !name.startsWith('predictor.')) continue;
      const short = name.split('.').slice(-2).join('.');
      if (name.endsWith('.bias') || name.endsWith('running_mean') || name.endsWith('num_batches_tracked')) {
        assert.ok(t.data.every((x) => x === 0), `${name} zeros`);
      } else if (/norm\d?\.weight$/.test(name) || name.endsWith('running_var') || (/(head|predictor)\.[14]\.weight$/.test(name))) {
        assert.ok(t.data.every((x) => x === 1), `${name} ones (${short})`);
      }
    }
    model.dispose();
  });

  it('the momentum encoder starts as an exact copy; a seed fixes the model', () => {
    const a = new MoCoViT(cfg, 7);
    const b = new MoCoViT(cfg, 7);
    const c = new MoCoViT(cfg, 8);
    for (const [name, v] of a.vars) {
      if (name.startsWith('base_encoder.')) {
        const m = a.vars.get(name.replace('base_encoder.', 'momentum_encoder.'))!;
        assert.deepEqual(m.dataSync(), v.dataSync(), `${name} copied`);
      }
      assert.deepEqual(b.vars.get(name)!.dataSync(), v.dataSync(), `${name} same seed`);
    }
    const w = 'base_encoder.blocks.0.attn.qkv.weight';
    assert.notDeepEqual(c.vars.get(w)!.dataSync(), a.vars.get(w)!.dataSync());
    for (const m of [a, b, c]) m.dispose();
    void tf;
  });
});
