/**
 * The instability the paper describes, measured from metrics.jsonl:
 *  - dips of the kNN curve (Figs. 1-3, 5): stretches where kNN top-1 is at least D points below its
 *    running maximum since training began (step 0, the untrained encoder, excluded); counted once per
 *    stretch, with the deepest drop;
 *  - gradient spikes (Fig. 4): a parameter group's gradient infinity norm above S x the median of its
 *    previous W logged values; consecutive logged rows above the threshold are one spike (its onset);
 *  - the lag from each patch-projection spike to the first last-block spike at or after it, counted only
 *    when that one comes before the next patch-projection spike, in steps ("a spike happens earlier in the
 *    first layer, and [is] delayed by tens of iterations in the last layers").
 *  - the order of the two, both ways: how many patch-projection spikes have a last-block spike within the
 *    lead window after them, and how many within it before them (the lag above only looks forward, so it
 *    is never negative whatever the order; spikes in no order have as many of one as of the other).
 *  - the lead of the patch projection's gradient over the last block's from the whole curves, not only
 *    from spikes: the correlation of the two excursions (log gradient norm over its running median) at each
 *    lag, and the lag where it peaks (gradLead).
 * Resolution is the logging cadence (train.log_every): a lag shorter than it reads as 0.
 */
import type { MetricRow } from '../runfolder/metrics.ts';

export interface InstabilityOptions {
  /** D: a dip is a drop of at least this many points below the running maximum */
  dipPoints: number;
  /** S: a spike is a value above S x the running median */
  spikeFactor: number;
  /** W: the running median is over this many previous logged values */
  spikeWindow: number;
  /** no spike is called before this many earlier values exist */
  minHistory: number;
  /** gradLead looks at lags up to this many logged rows either way */
  leadMaxLag: number;
  /**
   * Count a drop only while the running maximum is above the untrained encoder's kNN (step 0): the early
   * fall below random features that many runs make before they learn is then no dip (docs/CALIBRATION.md,
   * "are LAMB's deeper dips a fall below the untrained encoder?"). Off by default.
   */
  dipAboveInit: boolean;
}

/**
 * Defaults set from the calibrated cpu-preset runs (docs/CALIBRATION.md "Detectors"): the smoothest runs
 * (batch 64 and 128) never fall more than 2.0 points below their running maximum, and no AdamW run's gradient
 * norm rises above 3.9x its running median except in four steps of two runs (4.0-5.7x); LAMB's collapses reach
 * 100-65,000x.
 */
export const DEFAULT_INSTABILITY: InstabilityOptions = { dipPoints: 2.5, spikeFactor: 4, spikeWindow: 20, minHistory: 5, leadMaxLag: 40, dipAboveInit: false };

export interface Point {
  step: number;
  epoch: number | null;
  value: number;
}

export interface Dip {
  /** first step at least D below the running maximum */
  start: number;
  /** step of the lowest value of the dip */
  bottom: number;
  /** first step back within D of the maximum, or null when the curve never recovered */
  end: number | null;
  /** the running maximum the curve fell from */
  peak: number;
  /** peak minus the lowest value, points */
  depth: number;
  epoch: number | null;
}

export interface Spike {
  /** onset: first logged step above the threshold */
  step: number;
  value: number;
  /** running median at the onset */
  median: number;
  /** value / median */
  ratio: number;
}

export interface Lag {
  from: number;
  to: number;
  lag: number;
}

export interface RunInstability {
  dips: Dip[];
  /** largest drop below the running maximum anywhere on the curve (the deepest dip when there are dips); null without a kNN curve */
  maxDip: number | null;
  /** group name -> spikes */
  spikes: Map<string, Spike[]>;
  /** the deepest block group (`block{depth-1}`), or null */
  lastBlock: string | null;
  lags: Lag[];
  /** median lag, or null when no patch-projection spike was followed by a last-block spike */
  spikeLag: number | null;
  /** the patch projection's spikes against the last block's, both ways; null without both groups */
  order: SpikeOrder | null;
  /** the patch projection's lead over the last block from the whole gradient curves, or null (too few rows) */
  gradLead: GradLead | null;
}

