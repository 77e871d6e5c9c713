import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  analyzeRun,
  DEFAULT_INSTABILITY,
  findDips,
  findSpikes,
  gradLead,
  instabilitySummary,
  lastBlockOf,
  pooledSpikeOrder,
  signTestP,
  spikeLags,
  spikeOrder,
  type Point,
} from '../../src/report/instability.ts';
import { parseMetrics, readMetrics } from '../../src/runfolder/metrics.ts';
import { noise, tmp, writeFakeRun } from './fixtures.ts';

const pts = (values: number[], every = 10): Point[] => values.map((value, i) => ({ step: i * every, epoch: null, value }));

test('kNN dips: stretches at least D below the running maximum, counted once, deepest drop', () => {
  //                 0   1   2   3   4   5   6   7   8   9  10
  const curve = pts([10, 20, 30, 25, 24, 31, 40, 33, 41, 50, 44]);
  const d5 = findDips(curve, 5);
  assert.deepEqual(
    d5.dips.map((d) => [d.start, d.bottom, d.end, d.peak, d.depth]),
    [
      [30, 40, 50, 30, 6], // 25 then 24: one dip, bottom at 24
      [70, 70, 80, 40, 7],
      [100, 100, null, 50, 6], // never recovers
    ],
  );
  assert.equal(d5.maxDrop, 7);
  // a drop of exactly D counts; D = 6.5 leaves only the 7-point dip
  assert.equal(findDips(curve, 6).dips.length, 3);
  assert.equal(findDips(curve, 6.5).dips.length, 1);
  // a monotone curve has no dips and a deepest drop of 0
  assert.deepEqual(findDips(pts([1, 2, 3]), 1), { dips: [], maxDrop: 0 });
  assert.deepEqual(findDips([], 1), { dips: [], maxDrop: null });
  // the value that ends a dip is a maximum too: a fall right after a recovery to a new high is measured from it
  assert.deepEqual(
    findDips(pts([10, 20, 14, 25, 21]), 3).dips.map((d) => [d.start, d.end, d.peak, d.depth]),
    [
      [20, 30, 20, 6],
      [40, null, 25, 4],
    ],
  );
});

test('gradient spikes: value > S x running median of the previous W values, onset only', () => {
  const values = Array.from({ length: 200 }, (_, i) => 1 + 0.2 * noise(i));
  for (const i of [50, 51, 52]) values[i] = 8; // one spike lasting three logged rows
  values[120] = 4; // above 3x
  values[150] = 2.5; // below 3x: not a spike
  values[170] = NaN; // skipped
  values[171] = Infinity; // skipped: divergence is not a spike
  const S3 = { ...DEFAULT_INSTABILITY, spikeFactor: 3 };
  const s = findSpikes(pts(values, 5), S3);
  assert.deepEqual(
    s.map((x) => x.step),
    [250, 600],
  );
  assert.ok(Math.abs(s[0]!.median - 1) < 0.2 && Math.abs(s[0]!.ratio - 8) < 2);
  // S = 5 keeps only the 8x spike
  assert.deepEqual(
    findSpikes(pts(values, 5), { ...DEFAULT_INSTABILITY, spikeFactor: 5 }).map((x) => x.step),
    [250],
  );
  // a slow tenfold rise is not a spike: the running median follows it
  const ramp = Array.from({ length: 300 }, (_, i) => 10 ** (i / 300));
  assert.equal(findSpikes(pts(ramp), S3).length, 0);
  // a window shorter than minHistory (5): the median starts once the window is full
  assert.deepEqual(findSpikes(pts([1, 1.02, 0.98, 1, 1.01, 10, 1]), { ...DEFAULT_INSTABILITY, spikeWindow: 4 }).map((x) => x.step), [50]);
  // nothing is called before minHistory values exist
  assert.equal(findSpikes(pts([1, 1, 100, 1, 1, 1]), S3).length, 0);
  // against a median of 0 (a gradient that was zero) no value is a spike, not one infinitely many times it
  assert.equal(findSpikes(pts([0, 0, 0, 0, 0, 0, 0, 1e-12, 0]), S3).length, 0);
  assert.deepEqual(findSpikes(pts([0, 0, 0, 1, 1, 1, 1, 1, 1, 9]), S3).map((x) => x.ratio), [9]);
  assert.equal(findSpikes(pts([1, 1, 1, 1, 1, 100]), S3).length, 1);
  // the default factor (4) leaves out the 4x value
  // exactly S x the median is no spike (the paper's "above"); just past it is
  assert.equal(findSpikes(pts([1, 1, 1, 1, 1, 1, 4]), DEFAULT_INSTABILITY).length, 0);
  assert.equal(findSpikes(pts([1, 1, 1, 1, 1, 1, 4.000001]), DEFAULT_INSTABILITY).length, 1);
  assert.deepEqual(findSpikes(pts(values, 5), DEFAULT_INSTABILITY).map((x) => x.step), [250]);
});

