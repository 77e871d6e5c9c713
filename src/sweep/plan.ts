/**
 * The planner: a sweep file -> the runs it makes. Expands the grid (per optimizer), applies the preset's
 * scaling, then --set and the other command-line overrides, and names each run `<slug>-<hash>` where the
 * hash is the config's: the same config always lands in the same folder. No TensorFlow.js here.
 */
import { join } from 'node:path';
import { assembleConfig, buildConfig, ConfigError, configHash, flatten, parseSet, ruleError, UNHASHED_KEYS } from '../config/load.ts';
import { numClassesProblem } from '../data/classes.ts';
import { PRESET_NAMES, type PresetName } from '../config/presets.ts';
import { OPTIMIZER_NAMES, type OptimizerName, type ResolvedRunConfig } from '../config/schema.ts';
import { scaledLr } from '../optim/schedule.ts';
import { fmtExp, sweepRunSlug } from '../runfolder/names.ts';
import { nest, SweepError, type Grid, type SweepSpec } from './file.ts';
import { NO_SCALE, scaleValue, SWEEP_SCALES, type SweepScale } from '../config/scale.ts';

type Obj = Record<string, unknown>;

export interface PlanOptions {
  /** --preset; the sweep file's preset otherwise */
  preset?: string | null;
  /** --optimizer: the optimizers whose grids to run; the file's otherwise */
  optimizers?: string[] | null;
  /** --set key=value */
  sets?: string[];
  /** --seeds; the file's otherwise */
  seeds?: number[] | null;
  /** other overrides from flags (--data, --backend) */
  overrides?: Obj[];
  /** the flag of each override, as errors name it */
  overrideLabels?: string[];
  /** the results directory (default results) */
  results?: string;
}

/** A value as the plan prints it: a base lr as run names print it (1.6e-2), a small number as 1.0e-3. */
export function fmtValue(v: unknown, key = ''): string {
  // a base lr as the run names and the report print it (1.6e-2), whatever its size
  if (typeof v === 'number' && key.endsWith('base_lr')) return fmtExp(Number(v.toPrecision(6)));
  if (typeof v === 'number') return Number.isInteger(v) || Math.abs(v) >= 0.01 ? String(Number(v.toPrecision(6))) : fmtExp(Number(v.toPrecision(6)));
  if (v === null || v === undefined) return '-';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export interface PlannedRun {
  /** 1-based position in the sweep */
  index: number;
  id: string;
  slug: string;
  hash: string;
  dir: string;
  config: ResolvedRunConfig;
  /** the sweep file's value of every key it sets (the paper's), and `seed`, `optim.name` */
  paper: Record<string, unknown>;
  /** the value run for each of those keys (after preset scaling and --set) */
  values: Record<string, unknown>;
}

export interface SweepPlan {
  spec: SweepSpec;
  /** folder name under results/: the sweep's name, plus the optimizers when --optimizer picked other grids */
  id: string;
  dir: string;
  preset: PresetName | null;
  scale: SweepScale;
  optimizers: OptimizerName[];
  seeds: number[];
  sets: string[];
  /** keys whose value differs between runs, in grid order */
  varied: string[];
  runs: PlannedRun[];
}

/** The optimizers the sweep file's own `parameters` belong to. */
function baseOptimizers(spec: SweepSpec, preset: PresetName | null): OptimizerName[] {
  const v = spec.parameters.get('optim.name');
  if (v) return v as OptimizerName[];
  return [buildConfig({ preset }).optim.name as OptimizerName];
}

/** Every combination of a grid, first key outermost, in file order. */
export function expandGrid(grid: Grid): Record<string, unknown>[] {
  let combos: Record<string, unknown>[] = [{}];
  for (const [key, values] of grid) {
    const next: Record<string, unknown>[] = [];
    for (const c of combos) for (const v of values) next.push({ ...c, [key]: v });
    combos = next;
  }
  return combos;
}

export function parseOptimizerFlag(v: string): OptimizerName[] {
  const names = v.split(',').map((s) => s.trim());
  if (names.every((n) => n === '')) throw new SweepError(`--optimizer ${v}: expected an optimizer name (${OPTIMIZER_NAMES.join(', ')})`);
  // as --seeds: an empty item (`adamw,`, `lamb,,adamw`) is a typo, not nothing
  if (names.includes('')) throw new SweepError(`--optimizer ${v}: an empty name in the list (expected names separated by commas: ${OPTIMIZER_NAMES.join(', ')})`);
  for (const [i, n] of names.entries()) {
    if (!(OPTIMIZER_NAMES as readonly string[]).includes(n)) {
      throw new SweepError(`--optimizer ${v}: unknown optimizer '${n}' (expected one of: ${OPTIMIZER_NAMES.join(', ')})`);
    }
    // as --seeds: a name twice is a typo, not a sweep of it twice
    if (names.indexOf(n) !== i) throw new SweepError(`--optimizer ${v}: '${n}' is listed twice`);
  }
  // one order whatever the flag's: the same optimizers are the same sweep, in the same folder
  return OPTIMIZER_NAMES.filter((n) => names.includes(n));
}

/** More seeds than this in one --seeds is a typo, not a sweep (each seed is a run of every setting). */
export const MAX_SEEDS = 1000;

export function parseSeedsFlag(v: string): number[] {
  const shown = v.trim() === '' ? `'${v}'` : v; // an empty value as ''
  const parts = v.split(',').map((s) => s.trim());
  const seeds: number[] = [];
  const seed = (t: string) => {
    const n = Number(t);
    if (!Number.isSafeInteger(n)) throw new SweepError(`--seeds ${shown}: ${t} is larger than a seed can be (at most ${Number.MAX_SAFE_INTEGER})`);
    return n;
  };
  for (const p of parts) {
    const range = /^(\d+)-(\d+)$/.exec(p);
    if (range) {
      const a = seed(range[1]!);
      const b = seed(range[2]!);
      if (b < a) throw new SweepError(`--seeds ${shown}: range ${p} runs backwards`);
      if (b - a + 1 + seeds.length > MAX_SEEDS) throw new SweepError(`--seeds ${shown}: more than ${MAX_SEEDS} seeds`);
      for (let s = a; s <= b; s++) seeds.push(s);
    } else if (/^\d+$/.test(p)) {
      seeds.push(seed(p));
      if (seeds.length > MAX_SEEDS) throw new SweepError(`--seeds ${shown}: more than ${MAX_SEEDS} seeds`);
    } else {
      throw new SweepError(`--seeds ${shown}: expected non-negative integers, e.g. 0,1,2 or 0-2`);
    }
  }
  if (new Set(seeds).size !== seeds.length) throw new SweepError(`--seeds ${shown}: a seed is listed twice`);
  return seeds;
}


const SLUG_KEYS = new Set(['optim.batch_size', 'optim.base_lr', 'optim.name', 'model.patch_proj', 'seed']);

function getKey(c: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Obj)[k], c);
}