export interface SpikeOrder {
  /** the window, in steps: the lead window (leadMaxLag logged rows) */
  window: number;
  /** patch-projection spikes */
  spikes: number;
  /** of them, those with a last-block spike 1..window steps after */
  after: number;
  /** of them, those with a last-block spike 1..window steps before */
  before: number;
  /** of them, those with a last-block spike at the same step */
  together: number;
}

export interface GradLead {
  /** steps by which the patch projection's excursions lead the last block's (negative: they trail) */
  lag: number;
  /** the correlation at that lag */
  r: number;
  /** the correlation at lag 0 (the same step); null where it is not defined (a series constant over the pairs) */
  r0: number | null;
}

const EPS = 1e-9;

/** Finite values of `key`, in step order. */
export function series(rows: MetricRow[], key: string): Point[] {
  const out: Point[] = [];
  for (const r of rows) {
    const v = r[key];
    const step = r.step;
    if (typeof v !== 'number' || typeof step !== 'number' || Number.isNaN(v)) continue;
    out.push({ step, epoch: typeof r.epoch === 'number' ? r.epoch : null, value: v });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * Dips of an accuracy curve: maximal stretches at least `d` points below the running maximum. With a
 * `floor`, a drop counts only while the running maximum is above it (the curve must first climb past it).
 */
export function findDips(points: Point[], d: number, floor = -Infinity): { dips: Dip[]; maxDrop: number | null } {
  const dips: Dip[] = [];
  let runMax = -Infinity;
  let maxDrop: number | null = null;
  let cur: Dip | null = null;
  for (const p of points) {
    if (!Number.isFinite(p.value)) continue;
    if (cur === null) runMax = Math.max(runMax, p.value);
    // a dip starts only from a maximum above the floor, and the maximum cannot change inside one
    const drop = runMax > floor ? runMax - p.value : 0;
    maxDrop = Math.max(maxDrop ?? 0, drop);
    if (drop >= d - EPS) {
      if (cur === null) {
        cur = { start: p.step, bottom: p.step, end: null, peak: runMax, depth: drop, epoch: p.epoch };
        dips.push(cur);
      } else if (drop > cur.depth) {
        cur.depth = drop;
        cur.bottom = p.step;
      }
    } else if (cur !== null) {
      cur.end = p.step;
      cur = null;
      runMax = Math.max(runMax, p.value);
    }
  }
  return { dips, maxDrop };
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Spikes of a gradient-norm series: value > factor x median(previous `window` values). Non-finite values
 * (the step a run diverges) are skipped: divergence is reported as such, not as a spike.
 */
export function findSpikes(points: Point[], opts: Pick<InstabilityOptions, 'spikeFactor' | 'spikeWindow' | 'minHistory'>): Spike[] {
  const spikes: Spike[] = [];
  let above = false;
  for (const { p, median: med } of againstRunningMedian(points, opts.spikeWindow, opts.minHistory, Number.isFinite)) {
    if (med === null) continue;
    // against a median of 0 (a gradient that was zero, as a frozen layer's) any value would be infinitely many
    // times it: no spike is measured there
    const isSpike = med > 0 && p.value > opts.spikeFactor * med;
    if (isSpike && !above) spikes.push({ step: p.step, value: p.value, median: med, ratio: p.value / med });
    above = isSpike;
  }
  return spikes;
}

/**
 * Each point whose value `keep` admits, with the median of the `window` admitted values before it (null
 * until `minHistory` of them exist): what the spike detector and the gradient lead both measure against.
 */
function* againstRunningMedian(points: Point[], window: number, minHistory: number, keep: (v: number) => boolean): Generator<{ p: Point; median: number | null }> {
  const hist: number[] = [];
  for (const p of points) {
    if (!keep(p.value)) continue;
    // a window shorter than minHistory is full sooner: the median starts once it is
    yield { p, median: hist.length >= Math.max(1, Math.min(minHistory, window)) ? median(hist) : null };
    hist.push(p.value);
    if (hist.length > window) hist.shift();
  }
}

/**
 * For each spike of the first series, the next spike of the second at or after it and before the
 * first series' following spike (a later one answers to that one).
 */
export function spikeLags(first: number[], last: number[]): Lag[] {
  const f = first.slice().sort((a, b) => a - b);
  const l = last.slice().sort((a, b) => a - b);
  const lags: Lag[] = [];
  let j = 0;
  for (let i = 0; i < f.length; i++) {
    const from = f[i]!;
    const until = i + 1 < f.length ? f[i + 1]! : Infinity;
    while (j < l.length && l[j]! < from) j++;
    if (j < l.length && l[j]! < until) lags.push({ from, to: l[j]!, lag: l[j]! - from });
  }
  return lags;
}

/**
 * Each spike of the first series, against the spikes of the second: is one of them 1..window steps
 * after it, 1..window steps before it, at the same step? (A spike may count in more than one.)
 */
export function spikeOrder(first: number[], second: number[], window: number): SpikeOrder {
  let after = 0;
  let before = 0;
  let together = 0;
  for (const f of first) {
    if (second.some((s) => s > f && s - f <= window)) after++;
    if (second.some((s) => s < f && f - s <= window)) before++;
    if (second.includes(f)) together++;
  }
  return { window, spikes: first.length, after, before, together };
}

/**
 * One-sided sign test: the chance of at least `k` successes in `n` fair coin flips. Runs whose patch
 * projection's spikes have more last-block spikes after them than before count as successes, runs with
 * fewer as failures; ties drop out.
 */
export function signTestP(k: number, n: number): number | null {
  if (n <= 0) return null;
  // the sum over i >= k of C(n, i), exact in BigInt (C(n, i) overflows a double from n = 1030), over 2^n:
  // the quotient kept to 1000 binary places, then rounded once to a double
  let c = 1n; // C(n, 0)
  let sum = 0n;
  for (let i = 0; i <= n; i++) {
    if (i >= k) sum += c;
    c = (c * BigInt(n - i)) / BigInt(i + 1);
  }
  return Math.min(1, Number((sum << 1000n) >> BigInt(n)) / 2 ** 1000);
}

export interface PooledSpikeOrder extends Omit<SpikeOrder, 'window'> {
  /** the runs' window in steps; null when runs logged at different intervals gave them different ones */
  window: number | null;
  /** runs with at least one patch-projection spike */
  runs: number;
  /** runs with more patch-projection spikes followed by a last-block spike than preceded by one, and fewer */
  leanAfter: number;
  leanBefore: number;
  /** one-sided sign test of leanAfter against leanBefore; null when no run leans */
  p: number | null;
}

/** The runs' spike orders pooled over a sweep: sums, and the runs that lean each way; null without a patch-projection spike. */
export function pooledSpikeOrder(orders: Iterable<SpikeOrder | null>): PooledSpikeOrder | null {
  const out: PooledSpikeOrder = { window: 0, spikes: 0, after: 0, before: 0, together: 0, runs: 0, leanAfter: 0, leanBefore: 0, p: null };
  for (const o of orders) {
    if (!o || o.spikes === 0) continue;
    out.window = out.runs === 0 || out.window === o.window ? o.window : null;
    out.runs++;
    out.spikes += o.spikes;
    out.after += o.after;
    out.before += o.before;
    out.together += o.together;
    if (o.after > o.before) out.leanAfter++;
    else if (o.after < o.before) out.leanBefore++;
  }
  if (out.runs === 0) return null;
  out.p = signTestP(out.leanAfter, out.leanAfter + out.leanBefore);
  return out;
}

/** log(value / median of the previous `window` values), from `minHistory` values on; keyed by step. */
function excursions(points: Point[], window: number, minHistory: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const { p, median: med } of againstRunningMedian(points, window, minHistory, (v) => Number.isFinite(v) && v > 0)) {
    if (med !== null) out.set(p.step, Math.log(p.value / med));
  }
  return out;
}

function pearson(a: number[], b: number[]): number | null {
  const n = a.length;
  if (n < 3) return null;
  const ma = a.reduce((x, y) => x + y, 0) / n;
  const mb = b.reduce((x, y) => x + y, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i]! - ma) * (b[i]! - mb);
    saa += (a[i]! - ma) ** 2;
    sbb += (b[i]! - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : null;
}

/**
 * Does the first series' gradient lead the second's? Both become excursions over their running medians
 * (what the spike detector thresholds), and their correlation is taken at each lag of -maxLag..maxLag
 * logged rows (the second shifted later by the lag); the lag with the largest correlation, in steps. A
 * lead of tens of steps is the paper's Fig. 4; 0 means the two move together, step by step. Null with
 * fewer than 4 x maxLag rows of both (the estimate would rest on too few pairs).
 */
export function gradLead(first: Point[], second: Point[], opts: Pick<InstabilityOptions, 'spikeWindow' | 'minHistory' | 'leadMaxLag'>): GradLead | null {
  const ea = excursions(first, opts.spikeWindow, opts.minHistory);
  const eb = excursions(second, opts.spikeWindow, opts.minHistory);
  const steps = [...ea.keys()].filter((s) => eb.has(s)).sort((x, y) => x - y);
  const L = opts.leadMaxLag;
  if (steps.length < 4 * Math.max(1, L)) return null;
  // pairs are matched by step (a step missing from either series, e.g. a non-finite value, drops out)
  const cadence = medianGap(steps);
  let best: { lag: number; r: number } | null = null;
  let r0: number | null = null;
  // 0, 1, -1, 2, -2, ...: a tie goes to the smaller lag
  for (let k = 0; k <= 2 * L; k++) {
    const lag = k % 2 ? (k + 1) / 2 : k === 0 ? 0 : -k / 2;
    const x: number[] = [];
    const y: number[] = [];
    for (const [step, v] of ea) {
      const w = eb.get(step + lag * cadence);
      if (w !== undefined) {
        x.push(v);
        y.push(w);
      }
    }
    const r = pearson(x, y);
    if (r === null) continue;
    if (lag === 0) r0 = r;
    if (best === null || r > best.r + EPS) best = { lag, r };
  }
  return best ? { lag: best.lag * cadence, r: best.r, r0 } : null;
}

/** The logging interval of ascending steps: their median gap (1 with fewer than two steps). */
function medianGap(steps: number[]): number {
  return steps.length < 2 ? 1 : Math.max(1, median(steps.slice(1).map((s, i) => s - steps[i]!)));
}

/** Groups with a `grad_inf/<group>` column, in first-seen order. */
export function gradGroups(rows: MetricRow[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) if (k.startsWith('grad_inf/')) seen.add(k.slice('grad_inf/'.length));
  return [...seen];
}

export function lastBlockOf(groups: string[]): string | null {
  let best: number | null = null;
  for (const g of groups) {
    const m = /^block(\d+)$/.exec(g);
    if (m && (best === null || Number(m[1]) > best)) best = Number(m[1]);
  }
  return best === null ? null : `block${best}`;
}

/**
 * Step 0's kNN value is the untrained encoder's (a baseline: random ViT features already classify
 * Fashion-MNIST well), not a peak training reached, so the running maximum starts after it.
 */
export function analyzeRun(rows: MetricRow[], opts: InstabilityOptions = DEFAULT_INSTABILITY, logEvery: number | null = null): RunInstability {
  const all = series(rows, 'knn_top1');
  const knn = all.filter((p) => p.step > 0);
  // without a step-0 evaluation there is no untrained level to anchor to: every drop counts
  const init = all.find((p) => p.step === 0);
  const { dips, maxDrop } = findDips(knn, opts.dipPoints, opts.dipAboveInit && init ? init.value : -Infinity);
  const groups = gradGroups(rows);
  const spikes = new Map<string, Spike[]>();
  for (const g of groups) spikes.set(g, findSpikes(series(rows, `grad_inf/${g}`), opts));
  const lastBlock = lastBlockOf(groups);
  const patch = spikes.get('patch_proj') ?? [];
  const patchSteps = patch.map((s) => s.step);
  const lastSteps = lastBlock ? (spikes.get(lastBlock) ?? []).map((s) => s.step) : [];
  const lags = lastBlock ? spikeLags(patchSteps, lastSteps) : [];
  // the order and the lead compare the patch projection with the last block: both groups must be logged
  const both = lastBlock !== null && groups.includes('patch_proj');
  // The lead and the order's window count logged rows: those of the run's cadence (train.log_every) where it is
  // known, since the kNN monitor's steps (every 0.05 epochs: 12 steps) add rows off it (every 10), and a lag in
  // rows of a median gap of 6 would be neither. Otherwise the interval is the median gap of the finite rows (a
  // diverged run's last row is off the cadence and non-finite).
  const onCadence = (p: Point) => logEvery === null || logEvery < 1 || p.step % logEvery === 0;
  const patchSeries = both ? series(rows, 'grad_inf/patch_proj').filter(onCadence) : [];
  const interval = logEvery !== null && logEvery >= 1 ? logEvery : medianGap(patchSeries.filter((p) => Number.isFinite(p.value)).map((p) => p.step));
  const order = both ? spikeOrder(patchSteps, lastSteps, opts.leadMaxLag * interval) : null;
  return {
    dips,
    // a curve is two evaluations or more after step 0: the final kNN alone (the monitor off) has no dip to show
    maxDip: knn.length >= 2 ? maxDrop : null,
    spikes,
    lastBlock,
    lags,
    spikeLag: lags.length ? median(lags.map((l) => l.lag)) : null,
    order,
    gradLead: both ? gradLead(patchSeries, series(rows, `grad_inf/${lastBlock}`).filter(onCadence), opts) : null,
  };
}

/** The summary.json keys (docs/ARCHITECTURE.md "The run folder"): dips, max_dip, spikes/<layer>, spike_lag (+ the details behind them). */
export function instabilitySummary(r: RunInstability, opts: InstabilityOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {
    // a run without a kNN curve (the monitor off) has no dips to count: null, as its max_dip
    dips: r.maxDip === null ? null : r.dips.length,
    max_dip: r.maxDip === null ? null : round(r.maxDip, 4),
  };
  for (const [g, s] of r.spikes) out[`spikes/${g}`] = s.length;
  out.spike_lag = r.spikeLag;
  out.spikes_after = r.order === null ? null : r.order.after;
  out.spikes_before = r.order === null ? null : r.order.before;
  out.grad_lead = r.gradLead === null ? null : r.gradLead.lag;
  out.grad_lead_r = r.gradLead === null ? null : round(r.gradLead.r, 4);
  out.instability = {
    options: {
      dip_points: opts.dipPoints,
      spike_factor: opts.spikeFactor,
      spike_window: opts.spikeWindow,
      min_history: opts.minHistory,
      lead_max_lag: opts.leadMaxLag,
      // written only when on, so that summaries measured the default way read as before
      ...(opts.dipAboveInit ? { dip_above_init: true } : {}),
    },
    last_block: r.lastBlock,
    dips: r.dips.map((d) => ({ ...d, peak: round(d.peak, 4), depth: round(d.depth, 4) })),
    spike_steps: Object.fromEntries([...r.spikes].map(([g, s]) => [g, s.map((x) => x.step)])),
    spike_lags: r.lags,
    spike_order: r.order,
    grad_lead: r.gradLead && { lag: r.gradLead.lag, r: round(r.gradLead.r, 4), r0: r.gradLead.r0 === null ? null : round(r.gradLead.r0, 4) },
  };
  return out;
}

function round(x: number, d: number): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}
