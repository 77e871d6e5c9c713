/**
 * The paper-shaped table of a sweep: one column per swept setting, rows linear top-1, kNN top-1, dips,
 * deepest dip, spikes, spike lag, wall time, with the paper's number in a row beside ours. Cells pool
 * the seeds of a setting (mean ± sample std); a run that diverged is shown as such with its step.
 */
import { stringify } from 'csv-stringify/sync';
import type { RunInstability } from './instability.ts';
import type { RunRecord } from './results.ts';
import { readRunState } from '../runfolder/state.ts';
import { fmtSci, keyName, type Column, type SweepView } from './sweep.ts';

export interface RunFacts {
  id: string;
  seed: number;
  status: string;
  step: number | null;
  totalSteps: number | null;
  divergedAt: number | null;
  linearTop1: number | null;
  linearTop5: number | null;
  /** the linear probe's training views as summary.json records them (`linear.train_views`), null when it does not */
  linearViews: string | null;
  /** the linear probe's epochs, base lr and batch as summary.json records them (`linear`), each null when it does not */
  linearSettings: { epochs: number | null; base_lr: number | null; batch_size: number | null };
  knnTop1: number | null;
  knnTop5: number | null;
  bestKnnTop1: number | null;
  /** null without a kNN curve (nothing to count) */
  dips: number | null;
  maxDip: number | null;
  spikesPatch: number | null;
  spikesLast: number | null;
  lastBlock: string | null;
  spikeLag: number | null;
  /** the patch projection's spikes with a last-block spike within the lead window after / before them */
  spikesAfter: number | null;
  spikesBefore: number | null;
  /** steps the patch projection's gradient excursions lead the last block's, and the correlation there */
  gradLead: number | null;
  gradLeadR: number | null;
  wallS: number | null;
  imagesPerS: number | null;
  /** a finished run whose metrics.jsonl stops before its last step (lastStep null: no rows), else null */
  metricsEnd: { lastStep: number | null; steps: number } | null;
  /** a finished run whose summary.json is of another step than its metrics' end (its figures left out), else null */
  summaryAside: { steps: number | null; lastStep: number | null } | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function runFacts(r: RunRecord, inst: RunInstability): RunFacts {
  const lastStep = r.metrics.length ? num(r.metrics[r.metrics.length - 1]!.step) : null;
  // summary.json speaks for the weights of its step. One of another step than the metrics' end is not the
  // run's now: a resume killed before it wrote its own (the metrics went on), or a rewind to an older
  // checkpoint (the metrics were cut). Its figures are then left out, and the metrics speak. The metrics
  // hold a row at least every train.log_every steps, so a summary up to that many steps past them is current.
  // A finished run's (completed or diverged: its final status came after its summary) speaks for the run
  // whatever the metrics hold: metrics cut short (a copy, a damaged file) are said, not taken for its end.
  const every = num(r.flat.get('train.log_every')) ?? 1;
  const sSteps = r.summary ? num(r.summary.steps) : null;
  // the state plan and sweep see (src/runfolder/state.ts): running only under a live lock, completed only
  // with its summary, a run whose process died without a final status interrupted
  const state = readRunState(r.dir).state;
  const finished = state === 'completed' || state === 'diverged';
  const current = lastStep === null || (sSteps !== null && sSteps >= lastStep && (finished || sSteps < lastStep + Math.max(1, every)));
  const s = (current ? r.summary : null) ?? {};
  const metricsShort = finished && sSteps !== null && (lastStep === null ? sSteps > 0 : sSteps >= lastStep + Math.max(1, every));
  const st = r.status;
  const knnRows = r.metrics.filter((m) => num(m.knn_top1) !== null);
  const trainedKnn = knnRows.filter((m) => (num(m.step) ?? 0) > 0);
  const lastKnn = trainedKnn[trainedKnn.length - 1];
  const untrainedKnn = s.knn_step === 0 && (num(s.steps) ?? 0) > 0;
  const divergedAt = num(s.diverged_at) ?? num(st?.diverged_at) ?? null;
  const status = state === 'running' || divergedAt === null ? state : 'diverged';
  // the linear probe's protocol as summary.json records it
  const lin: Record<string, unknown> = typeof s.linear === 'object' && s.linear !== null ? (s.linear as Record<string, unknown>) : {};
  return {
    id: r.id,
    seed: Number(r.flat.get('seed') ?? 0),
    status,
    step: num(st?.step) ?? num(s.steps) ?? lastStep,
    totalSteps: num(st?.total_steps) ?? num(s.total_steps),
    divergedAt,
    linearTop1: num(s.linear_top1),
    linearTop5: num(s.linear_top5),
    linearViews: typeof lin.train_views === 'string' ? lin.train_views : null,
    linearSettings: { epochs: num(lin.epochs), base_lr: num(lin.base_lr), batch_size: num(lin.batch_size) },
    // the last kNN of the training, not step 0's (the untrained encoder's): as summary.json records it (a run
    // stopped or diverged before its first kNN after step 0 records step 0's, with knn_step 0; a run of 0 steps,
    // train.max_steps 0, has step 0's as its final one), or the metrics'
    knnTop1: (untrainedKnn ? null : num(s.knn_top1)) ?? (lastKnn ? num(lastKnn.knn_top1) : null),
    knnTop5: (untrainedKnn ? null : num(s.knn_top5)) ?? (lastKnn ? num(lastKnn.knn_top5) : null),
    // the best the training reached, from the metrics: step 0 is the untrained encoder (older runs'
    // summaries count it); no kNN after step 0, none
    bestKnnTop1: trainedKnn.length ? Math.max(...trainedKnn.map((m) => m.knn_top1 as number)) : r.metrics.length ? null : num(s.best_knn_top1),
    // a run without a kNN curve (the monitor off) has no dips to count, not none
    dips: inst.maxDip === null ? null : inst.dips.length,
    maxDip: inst.maxDip,
    spikesPatch: inst.spikes.has('patch_proj') ? inst.spikes.get('patch_proj')!.length : null,
    spikesLast: inst.lastBlock ? inst.spikes.get(inst.lastBlock)!.length : null,
    lastBlock: inst.lastBlock,
    spikeLag: inst.spikeLag,
    spikesAfter: inst.order?.after ?? null,
    spikesBefore: inst.order?.before ?? null,
    gradLead: inst.gradLead?.lag ?? null,
    gradLeadR: inst.gradLead?.r ?? null,
    wallS: num(s.wall_s),
    imagesPerS: num(s.images_per_s),
    metricsEnd: metricsShort ? { lastStep, steps: sSteps! } : null,
    summaryAside: finished && r.summary && !current ? { steps: sSteps, lastStep } : null,
  };
}

export interface Cell {
  mean: number | null;
  std: number | null;
  n: number;
  text: string;
  /** what qualifies the figure ("so far", "2 of 3 runs", "1/3 diverged @ step 185"), as its text says it; absent when nothing does */
  note?: string;
}

export interface TableRow {
  label: string;
  /** csv name */
  name: string;
  cells: Cell[];
}

export interface SweepTable {
  header: string[];
  rows: TableRow[];
}

function meanStd(xs: number[]): { mean: number | null; std: number | null } {
  if (!xs.length) return { mean: null, std: null };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return { mean, std: null };
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, std: Math.sqrt(v) };
}

