/**
 * `moco3 report` as a library: read a sweep folder, measure the instability of every run (written back
 * into each run's summary.json), and write report.md (the paper-shaped table, the figures, per-run
 * detail), report.csv, runs.csv and plots/. Reads result folders only: no TensorFlow.js.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../engine/files.ts';
import { join, relative } from 'node:path';
import { analyzeRun, DEFAULT_INSTABILITY, instabilitySummary, pooledSpikeOrder, type InstabilityOptions, type RunInstability } from './instability.ts';
import { gradFigure, knnFigure, runLabel, writeFigure, type WrittenFigure } from './plots.ts';
import { mergeSummary } from '../runfolder/summary.ts';
import { liveLock } from '../runfolder/lock.ts';
import { checkReportOutputs, FIGURES, plannedRuns, readSweep, type SweepRecord } from './results.ts';
import { baselinesCommandFor, baselinesMarkdown } from './baselines.ts';
import { readBaselines } from '../runfolder/baselines.ts';
import { fmtP, pairedMarkdown } from './paired.ts';
import { followingKeys, formatValue, keyName, pooledKeys, repeatedSeeds, viewSweep, type SweepView } from './sweep.ts';
import { buildTable, fmtNum, formatSeconds, runFacts, runsCsv, tableCsv, tableMarkdown, type RunFacts, type SweepTable } from './table.ts';

export type ReportFormat = 'md' | 'csv' | 'both';

export interface ReportOptions {
  format?: ReportFormat;
  instability?: Partial<InstabilityOptions>;
  /** draw plots (md and both); default true */
  plots?: boolean;
  /** write PNGs beside the SVGs; default true */
  png?: boolean;
  /** write dips/spikes into each run's summary.json; default true */
  updateSummaries?: boolean;
}

export interface ReportResult {
  sweep: string;
  dir: string;
  files: string[];
  view: SweepView;
  table: SweepTable;
  facts: Map<string, RunFacts>;
  instability: Map<string, RunInstability>;
  /** runs sweep.yaml plans that have no folder yet (a sweep still under way) */
  missing: string[];
  /** run folders left out as previous runs moved aside by `train --force` */
  asideRuns: string[];
  seconds: number;
}

/** The planned runs (sweep.yaml's runs, and its earlier_runs: what earlier invocations planned) without a run folder. */
export function missingRuns(sweep: SweepRecord): string[] {
  const have = new Set(sweep.runs.map((r) => r.id));
  const ids = plannedIds(sweep).filter((id) => !have.has(id));
  return [...new Set(ids)];
}

/** The run folders sweep.yaml names (its latest invocation's and earlier ones'). */
function plannedIds(sweep: SweepRecord): string[] {
  return plannedRuns(sweep.sweepFile)
    .map((r) => (r as { id?: unknown })?.id)
    .filter((id): id is string => typeof id === 'string')
    .map((id) => id.split('/').pop()!);
}

/** Run folders of a sweep whose sweep.yaml lists its runs and not these (copied in from elsewhere); none when it lists none. */
export function unplannedRuns(sweep: SweepRecord): string[] {
  const planned = new Set(plannedIds(sweep));
  return planned.size ? sweep.runs.map((r) => r.id).filter((id) => !planned.has(id)) : [];
}

