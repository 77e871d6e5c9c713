import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sincos2dPosEmbed } from '../../src/model/posembed.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { assertClose, tinyConfig } from './util.ts';

/** docs/MOCOV3.md "Architecture" (position embedding) written out: token m (row m/g, col m%g) → [sin(row ω), cos(row ω), sin(col ω), cos(col ω)]. */
function formula(g: number, D: number): number[] {
  const pd = D / 4;
  const out: number[] = new Array(D).fill(0); // class token
  for (let m = 0; m < g * g; m++) {
    const row = Math.floor(m / g);
    const col = m % g;
    const w = (d: number) => 1 / 10000 ** (d / pd);
    for (let d = 0; d < pd; d++) out.push(Math.sin(row * w(d)));
    for (let d = 0; d < pd; d++) out.push(Math.cos(row * w(d)));
    for (let d = 0; d < pd; d++) out.push(Math.sin(col * w(d)));
    for (let d = 0; d < pd; d++) out.push(Math.cos(col * w(d)));
  }
  return out;
}

describe('2D sin-cos position embedding', () => {
  it('equals the formula, class token zeros, first half indexed by the row', () => {
    for (const [g, D] of [[2, 8], [4, 16], [8, 64]] as const) {
      const pe = sincos2dPosEmbed(g, D);
      assert.equal(pe.length, (g * g + 1) * D);
      assertClose(pe, formula(g, D), 0, 1e-7, `pe g=${g} D=${D}`);
    }
    // token 1 = row 0, col 1: the row half is sin(0)=0, cos(0)=1; the column half is not
    const g = 4;
    const D = 16;
    const pe = sincos2dPosEmbed(g, D);
    const tok = (m: number) => Array.from(pe.subarray((m + 1) * D, (m + 2) * D));
    assert.deepEqual(tok(1).slice(0, 8), [0, 0, 0, 0, 1, 1, 1, 1]);
    assert.ok(Math.abs(tok(1)[8]! - Math.sin(1)) < 1e-7);
    // token g = row 1, col 0: the column half is the constant one
    assert.deepEqual(tok(g).slice(8), [0, 0, 0, 0, 1, 1, 1, 1]);
    assert.ok(Math.abs(tok(g)[0]! - Math.sin(1)) < 1e-7);
  });

  it('is the model pos_embed [1, N+1, D], identical in both encoders and not trained', () => {
    const cfg = tinyConfig({ dim: 16, imageSize: 16 });
    const model = new MoCoViT(cfg, 0);
    const v = model.vars.get('base_encoder.pos_embed')!;
    assert.deepEqual(model.torchShape('base_encoder.pos_embed'), [1, 17, 16]);
    assertClose(v.dataSync(), formula(4, 16), 0, 1e-7, 'pos_embed');
    assert.deepEqual(model.vars.get('momentum_encoder.pos_embed')!.dataSync(), v.dataSync());
    assert.ok(!model.gradNames().includes('base_encoder.pos_embed'));
    assert.ok(!model.trainableNames().includes('base_encoder.pos_embed'));
    model.dispose();
    assert.throws(() => sincos2dPosEmbed(2, 6), /divisible by 4/);
    void tf;
  });
});
