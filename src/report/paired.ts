/**
 * The report's seed-paired differences: for each swept key, each value is paired with the next one in
 * column order (learned | frozen, adamw | lamb; batch 64 | 128, 128 | 256, ... where a key takes more than
 * two values): the runs of the two settings that share a seed and every other swept value are paired, and
 * each metric's difference (second setting minus first) is summarised over the seeds with a paired t-test.
 * It says how far a difference in the table stands out of seed noise; it is a description of the runs at
 * hand, not a test decided before them.
 */
import { pairedTTest, type PairedTest } from './stats.ts';
import { formatValue, keyName, type SweepView } from './sweep.ts';
import type { RunFacts } from './table.ts';

export interface PairedMetric {
  name: string;
  label: string;
  pick: (f: RunFacts) => number | null;
  digits: number;
}

export const PAIRED_METRICS: PairedMetric[] = [
  { name: 'linear_top1', label: 'linear top-1', pick: (f) => f.linearTop1, digits: 1 },
  { name: 'knn_top1', label: 'kNN top-1', pick: (f) => f.knnTop1, digits: 1 },
  { name: 'max_dip', label: 'deepest dip', pick: (f) => f.maxDip, digits: 1 },
  { name: 'dips', label: 'dips', pick: (f) => f.dips, digits: 1 },
];

export interface PairedComparison {
  key: string;
  /** two neighbouring values of the key, in column order: differences are b - a */
  a: unknown;
  b: unknown;
  /** the other swept keys' values, as a label ('' when the key is the only one swept) */
  context: string;
  /** seeds with a completed run on both sides */
  seeds: number[];
  /** metric name -> test over the pairs where both runs have the metric (null under two pairs) */
  tests: Map<string, PairedTest | null>;
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

export function pairedComparisons(view: SweepView, facts: Map<string, RunFacts>): PairedComparison[] {
  const out: PairedComparison[] = [];
  for (const key of view.sweptKeys) {
    const values: unknown[] = [];
    for (const c of view.columns) if (!values.some((v) => same(v, c.values[key]))) values.push(c.values[key]);
    const others = view.sweptKeys.filter((k) => k !== key);
    for (let i = 0; i + 1 < values.length; i++) out.push(...pairsOf(view, facts, key, values[i], values[i + 1], others));
  }
  return out;
}

/** A column's completed runs by seed (the first run of each seed). */
function completedBySeed(runs: ReadonlyArray<{ id: string }>, facts: Map<string, RunFacts>): Map<number, RunFacts> {
  const m = new Map<number, RunFacts>();
  for (const r of runs) {
    const f = facts.get(r.id);
    if (f?.status === 'completed' && !m.has(f.seed)) m.set(f.seed, f);
  }
  return m;
}

/** The comparisons of value b against value a of one key, one per setting of the other swept keys. */
function pairsOf(
  view: SweepView,
  facts: Map<string, RunFacts>,
  key: string,
  a: unknown,
  b: unknown,
  others: string[],
): PairedComparison[] {
  const out: PairedComparison[] = [];
  const seen = new Set<string>();
  for (const ca of view.columns) {
    if (!same(ca.values[key], a)) continue;
    const ctx = JSON.stringify(others.map((k) => ca.values[k]));
    if (seen.has(ctx)) continue;
    seen.add(ctx);
    const cb = view.columns.find((c) => same(c.values[key], b) && others.every((k) => same(c.values[k], ca.values[k])));
    if (!cb) continue;
    const fa = completedBySeed(ca.runs, facts);
    const fb = completedBySeed(cb.runs, facts);
    const seeds = [...fa.keys()].filter((s) => fb.has(s)).sort((x, y) => x - y);
    if (seeds.length < 2) continue;
    const tests = new Map<string, PairedTest | null>();
    for (const m of PAIRED_METRICS) {
      const diffs: number[] = [];
      for (const s of seeds) {
        const x = m.pick(fa.get(s)!);
        const y = m.pick(fb.get(s)!);
        if (x !== null && y !== null) diffs.push(y - x);
      }
      tests.set(m.name, pairedTTest(diffs));
    }
    const context = others.map((k) => `${keyName(k)} ${formatValue(k, ca.values[k])}`).join(', ');
    out.push({ key, a, b, context, seeds, tests });
  }
  return out;
}

function fmtP(p: number): string {
  if (p < 0.001) return 'p < 0.001';
  return `p = ${p < 0.01 ? p.toFixed(3) : p.toFixed(2)}`;
}

function fmtTest(t: PairedTest | null, digits: number): string {
  if (!t) return '-';
  // the sign of the number printed: a mean that rounds to zero prints as 0.0, not −0.0
  const shown = Math.abs(t.mean).toFixed(digits);
  const sign = Number(shown) === 0 ? '' : t.mean > 0 ? '+' : '−';
  return `${sign}${shown} ± ${t.std.toFixed(digits)} (${fmtP(t.p)})`;
}

/** The report's "Paired by seed" section, or null when no two neighbouring values of a swept key were run on shared seeds. */
export function pairedMarkdown(view: SweepView, facts: Map<string, RunFacts>): string | null {
  const cmp = pairedComparisons(view, facts);
  if (!cmp.length) return null;
  const out = ['## Paired by seed', ''];
  out.push(`| difference | at | seeds | ${PAIRED_METRICS.map((m) => m.label).join(' | ')} |`);
  out.push(`|---|---|---|${PAIRED_METRICS.map(() => '---:').join('|')}|`);
  for (const c of cmp) {
    const name = `${keyName(c.key)} ${formatValue(c.key, c.b)} − ${formatValue(c.key, c.a)}`;
    const cells = PAIRED_METRICS.map((m) => fmtTest(c.tests.get(m.name) ?? null, m.digits));
    out.push(`| ${name} | ${c.context || 'all'} | ${c.seeds.join(', ')} | ${cells.join(' | ')} |`);
  }
  out.push(
    '',
    'Each row pairs the completed runs of two settings that differ only in one swept key and share a seed: ' +
      'the difference per seed (second setting minus first; points of accuracy, points of dip depth, dips per run), ' +
      'its mean ± std over the seeds, and a paired t-test (two-sided p; the one-sided p in the direction of the mean is half of it). ' +
      'Looked at after the runs, with few seeds, a p-value describes; a test written down before the runs is what confirms.',
  );
  return out.join('\n');
}