/**
 * Seconds in s, min or h by their size; `unitOf`: in the unit of that value (a std in its mean's), to 0.1
 * of the unit, or 0.01 of a minute or an hour below one.
 */
export function formatSeconds(s: number, unitOf?: number): string {
  const by = unitOf ?? s;
  const [v, unit] = by < 120 ? [s, 's'] : by < 7200 ? [s / 60, 'min'] : [s / 3600, 'h'];
  const digits = unitOf === undefined ? (unit === 's' && v >= 10 ? 0 : 1) : unit !== 's' && v < 1 ? 2 : 1;
  return `${v.toFixed(digits)} ${unit}`;
}

/** A table figure: a whole number as it is, else to `digits`; one that rounds to zero is 0, not −0 (a signed row: a lead, a correlation). */
export const fmtNum = (x: number, digits: number): string => {
  const t = Number.isInteger(x) && digits <= 1 ? String(x) : x.toFixed(digits);
  return /^-0(\.0+)?$/.test(t) ? t.slice(1) : t;
};

function notDone(f: RunFacts): string {
  if (f.status === 'diverged') return `diverged @ step ${f.divergedAt ?? f.step ?? '?'}`;
  if (f.status === 'completed') return '-';
  const at = f.step !== null && f.totalSteps !== null ? ` (step ${f.step}/${f.totalSteps})` : '';
  return `${f.status}${at}`;
}