test('spike lag: each patch-projection spike to the next last-block spike before the following patch spike', () => {
  assert.deepEqual(spikeLags([100, 300, 700], [130, 310, 320, 900]), [
    { from: 100, to: 130, lag: 30 },
    { from: 300, to: 310, lag: 10 },
    { from: 700, to: 900, lag: 200 },
  ]);
  // a last-block spike before the patch spike does not count; one after the next patch spike belongs to that one
  assert.deepEqual(spikeLags([100, 200], [50, 250]), [{ from: 200, to: 250, lag: 50 }]);
  assert.deepEqual(spikeLags([100], [100]), [{ from: 100, to: 100, lag: 0 }]);
  // a last-block spike at the step of the next patch spike answers to that one (lag 0), not to the earlier
  assert.deepEqual(spikeLags([100, 200], [200]), [{ from: 200, to: 200, lag: 0 }]);
  assert.deepEqual(spikeLags([], [10]), []);
  assert.equal(lastBlockOf(['patch_proj', 'block0', 'block11', 'block2', 'projector']), 'block11');
  assert.equal(lastBlockOf(['patch_proj']), null);
});

test('spike order: each patch-projection spike against the last block, both ways, within the window', () => {
  // 100: 130 after (30), 80 before (20); 300: 310 after, nothing within 40 before (260 is 40 before: counts);
  // 500: only 500 itself (same step); 700: 745 is 45 after, outside the window
  const o = spikeOrder([100, 300, 500, 700], [80, 130, 260, 310, 500, 745], 40);
  assert.deepEqual(o, { window: 40, spikes: 4, after: 2, before: 2, together: 1 });
  assert.deepEqual(spikeOrder([100], [], 40), { window: 40, spikes: 1, after: 0, before: 0, together: 0 });
  assert.deepEqual(spikeOrder([], [10], 40), { window: 40, spikes: 0, after: 0, before: 0, together: 0 });
  // exactly the window after counts, as exactly the window before does
  assert.deepEqual(spikeOrder([100], [140], 40), { window: 40, spikes: 1, after: 1, before: 0, together: 0 });
});

test('spike order pooled over a sweep: sums, the runs leaning each way, their sign test', () => {
  const o = (spikes: number, after: number, before: number, together = 0) => ({ window: 40, spikes, after, before, together });
  const p = pooledSpikeOrder([o(2, 2, 0), o(1, 1, 1, 1), null, o(0, 0, 0), o(3, 0, 2), o(1, 1, 0)])!;
  // runs without a patch-projection spike (null, 0 spikes) drop out; the tie (1, 1) leans neither way
  assert.deepEqual(p, { window: 40, spikes: 7, after: 4, before: 3, together: 1, runs: 4, leanAfter: 2, leanBefore: 1, p: 4 / 8 });
  assert.equal(pooledSpikeOrder([null, o(0, 0, 0)]), null);
  assert.equal(pooledSpikeOrder([o(1, 0, 0)])!.p, null);
  // runs logged at different intervals have different windows in steps: the pooled window is none of them
  assert.equal(pooledSpikeOrder([o(1, 1, 0), { ...o(1, 1, 0), window: 80 }])!.window, null);
  assert.equal(pooledSpikeOrder([o(1, 1, 0), o(2, 0, 1)])!.window, 40);
});

