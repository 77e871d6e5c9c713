/** Analytic FLOPs (multiply-adds x 2) of a MoCo v3 training step, for GFLOP/s figures. */
import type { ResolvedRunConfig } from '../config/schema.ts';

export function vitForwardFlops(c: ResolvedRunConfig): number {
  const D = c.model.dim;
  const p = c.model.patch_size;
  const N = (c.data.image_size / p) ** 2;
  const T = N + 1;
  const H = Math.round(D * c.model.mlp_ratio);
  const patch = 2 * N * 3 * p * p * D;
  const block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * H;
  return patch + c.model.depth * block;
}

export function headFlops(c: ResolvedRunConfig): { projector: number; predictor: number } {
  const D = c.model.dim;
  const { proj_hidden: h, proj_dim: o, pred_hidden: q } = c.moco;
  return { projector: 2 * (D * h + h * h + h * o), predictor: 2 * (o * q + q * o) };
}

/** One step at batch B: per view, queries forward+backward (3x forward) and keys forward (1x). */
export function stepFlops(c: ResolvedRunConfig, batch = c.optim.batch_size): number {
  const vit = vitForwardFlops(c);
  const { projector, predictor } = headFlops(c);
  const perView = 3 * (vit + projector + predictor) + (vit + projector);
  return 2 * perView * batch;
}
