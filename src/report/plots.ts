/**
 * The paper's figures for a sweep, drawn with vega-lite (SVG rendered in Node, no browser) and turned
 * into PNG by resvg:
 *  - knn.svg: kNN top-1 vs epoch, one line per run, coloured by swept setting (Figs. 1, 2, 3, 5), seeds
 *    told apart by dash (over five seeds: thin runs and each setting's mean drawn thick), dip bottoms
 *    marked, the step a run diverged marked with a cross;
 *  - grad.svg: one panel per run, gradient infinity norm of the patch projection and of the last block
 *    vs step, log scale, detected spikes marked (Fig. 4).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../engine/files.ts';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { series, type InstabilityOptions, type RunInstability } from './instability.ts';
import { readRunState } from '../runfolder/state.ts';
import { FIGURES, type RunRecord } from './results.ts';
import { formatValue, keyName, type SweepView } from './sweep.ts';

const FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';
const MAX_POINTS = 4000;

const BASE_CONFIG = {
  font: FONT,
  background: 'white',
  padding: 12,
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555', anchor: 'start' as const },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 320, titleLimit: 320, symbolStrokeWidth: 2.5 },
};

export interface Figure {
  /** file name without extension */
  name: string;
  title: string;
  spec: TopLevelSpec;
  /** what the figure draws beyond its usual marks, for the report's text beside it */
  notes?: string[];
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // text widths by vega's estimate, never by node-canvas where it happens to be installed: the same SVG on every machine
  (vega as unknown as { textMetrics?: { canvas?: (use: boolean) => void } }).textMetrics?.canvas?.(false);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const FONT_DIRS = ['/usr/share/fonts/truetype/dejavu', '/usr/share/fonts/TTF', '/usr/share/fonts/dejavu', '/Library/Fonts', 'C:\\Windows\\Fonts'];
let fontFiles: string[] | null = null;

/** DejaVu Sans (regular, bold) when found: loading two files is much faster than scanning every system font. */
function findFonts(): string[] {
  if (fontFiles) return fontFiles;
  fontFiles = [];
  for (const d of FONT_DIRS) {
    const files = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => join(d, f));
    if (files.every((f) => existsSync(f))) {
      fontFiles = files;
      break;
    }
  }
  return fontFiles;
}

/** PNG of an SVG; text needs a font on the system (Debian: fonts-dejavu-core). Large figures are zoomed less (at most ~1.5 Mpixel). */
export function svgToPng(svg: string, zoom = 2): Buffer {
  const w = Number(/<svg[^>]*\swidth="([\d.]+)"/.exec(svg)?.[1] ?? 0);
  const h = Number(/<svg[^>]*\sheight="([\d.]+)"/.exec(svg)?.[1] ?? 0);
  const z = w > 0 && h > 0 ? Math.max(1, Math.min(zoom, Math.sqrt(1.5e6 / (w * h)))) : zoom;
  const files = findFonts();
  const font = files.length
    ? { loadSystemFonts: false, fontFiles: files, defaultFontFamily: 'DejaVu Sans' }
    : { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' };
  return new Resvg(svg, { font, fitTo: { mode: 'zoom', value: z } }).render().asPng();
}

/** Every k-th point, keeping the first and last (curves with tens of thousands of logged steps). */
function thin<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs;
  const k = Math.ceil(xs.length / max);
  return xs.filter((_, i) => i % k === 0 || i === xs.length - 1);
}

export function runLabel(view: SweepView, r: RunRecord): string {
  const col = view.columns.find((c) => c.runs.includes(r));
  const seed = view.seeds.length > 1 ? `, seed ${r.flat.get('seed')}` : '';
  return `${col?.label ?? r.id}${seed}`;
}

/** Seeds told apart by dash pattern (vega-lite's stroke-dash range has five; more would repeat). */
export const MAX_DASHED_SEEDS = 5;

/**
 * Each setting's mean kNN curve over its runs, at the epochs where every run of the setting with a curve
 * has a value (the runs of a setting share a config, so their monitor epochs agree; a diverged run ends
 * the mean where it ends).
 */
export function meanCurves(lines: ReadonlyArray<{ setting: string; run: string; epoch: number; knn: number }>): Array<{ setting: string; epoch: number; knn: number; runs: number }> {
  const bySetting = new Map<string, { runs: Set<string>; at: Map<string, { epoch: number; sum: number; n: number }> }>();
  for (const l of lines) {
    const g = bySetting.get(l.setting) ?? { runs: new Set<string>(), at: new Map() };
    bySetting.set(l.setting, g);
    g.runs.add(l.run);
    const k = l.epoch.toFixed(6);
    const a = g.at.get(k) ?? { epoch: l.epoch, sum: 0, n: 0 };
    g.at.set(k, a);
    a.sum += l.knn;
    a.n += 1;
  }
  const out: Array<{ setting: string; epoch: number; knn: number; runs: number }> = [];
  for (const [setting, { runs, at }] of bySetting) {
    const full = [...at.values()].filter((a) => a.n === runs.size).sort((x, y) => x.epoch - y.epoch);
    for (const a of full) out.push({ setting, epoch: a.epoch, knn: a.sum / a.n, runs: a.n });
  }
  return out;
}

