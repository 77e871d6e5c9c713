/**
 * summary.json: a run's results, written by the loop when it ends; the run-folder evaluation (knn_eval,
 * linear_*) and the report (dips, spikes) merge their keys into it.
 */
import { writeFileAtomic } from '../engine/files.ts';
import type { RunStatus } from './status.ts';
import { readJsonChecked, runPath, type Obj } from './paths.ts';

export interface Summary {
  status: RunStatus;
  steps: number;
  total_steps: number;
  epochs: number;
  knn_top1: number | null;
  knn_top5: number | null;
  /** the step knn_top1 and knn_top5 were measured at: the last the monitor ran (before the divergence, for a diverged run) */
  knn_step?: number | null;
  best_knn_top1: number | null;
  linear_top1: number | null;
  linear_top5: number | null;
  /** why linear_top1 is null where the probe ran and diverged (src/eval/linear.ts ProbeDiverged) */
  linear_error?: string;
  diverged_at: number | null;
  wall_s: number;
  train_s: number;
  images_per_s: number | null;
  final_loss: number | null;
  backend: string;
  config_hash: string;
}

/** ` at step N` when a summary's kNN is not of its last step (a diverged run's), else '': for the lines that print it. */
export const knnStepNote = (s: Pick<Summary, 'knn_step' | 'steps'>): string =>
  s.knn_step !== undefined && s.knn_step !== null && s.knn_step !== s.steps ? ` at step ${s.knn_step}` : '';

/** JSON as every run-folder file is written: two-space indent, non-finite numbers as null, a final newline. */
const toJson = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

export function writeSummary(runDir: string, summary: Summary): void {
  writeFileAtomic(runPath(runDir, 'summary'), toJson(summary));
}

/** summary.json, or null when there is none; a damaged one is a RunFolderError. */
export function readSummary(runDir: string): Obj | null {
  return readJsonChecked(runPath(runDir, 'summary'), 'remove it (`moco3 train --resume` or the sweep writes it again) or train the run again with `moco3 train --force`');
}

/** Merge keys into summary.json (atomic), keeping what is there; no write when nothing changes. Returns the merged summary. */
export function mergeSummary(runDir: string, values: Obj): Obj {
  const cur = readSummary(runDir) ?? {};
  const text = toJson({ ...cur, ...values });
  if (text !== toJson(cur)) writeFileAtomic(runPath(runDir, 'summary'), text);
  return JSON.parse(text) as Obj;
}