test('sign test: the one-sided binomial tail at p = 1/2', () => {
  assert.equal(signTestP(7, 7), 1 / 128);
  assert.equal(signTestP(0, 5), 1);
  assert.equal(signTestP(2, 3), 4 / 8); // 3 + 1 of the 8 outcomes
  assert.ok(Math.abs(signTestP(8, 10)! - 56 / 1024) < 1e-12); // 45 + 10 + 1
  assert.equal(signTestP(0, 0), null);
  // beyond the doubles' binomial coefficients (n >= 1030): scipy.stats.binomtest(562, 1021, alternative='greater')
  assert.ok(Math.abs(signTestP(562, 1021)! / 7.001664247707532e-4 - 1) < 1e-9);
  assert.equal(signTestP(0, 2000), 1);
  assert.ok(Math.abs(signTestP(1000, 2000)! - 0.5089195055729268) < 1e-12); // binomtest(1000, 2000, 'greater')
});

test('gradient lead: the lag of the largest correlation of the two excursions, in steps', () => {
  // flat gradients (excursion 0) with pulses of e (excursion exactly 1); the second series has each pulse 25 rows later
  const pulses = (n: number, at: number[], every: number): Point[] =>
    Array.from({ length: n }, (_, i) => ({ step: (i + 1) * every, epoch: null, value: at.includes(i) ? Math.E : 1 }));
  const opts = { spikeWindow: 20, minHistory: 5, leadMaxLag: 40 };
  const lead = gradLead(pulses(400, [50, 120, 200], 1), pulses(400, [75, 145, 225], 1), opts)!;
  assert.equal(lead.lag, 25);
  assert.ok(Math.abs(lead.r - 1) < 1e-12, `r ${lead.r}`);
  // at lag 0 the 3 pulses of each of the 395 excursions never meet: r = (0 - 3·3/n) / (3 - 3·3/n) = -3/(n-3), n = 395
  assert.ok(Math.abs(lead.r0! - -3 / 392) < 1e-12, `r0 ${lead.r0}`);
  // logged every 2 steps: the same rows are a lead of 50 steps; the second series first: a negative lead
  assert.equal(gradLead(pulses(400, [50, 120, 200], 2), pulses(400, [75, 145, 225], 2), opts)!.lag, 50);
  assert.equal(gradLead(pulses(400, [75, 145, 225], 1), pulses(400, [50, 120, 200], 1), opts)!.lag, -25);
  // the same pulses: lead 0 with correlation 1
  const same = gradLead(pulses(400, [50, 120], 1), pulses(400, [50, 120], 1), opts)!;
  assert.deepEqual([same.lag, Math.round(same.r * 1e9) / 1e9, Math.round(same.r0! * 1e9) / 1e9], [0, 1, 1]);
  // pairs go by step: a value missing from one series (a non-finite norm) shifts nothing after it
  const holed = pulses(400, [75, 145, 225], 1);
  holed[100]!.value = NaN;
  holed[110]!.value = Infinity;
  const h = gradLead(pulses(400, [50, 120, 200], 1), holed, opts)!;
  assert.equal(h.lag, 25);
  assert.ok(Math.abs(h.r - 1) < 1e-12, `r ${h.r}`);
  // fewer than 4 x leadMaxLag rows: no estimate
  assert.equal(gradLead(pulses(150, [50], 1), pulses(150, [60], 1), opts), null);
  // the second series pulses 10 rows before and 10 rows after each of the first's: the correlations at +10 and
  // -10 are the same sums of 0s and 1s, equal to the last bit; lags are tried 0, 1, -1, 2, -2, ... and the first
  // of a tie is kept: the patch projection leading by 10 rows (20 steps), not trailing
  const tie = gradLead(pulses(400, [100, 200], 2), pulses(400, [90, 110, 190, 210], 2), opts)!;
  assert.deepEqual([tie.lag, Math.round(tie.r * 1e9) / 1e9 > 0], [20, true]);
  // a larger correlation, even one at a longer lag, is not a tie
  assert.equal(gradLead(pulses(400, [100, 200], 1), pulses(400, [90, 130, 230], 1), opts)!.lag, 30);
});