/** How many of `xs` share each key. */
function countBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, number> {
  const n = new Map<string, number>();
  for (const x of xs) n.set(key(x), (n.get(key(x)) ?? 0) + 1);
  return n;
}

export function knnFigure(view: SweepView, inst: Map<string, RunInstability>, opts: InstabilityOptions): Figure {
  const multiSeed = view.seeds.length > 1;
  // more seeds than dash patterns: thin lines per run, and each setting's mean over seeds drawn thick
  const manySeeds = view.seeds.length > MAX_DASHED_SEEDS;
  // two swept keys and one seed (Fig. 5: patch projection x lr): colour by the second, dash by the first
  const split = !multiSeed && view.sweptKeys.length === 2;
  const [dashKey, colorKey] = split ? view.sweptKeys : [null, null];
  const colorOf = (c: SweepView['columns'][number]) => (split ? formatValue(colorKey!, c.values[colorKey!]) : c.label);
  const dashOf = (c: SweepView['columns'][number]) => (split ? formatValue(dashKey!, c.values[dashKey!]) : '');
  const labels = [...new Set(view.columns.map(colorOf))];
  const dashes = [...new Set(view.columns.map(dashOf))];
  const lines: Array<{ setting: string; dash: string; seed: string; run: string; epoch: number; knn: number }> = [];
  const dips: Record<string, unknown>[] = [];
  const ends: Record<string, unknown>[] = [];
  const stops: Record<string, unknown>[] = [];
  for (const c of view.columns) {
    // the table counts a column's finished runs only, where it has any (src/report/table.ts `cell`): the dips of
    // its other runs are not marked either, so that a ▼ on the plot is one the table counts
    const states = new Map(c.runs.map((r) => [r.id, readRunState(r.dir).state]));
    const divergedAt = (r: (typeof c.runs)[number]) => r.summary?.diverged_at ?? r.status?.diverged_at;
    const finished = (r: (typeof c.runs)[number]) => states.get(r.id) === 'completed' || (states.get(r.id) !== 'running' && typeof divergedAt(r) === 'number');
    const someFinished = c.runs.some(finished);
    for (const r of c.runs) {
      const pts = series(r.metrics, 'knn_top1').filter((p) => Number.isFinite(p.value));
      const seed = String(r.flat.get('seed') ?? 0);
      const epochOf = (p: { epoch: number | null; step: number }) => p.epoch ?? p.step;
      for (const p of pts) lines.push({ setting: colorOf(c), dash: dashOf(c), seed, run: r.id, epoch: epochOf(p), knn: p.value });
      for (const d of someFinished && !finished(r) ? [] : (inst.get(r.id)?.dips ?? [])) {
        const b = pts.find((p) => p.step === d.bottom);
        if (b) dips.push({ setting: colorOf(c), seed, run: r.id, epoch: epochOf(b), knn: b.value, depth: d.depth });
      }
      const diverged = divergedAt(r);
      if (typeof diverged === 'number' && pts.length) {
        const last = pts[pts.length - 1]!;
        const epochs = r.metrics.filter((m) => m.step === diverged).map((m) => m.epoch)[0];
        ends.push({ setting: colorOf(c), seed, run: r.id, epoch: typeof epochs === 'number' ? epochs : epochOf(last), knn: last.value, step: diverged });
      } else if (pts.length) {
        // a run that failed or was stopped ends where it ended: marked, not read as a shorter run
        const state = states.get(r.id);
        const last = pts[pts.length - 1]!;
        if (state === 'failed' || state === 'interrupted') stops.push({ setting: colorOf(c), seed, run: r.id, epoch: epochOf(last), knn: last.value, state });
      }
    }
  }
  const legendTitle = split ? keyName(colorKey!) : view.sweptKeys.map(keyName).join(', ') || 'run';
  const color = {
    field: 'setting',
    type: 'nominal' as const,
    title: legendTitle,
    // the default scheme has 10 colours: an 11th setting would take the 1st's (past 20, tableau20's repeat too)
    scale: { domain: labels, ...(labels.length > 10 ? { scheme: 'tableau20' } : {}) },
    ...(manySeeds ? { legend: { symbolOpacity: 1 } } : {}),
  };
  // one value on an axis (every run's kNN at one epoch, with the monitor off) would be labelled `2.000000`
  const one = (k: 'epoch' | 'knn') => new Set(lines.map((l) => l[k])).size <= 1;
  const x = { field: 'epoch', type: 'quantitative' as const, title: 'epoch', ...(one('epoch') ? { axis: { format: '~g' } } : {}) };
  const y = { field: 'knn', type: 'quantitative' as const, title: 'kNN top-1 (%)', scale: { zero: false }, ...(one('knn') ? { axis: { format: '~g' } } : {}) };
  // a run of one kNN value (the monitor off: the final one only; a run that failed after step 0) has no line to draw
  const perRun = countBy(lines, (l) => l.run);
  const lone = lines.filter((l) => perRun.get(l.run) === 1);
  const layers: Record<string, unknown>[] = [
    {
      data: { values: lines },
      mark: { type: 'line', interpolate: 'linear', ...(manySeeds ? { strokeWidth: 1, opacity: 0.35 } : { strokeWidth: 2 }) },
      encoding: {
        x,
        y,
        color,
        detail: { field: 'run', type: 'nominal' },
        ...(multiSeed && !manySeeds ? { strokeDash: { field: 'seed', type: 'nominal', title: 'seed' } } : {}),
        ...(split ? { strokeDash: { field: 'dash', type: 'nominal', title: keyName(dashKey!), scale: { domain: dashes } } } : {}),
      },
    },
  ];
  if (manySeeds) {
    const means = meanCurves(lines);
    layers.push({
      data: { values: means },
      mark: { type: 'line', strokeWidth: 2.5, interpolate: 'linear' },
      encoding: { x, y, color, detail: { field: 'setting', type: 'nominal' } },
    });
    // a setting's mean of one value (the monitor off): a point, as its runs' are
    const perSetting = countBy(means, (m) => m.setting);
    const loneMeans = means.filter((m) => perSetting.get(m.setting) === 1);
    if (loneMeans.length) layers.push({ data: { values: loneMeans }, mark: { type: 'point', shape: 'diamond', filled: true, size: 140, opacity: 1 }, encoding: { x, y, color } });
  }
  if (lone.length) {
    layers.push({
      data: { values: lone },
      mark: { type: 'point', filled: true, size: 60, opacity: manySeeds ? 0.5 : 1 },
      // what the lines' dashes tell apart (the patch projection of Fig. 5, or the seed), the points' shapes do
      encoding: {
        x,
        y,
        color,
        ...(split ? { shape: { field: 'dash', type: 'nominal', title: keyName(dashKey!), scale: { domain: dashes } } } : {}),
        ...(multiSeed && !manySeeds ? { shape: { field: 'seed', type: 'nominal', title: 'seed' } } : {}),
      },
    });
  }
  if (dips.length) {
    layers.push({
      data: { values: dips },
      mark: { type: 'point', shape: 'triangle-down', filled: true, size: 70, opacity: 1 },
      encoding: { x, y, color },
    });
  }
  if (ends.length) {
    layers.push({
      data: { values: ends },
      mark: { type: 'point', shape: 'cross', filled: true, size: 140, color: 'black', opacity: 1 },
      encoding: { x, y },
    });
  }
  if (stops.length) {
    layers.push({
      data: { values: stops },
      mark: { type: 'point', shape: 'square', filled: false, size: 110, color: 'black', strokeWidth: 1.5, opacity: 1 },
      encoding: { x, y },
    });
  }
  const notes = [`▼ dip: kNN ≥ ${opts.dipPoints} points below its running maximum${opts.dipAboveInit ? ', above the untrained level' : ''}`];
  if (manySeeds) notes.push(`thin: one run per seed (${view.seeds.length} seeds); thick: their mean`);
  if (ends.length) notes.push('✚ diverged');
  if (stops.length) notes.push('□ stopped early (failed or interrupted)');
  const title = `kNN top-1 vs epoch: ${view.name}`;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 560,
    height: 320,
    title: { text: title, subtitle: notes.join('  ·  ') },
    layer: layers,
    config: BASE_CONFIG,
  } as unknown as TopLevelSpec;
  const marks = [...(lone.length ? [`a run of one kNN value is a point${split ? ` (its shape: ${keyName(dashKey!)})` : multiSeed && !manySeeds ? ' (its shape: the seed)' : manySeeds ? ', the mean of such runs a diamond' : ''}`] : []), ...(stops.length ? ['□ the last value of a run that failed or was interrupted'] : [])];
  return { name: FIGURES.knn, title, spec, ...(marks.length ? { notes: marks } : {}) };
}

