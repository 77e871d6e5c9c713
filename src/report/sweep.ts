/**
 * A sweep as the report sees it: which keys were swept, one column per swept setting (seeds pooled),
 * and, for the paper's sweeps, the paper's setting and number for each column.
 *
 * Swept keys: the run configs' keys whose values differ between runs, minus keys that only follow
 * another (a key that is a function of the seed or of an earlier swept key is not swept itself), in the
 * order sweep.yaml gives (`varied`, as src/sweep writes it, or `parameters` with several `values`).
 *
 * The paper's value of a run's setting, in order: sweep.yaml's own record when present (any of
 *   runs: [{id, paper: {<key>: <paper value>}}]                 (src/sweep/resolved.ts; earlier_runs alike)
 *   parameters: {<key>: {values: [...], paper: [...]}}          (also `paper_values`)
 *   paper: {<key>: {<run value>: <paper value>}} or {<key>: [paper values in the order of parameters.<key>.values]}
 * ), else the run value itself when it is one of the paper's, else a common scale factor, else rank order.
 */
import { mapToPaper, paperSweepFor, paperTop1, type PaperSweep } from './paper.ts';
import { scaleValue, type SweepScale } from '../config/scale.ts';
import { plannedRuns, type RunRecord, type SweepRecord } from './results.ts';
import { fmtExp } from '../runfolder/names.ts';
import { flatten, LATER_KEYS, parseSet, UNHASHED_KEYS } from '../config/load.ts';

export interface Column {
  /** swept key -> value of this column */
  values: Record<string, unknown>;
  label: string;
  runs: RunRecord[];
  /** swept key -> the paper's value of this column (when the sweep is one of the paper's) */
  paperValues: Record<string, number> | null;
  paperTop1: number | null;
}