test("the lead and the order's window count the run's logged rows (train.log_every), not the kNN monitor's rows off that cadence", () => {
  // logged every 10 steps, plus rows at the kNN monitor's steps (every 12); the last block's pulses 20 steps after the patch projection's
  const steps = [...new Set([...Array.from({ length: 400 }, (_, i) => (i + 1) * 10), ...Array.from({ length: 333 }, (_, i) => (i + 1) * 12)])].sort((a, b) => a - b);
  const patch = [500, 1200, 2000, 3100];
  const rows = steps.map((step) => ({
    step,
    'grad_inf/patch_proj': patch.includes(step) ? 10 : 1,
    'grad_inf/block3': patch.includes(step - 20) ? 10 : 1,
    ...(step % 12 === 0 ? { knn_top1: 50 } : {}),
  }));
  const r = analyzeRun(rows, DEFAULT_INSTABILITY, 10);
  assert.equal(r.gradLead!.lag, 20);
  assert.ok(Math.abs(r.gradLead!.r - 1) < 1e-12, `r ${r.gradLead!.r}`);
  assert.equal(r.order!.window, 400);
  assert.deepEqual([r.order!.after, r.order!.before], [4, 0]);
  // the cadence unknown (an older caller): the median gap of the rows, as before
  assert.equal(analyzeRun(rows, DEFAULT_INSTABILITY).order!.window, 40 * 6);
});

test('a metrics.jsonl written with known dips, spikes and lags reads back as those', () => {
  const dir = tmp();
  // vit with 4 blocks; kNN every 20 steps on a rising curve with drops of 8 at step 120 and 15 at step 260
  const run = writeFakeRun(dir, {
    id: 'run',
    steps: 400,
    depth: 4,
    knnCurve: (f) => 20 + 40 * f,
    knnDrops: { 120: 8, 260: 15, 280: 7 },
    spikes: { patch_proj: [100, 250], block3: [135, 255], block1: [300] },
  });
  const rows = readMetrics(join(run, 'metrics.jsonl'));
  const r = analyzeRun(rows, DEFAULT_INSTABILITY);
  // curve 20 + step/10: 120 -> 24, 6 below 30 (step 100); 260 -> 31, 13 below 44 (step 240); 280 -> 41, still 3 below: one dip
  assert.equal(r.dips.length, 2);
  assert.deepEqual(
    r.dips.map((d) => [d.start, d.end]),
    [
      [120, 140],
      [260, 300],
    ],
  );
  assert.ok(Math.abs(r.maxDip! - 13) < 1e-6, `deepest ${r.maxDip}`);
  assert.equal(r.lastBlock, 'block3');
  assert.deepEqual(r.spikes.get('patch_proj')!.map((s) => s.step), [100, 250]);
  assert.deepEqual(r.spikes.get('block3')!.map((s) => s.step), [135, 255]);
  assert.deepEqual(r.spikes.get('block1')!.map((s) => s.step), [300]);
  assert.deepEqual(r.spikes.get('predictor'), []);
  assert.deepEqual(r.lags.map((l) => l.lag), [35, 5]);
  assert.equal(r.spikeLag, 20);
  // logged every 5 steps, so the window is the lead window's 40 rows = 200 steps: 135 and 255 are after
  // 100 and 250 (35, 5 steps), and 135 is also 115 steps before 250
  assert.deepEqual(r.order, { window: 200, spikes: 2, after: 2, before: 1, together: 0 });
  const s = instabilitySummary(r, DEFAULT_INSTABILITY);
  assert.equal(s.spikes_after, 2);
  assert.equal(s.spikes_before, 1);
  assert.equal(s.dips, 2);
  assert.equal(s.max_dip, 13);
  assert.equal(s['spikes/patch_proj'], 2);
  assert.equal(s['spikes/block3'], 2);
  assert.equal(s.spike_lag, 20);
});