export async function writeReport(sweepDir: string, opts: ReportOptions = {}): Promise<ReportResult> {
  const t0 = performance.now();
  const format = opts.format ?? 'both';
  const io: InstabilityOptions = { ...DEFAULT_INSTABILITY, ...opts.instability };
  const sweep = readSweep(sweepDir);
  checkReportOutputs(sweepDir, { format, summaries: opts.updateSummaries !== false, ...(opts.plots !== undefined ? { plots: opts.plots } : {}), ...(opts.png !== undefined ? { png: opts.png } : {}) });
  const view = viewSweep(sweep);
  const instability = new Map<string, RunInstability>();
  const facts = new Map<string, RunFacts>();
  for (const r of sweep.runs) {
    const every = r.flat.get('train.log_every');
    const inst = analyzeRun(r.metrics, io, typeof every === 'number' && Number.isInteger(every) && every >= 1 ? every : null);
    instability.set(r.id, inst);
    // a run whose process holds its lock writes its own summary.json (the probe's result, the final status):
    // the report leaves it alone, lest its rewrite land over one of those (a later report fills it in)
    if (opts.updateSummaries !== false && r.summary && liveLock(r.dir) === null) r.summary = mergeSummary(r.dir, instabilitySummary(inst, io));
    facts.set(r.id, runFacts(r, inst));
  }
  const table = buildTable(view, facts, { dipPoints: io.dipPoints, orderWindow: orderWindow(instability, io) });
  const missing = missingRuns(sweep);
  const files: string[] = [];
  if (format === 'csv' || format === 'both') {
    const p = join(sweepDir, 'report.csv');
    writeFileAtomic(p, tableCsv(view, table));
    const q = join(sweepDir, 'runs.csv');
    writeFileAtomic(q, runsCsv(view, facts));
    files.push(p, q);
  }
  if (format === 'md' || format === 'both') {
    const figures: WrittenFigure[] = [];
    const plotDir = join(sweepDir, 'plots');
    if (opts.plots !== false && sweep.runs.length) {
      mkdirSync(plotDir, { recursive: true });
      figures.push(await writeFigure(plotDir, knnFigure(view, instability, io), opts.png !== false));
      const g = gradFigure(view, instability, io);
      if (g) figures.push(await writeFigure(plotDir, g, opts.png !== false));
      for (const f of figures) files.push(f.svg, ...(f.png ? [f.png] : []));
    }
    // a figure of an earlier report that this one does not draw (no gradients logged, --no-png, --no-plots)
    // would sit beside it as if current (a file named plots, which --no-plots lets be, holds none)
    if (existsSync(plotDir) && statSync(plotDir).isDirectory()) {
      for (const name of Object.values(FIGURES)) {
        for (const ext of ['svg', 'png']) {
          const p = join(plotDir, `${name}.${ext}`);
          // a figure, or a link where one was; a folder of that name is no figure of a report's
          if (!files.includes(p) && existsSync(p) && !lstatSync(p).isDirectory()) rmSync(p, { force: true });
        }
      }
      // a folder left empty by that goes too (one holding a file of the user's stays)
      if (!figures.length && readdirSync(plotDir).length === 0) rmdirSync(plotDir);
    }
    const p = join(sweepDir, 'report.md');
    writeFileAtomic(p, reportMarkdown(sweep, view, table, facts, instability, io, figures, missing));
    files.push(p);
  }
  return { sweep: sweep.name, dir: sweepDir, files, view, table, facts, instability, missing, asideRuns: sweep.asideRuns, seconds: (performance.now() - t0) / 1000 };
}

/**
 * The spike-order window as the table's rows say it: the runs' own in steps (the lead window at their
 * logging interval), or in logged rows when runs logging at different intervals have different ones.
 */
function orderWindow(inst: Map<string, RunInstability>, io: InstabilityOptions): string {
  // the window of the runs the order rows count, those with a patch-projection spike; with none, of all
  const pooled = pooledSpikeOrder([...inst.values()].map((i) => i.order));
  if (pooled) return pooled.window === null ? `${io.leadMaxLag} logged rows` : `${pooled.window} steps`;
  const windows = new Set([...inst.values()].flatMap((i) => (i.order ? [i.order.window] : [])));
  if (windows.size > 1) return `${io.leadMaxLag} logged rows`;
  return `${windows.size ? [...windows][0]! : io.leadMaxLag} steps`;
}

