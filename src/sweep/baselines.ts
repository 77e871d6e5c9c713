/**
 * A sweep's baselines (see train/baselines.ts), written to results/<sweep>/baselines.json once per sweep:
 * one entry per seed of the plan, from the first planned run of that seed (the runs of a sweep share data,
 * encoder and probe; what varies — batch, lr, optimizer, patch projection — does not touch an untrained
 * encoder). The report reads the file; it never computes.
 */
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../engine/files.ts';
import { asidePath } from '../runfolder/aside.ts';
import { baselineModel, knnSettingsOf, readBaselines, sameKnnSettings, type BaselinesFile } from '../runfolder/baselines.ts';
import type { Dataset } from '../data/index.ts';
import { computeBaselines, type BaselineFigures } from '../train/baselines.ts';
import { probeBatchSize, probeViews } from '../eval/offline.ts';
import { loadRunData } from '../components/index.ts';
import type { SweepPlan } from './plan.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';

export const BASELINES_FILE = 'baselines.json';

export interface SweepBaselines {
  dataset: string;
  image_size: number;
  arch: string;
  /** the model keys the untrained encoder depends on, so that a report can tell baselines of another model */
  model: { arch: string; dim: number; depth: number; patch_size: number; heads: number; mlp_ratio: number };
  train_size: number;
  test_size: number;
  seeds: BaselineFigures[];
}

/** The model keys the untrained encoder depends on: what baselines.json records, and what must match to keep it. */
const MODEL_KEYS = ['arch', 'dim', 'depth', 'patch_size', 'heads', 'mlp_ratio'] as const;
const modelOf = (m: ResolvedRunConfig['model']) => Object.fromEntries(MODEL_KEYS.map((k) => [k, m[k]])) as SweepBaselines['model'];

export function baselinesPath(plan: Pick<SweepPlan, 'dir'>): string {
  return join(plan.dir, BASELINES_FILE);
}

/**
 * The baselines already written for this plan's data (its sizes too: those of `ds` when loaded), model and
 * probe, by seed, and how many of the file's entries are of other data, model or probe settings (`others`:
 * a rewrite would lose them). None when the file is missing.
 */
function writtenBaselines(plan: SweepPlan, ds?: Dataset): { have: Map<number, BaselineFigures>; others: number } {
  const have = new Map<number, BaselineFigures>();
  const first = plan.runs[0];
  // checked as the report reads it: a damaged file is one line (exit 2), never computed over
  const file = first ? (readBaselines(plan.dir) as Partial<SweepBaselines> | null) : null;
  if (!first || !file) return { have, others: 0 };
  const entries = Array.isArray(file.seeds) ? file.seeds : [];
  const m = modelOf(first.config.model);
  // a file older than `model` names the model in its arch label, which lacks heads and mlp_ratio: the keys
  // it holds must match
  const theirs = baselineModel(file as BaselinesFile);
  const sameModel = MODEL_KEYS.every((k) => (k in theirs ? theirs[k] === m[k] : file.model === undefined));
  const d = first.config.data;
  const sizes = ds ? [ds.train.n, ds.test.n] : [d.train_size, d.test_size];
  const sameData =
    file.dataset === d.name && file.image_size === d.image_size && (sizes[0] === null || file.train_size === sizes[0]) && (sizes[1] === null || file.test_size === sizes[1]);
  if (!sameModel || !sameData || !Array.isArray(file.seeds)) return { have, others: Math.max(1, entries.length) };
  const l = first.config.eval.linear;
  const sameProbe = (f: BaselineFigures) =>
    f.linear?.epochs === l.epochs &&
    f.linear.base_lr === l.base_lr &&
    f.linear.batch_size === probeBatchSize(l.batch_size, file.train_size ?? l.batch_size) &&
    f.linear.train_views === probeViews(l.train_views === 'augmented');
  // the untrained encoder's kNN, measured with the monitor's settings (an entry that does not record them counts as the same)
  const knn = knnSettingsOf(first.config);
  const sameKnn = (f: BaselineFigures) => f.knn === undefined || sameKnnSettings(f.knn, knn);
  const kept = (f: BaselineFigures) => typeof f?.seed === 'number' && sameProbe(f) && sameKnn(f);
  for (const f of entries) if (kept(f)) have.set(f.seed, f);
  // a seed written twice (its first entry replaced) is no entry of other settings
  return { have, others: entries.filter((f) => !kept(f)).length };
}

