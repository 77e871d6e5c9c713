/**
 * The report's seed-paired differences: for each swept key, at each setting of the other swept keys, each
 * value run there is paired with the next one run there, in column order (learned | frozen, adamw | lamb;
 * batch 64 | 128, 128 | 256, ... where a key takes more than two values; an lr grid that differs between
 * optimizers pairs each optimizer's own neighbouring lrs): the runs of the two settings that share a seed
 * are paired, and each metric's difference (second setting minus first) is summarised over the seeds with a
 * paired t-test. It says how far a difference in the table stands out of seed noise; it is a description of
 * the runs at hand, not a test decided before them.
 */
import { pairedTTest, type PairedTest } from './stats.ts';
import { compareValues, followingKeys, formatValue, keyName, type Column, type SweepView } from './sweep.ts';
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
  /** the keys that change with the columns (not swept) and differ between these two, as a label ('' when none does) */
  also: string;
  /** seeds with a completed run on both sides */
  seeds: number[];
  /** metric name -> test over the pairs where both runs have the metric (null under two pairs) */
  tests: Map<string, PairedTest | null>;
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

export function pairedComparisons(view: SweepView, facts: Map<string, RunFacts>): PairedComparison[] {
  const out: PairedComparison[] = [];
  const following = [...followingKeys(view).keys()];
  for (const key of view.sweptKeys) {
    const others = view.sweptKeys.filter((k) => k !== key);
    // the columns at each setting of the other keys, in column order (so in this key's order)
    const contexts = new Map<string, Column[]>();
    for (const c of view.columns) {
      const ctx = JSON.stringify(others.map((k) => c.values[k]));
      const cols = contexts.get(ctx);
      if (cols) cols.push(c);
      else contexts.set(ctx, [c]);
    }
    const order = valuesOf(view, key);
    const rank = (v: unknown) => order.findIndex((x) => same(x, v));
    const found: { rank: [number, number, number]; cmp: PairedComparison }[] = [];
    [...contexts.values()].forEach((cols, ci) => {
      for (let i = 0; i + 1 < cols.length; i++) {
        const cmp = pairOf(facts, key, cols[i]!, cols[i + 1]!, others, following);
        if (cmp) found.push({ rank: [rank(cmp.a), rank(cmp.b), ci], cmp });
      }
    });
    // neighbouring values first, then the settings of the other keys, as the columns run
    found.sort((x, y) => x.rank[0] - y.rank[0] || x.rank[1] - y.rank[1] || x.rank[2] - y.rank[2]);
    out.push(...found.map((f) => f.cmp));
  }
  return out;
}

/** A key's distinct values over the columns, in the columns' order of values. */
function valuesOf(view: SweepView, key: string): unknown[] {
  const values: unknown[] = [];
  for (const c of view.columns) if (!values.some((x) => same(x, c.values[key]))) values.push(c.values[key]);
  return values.sort(compareValues);
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

/** Column cb against column ca (neighbouring values of one key, the other keys alike), or null under two shared seeds. */
function pairOf(facts: Map<string, RunFacts>, key: string, ca: Column, cb: Column, others: string[], following: string[]): PairedComparison | null {
  const fa = completedBySeed(ca.runs, facts);
  const fb = completedBySeed(cb.runs, facts);
  const seeds = [...fa.keys()].filter((s) => fb.has(s)).sort((x, y) => x - y);
  if (seeds.length < 2) return null;
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
  // a key that is not swept but changes with the columns (each column's runs share it) is part of the difference
  const at = (c: Column, k: string) => c.runs[0]?.flat.get(k);
  const also = following
    .filter((k) => !same(at(ca, k), at(cb, k)))
    .map((k) => `${keyName(k)} ${formatValue(k, at(cb, k))} vs ${formatValue(k, at(ca, k))}`)
    .join(', ');
  return { key, a: ca.values[key], b: cb.values[key], context, also, seeds, tests };
}

/**
 * A p-value as the reports print it: two decimals from 0.1, three below, and a digit more where rounding
 * would carry a p below 0.01, 0.05 or 0.1 up to it (0.0498 prints 0.0498, not 0.050).
 */
export function fmtP(p: number): string {
  if (p < 0.001) return 'p < 0.001';
  let digits = p < 0.1 ? 3 : 2;
  while (digits < 12 && [0.01, 0.05, 0.1].some((t) => p < t && Number(p.toFixed(digits)) >= t)) digits += 1;
  return `p = ${p.toFixed(digits)}`;
}

function fmtTest(t: PairedTest | null, digits: number, seeds: number): string {
  if (!t) return '-';
  // the sign of the number printed: a mean that rounds to zero prints as 0.0, not −0.0
  const shown = Math.abs(t.mean).toFixed(digits);
  const sign = Number(shown) === 0 ? '' : t.mean > 0 ? '+' : '−';
  // a metric some runs lack (no linear probe) is tested on the seeds that have it
  return `${sign}${shown} ± ${t.std.toFixed(digits)} (${fmtP(t.p)}${t.test === 'sign' ? ', sign test' : ''}${t.n < seeds ? `, ${t.n} seeds` : ''})`;
}

/** The report's "Paired by seed" section, or null when no two neighbouring values of a swept key were run on shared seeds. */
export function pairedMarkdown(view: SweepView, facts: Map<string, RunFacts>): string | null {
  const cmp = pairedComparisons(view, facts);
  if (!cmp.length) return null;
  const out = ['## Paired by seed', ''];
  out.push(`| difference | at | seeds | ${PAIRED_METRICS.map((m) => m.label).join(' | ')} |`);
  out.push(`|---|---|---|${PAIRED_METRICS.map(() => '---:').join('|')}|`);
  for (const c of cmp) {
    const name = `${keyName(c.key)} ${formatValue(c.key, c.b)} − ${formatValue(c.key, c.a)}${c.also ? ` (and ${c.also})` : ''}`;
    const cells = PAIRED_METRICS.map((m) => fmtTest(c.tests.get(m.name) ?? null, m.digits, c.seeds.length));
    out.push(`| ${name} | ${c.context || 'all'} | ${c.seeds.join(', ')} | ${cells.join(' | ')} |`);
  }
  out.push(
    '',
    'Each row pairs the completed runs of two settings that differ only in one swept key and share a seed: ' +
      'the difference per seed (second setting minus first; points of accuracy, points of dip depth, dips per run), ' +
      'its mean ± std over the seeds, and a paired t-test (two-sided p; the one-sided p in the direction of the mean is half of it; where every seed differs by the same amount, the t-test has no spread to go by and the p is the exact sign test\'s, marked). ' +
      'Looked at after the runs, with few seeds, a p-value describes; a test written down before the runs is what confirms.' +
      (cmp.some((c) => c.also)
        ? ' A row that names other keys in brackets pairs settings that differ in those too: they change with the columns, so the difference is theirs as much as the swept key\'s.'
        : ''),
  );
  return out.join('\n');
}
