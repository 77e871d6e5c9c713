/** `results/<sweep>/sweep.yaml`: the sweep as resolved, every run's full config. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { writeFileAtomic } from '../engine/files.ts';
import { formatFactor } from './scale.ts';
import { runLr, type SweepPlan } from './plan.ts';

export function resolvedSweep(plan: SweepPlan): Record<string, unknown> {
  return {
    name: plan.spec.name,
    id: plan.id,
    file: plan.spec.file,
    description: plan.spec.description,
    method: plan.spec.method,
    preset: plan.preset,
    scale: { batch: plan.scale.batch, batch_factor: formatFactor(plan.scale.batch), epochs: plan.scale.epochs, lr: plan.scale.lr, about: plan.scale.about },
    lr_rule: 'lr = optim.base_lr * optim.batch_size / 256',
    optimizers: plan.optimizers,
    seeds: plan.seeds,
    sets: plan.sets,
    varied: plan.varied,
    runs: plan.runs.map((r) => ({
      index: r.index,
      id: r.id,
      // the sweep file's (paper's) value and the value run, for every key the sweep sets
      paper: r.paper,
      values: r.values,
      lr: runLr(r.config),
      config_hash: r.hash,
      config: r.config,
    })),
  };
}

export function writeResolvedSweep(plan: SweepPlan): string {
  const path = join(plan.dir, 'sweep.yaml');
  const text = `# written by moco3 sweep: the sweep as resolved; each run's folder is <id>/\n${YAML.stringify(resolvedSweep(plan), { lineWidth: 0 })}`;
  // unchanged: not rewritten (the tasks of a Slurm array or agents on other hosts start together)
  let cur: string | null = null;
  try {
    cur = readFileSync(path, 'utf8');
  } catch {
    /* not written yet */
  }
  if (cur !== text) writeFileAtomic(path, text);
  return path;
}