/** The plan's seeds without a baseline in its baselines.json (all of them when there is none). */
export function missingBaselineSeeds(plan: SweepPlan): number[] {
  const { have } = writtenBaselines(plan);
  return plan.seeds.filter((s) => !have.has(s));
}

/**
 * Before a rewrite that would drop entries of other data, model or probe settings: the file is moved to
 * `baselines.old-<time>.json` beside it (nothing computed is lost); returns that name, or null.
 */
function setAsideOthers(plan: SweepPlan, others: number): string | null {
  if (others === 0) return null;
  // named as a run moved aside is (src/runfolder/aside.ts): baselines.old-<YYYYMMDDTHHMMSS>[-N].json
  const aside = asidePath(join(plan.dir, 'baselines'), '.json');
  try {
    renameSync(baselinesPath(plan), aside);
  } catch (e) {
    // another process (an agent ending the same sweep) set it aside first
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return aside;
}

/**
 * Compute and write the baselines of a plan's seeds (with `missingOnly`, only those its file lacks); the
 * file's entries for other seeds, of the same data and model, are kept. `onSeed` reports progress. The file
 * is written after each seed, so that `check` (see computeBaselines), throwing to stop, loses only the seed
 * in progress.
 */
export async function writeSweepBaselines(
  plan: SweepPlan,
  opts: {
    dataset?: Dataset;
    missingOnly?: boolean;
    onSeed?: (seed: number, f: BaselineFigures) => void;
    /** a part of a seed's baselines done (see computeBaselines) */
    onPart?: (seed: number, text: string) => void;
    check?: () => void;
    /** the previous file moved aside, with the count of its entries of other settings */
    onSetAside?: (path: string, entries: number) => void;
  } = {},
): Promise<SweepBaselines> {
  const first = plan.runs[0];
  if (!first) throw new Error(`sweep ${plan.id}: no runs planned, so no baselines to compute`);
  const ds = opts.dataset ?? (await loadRunData(first.config));
  // the file's seeds outside this plan stay (they cost minutes each); with missingOnly, the plan's that are there too
  const { have, others } = writtenBaselines(plan, ds);
  // every entry of the file stays until its seed is computed again: a stop midway loses none of them
  const seeds = new Map(have);
  // entries of other settings would be lost on the first write: the file is kept aside, whole
  let pendingAside = others;
  const write = () => {
    const aside = setAsideOthers(plan, pendingAside);
    if (aside) opts.onSetAside?.(aside, pendingAside);
    pendingAside = 0;
    writeJsonAtomic(baselinesPath(plan), file());
  };
  const model = modelOf(first.config.model);
  const { arch, dim, depth, patch_size } = model;
  const file = (): SweepBaselines => ({
    dataset: first.config.data.name,
    image_size: first.config.data.image_size,
    // the label's format is parsed back for files older than `model` (src/report/baselines.ts)
    arch: `${arch} (dim ${dim}, depth ${depth}, patch ${patch_size})`,
    model,
    train_size: ds.train.n,
    test_size: ds.test.n,
    seeds: [...seeds.values()].sort((a, b) => a.seed - b.seed),
  });
  let computed = 0;
  for (const seed of plan.seeds) {
    if (opts.missingOnly && have.has(seed)) continue;
    opts.check?.();
    const run = plan.runs.find((r) => r.config.seed === seed) ?? first;
    const f = await computeBaselines({ ...run.config, seed }, ds, opts.check, opts.onPart ? (text) => opts.onPart!(seed, text) : undefined);
    seeds.set(seed, f);
    computed++;
    write();
    opts.onSeed?.(seed, f);
  }
  if (computed === 0) write();
  return file();
}