/** Panel title of a run: setting, spike counts, lag, divergence. */
function gradPanelLabel(view: SweepView, r: RunRecord, inst: RunInstability): string {
  const spikes = (g: string | null) => (g ? (inst.spikes.get(g)?.length ?? 0) : 0);
  const lag = inst.spikeLag === null ? 'no lag' : `lag ${inst.spikeLag} steps`;
  const diverged = r.summary?.diverged_at ?? r.status?.diverged_at;
  return `${runLabel(view, r)}: spikes ${spikes('patch_proj')} / ${spikes(inst.lastBlock)}, ${lag}${typeof diverged === 'number' ? `, diverged @ ${diverged}` : ''}`;
}

/**
 * Fig. 4: one panel per run (a facet, so all panels share one dataflow): gradient ∞-norm of the patch
 * projection and the last block vs step, log scale, detected spikes marked.
 */
export function gradFigure(view: SweepView, inst: Map<string, RunInstability>, opts: InstabilityOptions): Figure | null {
  const rows: Record<string, unknown>[] = [];
  const panels: string[] = [];
  // a panel per run: two runs of one label (a run folder copied as a backup, same setting, seed and counts)
  // would share a panel, their curves joined into one; such labels name their run
  const runs = view.columns.flatMap((c) => c.runs);
  const labelOf = new Map(runs.map((r) => [r.id, gradPanelLabel(view, r, inst.get(r.id)!)]));
  const taken = countBy([...labelOf.values()], (l) => l);
  for (const c of view.columns) {
    for (const r of c.runs) {
      const i = inst.get(r.id)!;
      const label = labelOf.get(r.id)!;
      const panel = taken.get(label)! > 1 ? `${label} (${r.id})` : label;
      const groups: Array<[string, string]> = [['patch_proj', 'patch projection']];
      if (i.lastBlock) groups.push([i.lastBlock, 'last block']);
      let any = false;
      for (const [g, role] of groups) {
        const pts = series(r.metrics, `grad_inf/${g}`).filter((p) => Number.isFinite(p.value) && p.value > 0);
        for (const p of thin(pts, MAX_POINTS)) rows.push({ panel, group: role, step: p.step, value: p.value, spike: false });
        for (const s of i.spikes.get(g) ?? []) if (s.value > 0) rows.push({ panel, group: role, step: s.step, value: s.value, spike: true });
        any ||= pts.length > 0;
      }
      if (any) panels.push(panel);
    }
  }
  if (!panels.length) return null;
  const color = { field: 'group', type: 'nominal', title: 'parameter group', scale: { domain: ['patch projection', 'last block'], range: ['#1f77b4', '#d62728'] } };
  const x = { field: 'step', type: 'quantitative', title: 'step' };
  const y = { field: 'value', type: 'quantitative', title: 'gradient ∞-norm', scale: { type: 'log' }, axis: { tickCount: 5 } };
  const title = `Gradient ∞-norm, patch projection and last block: ${view.name}`;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title,
      subtitle: [
        `▲ spike: > ${opts.spikeFactor}× the median of the previous ${opts.spikeWindow} logged values; spikes p / l: patch projection / last block`,
        'lag: median steps from a patch-projection spike to the first last-block spike at or after it, before the next patch-projection spike',
      ],
      offset: 12,
    },
    data: { values: rows },
    facet: {
      field: 'panel',
      type: 'nominal',
      sort: panels,
      title: null,
      header: { labelFontSize: 12, labelFontWeight: 'bold', labelAnchor: 'start', labelLimit: 0, labelPadding: 6 },
    },
    columns: panels.length > 3 ? 2 : 1,
    spec: {
      width: 440,
      height: 170,
      layer: [
        { transform: [{ filter: '!datum.spike' }], mark: { type: 'line', strokeWidth: 1.5, opacity: 0.85 }, encoding: { x, y, color } },
        {
          transform: [{ filter: 'datum.spike' }],
          mark: { type: 'point', shape: 'triangle-up', filled: true, size: 90, opacity: 1, stroke: 'black', strokeWidth: 0.5 },
          encoding: { x, y, color },
        },
      ],
    },
    resolve: { scale: { x: 'independent', y: 'independent' }, axis: { x: 'independent', y: 'independent' } },
    spacing: 24,
    config: BASE_CONFIG,
  } as unknown as TopLevelSpec;
  return { name: FIGURES.grad, title, spec };
}

export interface WrittenFigure {
  name: string;
  title: string;
  svg: string;
  png: string | null;
  notes?: string[];
}

/** Writes <dir>/<name>.svg and, unless png is false, <name>.png. */
export async function writeFigure(dir: string, f: Figure, png = true): Promise<WrittenFigure> {
  mkdirSync(dir, { recursive: true });
  const svg = await renderSvg(f.spec);
  const svgPath = join(dir, `${f.name}.svg`);
  writeFileAtomic(svgPath, svg);
  let pngPath: string | null = null;
  if (png) {
    pngPath = join(dir, `${f.name}.png`);
    writeFileAtomic(pngPath, svgToPng(svg));
  }
  return { name: f.name, title: f.title, svg: svgPath, png: pngPath, ...(f.notes ? { notes: f.notes } : {}) };
}
