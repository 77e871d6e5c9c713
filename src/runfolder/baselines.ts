/**
 * results/<sweep>/baselines.json, as `moco3 baselines` and the end of `moco3 sweep` write it
 * (src/sweep/baselines.ts) and the report reads it (src/report/baselines.ts): its shape, and its checked reader.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunFolderError } from './paths.ts';

export interface BaselineSeed {
  seed: number;
  random_init: { knn_top1: number; linear_top1: number };
  pixels: { linear_top1: number; dim: number };
  linear: { epochs: number; base_lr: number; batch_size: number; train_views: string };
  /** the kNN monitor's settings the untrained encoder's kNN was measured with (files written before: none) */
  knn?: KnnSettings;
}

/** eval.knn as a run's config gives it: the monitor's neighbours, temperature and bank and query sizes (null: the whole split). */
export interface KnnSettings {
  k: number;
  t: number;
  bank_size: number | null;
  query_size: number | null;
}
export const KNN_KEYS = ['k', 't', 'bank_size', 'query_size'] as const;

/** Whether two kNN monitors' settings are the same, key by key. */
export const sameKnnSettings = (a: KnnSettings, b: KnnSettings): boolean => KNN_KEYS.every((k) => a[k] === b[k]);

/** A run config's eval.knn, as a baselines entry records it. */
export function knnSettingsOf(c: { eval: { knn: KnnSettings } }): KnnSettings {
  const k = c.eval.knn;
  return { k: k.k, t: k.t, bank_size: k.bank_size ?? null, query_size: k.query_size ?? null };
}

export interface BaselinesFile {
  dataset: string;
  image_size: number;
  arch: string;
  /** written since the report checks the baselines' model against the runs'; older files have `arch` only */
  model?: Record<string, unknown>;
  /** the images of each split the baselines used (written by every version; absent only in a hand-made file) */
  train_size?: number;
  test_size?: number;
  seeds: BaselineSeed[];
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The model keys a baselines file was computed for: its `model`, or what its `arch` label (src/sweep/baselines.ts) names. */
export function baselineModel(b: BaselinesFile): Record<string, unknown> {
  if (isObj(b.model)) return b.model;
  const m = /^(\S+) \(dim (\d+), depth (\d+), patch (\d+)\)$/.exec(b.arch);
  return m ? { arch: m[1], dim: Number(m[2]), depth: Number(m[3]), patch_size: Number(m[4]) } : { arch: b.arch };
}

/** baselines.json of a sweep folder, validated; null when the sweep has none. */
export function readBaselines(sweepDir: string): BaselinesFile | null {
  const p = join(sweepDir, 'baselines.json');
  if (!existsSync(p)) return null;
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new RunFolderError(`${p}: not JSON (${(e as Error).message}); delete it and run \`moco3 baselines <sweep>\` again`);
  }
  const bad = (what: string) => new RunFolderError(`${p}: ${what}; delete it and run \`moco3 baselines <sweep>\` again`);
  if (!isObj(v) || typeof v.dataset !== 'string' || !isNum(v.image_size) || typeof v.arch !== 'string' || !Array.isArray(v.seeds) || !v.seeds.length) {
    throw bad('expected an object with dataset, image_size, arch and a non-empty seeds list');
  }
  for (const [i, s] of v.seeds.entries()) {
    const ok =
      isObj(s) && isNum(s.seed) && isObj(s.random_init) && isNum(s.random_init.knn_top1) && isNum(s.random_init.linear_top1) &&
      isObj(s.pixels) && isNum(s.pixels.linear_top1) && isNum(s.pixels.dim) && isObj(s.linear) && isNum(s.linear.epochs);
    if (!ok) throw bad(`seeds[${i}]: expected seed, random_init.{knn_top1, linear_top1}, pixels.{linear_top1, dim}, linear.epochs`);
  }
  return v as unknown as BaselinesFile;
}