/** Fig. 4's order over the sweep's runs (`pooledSpikeOrder`), in a sentence; null when no run has a patch-projection spike. */
export function spikeOrderMarkdown(inst: Iterable<RunInstability>): string | null {
  const o = pooledSpikeOrder([...inst].map((i) => i.order));
  if (o === null) return null;
  const { runs, spikes, window: w } = o;
  // runs logging at different intervals have the same window in logged rows, not in steps
  const within = w === null ? 'the lead window (its logged rows)' : `${w} steps`;
  return (
    `Spike order (Fig. 4): over the ${runs} run${runs === 1 ? '' : 's'} with a patch-projection spike, ${spikes} spike${spikes === 1 ? '' : 's'}; ` +
    `${o.after} had a last-block spike within ${within} after ${spikes === 1 ? 'it' : 'them'}, ${o.before} one within ${within} before, ${o.together} one at the same step. ` +
    `More after than before in ${o.leanAfter} run${o.leanAfter === 1 ? '' : 's'}, fewer in ${o.leanBefore}` +
    (o.p === null ? ' (no run leans either way).' : ` (one-sided sign test: ${fmtP(o.p)}; the paper's order leans after).`)
  );
}

/** How a run's linear probe trained, as its summary.json records it (null: not recorded). */
function probeProtocol(f: RunFacts): string | null {
  const s = f.linearSettings;
  const parts = [f.linearViews, s.epochs === null ? null : `${s.epochs} epochs`, s.base_lr === null ? null : `base lr ${s.base_lr}`, s.batch_size === null ? null : `batch ${s.batch_size}`];
  return parts.some((x) => x !== null) ? parts.filter((x) => x !== null).join(', ') : null;
}

function common(sweep: SweepRecord, k: string): string | null {
  const vs = new Set(sweep.runs.map((r) => JSON.stringify(r.flat.get(k))));
  const v = sweep.runs[0]?.flat.get(k);
  return vs.size === 1 && v !== undefined ? formatValue(k, v) : null;
}

/**
 * The warmup every run shares, in epochs and as a share of training where the epochs are shared too: a
 * preset may shorten it (the cpu preset's is 10% of training, the paper's 40 of 100 epochs).
 */
function warmupOf(sweep: SweepRecord): string | null {
  const w = common(sweep, 'optim.warmup_epochs');
  if (w === null) return null;
  const warm = sweep.runs[0]!.flat.get('optim.warmup_epochs');
  const epochs = common(sweep, 'optim.epochs') === null ? undefined : sweep.runs[0]!.flat.get('optim.epochs');
  if (typeof warm !== 'number' || typeof epochs !== 'number' || !(epochs > 0)) return `${w} epochs`;
  const pct = Number(((100 * warm) / epochs).toPrecision(3));
  return `${w} epochs (${pct}% of training${pct === 40 ? ', as the paper' : ", the paper's 40%"})`;
}

