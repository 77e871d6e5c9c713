/** Optimizers and schedules of MoCo v3 (docs/MOCOV3.md). */
import { AdamW } from './adamw.ts';
import { Lamb } from './lamb.ts';
import { Lars } from './lars.ts';
import { OPTIMIZER_NAMES } from '../config/schema.ts';
import type { NdimOf, Optimizer, OptimizerConfig } from './optimizer.ts';
import { Sgd } from './sgd.ts';

export { AdamW } from './adamw.ts';
export { Lamb } from './lamb.ts';
export { Lars } from './lars.ts';
export { Sgd } from './sgd.ts';
export {
  BaseOptimizer,
  OptimizerStateError,
  type NdimOf,
  type Optimizer,
  type OptimizerConfig,
  type OptimizerName,
} from './optimizer.ts';
export * from './schedule.ts';

function check(ok: boolean, msg: string): void {
  if (!ok) throw new RangeError(`optimizer config: ${msg}`);
}

/**
 * Builds the optimizer `cfg.name`. `ndimOf(name)` gives a parameter's PyTorch ndim (LARS, and LAMB with
 * lambExcludeBiasNorm, treat ndim <= 1 as bias/norm).
 */
export function createOptimizer(cfg: OptimizerConfig, ndimOf: NdimOf): Optimizer {
  const finite = (x: number) => typeof x === 'number' && Number.isFinite(x);
  check((OPTIMIZER_NAMES as readonly string[]).includes(cfg.name), `unknown optimizer '${cfg.name}' (one of ${OPTIMIZER_NAMES.join(', ')})`);
  check(finite(cfg.weightDecay) && cfg.weightDecay >= 0, `weightDecay must be >= 0, got ${cfg.weightDecay}`);
  switch (cfg.name) {
    case 'adamw':
    case 'lamb': {
      const [b1, b2] = cfg.betas;
      check(finite(b1) && b1 >= 0 && b1 < 1 && finite(b2) && b2 >= 0 && b2 < 1, `betas must be in [0, 1), got [${cfg.betas}]`);
      check(finite(cfg.eps) && cfg.eps >= 0, `eps must be >= 0, got ${cfg.eps}`);
      const betas: [number, number] = [b1, b2];
      if (cfg.name === 'adamw') return new AdamW({ weightDecay: cfg.weightDecay, betas, eps: cfg.eps });
      const maxGradNorm = cfg.lambMaxGradNorm ?? null;
      check(maxGradNorm === null || (finite(maxGradNorm) && maxGradNorm > 0), `lambMaxGradNorm must be > 0 or null, got ${maxGradNorm}`);
      return new Lamb(
        { weightDecay: cfg.weightDecay, betas, eps: cfg.eps, excludeBiasNorm: cfg.lambExcludeBiasNorm ?? false, maxGradNorm },
        ndimOf,
      );
    }
    case 'lars':
      check(finite(cfg.momentum) && cfg.momentum >= 0, `momentum must be >= 0, got ${cfg.momentum}`);
      check(finite(cfg.trustCoefficient) && cfg.trustCoefficient > 0, `trustCoefficient must be > 0, got ${cfg.trustCoefficient}`);
      return new Lars({ weightDecay: cfg.weightDecay, momentum: cfg.momentum, trustCoefficient: cfg.trustCoefficient }, ndimOf);
    case 'sgd':
      check(finite(cfg.momentum) && cfg.momentum >= 0, `momentum must be >= 0, got ${cfg.momentum}`);
      return new Sgd({ weightDecay: cfg.weightDecay, momentum: cfg.momentum });
  }
}