/**
 * One cell over a column's runs: the finished ones. `accuracy` cells leave out diverged runs too (their
 * value is not a result) and say how many there were. A figure only some of them have is their mean, with
 * how many of how many runs. A column with no finished run shows its unfinished
 * runs' figures so far, marked as such (a scan stopped early); they are never pooled with finished ones.
 */
/** `fmt(x, unitOf)`: a value, or (a std) in the unit of its mean. */
function cell(facts: RunFacts[], pick: (f: RunFacts) => number | null, fmt: (x: number, unitOf?: number) => string, accuracy: boolean): Cell {
  const countable = accuracy ? facts.filter((f) => f.status !== 'diverged') : facts;
  const finished = countable.filter((f) => f.status === 'completed' || f.status === 'diverged');
  const used = finished.length ? finished : countable;
  const xs = used.map(pick).filter((x): x is number => x !== null);
  const { mean, std } = meanStd(xs);
  const diverged = facts.filter((f) => f.status === 'diverged');
  let text: string;
  const notes: string[] = [];
  if (mean === null) {
    text = facts.length ? [...new Set(facts.map(notDone))].join('; ') : '-';
  } else {
    text = std === null ? fmt(mean) : `${fmt(mean)} ± ${fmt(std, mean)}`;
    if (!finished.length) notes.push('so far');
    // a figure some runs lack (no spike to lag): over the runs that have it, said
    if (xs.length < used.length) notes.push(`${xs.length} of ${used.length} runs`);
    if (accuracy && diverged.length) notes.push(`${diverged.length}/${facts.length} diverged @ step ${diverged.map((f) => f.divergedAt ?? f.step).join(', ')}`);
    text += notes.map((n) => ` (${n})`).join('');
  }
  return { mean, std, n: xs.length, text, ...(notes.length ? { note: notes.join('; ') } : {}) };
}

function statusCell(facts: RunFacts[]): Cell {
  const counts = new Map<string, string[]>();
  for (const f of facts) {
    const t = f.status === 'completed' ? 'completed' : notDone(f);
    counts.set(t, [...(counts.get(t) ?? []), f.id]);
  }
  const text = [...counts].map(([t, ids]) => (facts.length > 1 ? `${ids.length}× ${t}` : t)).join('; ');
  return { mean: null, std: null, n: facts.length, text };
}

export interface TableOptions {
  dipPoints: number;
  /** the spike-order window in words: "40 steps" (the lead window at the runs' logging interval), or "40 logged rows" */
  orderWindow: string;
}

