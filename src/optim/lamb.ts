/**
 * LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning"), in the form of timm's `Lamb`
 * (timm/optim/lamb.py, NVIDIA FusedLAMB behaviour) with these choices, since the paper's exact variant is
 * unknown (docs/MOCOV3.md "Optimization": MoCo v3 used LAMB with wd 1e-3; the repo has no LAMB):
 *   - global gradient-norm clipping is off unless `lambMaxGradNorm` is set (timm clips at 1.0 by default);
 *   - weight decay is L2 added to the Adam direction (not decoupled), and the trust ratio is applied to every
 *     parameter with weight decay: `lambExcludeBiasNorm` gives ndim <= 1 parameters no decay and trust 1
 *     (timm's param groups with wd 0; `exclude_from_layer_adaptation` of the authors' BERT code), and with
 *     `weightDecay` 0 no parameter is adapted (timm's `weight_decay != 0 or always_adapt`, always_adapt off:
 *     Adam with clipping);
 *   - no trust-ratio clipping (LAMBC off), bias correction on, per-parameter step t as in AdamW.
 *
 *   g ← g / max(1, ‖(all g)‖ / maxGradNorm)      only when clipping is on
 *   t ← t + 1
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g·g
 *   u = (m / (1 − β1^t)) / (sqrt(v) / sqrt(1 − β2^t) + eps) + wd·p
 *   r = ‖p‖ / ‖u‖                                1 when either norm is 0, or wd is 0 (for this parameter)
 *   p ← p − lr·(r·u)
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedKernels, hasKernel, LAMB, LAMB_GROUP, packed } from '../engine/webgpu-kernels.ts';
import { BaseOptimizer, globalNorm, l2, type NdimOf, type ParamGrad } from './optimizer.ts';

export interface LambOptions {
  weightDecay: number;
  betas: [number, number];
  eps: number;
  excludeBiasNorm: boolean;
  maxGradNorm: number | null;
}

export class Lamb extends BaseOptimizer {
  readonly name = 'lamb' as const;
  protected readonly slotNames = ['exp_avg', 'exp_avg_sq'] as const;
  protected readonly perParamSteps = true;

  constructor(
    private readonly opts: LambOptions,
    private readonly ndimOf: NdimOf,
  ) {
    super();
  }

  protected update(pairs: ParamGrad[], lr: number): void {
    const { weightDecay, eps, excludeBiasNorm, maxGradNorm } = this.opts;
    const [beta1, beta2] = this.opts.betas;
    let clip: tf.Tensor | null = null;
    if (maxGradNorm != null && pairs.length > 0) {
      clip = tf.maximum(tf.div(globalNorm(pairs.map((x) => x.g)), maxGradNorm), 1);
    }
    if (this.updatePacked(pairs, lr, clip)) return;
    for (const { name, p, g: rawGrad } of pairs) {
      const g = clip === null ? rawGrad : tf.div(rawGrad, clip);
      const excluded = excludeBiasNorm && this.ndimOf(name) <= 1;
      const wd = excluded ? 0 : weightDecay;
      // timm adapts a parameter only where it decays it (always_adapt off)
      const adapt = wd !== 0;
      const t = this.nextStep(name);
      // two dispatches where the backend has moco3's kernel (webgpu): the moments and norms, the update
      const fused = fusedKernels(
        LAMB,
        { p, g, m: this.slot(name, 'exp_avg'), v: this.slot(name, 'exp_avg_sq') },
        { lr, weightDecay: wd, beta1, beta2, eps, step: t, adapt },
      );
      if (fused) {
        p.assign(fused[0]!);
        this.setSlot(name, 'exp_avg', fused[1]!);
        this.setSlot(name, 'exp_avg_sq', fused[2]!);
        continue;
      }
      const expAvg0 = this.slot(name, 'exp_avg') ?? tf.zerosLike(p);
      const expAvgSq0 = this.slot(name, 'exp_avg_sq') ?? tf.zerosLike(p);

      const expAvg = tf.add(tf.mul(expAvg0, beta1), tf.mul(g, 1 - beta1));
      const expAvgSq = tf.add(tf.mul(expAvgSq0, beta2), tf.mul(tf.mul(g, 1 - beta2), g));
      const biasCorrection1 = 1 - beta1 ** t;
      const biasCorrection2 = 1 - beta2 ** t;
      const denom = tf.add(tf.div(tf.sqrt(expAvgSq), Math.sqrt(biasCorrection2)), eps);
      let update = tf.div(tf.div(expAvg, biasCorrection1), denom);
      if (adapt) {
        update = tf.add(update, tf.mul(p, wd));
        const wNorm = l2(p);
        const uNorm = l2(update);
        const one = tf.onesLike(wNorm);
        const trust = tf.where(tf.greater(wNorm, 0), tf.where(tf.greater(uNorm, 0), tf.div(wNorm, uNorm), one), one);
        update = tf.mul(update, trust);
      }
      p.assign(tf.add(p, tf.mul(update, -lr)));

      this.setSlot(name, 'exp_avg', expAvg);
      this.setSlot(name, 'exp_avg_sq', expAvgSq);
    }
  }

  /**
   * The whole update in two dispatches where the backend packs tensors (webgpu): moco3's group kernel
   * takes each parameter's norms over its own segment of the packed tensors, as the per-parameter kernel
   * does. Needs every parameter at the same step and the moments all present or all absent, as in a run;
   * false (nothing done) otherwise.
   */
  private updatePacked(pairs: ParamGrad[], lr: number, clip: tf.Tensor | null): boolean {
    const group = hasKernel(LAMB_GROUP) ? this.packedGroup(pairs) : null;
    if (!group) return false;
    const { weightDecay, eps, excludeBiasNorm } = this.opts;
    const [beta1, beta2] = this.opts.betas;
    const adaptOf = (name: string) => weightDecay !== 0 && !(excludeBiasNorm && this.ndimOf(name) <= 1);
    const out = packed(group.lists, ([p, rawG, m, v], from, to) => {
      const run = pairs.slice(from, to);
      const g = clip === null ? rawG! : tf.div(rawG!, clip);
      const attrs = { lr, weightDecay, beta1, beta2, eps, step: group.t, sizes: run.map((x) => x.p.size), adapt: run.map((x) => adaptOf(x.name)) };
      return fusedKernels(LAMB_GROUP, { p, g, m, v }, attrs)!;
    });
    if (!out) return false;
    this.assignPacked(pairs, out);
    return true;
  }

}