export function planSweep(spec: SweepSpec, opts: PlanOptions = {}): SweepPlan {
  const presetArg = opts.preset ?? spec.preset;
  if (presetArg !== null && presetArg !== undefined && !(PRESET_NAMES as readonly string[]).includes(presetArg)) {
    throw new SweepError(`--preset ${presetArg}: unknown preset (expected one of: ${PRESET_NAMES.join(', ')})`);
  }
  const preset = (presetArg ?? null) as PresetName | null;
  const scale = preset ? SWEEP_SCALES[preset] : NO_SCALE;
  const base = baseOptimizers(spec, preset);
  const optimizers = (opts.optimizers?.length ? opts.optimizers : base) as OptimizerName[];
  for (const o of optimizers) {
    if (!base.includes(o) && !spec.byOptimizer.has(o)) {
      const has = [...base.map((b) => `${b} (parameters)`), ...[...spec.byOptimizer.keys()].map((b) => `${b} (by_optimizer.${b})`)];
      throw new SweepError(`--optimizer ${o}: ${spec.file} has no grid for ${o} (it has: ${has.join(', ')}); add by_optimizer.${o} to the file`);
    }
  }
  const seeds = opts.seeds?.length ? opts.seeds : spec.seeds;
  const sets = opts.sets ?? [];

  // the grid of each optimizer: the file's parameters, overlaid by its by_optimizer entry
  const grids: { opt: OptimizerName; grid: Grid }[] = optimizers.map((opt) => {
    const grid: Grid = new Map(spec.parameters);
    grid.delete('optim.name');
    for (const [k, v] of spec.byOptimizer.get(opt) ?? []) grid.set(k, v);
    return { opt, grid };
  });

  // --set may pin what the file pins, not what it varies
  const variedInFile = new Set<string>();
  for (const { grid } of grids) for (const [k, v] of grid) if (v.length > 1) variedInFile.add(k);
  if (optimizers.length > 1) variedInFile.add('optim.name');
  // every dotted key each --set gives: one, or those of a section it sets (--set 'optim={base_lr: 1}')
  const setKeys = sets.map((s) => {
    try {
      return [...flatten(parseSet(s)).keys()];
    } catch {
      return [s.slice(0, Math.max(0, s.indexOf('='))).trim()]; // buildConfig says what is wrong with it
    }
  });
  const givenBySet = new Set(setKeys.flat());
  for (const [i, s] of sets.entries()) {
    for (const key of setKeys[i]!) {
      if (key === 'seed') throw new SweepError(`--set ${s}: a sweep's seeds come from --seeds or the file's seeds`);
      if (key === 'optim.name') throw new SweepError(`--set ${s}: choose a sweep's optimizer with --optimizer`);
      if (variedInFile.has(key)) throw new SweepError(`--set ${s}: ${spec.file} varies ${key}; edit the grid in the file instead`);
    }
  }

  // ... nor may --data or --backend: they would make the file's values one run each, said as twins below
  for (const [i, o] of (opts.overrides ?? []).entries()) {
    const key = [...flatten(o).keys()].find((k) => variedInFile.has(k));
    if (key !== undefined) throw new SweepError(`${opts.overrideLabels?.[i] ?? key}: ${spec.file} varies ${key}; edit the grid in the file instead`);
  }

  const runs: PlannedRun[] = [];
  for (const seed of seeds) {
    for (const { opt, grid } of grids) {
      for (const combo of expandGrid(grid)) {
        let fileObj: Obj = {};
        const paper: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(combo)) {
          paper[k] = v;
          fileObj = mergeObj(fileObj, nest(k, scaleValue(k, v, scale)));
        }
        paper['optim.name'] = opt;
        paper.seed = seed;
        fileObj = mergeObj(fileObj, { seed, optim: { name: opt } });
        let config: ResolvedRunConfig;
        try {
          const built = assembleConfig({
            preset,
            fileObject: { label: spec.file, value: fileObj },
            sets,
            overrides: opts.overrides ?? [],
            overrideLabels: opts.overrideLabels,
            // a grid over datasets shares one data.path among them: the synthetic one reads none
            pathOfOtherDatasets: variedInFile.has('data.name'),
          });
          config = built.config;
          // a class count the dataset cannot give is refused here, not when the run's turn comes
          const classes = numClassesProblem(config.data.name, config.data.num_classes);
          if (classes !== null) throw ruleError(built.blame, ['data.num_classes', 'data.name'], classes);
        } catch (e) {
          // a rule across keys broken by values the preset scaled: the line says which, from what (a key a
          // --set gives is run as set, not as scaled)
          const keys = e instanceof ConfigError ? (e.keys ?? []) : [];
          const scaled = Object.entries(combo).filter(([k, v]) => scaleValue(k, v, scale) !== v && keys.includes(k) && !givenBySet.has(k));
          if (e instanceof Error && scaled.length) {
            e.message += ` (preset ${preset} runs the file's ${scaled.map(([k, v]) => `${k} ${fmtValue(v, k)} as ${fmtValue(scaleValue(k, v, scale), k)}`).join(', ')})`;
          }
          throw e;
        }
        const values: Record<string, unknown> = {};
        for (const k of Object.keys(paper)) values[k] = getKey(config, k);
        runs.push({ index: runs.length + 1, id: '', slug: '', hash: configHash(config), dir: '', config, paper, values });
      }
    }
  }

  // keys that differ between runs, in grid order, then the ones set elsewhere
  const allKeys: string[] = [];
  for (const r of runs) for (const k of Object.keys(r.paper)) if (!allKeys.includes(k)) allKeys.push(k);
  const varied = allKeys.filter((k) => new Set(runs.map((r) => JSON.stringify(getKey(r.config, k)))).size > 1);
  const extra = varied.filter((k) => !SLUG_KEYS.has(k));

  const id = spec.name + (sameSet(optimizers, base) ? '' : `-${optimizers.join('-')}`);
  const dir = join(opts.results ?? 'results', id);
  const seen = new Map<string, PlannedRun>();
  for (const r of runs) {
    r.slug = sweepRunSlug(r.config, extra);
    r.id = `${r.slug}-${r.hash}`;
    r.dir = join(dir, r.id);
    const twin = seen.get(r.hash);
    if (twin) {
      // the file's keys whose values differ between the two and meet once scaled (1024 and 1030 both 32)
      const met = Object.keys(r.paper)
        .filter((k) => JSON.stringify(twin.paper[k]) !== JSON.stringify(r.paper[k]) && JSON.stringify(twin.values[k]) === JSON.stringify(r.values[k]))
        .map((k) => `${k} ${fmtValue(twin.paper[k], k)} and ${fmtValue(r.paper[k], k)} both run as ${fmtValue(r.values[k], k)}`);
      // ... or whose values differ in a key that is no part of a run's identity (its hash)
      met.push(
        ...Object.keys(r.paper)
          .filter((k) => (UNHASHED_KEYS as readonly string[]).includes(k) && JSON.stringify(twin.values[k]) !== JSON.stringify(r.values[k]))
          .map((k) => `${k} ${fmtValue(twin.paper[k], k)} and ${fmtValue(r.paper[k], k)} are one run: ${k} is not part of a run's identity`),
      );
      throw new SweepError(
        `${spec.file}: runs ${twin.index} and ${r.index} resolve to the same config (${r.id})${preset ? ` under preset ${preset}` : ''}` +
          `${met.length ? `: ${met.join(', ')}` : ''}; remove one of the values`,
      );
    }
    seen.set(r.hash, r);
  }
  return { spec, id, dir, preset, scale, optimizers, seeds, sets, varied, runs };
}

function sameSet<T>(a: T[], b: T[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function mergeObj(a: Obj, b: Obj): Obj {
  const out: Obj = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = typeof cur === 'object' && cur !== null && !Array.isArray(cur) && typeof v === 'object' && v !== null && !Array.isArray(v) ? mergeObj(cur as Obj, v as Obj) : v;
  }
  return out;
}

/** The learning rate a run uses: base_lr x batch / 256. */
export function runLr(c: ResolvedRunConfig): number {
  return scaledLr(c.optim.base_lr, c.optim.batch_size);
}

