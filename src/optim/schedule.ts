/**
 * Learning-rate and momentum schedules of the official main_moco.py / main_lincls.py. Pre-training
 * schedules take a fractional epoch `e = epoch + i / itersPerEpoch` (updated every iteration).
 */

/** Linear scaling rule: lr = base_lr × batch / 256 (main_moco.py L190). */
export function scaledLr(baseLr: number, batchSize: number): number {
  return (baseLr * batchSize) / 256;
}

/** e = epoch + i / itersPerEpoch, the argument of the per-iteration schedules. */
export function fractionalEpoch(epoch: number, iter: number, itersPerEpoch: number): number {
  if (!(itersPerEpoch > 0)) throw new RangeError(`itersPerEpoch must be > 0, got ${itersPerEpoch}`);
  return epoch + iter / itersPerEpoch;
}

export interface LrSchedule {
  /** peak lr (already scaled by batch/256) */
  lr: number;
  epochs: number;
  warmupEpochs: number;
}

/**
 * adjust_learning_rate of main_moco.py: linear warmup from 0, then half-cosine to 0.
 *   e < warmup: lr·e/warmup;  else lr·0.5·(1 + cos(π·(e − warmup)/(epochs − warmup)))
 */
export function lrAt(e: number, s: LrSchedule): number {
  if (!(s.epochs > 0) || !(s.warmupEpochs >= 0) || s.warmupEpochs > s.epochs) {
    throw new RangeError(`lr schedule needs 0 <= warmupEpochs <= epochs and epochs > 0, got ${s.warmupEpochs}, ${s.epochs}`);
  }
  if (e < s.warmupEpochs) return (s.lr * e) / s.warmupEpochs;
  // warmup == epochs: the cosine part is never reached in training; end at 0 rather than 0/0
  if (s.epochs === s.warmupEpochs) return 0;
  return s.lr * 0.5 * (1 + Math.cos((Math.PI * (e - s.warmupEpochs)) / (s.epochs - s.warmupEpochs)));
}

export interface MomentumSchedule {
  /** initial momentum m0 (0.99 for ViT) */
  m0: number;
  epochs: number;
  /** 'cosine' = --moco-m-cos (all ViT configs) */
  schedule: 'cosine' | 'constant';
}

/** adjust_moco_momentum of main_moco.py: m = 1 − 0.5·(1 + cos(π·e/epochs))·(1 − m0), reaching 1 at the end. */
export function momentumAt(e: number, s: MomentumSchedule): number {
  if (s.schedule === 'constant') return s.m0;
  if (!(s.epochs > 0)) throw new RangeError(`momentum schedule needs epochs > 0, got ${s.epochs}`);
  return 1 - 0.5 * (1 + Math.cos((Math.PI * e) / s.epochs)) * (1 - s.m0);
}

/** adjust_learning_rate of main_lincls.py: per-epoch cosine, no warmup: lr·0.5·(1 + cos(π·epoch/epochs)). */
export function probeLrAt(epoch: number, s: { lr: number; epochs: number }): number {
  if (!(s.epochs > 0)) throw new RangeError(`probe lr schedule needs epochs > 0, got ${s.epochs}`);
  return s.lr * 0.5 * (1 + Math.cos((Math.PI * epoch) / s.epochs));
}