export function reportMarkdown(
  sweep: SweepRecord,
  view: SweepView,
  table: SweepTable,
  facts: Map<string, RunFacts>,
  inst: Map<string, RunInstability>,
  io: InstabilityOptions,
  figures: WrittenFigure[],
  missing: string[] = [],
): string {
  const out: string[] = [];
  const rel = (p: string) => relative(sweep.dir, p).split('\\').join('/');
  out.push(`# Sweep \`${sweep.name}\``, '');
  // what every run shares, less what the sweep varies (a sweep of which one run exists yet shares it all)
  const setting = (
    [
      ['model', 'model.arch', common(sweep, 'model.arch')],
      ['data', 'data.name', common(sweep, 'data.name')],
      ['image size', 'data.image_size', common(sweep, 'data.image_size')],
      ['optimizer', 'optim.name', common(sweep, 'optim.name')],
      ['epochs', 'optim.epochs', common(sweep, 'optim.epochs')],
      ['warmup', 'optim.warmup_epochs', warmupOf(sweep)],
      ['batch', 'optim.batch_size', common(sweep, 'optim.batch_size')],
      ['base lr', 'optim.base_lr', common(sweep, 'optim.base_lr')],
      ['patch proj.', 'model.patch_proj', common(sweep, 'model.patch_proj')],
    ] as const
  )
    .filter(([, key, v]) => v !== null && !view.sweptKeys.includes(key))
    .map(([label, , v]) => `${label} ${v}`);
  // runs cut short (\`--set train.max_steps=N\`) train part of their epochs and lr schedule: said up front
  // "Fixed" only when every run has the one cap; else how many runs stop where
  const caps = sweep.runs.map((r) => r.flat.get('train.max_steps'));
  const capped = caps.filter((v): v is number => typeof v === 'number');
  const why = '(`train.max_steps`: a run stops there, before the end of its epochs and lr schedule if they are longer)';
  let cutShort: string | null = null;
  if (capped.length > 0 && capped.length === caps.length && new Set(capped).size === 1) setting.push(`max steps ${capped[0]} ${why}`);
  else if (capped.length > 0) {
    const runs = (k: number) => `${k} run${k === 1 ? '' : 's'}`;
    const byCap = [...new Set(capped)].sort((a, b) => a - b).map((n) => `${runs(capped.filter((v) => v === n).length)} at ${n} steps`);
    const whole = caps.length - capped.length;
    cutShort = `Cut short: ${byCap.join(', ')}${whole ? `; ${runs(whole)} not` : ''} ${why}.`;
  }
  out.push(`${sweep.runs.length} run${sweep.runs.length === 1 ? '' : 's'}; swept: ${view.sweptKeys.map((k) => `${keyName(k)} (\`${k}\`)`).join(' x ') || 'nothing'}; seeds ${view.seeds.join(', ') || 'none yet'}.`);
  if (setting.length) out.push(`Fixed: ${setting.join(', ')}.`);
  if (cutShort) out.push(cutShort);
  // what else changes from column to column: a column is then not one swept value alone (runs of two presets in one folder)
  const following = [...followingKeys(view)];
  if (following.length) {
    const shown = following.slice(0, 8).map(([k, vs]) => `\`${k}\` (${vs.length > 6 ? `${vs.slice(0, 6).join(', ')}, ...` : vs.join(', ')})`);
    out.push(
      `Changing with the columns besides the swept ${view.sweptKeys.length === 1 ? 'key' : 'keys'}: ${shown.join('; ')}` +
        `${following.length > 8 ? `; and ${following.length - 8} more keys` : ''} (each column's runs share them; the columns differ in them too).`,
    );
  }
  // a config edited after training: the run is read (and put in a column) as its config says now
  const edited = sweep.runs.filter((r) => r.edited !== null);
  if (edited.length) {
    const n = edited.length;
    out.push(
      '',
      `**${n === 1 ? "A run's config.yaml is" : `${n} runs' config.yaml are`} not the config ${n === 1 ? 'it was' : 'they were'} trained with** (its hash is not the one meta.json records: edited since?): ` +
        `${edited.map((r) => `\`${r.id}\``).join(', ')}. ${n === 1 ? 'It is' : 'They are'} reported, in ${n === 1 ? 'its column' : 'their columns'}, as the config says now; ` +
        `each checkpoint's state.json keeps the config trained with.`,
    );
  }
  // runs of one column and one seed: copies of a run folder, each counted as a seed of its own
  const repeated = repeatedSeeds(view);
  if (repeated.length) {
    const swept = view.sweptKeys.map(keyName).join(', ');
    out.push(
      '',
      `**Runs of the same seed in one column:** ${repeated.map((r) => `${swept ? `${swept} ` : ''}${r.column}, seed ${r.seed}: ${r.ids.map((id) => `\`${id}\``).join(', ')}`).join('; ')}. ` +
        'The table counts each of them as a seed of its own, so its mean ± std overstates how many seeds it has: move all but one of each out of the sweep folder (a copy made as a backup, for one).',
    );
  }
  // runs a column pools as seeds that differ in more than the seed (a key that follows the seed is no column)
  const pooled = [...pooledKeys(view)];
  if (pooled.length) {
    const one = pooled.length === 1;
    out.push(
      '',
      `**Pooled as seeds, though they differ in more than the seed:** ${pooled.map(([k, vs]) => `\`${k}\` (${vs.join(', ')})`).join('; ')}. ` +
        `Within a column, runs that differ in ${one ? 'this key' : 'these keys'} count as seeds of one setting, so their cells mix settings: ` +
        `run each value on the same seeds (the key then becomes a column), or report the runs of each value from a folder of their own.`,
    );
  }
  if (sweep.asideRuns.length) {
    const n = sweep.asideRuns.length;
    out.push(
      '',
      `Left out: ${n} previous run${n === 1 ? '' : 's'} that \`moco3 train --force\` moved aside when it trained ${n === 1 ? 'its folder' : 'their folders'} again ` +
        `(${sweep.asideRuns.map((id) => `\`${id}\``).join(', ')}); to report ${n === 1 ? 'it' : 'one'}, move it into a folder of its own.`,
    );
  }
  if (missing.length) {
    out.push('', `**Missing: ${missing.length} of the ${sweep.runs.length + missing.length} planned runs have no results yet** (not started): ${missing.map((id) => `\`${id}\``).join(', ')}.`);
  }
  const unplanned = unplannedRuns(sweep);
  if (unplanned.length) {
    const n = unplanned.length;
    const shown = unplanned.slice(0, 12).map((id) => `\`${id}\``).join(', ');
    out.push(
      '',
      `**Not planned by this sweep: ${n} run folder${n === 1 ? '' : 's'}** that sweep.yaml does not list (copied in from elsewhere?): ${shown}${n > 12 ? `, and ${n - 12} more` : ''}. ` +
        `${n === 1 ? 'It is' : 'They are'} reported beside the sweep's own runs, and the columns and the paper's comparison are made of all of them.`,
    );
  }
  if (view.paperLeftOut) {
    const { figure, sets } = view.paperLeftOut;
    out.push('', `Not compared with the paper's ${figure} sweep: ${sets.map((x) => `\`--set ${x}\``).join(', ')} changed what that sweep holds at the paper's value, so these runs are not it at this scale (no paper row).`);
  }
  if (view.paper) {
    const mapped = view.columns.some((c) => c.paperValues && c.values[view.paper!.key] !== c.paperValues[view.paper!.key]);
    out.push(
      '',
      `This is the paper's ${view.paper.figure} sweep (${view.paper.about}). The paper row is linear-probe top-1 of ViT-B/16 on ImageNet, 100 epochs;` +
        ` ours is at this preset's scale, so compare the shape across the row, not the level.` +
        (mapped ? ' Each column is matched to the paper setting named in its header.' : '') +
        // no column matched to a paper setting: without sweep.yaml (which records it), the values alone did not tell
        (view.columns.length > 0 && view.columns.every((c) => !c.paperValues)
          ? sweep.sweepFile
            ? ` No column is matched to one of the paper's settings, so the paper row is left empty.`
            : ` Which of the paper's settings these runs stand for is not recorded (the sweep's \`sweep.yaml\` names it) and cannot be told from the values, so the paper row is left empty.`
          : ''),
    );
  }
  if (!sweep.runs.length) {
    // a sweep planned (sweep.yaml) whose runs have not started: no columns to draw
    out.push('', '## Table', '', 'No run of this sweep has results yet: the table comes with the first one.', '');
  } else out.push(
    '',
    '## Table',
    '',
    tableMarkdown(view, table),
    `Cells: mean ± std over seeds (the sample std, with n − 1; one value when there is one seed; the same std in every section below). Only finished runs count, and accuracy cells leave out diverged runs; a setting none of whose runs has finished shows their figures so far, marked (so far); a figure only some runs have (a spike lag needs spikes) is over those, marked (k of N runs). ` +
      // said where it matters: the other cells of a diverged run read its curves up to the divergence
      ([...facts.values()].some((f) => f.status === 'diverged')
        ? `The other cells count a diverged run's figures up to its divergence (its curves stop there); a cell whose runs have none reads "diverged @ step N". `
        : '') +
      `kNN top-1 is the final kNN monitor value. A dip is a stretch of the kNN curve at least ${io.dipPoints} points below its running maximum since training began ` +
      `(step 0, the untrained encoder, is left out)` +
      (io.dipAboveInit ? `, counted only where that maximum is above step 0's kNN top-1 (a fall below the untrained encoder's accuracy before the curve has climbed past it is no dip)` : '') +
      `; the deepest dip is the largest drop below that maximum. A spike is a gradient infinity norm above ${io.spikeFactor}× ` +
      `the median of the group's previous ${io.spikeWindow} logged values (consecutive logged steps count once). The spike lag is the median number ` +
      `of steps from a patch-projection spike to the first last-block spike at or after it (0: the same step), among those that come before the next patch-projection spike (a later one answers to that one); its resolution is the logging interval. ` +
      `It only looks forward, so it is never negative whatever the order; the spike-order rows look both ways: how many patch-projection spikes ` +
      `have a last-block spike within the lead window after them, and how many within it before them (spikes in no order have, on average, as many of one as of the other). ` +
      `The gradient lead uses the whole curves instead of the spikes alone: each group's log gradient infinity norm over its running median ` +
      `(the excursion the spike detector thresholds), correlated between the patch projection and the last block at lags up to ±${io.leadMaxLag} ` +
      `logged steps; the lead is the lag of the largest correlation (positive: the patch projection moves first; 0: both move at the same step).` +
      // said where it shows: a finished run too short for the lead (the smoke preset's larger batches) reads "-" there
      ([...facts.values()].some((f) => (f.status === 'completed' || f.status === 'diverged') && f.gradLead === null && f.spikesPatch !== null && f.spikesLast !== null)
        ? ` A "-" in the gradient-lead rows is a run too short to estimate the lead: it needs ${4 * io.leadMaxLag + io.minHistory} logged steps of both gradients ` +
          `(four times the largest lag, past the running median's first ${io.minHistory}; a smaller \`--lead-max-lag\` needs fewer).`
        : ''),
    '',
  );
  const paired = pairedMarkdown(view, facts);
  if (paired) out.push(paired, '');
  out.push(...baselinesMarkdown(readBaselines(sweep.dir), facts.values(), sweep.runs, baselinesCommandFor(sweep.sweepFile)));
  // a completed run without a linear top-1 either was trained with the probe off or has not been probed yet
  // (a run whose summary.json was set aside has its own note below)
  const unprobed = sweep.runs.filter((r) => {
    const f = facts.get(r.id);
    return f?.status === 'completed' && f.linearTop1 === null && f.summaryAside === null;
  });
  const off = unprobed.filter((r) => r.flat.get('eval.linear.enabled') === false).length;
  // a probe at the end of training that diverged (its lr too large) recorded why, not a figure
  const divergedProbe = unprobed.filter((r) => r.flat.get('eval.linear.enabled') !== false && typeof r.summary?.linear_error === 'string');
  const pending = unprobed.length - off - divergedProbe.length;
  if (divergedProbe.length) {
    const n = divergedProbe.length;
    out.push(
      `${n} completed run${n === 1 ? '' : 's'} had ${n === 1 ? 'its' : 'their'} linear probe diverge (linear top-1 "-"; ${n === 1 ? 'its' : 'the first one\'s'} \`linear_error\` in summary.json: ${String(divergedProbe[0]!.summary!.linear_error)}): ` +
        `${divergedProbe.map((r) => `\`${r.id}\``).join(', ')}; \`moco3 eval linear <run-dir> --lr <smaller>\` probes ${n === 1 ? 'it' : 'them'} again, then \`moco3 report\` again.`,
      '',
    );
  }
  if (off) {
    out.push(`${off} completed run${off === 1 ? ' was' : 's were'} trained with the linear probe off (\`eval.linear.enabled: false\`; linear top-1 "-"): \`moco3 eval linear <run-dir>\` runs it afterwards, then \`moco3 report\` again.`, '');
  }
  if (pending) {
    out.push(`${pending} completed run${pending === 1 ? ' has' : 's have'} no linear probe yet (linear top-1 "-"): \`moco3 eval linear <run-dir>\`, then \`moco3 report\` again.`, '');
  }
  const aside = [...facts.values()].filter((f) => f.summaryAside !== null);
  if (aside.length) {
    const n = aside.length;
    const where = aside.map((f) => `\`${f.id}\` (summary.json of step ${f.summaryAside!.steps ?? '?'}, metrics to step ${f.summaryAside!.lastStep})`).join(', ');
    out.push(
      `**${n} finished run${n === 1 ? "'s" : "s'"} summary.json ${n === 1 ? 'is' : 'are'} not of the step ${n === 1 ? 'its' : 'their'} metrics.jsonl ${n === 1 ? 'ends' : 'end'} at** (a copy of another part of the run, a damaged file): ${where}. ` +
        `${n === 1 ? 'Its' : 'Their'} final figures (linear and kNN top-1, wall time) are left out, the curves, dips and spikes are the metrics'.`,
      '',
    );
  }
  const cut = [...facts.values()].filter((f) => f.metricsEnd !== null);
  if (cut.length) {
    const n = cut.length;
    const where = cut.map((f) => `\`${f.id}\` (${f.metricsEnd!.lastStep === null ? 'no rows' : `rows to step ${f.metricsEnd!.lastStep}`} of ${f.metricsEnd!.steps})`).join(', ');
    out.push(
      `**${n} finished run${n === 1 ? "'s" : "s'"} metrics.jsonl stop${n === 1 ? 's' : ''} before ${n === 1 ? 'its' : 'their'} last step** (a copy cut short, a damaged file): ${where}. ` +
        `${n === 1 ? 'Its' : 'Their'} curves, dips, spikes and best kNN cover those rows only; the final kNN and linear top-1 are summary.json's.`,
      '',
    );
  }
  // linear top-1 of one table from two probe protocols (\`moco3 eval linear --no-augment\` or \`--epochs\` on some runs)
  const byProtocol = new Map<string, number>();
  for (const f of facts.values()) {
    const p = f.status === 'completed' && f.linearTop1 !== null ? probeProtocol(f) : null;
    if (p !== null) byProtocol.set(p, (byProtocol.get(p) ?? 0) + 1);
  }
  if (byProtocol.size > 1) {
    const parts = [...byProtocol].sort(([a], [b]) => a.localeCompare(b)).map(([v, n]) => `${n} run${n === 1 ? '' : 's'}: ${v}`).join('; ');
    out.push(
      `**The linear top-1 of the table comes from probes trained differently** (${parts}; each run's summary.json \`linear\` says how): ` +
        'its cells and the paired tests mix them; compare runs of one protocol only, or probe them all alike with `moco3 eval linear <run-dir>` ' +
        '(`--augment` / `--no-augment`, `--epochs`, `--lr`, `--batch-size`).',
      '',
    );
  }
  const knnFig = figures.find((f) => f.name === 'knn');
  const png = (f: WrittenFigure) => (f.png ? ` (PNG: [${rel(f.png)}](${rel(f.png)}))` : '');
  if (knnFig) {
    out.push('## kNN accuracy vs epoch (Figs. 1, 2, 3, 5)', '', `![${knnFig.title}](${rel(knnFig.svg)})`, '');
    out.push(`One line per run; ▼ marks the bottom of each dip, ✚ the step a run diverged${knnFig.notes ? `; ${knnFig.notes.join('; ')}` : ''}${png(knnFig)}.`, '');
  }
  const grad = figures.find((f) => f.name === 'grad');
  if (grad) {
    out.push('## Gradient infinity norm: patch projection and last block (Fig. 4)', '', `![${grad.title}](${rel(grad.svg)})`, '');
    out.push(`One panel per run, log scale; ▲ marks each detected spike${png(grad)}.`, '');
  }
  const order = spikeOrderMarkdown(inst.values());
  if (order) out.push(order, '');
  out.push('## Runs', '');
  out.push('| run | seed | status | steps | linear top-1 / top-5 | kNN top-1 (best after step 0) | dips | deepest | spikes patch / last | lag | wall | img/s |');
  out.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const f1 = (x: number | null, d = 1) => (x === null ? '-' : x.toFixed(d));
  for (const c of view.columns) {
    for (const r of c.runs) {
      const f = facts.get(r.id)!;
      const status = f.status === 'diverged' ? `diverged @ step ${f.divergedAt}` : f.status;
      out.push(
        `| \`${r.id}\` | ${f.seed} | ${status} | ${f.step ?? '-'}/${f.totalSteps ?? '-'} | ${f1(f.linearTop1)} / ${f1(f.linearTop5)} | ` +
          `${f1(f.knnTop1)} (${f1(f.bestKnnTop1)}) | ${f.dips ?? '-'} | ${f1(f.maxDip)} | ${f.spikesPatch ?? '-'} / ${f.spikesLast ?? '-'} | ` +
          `${f.spikeLag ?? '-'} | ${f.wallS === null ? '-' : formatSeconds(f.wallS)} | ${f1(f.imagesPerS, 0)} |`,
      );
    }
  }
  out.push('', '## Instability detail', '');
  for (const c of view.columns) {
    for (const r of c.runs) {
      const i = inst.get(r.id)!;
      out.push(`- **${runLabel(view, r)}** (\`${r.id}\`)`);
      const dips = i.dips.map((d) => `steps ${d.start}-${d.end ?? 'end'} (${d.depth.toFixed(1)} pts below ${d.peak.toFixed(1)})`);
      out.push(`  - dips: ${dips.length ? dips.join('; ') : i.maxDip === null ? '- (no kNN curve)' : 'none'}`);
      // the rest are in summary.json where this report wrote them there (not into a running run's, nor a run without one)
      const inSummary = (g: string, n: number) => {
        const steps = (r.summary?.instability as { spike_steps?: Record<string, unknown> } | undefined)?.spike_steps?.[g];
        return Array.isArray(steps) && steps.length === n;
      };
      const rest = (g: string, n: number) => (inSummary(g, n) ? `, ... all ${n} in the run's summary.json, instability.spike_steps` : `, ... ${n - 12} more`);
      const spikes = [...i.spikes]
        .filter(([, s]) => s.length)
        .map(([g, s]) => `${g} ${s.length} (steps ${s.slice(0, 12).map((x) => x.step).join(', ')}${s.length > 12 ? rest(g, s.length) : ''})`);
      out.push(`  - spikes: ${spikes.length ? spikes.join('; ') : i.spikes.size === 0 ? '- (no gradient rows)' : 'none'}`);
      if (i.lags.length) out.push(`  - lags patch proj. → ${i.lastBlock}: ${i.lags.map((l) => `${l.from}→${l.to} (${l.lag})`).join(', ')}`);
      if (i.gradLead) {
        const g = i.gradLead;
        const same = g.r0 === null ? 'no correlation at the same step (a series constant there)' : `correlation ${fmtNum(g.r0, 2)} at the same step`;
        out.push(`  - gradient excursions, patch proj. vs ${i.lastBlock}: ${same}, largest ${fmtNum(g.r, 2)} at a lead of ${g.lag} steps`);
      }
    }
  }
  out.push('');
  return out.join('\n');
}

export { listSweeps, readSweep } from './results.ts';
export { DEFAULT_INSTABILITY } from './instability.ts';
