/**
 * LARS as the official moco/optimizer.py (nesterov off, as main_moco.py builds it): no weight decay and
 * no trust scaling for parameters with PyTorch ndim <= 1 (biases, BN/LN gamma and beta).
 *
 *   dp = g
 *   if ndim(p) > 1:
 *     dp = dp + wd·p
 *     q = tc·‖p‖ / ‖dp‖                          1 when either norm is 0
 *     dp = dp·q
 *   mu = momentum·mu + dp                         mu starts at zeros
 *   p = p − lr·mu
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedKernels, hasKernel, LARS, LARS_GROUP, packed } from '../engine/webgpu-kernels.ts';
import { BaseOptimizer, l2, type NdimOf, type ParamGrad } from './optimizer.ts';

export interface LarsOptions {
  weightDecay: number;
  momentum: number;
  trustCoefficient: number;
}

export class Lars extends BaseOptimizer {
  readonly name = 'lars' as const;
  protected readonly slotNames = ['mu'] as const;
  protected readonly perParamSteps = false;

  constructor(
    private readonly opts: LarsOptions,
    private readonly ndimOf: NdimOf,
  ) {
    super();
  }

  protected update(pairs: ParamGrad[], lr: number): void {
    const { weightDecay, momentum, trustCoefficient } = this.opts;
    if (this.updatePacked(pairs, lr)) return;
    for (const { name, p, g } of pairs) {
      // two dispatches where the backend has moco3's kernel (webgpu): the norms, the update
      const fused = fusedKernels(LARS, { p, g, mu: this.slot(name, 'mu') }, { lr, weightDecay, momentum, trustCoefficient, adapt: this.ndimOf(name) > 1 });
      if (fused) {
        p.assign(fused[0]!);
        this.setSlot(name, 'mu', fused[1]!);
        continue;
      }
      let dp: tf.Tensor = g;
      if (this.ndimOf(name) > 1) {
        // not bias / norm (PyTorch ndim, not the tfjs rank)
        dp = tf.add(dp, tf.mul(p, weightDecay)); // dp.add(p, alpha=weight_decay)
        const paramNorm = l2(p);
        const updateNorm = l2(dp);
        const one = tf.onesLike(paramNorm);
        const q = tf.where(
          tf.greater(paramNorm, 0),
          tf.where(tf.greater(updateNorm, 0), tf.div(tf.mul(paramNorm, trustCoefficient), updateNorm), one),
          one,
        );
        dp = tf.mul(dp, q);
      }
      const mu0 = this.slot(name, 'mu') ?? tf.zerosLike(p);
      const mu = tf.add(tf.mul(mu0, momentum), dp); // mu.mul_(momentum).add_(dp)
      p.assign(tf.add(p, tf.mul(mu, -lr))); // p.add_(mu, alpha=-lr)
      this.setSlot(name, 'mu', mu);
    }
  }

  /**
   * The whole update in two dispatches where the backend packs tensors (webgpu): moco3's group kernel
   * takes each parameter's norms over its own segment of the packed tensors, as the per-parameter kernel
   * does. Needs the momentum buffers all present or all absent, as in a run; false (nothing done) otherwise.
   */
  private updatePacked(pairs: ParamGrad[], lr: number): boolean {
    const group = hasKernel(LARS_GROUP) ? this.packedGroup(pairs) : null;
    if (!group) return false;
    const { weightDecay, momentum, trustCoefficient } = this.opts;
    const out = packed(group.lists, ([p, g, mu], from, to) => {
      const run = pairs.slice(from, to);
      const attrs = { lr, weightDecay, momentum, trustCoefficient, sizes: run.map((x) => x.p.size), adapt: run.map((x) => this.ndimOf(x.name) > 1) };
      return fusedKernels(LARS_GROUP, { p, g, mu }, attrs)!;
    });
    if (!out) return false;
    this.assignPacked(pairs, out);
    return true;
  }

}