export function buildTable(view: SweepView, facts: Map<string, RunFacts>, opts: TableOptions): SweepTable {
  const cols = view.columns;
  const fs = (c: Column) => c.runs.map((r) => facts.get(r.id)!);
  const header = cols.map((c) => {
    const pv = c.paperValues && view.paper ? c.paperValues[view.paper.key] : undefined;
    const same = pv !== undefined && c.values[view.paper!.key] === pv;
    return pv !== undefined && !same && view.sweptKeys.includes(view.paper!.key) ? `${c.label} (paper ${fmtPaper(view.paper!.key, pv)})` : c.label;
  });
  // the last block's name when every run has the same depth
  const lasts = new Set([...facts.values()].flatMap((f) => (f.lastBlock ? [f.lastBlock] : [])));
  const last = lasts.size === 1 ? [...lasts][0]! : 'last block';
  const acc = (x: number) => x.toFixed(1);
  const int = (x: number) => fmtNum(x, 1);
  const rows: TableRow[] = [];
  if (view.paper) {
    rows.push({
      label: `paper: linear top-1 (%), ${view.paper.figure}, ViT-B/16 ImageNet`,
      name: 'paper_linear_top1',
      cells: cols.map((c) => ({ mean: c.paperTop1, std: null, n: c.paperTop1 === null ? 0 : 1, text: c.paperTop1 === null ? '-' : c.paperTop1.toFixed(1) })),
    });
  }
  rows.push(
    { label: 'runs', name: 'status', cells: cols.map((c) => statusCell(fs(c))) },
    { label: 'linear top-1 (%)', name: 'linear_top1', cells: cols.map((c) => cell(fs(c), (f) => f.linearTop1, acc, true)) },
    { label: 'kNN top-1 (%)', name: 'knn_top1', cells: cols.map((c) => cell(fs(c), (f) => f.knnTop1, acc, true)) },
    { label: `kNN dips (≥ ${opts.dipPoints} pts)`, name: 'dips', cells: cols.map((c) => cell(fs(c), (f) => f.dips, int, false)) },
    { label: 'deepest dip (pts)', name: 'max_dip', cells: cols.map((c) => cell(fs(c), (f) => f.maxDip, acc, false)) },
    { label: 'grad spikes: patch proj.', name: 'spikes_patch_proj', cells: cols.map((c) => cell(fs(c), (f) => f.spikesPatch, int, false)) },
    { label: `grad spikes: ${last}`, name: 'spikes_last_block', cells: cols.map((c) => cell(fs(c), (f) => f.spikesLast, int, false)) },
    { label: 'spike lag (steps)', name: 'spike_lag', cells: cols.map((c) => cell(fs(c), (f) => f.spikeLag, int, false)) },
    {
      label: `patch-proj. spikes with a ${last} spike after them (≤ ${opts.orderWindow})`,
      name: 'spikes_after',
      cells: cols.map((c) => cell(fs(c), (f) => f.spikesAfter, int, false)),
    },
    {
      label: `patch-proj. spikes with a ${last} spike before them (≤ ${opts.orderWindow})`,
      name: 'spikes_before',
      cells: cols.map((c) => cell(fs(c), (f) => f.spikesBefore, int, false)),
    },
    { label: 'grad. lead, patch proj. → last block (steps)', name: 'grad_lead', cells: cols.map((c) => cell(fs(c), (f) => f.gradLead, int, false)) },
    { label: 'grad. correlation at that lead', name: 'grad_lead_r', cells: cols.map((c) => cell(fs(c), (f) => f.gradLeadR, (x) => fmtNum(x, 2), false)) },
    { label: 'wall time', name: 'wall_s', cells: cols.map((c) => cell(fs(c), (f) => f.wallS, formatSeconds, false)) },
  );
  return { header, rows };
}

function fmtPaper(k: string, v: number): string {
  return k.endsWith('base_lr') ? fmtSci(v) : String(v);
}

/** A cell's text on one table row: `|` escaped, line breaks as spaces (a config value may hold either). */
const mdEscape = (s: string) => s.replace(/\|/g, '\\|').replace(/\r\n?|\n/g, ' ');

