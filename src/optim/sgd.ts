/**
 * SGD with momentum as torch.optim.SGD (dampening 0, nesterov off), the linear-probe optimizer of
 * main_lincls.py.
 *
 *   d = g + wd·p                                  only when wd ≠ 0
 *   buf = d on the parameter's first step, else momentum·buf + d
 *   p = p − lr·buf                                 (p − lr·d and no buffer when momentum = 0)
 */
import * as tf from '@tensorflow/tfjs-core';
import { BaseOptimizer, type ParamGrad } from './optimizer.ts';

export interface SgdOptions {
  weightDecay: number;
  momentum: number;
}

export class Sgd extends BaseOptimizer {
  readonly name = 'sgd' as const;
  protected readonly slotNames: readonly string[];
  protected readonly perParamSteps = false;

  constructor(private readonly opts: SgdOptions) {
    super();
    this.slotNames = opts.momentum !== 0 ? ['momentum_buffer'] : [];
  }

  protected update(pairs: ParamGrad[], lr: number): void {
    const { weightDecay, momentum } = this.opts;
    for (const { name, p, g } of pairs) {
      let d: tf.Tensor = g;
      if (weightDecay !== 0) d = tf.add(d, tf.mul(p, weightDecay)); // d_p.add(param, alpha=weight_decay)
      if (momentum !== 0) {
        const buf0 = this.slot(name, 'momentum_buffer');
        // first step: buf = clone(d_p); then buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
        d = buf0 === undefined ? d : tf.add(tf.mul(buf0, momentum), d);
        this.setSlot(name, 'momentum_buffer', d);
      }
      p.assign(tf.add(p, tf.mul(d, -lr))); // param.add_(d_p, alpha=-lr)
    }
  }
}