export interface SweepView {
  name: string;
  sweptKeys: string[];
  optimizer: string | null;
  paper: PaperSweep | null;
  /** the paper sweep these runs would be, left out: a --set changed a value it holds at the paper's */
  paperLeftOut: { figure: string; sets: string[] } | null;
  columns: Column[];
  seeds: number[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const key = (v: unknown) => JSON.stringify(v);

/** Column order when sweep.yaml does not give one: the paper's grouping (Fig. 5: learned | frozen, then lr). */
const PREFERRED = ['model.patch_proj', 'optim.name', 'optim.batch_size', 'optim.base_lr', 'moco.temperature', 'optim.weight_decay'];

function keyRank(k: string): number {
  const i = PREFERRED.indexOf(k);
  return i < 0 ? PREFERRED.length : i;
}

/**
 * A run's value of a key as its hash reads it (src/config/load.ts): a key added later stands for its old
 * value where an older config.yaml lacks it.
 */
const valueOf = (r: RunRecord, k: string) => (r.flat.has(k) ? r.flat.get(k) : k in LATER_KEYS ? LATER_KEYS[k] : undefined);

/**
 * Keys whose values differ between runs, minus those that follow an earlier key or (undeclared ones) the
 * seed, and minus (undeclared) what the hash leaves out: where a run ran or how often it logged.
 */
export function inferSweptKeys(runs: RunRecord[], declared: string[] = []): string[] {
  if (runs.length < 2) return declared.filter((k) => runs.every((r) => r.flat.has(k)));
  const all = new Set<string>();
  for (const r of runs) for (const k of r.flat.keys()) all.add(k);
  const unhashed = new Set<string>(UNHASHED_KEYS);
  const differing = [...all].filter((k) => k !== 'seed' && (declared.includes(k) || !unhashed.has(k)) && new Set(runs.map((r) => key(valueOf(r, k)))).size > 1);
  const rank = (k: string) => (declared.includes(k) ? declared.indexOf(k) : declared.length + keyRank(k));
  const ordered = differing.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const kept: string[] = [];
  const determined = (k: string, by: string[]) => {
    const seen = new Map<string, string>();
    for (const r of runs) {
      const id = key(by.map((b) => valueOf(r, b)));
      const v = key(valueOf(r, k));
      if (seen.has(id) && seen.get(id) !== v) return false;
      seen.set(id, v);
    }
    return true;
  };
  for (const k of ordered) {
    // a key sweep.yaml says it varies stays a column even when each of its values ran on other seeds
    if ((!declared.includes(k) && determined(k, ['seed'])) || (kept.length > 0 && determined(k, kept))) continue;
    kept.push(k);
  }
  return kept;
}

/** Keys sweep.yaml says vary: its `varied` list (the resolved sweep), else `parameters` with several values. */
function declaredKeys(sweepFile: Obj | null): string[] {
  if (Array.isArray(sweepFile?.varied)) return sweepFile.varied.filter((k): k is string => typeof k === 'string' && k !== 'seed');
  const params = sweepFile?.parameters;
  if (!isObj(params)) return [];
  return Object.entries(params)
    .filter(([, v]) => isObj(v) && Array.isArray(v.values) && v.values.length > 1)
    .map(([k]) => k);
}

const ORDER: Record<string, number> = { learned: 0, frozen: 1, adamw: 0, lamb: 1, lars: 2, sgd: 3 };

/** The order of a key's values in the report's columns: numbers ascending, known names in ORDER, then by name. */
export function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return (ORDER[sa] ?? 99) - (ORDER[sb] ?? 99) || sa.localeCompare(sb);
}

/**
 * A number in exponent form to four significant digits, trailing zeros dropped but one decimal kept (the
 * run names' `fmtExp` of the value rounded to 4 digits): 8e-3 -> 8.0e-3, 0.0128 -> 1.28e-2,
 * 0.016000000000000004 (1e-4 x 160) -> 1.6e-2, 3 -> 3.0e+0, 0 -> 0.0e+0.
 */
export function fmtSci(v: number): string {
  return v === 0 ? v.toExponential(1) : fmtExp(Number(v.toPrecision(4)), true);
}

/**
 * Keys other than the seed whose values differ between the runs of one column: the table pools those runs
 * as seeds of one setting. (A key that follows the seed alone is no column unless sweep.yaml declares it.)
 * Key -> its values, as printed.
 */
export function pooledKeys(view: SweepView): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  // what a run computes, as its hash reads it (src/config/load.ts): not where it ran or how often it logged,
  // and a key added later stands for its old value where an older config.yaml lacks it
  const skip = new Set<string>(['seed', ...UNHASHED_KEYS]);
  for (const c of view.columns) {
    const keys = new Set(c.runs.flatMap((r) => [...r.flat.keys()]));
    for (const k of keys) {
      if (skip.has(k)) continue;
      const vals = c.runs.map((r) => valueOf(r, k));
      // a key some runs' configs lack (written by an older moco3, no known old value): not comparable
      if (vals.some((v) => v === undefined) || new Set(vals.map(key)).size < 2) continue;
      const seen = out.get(k) ?? new Set<string>();
      for (const v of vals) seen.add(formatValue(k, v));
      out.set(k, seen);
    }
  }
  return new Map([...out].map(([k, v]) => [k, [...v]]));
}

/**
 * Runs of one column that share a seed (a run folder copied beside itself, e.g. a backup): the table counts
 * each as a seed of its own, so the report says so. One entry per column and seed: the column's label, the
 * seed, the runs' folder names.
 */
export function repeatedSeeds(view: SweepView): { column: string; seed: string; ids: string[] }[] {
  const out: { column: string; seed: string; ids: string[] }[] = [];
  for (const c of view.columns) {
    const bySeed = new Map<string, string[]>();
    for (const r of c.runs) {
      // as the columns read it: a config without a seed ran seed 0
      const s = String(Number(r.flat.get('seed') ?? 0));
      bySeed.set(s, [...(bySeed.get(s) ?? []), r.id]);
    }
    for (const [seed, ids] of bySeed) if (ids.length > 1) out.push({ column: c.label, seed, ids });
  }
  return out;
}

/**
 * Keys other than the swept ones, the seed and what the hash leaves out whose values differ between columns
 * but not within one: they change with the swept keys (a LAMB column's own lr and weight decay; runs of
 * another preset in the same folder, their model and data). Key -> its values, as printed, in column order.
 */