test('metrics parsing: non-finite strings become numbers, a torn last line is dropped', () => {
  const dir = tmp();
  const p = join(dir, 'metrics.jsonl');
  writeFileSync(p, '{"step":1,"loss":"NaN","grad_inf/patch_proj":"Infinity","knn_top1":null}\n{"step":2,"loss":1.5}\n{"step":3,"lo');
  const rows = readMetrics(p);
  assert.equal(rows.length, 2);
  assert.ok(Number.isNaN(rows[0]!.loss));
  assert.equal(rows[0]!['grad_inf/patch_proj'], Infinity);
  assert.equal(rows[0]!.knn_top1, null);
  assert.deepEqual(parseMetrics(''), []);
});

test('the untrained encoder (step 0) is no peak: a fall from it is not a dip, the same fall after training began is', () => {
  const curve = (vals: number[]) => vals.map((v, i) => ({ step: i * 10, knn_top1: v }));
  // step 0 = 60 (random features), training first loses 5 points, then climbs
  const early = analyzeRun(curve([60, 55, 56, 58, 61, 63, 64]));
  assert.equal(early.dips.length, 0);
  assert.equal(early.maxDip, 0, 'from 55 on the curve only climbs');
  const late = analyzeRun(curve([60, 55, 58, 61, 56, 62, 64]));
  assert.deepEqual(late.dips.map((d) => [d.start, d.depth]), [[40, 5]]);
  // one evaluation after step 0 (the final kNN, the monitor off) is no curve: no dips counted, no deepest drop
  const once = analyzeRun(curve([60, 40]));
  assert.equal(once.maxDip, null);
  const s = instabilitySummary(once, DEFAULT_INSTABILITY);
  assert.deepEqual([s.dips, s.max_dip], [null, null]);
  // no kNN at all: the same
  const none = instabilitySummary(analyzeRun([{ step: 10, loss: 1 }, { step: 20, loss: 0.9 }]), DEFAULT_INSTABILITY);
  assert.deepEqual([none.dips, none.max_dip], [null, null]);
});

test('--dip-above-init: a drop counts only once the running maximum is above the untrained encoder (step 0)', () => {
  const rows = (vals: number[]) => vals.map((v, i) => ({ step: i * 10, knn_top1: v }));
  const above = { ...DEFAULT_INSTABILITY, dipAboveInit: true };
  // step 0 = 60; the first evaluation (59) is below it, training falls to 54, climbs past 60, then dips 3 from 63
  const curve = rows([60, 59, 54, 55, 58, 61, 63, 60, 64]);
  const dflt = analyzeRun(curve);
  assert.deepEqual(dflt.dips.map((d) => [d.start, d.end, d.peak, d.depth]), [[20, 40, 59, 5], [70, 80, 63, 3]]);
  assert.equal(dflt.maxDip, 5);
  const init = analyzeRun(curve, above);
  assert.deepEqual(init.dips.map((d) => [d.start, d.end, d.peak, d.depth]), [[70, 80, 63, 3]]);
  assert.equal(init.maxDip, 3);
  // a maximum above step 0 by any margin anchors: 60.5 > 60, so the fall to 55 is a 5.5-point dip
  assert.equal(analyzeRun(rows([60, 60.5, 55, 61]), above).maxDip, 5.5);
  // ... a maximum equal to step 0 is not above it: the same fall is no dip
  assert.equal(analyzeRun(rows([60, 60, 55, 61]), above).maxDip, 0);
  // a curve that never climbs past step 0 has no dip and a deepest drop of 0
  const never = analyzeRun(rows([60, 59, 52, 57, 58]), above);
  assert.deepEqual([never.dips.length, never.maxDip], [0, 0]);
  // without a step-0 evaluation there is nothing to anchor to: every drop counts, as by default
  const noInit = rows([60, 59, 54, 55, 58, 61, 63, 60, 64]).slice(1);
  assert.deepEqual(analyzeRun(noInit, above).maxDip, 5);
  // the summary says so only when the option is on
  const opts = (r: Record<string, unknown>) => (r.instability as { options: Record<string, unknown> }).options;
  assert.equal(opts(instabilitySummary(init, above)).dip_above_init, true);
  assert.ok(!('dip_above_init' in opts(instabilitySummary(dflt, DEFAULT_INSTABILITY))));
});
