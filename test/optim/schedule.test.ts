import '../helpers/tf.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fractionalEpoch, lrAt, momentumAt, probeLrAt, scaledLr } from '../../src/optim/index.ts';

const near = (a: number, b: number, tol = 1e-15) => assert.ok(Math.abs(a - b) <= tol, `got ${a}, expected ${b}`);

describe('schedules (main_moco.py, main_lincls.py)', () => {
  it('scaledLr: base·batch/256', () => {
    near(scaledLr(1.5e-4, 4096), 2.4e-3); // ViT-B b4096: 1.5e-4·16
    near(scaledLr(1.5e-4, 1024), 6e-4); // ViT-S b1024: 1.5e-4·4
    near(scaledLr(3, 1024), 12); // linear probe
  });

  it('fractionalEpoch: epoch + i/itersPerEpoch', () => {
    near(fractionalEpoch(3, 25, 100), 3.25);
    for (const n of [0, -4, NaN]) assert.throws(() => fractionalEpoch(0, 0, n), (e: unknown) => e instanceof RangeError && e.message === `itersPerEpoch must be > 0, got ${n}`);
  });

  it('lrAt: linear warmup from 0 to lr, then half-cosine to 0', () => {
    const s = { lr: 2.4e-3, epochs: 300, warmupEpochs: 40 };
    near(lrAt(0, s), 0);
    near(lrAt(10, s), 6e-4); // 2.4e-3·10/40
    near(lrAt(39.5, s), 2.37e-3); // 2.4e-3·39.5/40
    near(lrAt(40, s), 2.4e-3); // cos(0) = 1
    near(lrAt(170, s), 1.2e-3); // (170 − 40)/260 = 1/2: cos(π/2) = 0
    near(lrAt(105, s), 2.4e-3 * 0.5 * (1 + Math.SQRT1_2)); // (105 − 40)/260 = 1/4: cos(π/4) = √½
    near(lrAt(300, s), 0); // cos(π) = −1
    near(lrAt(299.99, s), 0, 1e-11); // 2.4e-3·0.5·(1 − cos(π·0.01/260)) ≈ 1.8e-12
    assert.ok(lrAt(299.99, s) > 0);
  });

  it('lrAt without warmup starts at lr', () => {
    near(lrAt(0, { lr: 0.5, epochs: 100, warmupEpochs: 0 }), 0.5);
    near(lrAt(50, { lr: 0.5, epochs: 100, warmupEpochs: 0 }), 0.25);
    assert.throws(() => lrAt(0, { lr: 1, epochs: 10, warmupEpochs: 11 }), RangeError);
  });

  it('lrAt with warmup over all epochs: linear to the end, then 0 (not 0/0); no epochs or a negative warmup refused', () => {
    const s = { lr: 0.8, epochs: 4, warmupEpochs: 4 };
    near(lrAt(2, s), 0.4);
    near(lrAt(3.5, s), 0.7);
    assert.equal(lrAt(4, s), 0);
    for (const bad of [{ epochs: 0, warmupEpochs: 0 }, { epochs: 10, warmupEpochs: -1 }, { epochs: NaN, warmupEpochs: 0 }]) {
      assert.throws(() => lrAt(0, { lr: 1, ...bad }), (e: unknown) => e instanceof RangeError && e.message === `lr schedule needs 0 <= warmupEpochs <= epochs and epochs > 0, got ${bad.warmupEpochs}, ${bad.epochs}`);
    }
  });

  it('momentumAt: 0.99 → 1 by cosine, or constant', () => {
    const s = { m0: 0.99, epochs: 300, schedule: 'cosine' as const };
    near(momentumAt(0, s), 0.99); // 1 − 0.5·2·0.01
    near(momentumAt(150, s), 0.995); // 1 − 0.5·1·0.01
    near(momentumAt(300, s), 1.0); // 1 − 0.5·0·0.01
    near(momentumAt(100, s), 1 - 0.5 * 1.5 * 0.01); // cos(π/3) = 1/2
    near(momentumAt(150, { ...s, schedule: 'constant' }), 0.99);
    // a cosine over no epochs is refused (a constant one needs none)
    assert.throws(() => momentumAt(0, { ...s, epochs: 0 }), (e: unknown) => e instanceof RangeError && e.message === 'momentum schedule needs epochs > 0, got 0');
    near(momentumAt(3, { ...s, epochs: 0, schedule: 'constant' }), 0.99);
  });

  it('probeLrAt: per-epoch cosine without warmup', () => {
    const s = { lr: 12, epochs: 90 };
    near(probeLrAt(0, s), 12);
    near(probeLrAt(45, s), 6, 1e-14);
    near(probeLrAt(30, s), 12 * 0.5 * 1.5, 1e-14); // cos(π/3) = 1/2
    near(probeLrAt(90, s), 0);
    assert.throws(() => probeLrAt(0, { lr: 12, epochs: 0 }), (e: unknown) => e instanceof RangeError && e.message === 'probe lr schedule needs epochs > 0, got 0');
  });
});