export function tableMarkdown(view: SweepView, t: SweepTable): string {
  const first = view.sweptKeys.map(keyName).join(', ') || 'setting';
  const lines = [`| ${mdEscape(first)} | ${t.header.map(mdEscape).join(' | ')} |`, `|---|${t.header.map(() => '---:').join('|')}|`];
  for (const r of t.rows) {
    const label = r.name === 'paper_linear_top1' ? `*${r.label}*` : r.label;
    const cells = r.cells.map((c) => (r.name === 'paper_linear_top1' && c.text !== '-' ? `*${c.text}*` : c.text));
    lines.push(`| ${mdEscape(label)} | ${cells.map(mdEscape).join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * A number as the CSV files write it: 12 significant digits, so the float noise of a difference or a mean
 * (1.6800000000000068, 2.000000000000002) reads as the number it is (1.68, 2); the rest passes as it is.
 */
export const csvValue = (v: unknown): string | number =>
  v === null || v === undefined ? '' : typeof v === 'number' && Number.isFinite(v) ? Number(v.toPrecision(12)) : (v as string | number);

/**
 * report.csv: the same table, numbers only: `<column>` holds the mean over seeds, `<column> std` the std,
 * `<column> n` how many runs it is over, and `<column> note` what qualifies it where report.md says so in
 * brackets ("so far": runs not finished; "2 of 3 runs"; "1/3 diverged @ step 185"), or for a cell of no figure
 * what report.md writes there ("diverged @ step 185", "running (step 3/10)"); empty otherwise.
 */
export function tableCsv(view: SweepView, t: SweepTable): string {
  const head = ['metric'];
  for (const h of t.header) head.push(h, `${h} std`, `${h} n`, `${h} note`);
  const body = t.rows.map((r) => {
    const out: (string | number)[] = [r.name];
    for (const c of r.cells) {
      if (r.name === 'status') out.push(c.text, '', csvValue(c.n), '');
      // a cell of no figure says why in its note, as report.md does in its place (diverged @ step, running)
      else out.push(csvValue(c.mean), csvValue(c.std), csvValue(c.n), c.note ?? (c.mean === null && c.text !== '-' ? c.text : ''));
    }
    return out;
  });
  const keys = view.sweptKeys.length ? view.sweptKeys : ['setting'];
  const values = keys.map((k) => ['swept:' + k, ...view.columns.flatMap((c) => [String(c.values[k] ?? ''), '', '', ''])]);
  return stringify([head, ...values, ...body]);
}

/** runs.csv: one line per run, every figure the report has. */
export function runsCsv(view: SweepView, facts: Map<string, RunFacts>): string {
  const keys = view.sweptKeys;
  const head = [
    'run_id', ...keys, 'seed', 'status', 'step', 'total_steps', 'diverged_at', 'paper_linear_top1', 'linear_top1', 'linear_top5',
    'knn_top1', 'knn_top5', 'best_knn_top1', 'dips', 'max_dip', 'spikes_patch_proj', 'spikes_last_block', 'last_block', 'spike_lag',
    'spikes_after', 'spikes_before', 'grad_lead', 'grad_lead_r', 'wall_s', 'images_per_s',
  ];
  const rows: unknown[][] = [head];
  for (const c of view.columns) {
    for (const r of c.runs) {
      const f = facts.get(r.id)!;
      rows.push([
        f.id, ...keys.map((k) => c.values[k]), f.seed, f.status, f.step, f.totalSteps, f.divergedAt, c.paperTop1, f.linearTop1, f.linearTop5,
        f.knnTop1, f.knnTop5, f.bestKnnTop1, f.dips, f.maxDip, f.spikesPatch, f.spikesLast, f.lastBlock, f.spikeLag,
        f.spikesAfter, f.spikesBefore, f.gradLead, f.gradLeadR, f.wallS, f.imagesPerS,
      ].map(csvValue));
    }
  }
  return stringify(rows as (string | number)[][]);
}