export function followingKeys(view: SweepView): Map<string, string[]> {
  const skip = new Set<string>(['seed', ...UNHASHED_KEYS, ...view.sweptKeys]);
  const pooled = pooledKeys(view);
  const runs = view.columns.flatMap((c) => c.runs);
  const keys = [...new Set(runs.flatMap((r) => [...r.flat.keys()]))].sort();
  const out = new Map<string, string[]>();
  for (const k of keys) {
    if (skip.has(k) || pooled.has(k)) continue;
    const vals = runs.map((r) => valueOf(r, k));
    if (vals.some((v) => v === undefined) || new Set(vals.map(key)).size < 2) continue;
    out.set(k, [...new Set(vals.map((v) => formatValue(k, v)))]);
  }
  return out;
}

export function formatValue(k: string, v: unknown): string {
  if (typeof v === 'number') {
    if (k.endsWith('base_lr') || k.endsWith('weight_decay') || (v !== 0 && Math.abs(v) < 1e-2)) return fmtSci(v);
    return String(v);
  }
  // one line: a value goes into table cells, list items and plot legends (a free-text key such as data.path
  // could hold a line break)
  return String(v).replace(/\r\n?|\n/g, ' ');
}

export const KEY_NAMES: Record<string, string> = {
  'optim.batch_size': 'batch',
  'optim.base_lr': 'base lr',
  'optim.name': 'optimizer',
  'model.patch_proj': 'patch proj.',
  'moco.temperature': 'temperature',
  'optim.weight_decay': 'wd',
};

export const keyName = (k: string) => KEY_NAMES[k] ?? k;

/** Paper values recorded by the sweep runner, run id -> key -> value. */
function recordedPaperValues(sweepFile: Obj | null, runs: RunRecord[], keys: string[]): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  if (!sweepFile) return out;
  // the latest invocation's record first: an earlier one's (earlier_runs) fills only the runs it lacks
  for (const r of plannedRuns(sweepFile)) {
    if (!isObj(r)) continue;
    const id = [r.id, r.run_id, r.dir, r.name].find((x) => typeof x === 'string') as string | undefined;
    const paper = r.paper ?? r.paper_values;
    if (!id || !isObj(paper)) continue;
    const rec: Record<string, number> = {};
    for (const k of keys) if (typeof paper[k] === 'number') rec[k] = paper[k] as number;
    const name = id.split('/').pop()!;
    if (!out.has(name)) out.set(name, rec);
  }
  const byKey = new Map<string, Map<string, number>>();
  const params = isObj(sweepFile.parameters) ? sweepFile.parameters : {};
  const top = isObj(sweepFile.paper) ? sweepFile.paper : isObj(sweepFile.paper_values) ? sweepFile.paper_values : {};
  for (const k of keys) {
    const p = params[k];
    const values = isObj(p) && Array.isArray(p.values) ? p.values : null;
    const aligned = isObj(p) ? (p.paper ?? p.paper_values) : undefined;
    const m = new Map<string, number>();
    if (values && Array.isArray(aligned) && aligned.length === values.length) values.forEach((v, i) => typeof aligned[i] === 'number' && m.set(key(v), aligned[i]));
    const t = top[k];
    if (values && Array.isArray(t) && t.length === values.length) values.forEach((v, i) => typeof t[i] === 'number' && m.set(key(v), t[i]));
    if (isObj(t)) for (const [rv, pv] of Object.entries(t)) if (typeof pv === 'number') m.set(key(Number.isNaN(Number(rv)) ? rv : Number(rv)), pv);
    if (m.size) byKey.set(k, m);
  }
  for (const r of runs) {
    const rec = { ...(out.get(r.id) ?? {}) };
    for (const [k, m] of byKey) {
      const pv = m.get(key(r.flat.get(k)));
      if (pv !== undefined && rec[k] === undefined) rec[k] = pv;
    }
    if (Object.keys(rec).length) out.set(r.id, rec);
  }
  return out;
}

