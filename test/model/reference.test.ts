/** The model against the independent float64 reference (reference.ts), forward and gradient. */
import { tf } from '../helpers/tf.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MoCoViT } from '../../src/model/moco.ts';
import { refBackbone, refForward } from './reference.ts';
import { assertClose, images, perturbAll, tinyConfig, torchState } from './util.ts';

describe('model vs float64 reference', () => {
  it('features() equals the timm ViT forward computed in float64', () => {
    const cfg = tinyConfig({ heads: 2 });
    const model = new MoCoViT(cfg, 3);
    // non-trivial LN/bias values so every parameter matters
    perturbAll(model, 0.3);
    const { t, data } = images('f', 3, cfg.imageSize);
    const got = model.features(t);
    const S = torchState(model);
    const want = refBackbone(S, 'base_encoder.', cfg, data, 3).flatMap((r) => [...r]);
    assertClose(got.dataSync(), want, 1e-4, 1e-5, 'features');
    tf.dispose([got, t]);
    model.dispose();
  });

  it('loss() equals builder.py forward in float64 (base and momentum differ)', () => {
    const cfg = tinyConfig();
    const model = new MoCoViT(cfg, 4);
    perturbAll(model, 0.3);
    const B = 6;
    const a = images('a', B, cfg.imageSize);
    const b = images('b', B, cfg.imageSize);
    const got = model.loss(a.t, b.t);
    const want = refForward(torchState(model), cfg, a.data, b.data, B).loss;
    assertClose([got.dataSync()[0]!], [want], 1e-5, 1e-6, 'loss');
    tf.dispose([got, a.t, b.t]);
    model.dispose();
  });

  it('step() gradients equal central differences of the float64 reference loss', () => {
    const cfg = tinyConfig({ patchProj: 'frozen' });
    const model = new MoCoViT(cfg, 5);
    perturbAll(model, 0.2);
    const B = 6;
    const a = images('c', B, cfg.imageSize);
    const b = images('d', B, cfg.imageSize);
    const S = torchState(model);
    // m = 1 leaves the momentum encoder exactly as it is, so keys are those of S
    const { loss, grads } = model.step(a.t, b.t, 1);
    assertClose([loss.dataSync()[0]!], [refForward(S, cfg, a.data, b.data, B).loss], 1e-5, 1e-6, 'step loss');
    let checked = 0;
    for (const name of model.gradNames()) {
      const g = model.toTorch(name, grads.get(name)!);
      const gv = g.dataSync();
      g.dispose();
      const p = S.get(name)!.data;
      // the largest-gradient element and one fixed other element
      let top = 0;
      for (let i = 1; i < gv.length; i++) if (Math.abs(gv[i]!) > Math.abs(gv[top]!)) top = i;
      for (const i of new Set([top, Math.floor(gv.length / 2)])) {
        const h = 1e-5;
        const p0 = p[i]!;
        p[i] = p0 + h;
        const fp = refForward(S, cfg, a.data, b.data, B).loss;
        p[i] = p0 - h;
        const fm = refForward(S, cfg, a.data, b.data, B).loss;
        p[i] = p0;
        const fd = (fp - fm) / (2 * h);
        assertClose([gv[i]!], [fd], 2e-3, 2e-5, `d loss / d ${name}[${i}]`);
        checked++;
      }
    }
    assert.ok(checked > 2 * 30, `checked ${checked} elements`);
    tf.dispose([loss, a.t, b.t, ...grads.values()]);
    model.dispose();
  });
});
