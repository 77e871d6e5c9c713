/**
 * AdamW as torch.optim.AdamW of PyTorch 1.13 (single-tensor path, amsgrad off), the optimizer of every
 * ViT config of the official repo: `AdamW(model.parameters(), lr, weight_decay=wd)`.
 *
 *   t ← t + 1
 *   p ← p·(1 − lr·wd)                          decoupled decay, applied to every parameter passed (no groups)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g·g
 *   denom = sqrt(v) / sqrt(1 − β2^t) + eps
 *   p ← p − (lr / (1 − β1^t))·m / denom
 *
 * Scalars are float64 as in Python, tensors float32, and the operations run in PyTorch's order so that
 * results agree with it to float32 rounding. At lr = 0 the moments and t still advance, as in PyTorch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ADAMW, fusedKernels, hasKernel, packed } from '../engine/webgpu-kernels.ts';
import { BaseOptimizer, type ParamGrad } from './optimizer.ts';

export interface AdamWOptions {
  weightDecay: number;
  betas: [number, number];
  eps: number;
}

export class AdamW extends BaseOptimizer {
  readonly name = 'adamw' as const;
  protected readonly slotNames = ['exp_avg', 'exp_avg_sq'] as const;
  protected readonly perParamSteps = true;

  constructor(private readonly opts: AdamWOptions) {
    super();
  }

  protected update(pairs: ParamGrad[], lr: number): void {
    const { weightDecay: wd, eps } = this.opts;
    const [beta1, beta2] = this.opts.betas;
    if (this.updatePacked(pairs, lr)) return;
    for (const { name, p, g } of pairs) {
      const t = this.nextStep(name);
      // one dispatch for the whole update where the backend has moco3's kernel (webgpu)
      const fused = fusedKernels(ADAMW, { p, g, m: this.slot(name, 'exp_avg'), v: this.slot(name, 'exp_avg_sq') }, { lr, weightDecay: wd, beta1, beta2, eps, step: t });
      if (fused) {
        p.assign(fused[0]!);
        this.setSlot(name, 'exp_avg', fused[1]!);
        this.setSlot(name, 'exp_avg_sq', fused[2]!);
        continue;
      }
      const expAvg0 = this.slot(name, 'exp_avg') ?? tf.zerosLike(p);
      const expAvgSq0 = this.slot(name, 'exp_avg_sq') ?? tf.zerosLike(p);

      const decayed = tf.mul(p, 1 - lr * wd); // param.mul_(1 - lr * weight_decay)
      const expAvg = tf.add(tf.mul(expAvg0, beta1), tf.mul(g, 1 - beta1)); // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
      const expAvgSq = tf.add(tf.mul(expAvgSq0, beta2), tf.mul(tf.mul(g, 1 - beta2), g)); // .addcmul_(grad, grad, value=1 - beta2)

      const biasCorrection1 = 1 - beta1 ** t;
      const biasCorrection2 = 1 - beta2 ** t;
      const stepSize = lr / biasCorrection1;
      const denom = tf.add(tf.div(tf.sqrt(expAvgSq), Math.sqrt(biasCorrection2)), eps);
      p.assign(tf.add(decayed, tf.div(tf.mul(expAvg, -stepSize), denom))); // param.addcdiv_(exp_avg, denom, value=-step_size)

      this.setSlot(name, 'exp_avg', expAvg);
      this.setSlot(name, 'exp_avg_sq', expAvgSq);
    }
  }

  /**
   * The whole update in one dispatch where the backend packs tensors (webgpu): the parameters, gradients
   * and moments laid end to end, moco3's AdamW kernel once over them, the results cut back (the update is
   * elementwise, so it is the same arithmetic as per parameter). Needs every parameter at the same step
   * and the moments all present or all absent, as in a run; false (nothing done) otherwise.
   */
  private updatePacked(pairs: ParamGrad[], lr: number): boolean {
    const group = hasKernel(ADAMW) ? this.packedGroup(pairs) : null;
    if (!group) return false;
    const { weightDecay, eps } = this.opts;
    const [beta1, beta2] = this.opts.betas;
    const out = packed(group.lists, ([p, g, m, v]) => fusedKernels(ADAMW, { p, g, m, v }, { lr, weightDecay, beta1, beta2, eps, step: group.t })!);
    if (!out) return false;
    this.assignPacked(pairs, out);
    return true;
  }

}