export function viewSweep(sweep: SweepRecord): SweepView {
  const { runs } = sweep;
  const sweptKeys = inferSweptKeys(runs, declaredKeys(sweep.sweepFile));
  const optimizers = new Set(runs.map((r) => r.flat.get('optim.name')));
  const optimizer = optimizers.size === 1 ? String([...optimizers][0]) : null;
  const projections = new Set(runs.map((r) => r.flat.get('model.patch_proj')));
  const asPaper = paperSweepFor(sweptKeys, optimizer, projections.size === 1 ? String([...projections][0]) : null);
  const changed = asPaper ? setsOfFixedKeys(sweep.sweepFile, sweptKeys) : [];
  const paper = changed.length ? null : asPaper;
  const paperLeftOut = asPaper && changed.length ? { figure: asPaper.figure, sets: changed } : null;

  const groups = new Map<string, Column>();
  for (const r of runs) {
    const values = Object.fromEntries(sweptKeys.map((k) => [k, valueOf(r, k)]));
    const id = key(sweptKeys.map((k) => values[k]));
    let col = groups.get(id);
    if (!col) {
      col = { values, label: sweptKeys.map((k) => formatValue(k, values[k])).join(', ') || 'all runs', runs: [], paperValues: null, paperTop1: null };
      groups.set(id, col);
    }
    col.runs.push(r);
  }
  const columns = [...groups.values()].sort((a, b) => {
    for (const k of sweptKeys) {
      const c = compareValues(a.values[k], b.values[k]);
      if (c !== 0) return c;
    }
    return 0;
  });
  for (const c of columns) c.runs.sort((a, b) => Number(a.flat.get('seed') ?? 0) - Number(b.flat.get('seed') ?? 0));

  if (paper) {
    const recorded = recordedPaperValues(sweep.sweepFile, runs, [paper.key]);
    const fallback = mapToPaper(
      runs.map((r) => r.flat.get(paper.key)).filter((v): v is number => typeof v === 'number'),
      paper.values,
    );
    for (const c of columns) {
      // sweep.yaml records a run's paper value by its id: a run whose config was edited since may sit in
      // another column than the one it was planned for, so its record is not taken; records that still
      // disagree name no one paper setting, and the column's value is matched instead
      const recs = new Set(c.runs.filter((r) => r.edited === null).map((r) => recorded.get(r.id)?.[paper.key]).filter((v) => v !== undefined));
      const rec = recs.size === 1 ? [...recs][0] : undefined;
      const v = c.values[paper.key] ?? runs[0]?.flat.get(paper.key);
      const pv = rec ?? (typeof v === 'number' ? fallback?.get(v) : undefined);
      if (pv === undefined) continue;
      c.paperValues = { [paper.key]: pv };
      const pp = c.values['model.patch_proj'] ?? c.runs[0]?.flat.get('model.patch_proj');
      c.paperTop1 = paperTop1(paper, pv, typeof pp === 'string' ? pp : null);
    }
  }
  const seeds = [...new Set(runs.map((r) => Number(r.flat.get('seed') ?? 0)))].sort((a, b) => a - b);
  return { name: sweep.name, sweptKeys, optimizer, paper, paperLeftOut, columns, seeds };
}

/**
 * The `--set`s (sweep.yaml's `sets`) that change a key the sweep file holds at one value of the paper's (its
 * runs' `paper` keys, less the swept ones) from the value the preset's scale gives it: such runs are not the
 * paper's sweep at this scale. A --set of a key's planned value changes nothing.
 */
function setsOfFixedKeys(sweepFile: Obj | null, sweptKeys: string[]): string[] {
  const sets = Array.isArray(sweepFile?.sets) ? sweepFile.sets.filter((x): x is string => typeof x === 'string') : [];
  const first = Array.isArray(sweepFile?.runs) ? sweepFile.runs[0] : undefined;
  if (!sets.length || !isObj(first) || !isObj(first.paper)) return [];
  const paper = first.paper;
  const fixed = Object.keys(paper).filter((k) => !sweptKeys.includes(k) && k !== 'seed' && k !== 'optim.name');
  // the scale the plan applied (a factor sweep.yaml lacks, as an older one's warmup: NaN, so a set of it counts)
  const sc = isObj(sweepFile!.scale) ? sweepFile!.scale : {};
  const factor = (k: string) => (typeof sc[k] === 'number' ? sc[k] : NaN);
  const scale: SweepScale = { batch: factor('batch'), epochs: factor('epochs'), warmup: factor('warmup'), lr: factor('lr'), about: '' };
  return sets.filter((set) => {
    let keys: Map<string, unknown>;
    try {
      keys = flatten(parseSet(set));
    } catch {
      return false;
    }
    return [...keys].some(([k, v]) => fixed.includes(k) && key(v) !== key(scaleValue(k, paper[k], scale)));
  });
}
