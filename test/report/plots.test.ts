import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport, DEFAULT_INSTABILITY } from '../../src/report/index.ts';
import { analyzeRun } from '../../src/report/instability.ts';
import { gradFigure, knnFigure, meanCurves, svgToPng } from '../../src/report/plots.ts';
import { readSweep } from '../../src/report/results.ts';
import { viewSweep } from '../../src/report/sweep.ts';
import { tmp, writeBatchSweep, writeFakeRun, writeSimpleSweep } from './fixtures.ts';

test('PNG text renders: a font is found (Debian: fonts-dejavu-core), so axis titles and legends show', () => {
  const svg = (text: string) =>
    `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="200" height="40" fill="white"/>` +
    `<text x="10" y="28" font-family="DejaVu Sans, sans-serif" font-size="20">${text}</text></svg>`;
  const withText = svgToPng(svg('kNN top-1 (%)'), 1);
  const empty = svgToPng(svg(''), 1);
  assert.notDeepEqual(withText, empty, 'text did not render: no usable font on this system');
});

test('meanCurves: each setting\'s mean over its runs, only where every run has a value', () => {
  const line = (setting: string, run: string, epoch: number, knn: number) => ({ setting, run, epoch, knn });
  const m = meanCurves([
    line('a', 'r1', 0, 10),
    line('a', 'r1', 0.5, 20),
    line('a', 'r1', 1, 30),
    line('a', 'r2', 0, 13),
    line('a', 'r2', 0.5, 21), // r2 stops here (diverged): the mean stops too
    line('b', 'r3', 0, 40),
    line('b', 'r3', 0.1 + 0.2, 41), // epochs are matched to 1e-6
    line('b', 'r4', 0, 42),
    line('b', 'r4', 0.3, 45),
  ]);
  assert.deepEqual(
    m.map((p) => [p.setting, p.epoch.toFixed(2), p.knn, p.runs]),
    [
      ['a', '0.00', 11.5, 2],
      ['a', '0.50', 20.5, 2],
      ['b', '0.00', 41, 2],
      ['b', '0.30', 43, 2],
    ],
  );
});

test('kNN figure over five seeds: thin runs, one thick mean per setting at the hand-computed values, no seed legend', async () => {
  const root = tmp();
  const seeds = [0, 1, 2, 3, 4, 5];
  const dir = writeBatchSweep(root, 'batch-size', seeds);
  await writeReport(dir, { format: 'md' });
  const svg = readFileSync(join(dir, 'plots/knn.svg'), 'utf8');
  assert.equal(svg.match(/aria-roledescription="line mark"/g)?.length, 4 * seeds.length + 4);
  assert.ok(!svg.includes('>seed<'), 'no dash legend for seeds');
  assert.ok(svg.includes('thick: their mean'));
  // the figure's data: batch 64's mean at step 100 (half of training) is the mean of the fixture's curves
  const sweep = readSweep(dir);
  const view = viewSweep(sweep);
  const fig = knnFigure(view, new Map(sweep.runs.map((r) => [r.id, analyzeRun(r.metrics, DEFAULT_INSTABILITY)])), DEFAULT_INSTABILITY);
  const layers = (fig.spec as unknown as { layer: Array<{ data: { values: Array<Record<string, unknown>> } }> }).layer;
  const mean = layers[1]!.data.values.find((p) => p.setting === view.columns[0]!.label && Math.abs((p.epoch as number) - 100 / 25) < 1e-9);
  const expected = seeds.map((s) => Math.round((15 + 40 * Math.sqrt(0.5) + s) * 100) / 100).reduce((a, b) => a + b) / seeds.length;
  assert.ok(mean, 'a mean point at epoch 4');
  assert.ok(Math.abs((mean.knn as number) - expected) < 1e-9, `${mean.knn} vs ${expected}`);
  // three seeds keep the dashes and the seed legend
  const few = writeBatchSweep(root, 'few', [0, 1, 2]);
  await writeReport(few, { format: 'md' });
  const fewSvg = readFileSync(join(few, 'plots/knn.svg'), 'utf8');
  assert.ok(fewSvg.includes('>seed<'));
  assert.equal(fewSvg.match(/aria-roledescription="line mark"/g)?.length, 4 * 3);
  // five seeds, as many as there are dashes: still dashed, no mean layer
  const five = figureOf(writeBatchSweep(root, 'five', [0, 1, 2, 3, 4]), knnFigure).fig;
  const fiveLayers = (five!.spec as unknown as { layer: Array<{ mark: { type: string }; encoding?: Record<string, unknown> }> }).layer;
  assert.equal(fiveLayers.filter((l) => l.mark.type === 'line').length, 1);
  assert.deepEqual(fiveLayers[0]!.encoding!.strokeDash, { field: 'seed', type: 'nominal', title: 'seed' });
  rmSync(root, { recursive: true, force: true });
});

type Layers = Array<{ data: { values: Array<Record<string, unknown>> }; mark: { type: string } }>;
const figureOf = (dir: string, f: typeof knnFigure | typeof gradFigure) => {
  const sweep = readSweep(dir);
  const view = viewSweep(sweep);
  return { view, fig: f(view, new Map(sweep.runs.map((r) => [r.id, analyzeRun(r.metrics, DEFAULT_INSTABILITY)])), DEFAULT_INSTABILITY) };
};

test('kNN figure: a run of one kNN value (the monitor off) is drawn as a point, its axis labelled as the number it is', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'lone', [0.01, 0.02, 0.03].map((lr) => ({ 'optim.base_lr': lr })));
  // the final kNN only, at the last step (epoch 8), as a run with train.knn_every 0 logs it
  for (const id of readdirSync(dir)) {
    const path = join(dir, id, 'metrics.jsonl');
    const rows = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = rows.length - 1;
    writeFileSync(path, rows.map((r, i) => { if (i !== last) { delete r.knn_top1; delete r.knn_top5; } return `${JSON.stringify(r)}\n`; }).join(''));
  }
  const { fig } = figureOf(dir, knnFigure);
  const layers = (fig!.spec as unknown as { layer: Layers }).layer;
  const points = layers.filter((l) => l.mark.type === 'point' && l.data.values.length === 3);
  assert.equal(points.length, 1, JSON.stringify(layers.map((l) => [l.mark.type, l.data.values.length])));
  assert.deepEqual(points[0]!.data.values.map((v) => v.epoch), [8, 8, 8]);
  await writeReport(dir, { format: 'md' });
  const svg = readFileSync(join(dir, 'plots/knn.svg'), 'utf8');
  assert.equal(svg.match(/aria-roledescription="point"/g)?.length ?? 0, 3, 'a point per run');
  assert.ok(!/\d\.000000/.test(svg), 'no axis label as 8.000000');
  rmSync(root, { recursive: true, force: true });
});

test('kNN figure: more than 10 settings take a scheme of 20 colours (the default 10 would repeat)', () => {
  const root = tmp();
  const many = writeSimpleSweep(root, 'many', Array.from({ length: 12 }, (_, i) => ({ 'optim.base_lr': (i + 1) / 100 })));
  const few = writeSimpleSweep(root, 'few', Array.from({ length: 10 }, (_, i) => ({ 'optim.base_lr': (i + 1) / 100 })));
  const colour = (dir: string) => ((figureOf(dir, knnFigure).fig!.spec as unknown as { layer: Array<{ encoding: { color: { scale: { domain: string[]; scheme?: string } } } }> }).layer[0]!.encoding.color.scale);
  assert.equal(colour(many).domain.length, 12);
  assert.equal(colour(many).scheme, 'tableau20');
  assert.equal(colour(few).scheme, undefined);
  rmSync(root, { recursive: true, force: true });
});

test('gradient figure: two runs of one label (a run folder copied as a backup) get a panel each', () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'twins', [0]);
  writeFakeRun(dir, { id: 'bs64-copy', config: { seed: 0, 'optim.batch_size': 64, 'optim.base_lr': 1e-4 }, knnCurve: (f) => 15 + 40 * Math.sqrt(f), summary: { linear_top1: 40 } });
  const { fig } = figureOf(dir, gradFigure);
  const rows = (fig!.spec as unknown as { data: { values: Array<{ panel: string }> } }).data.values;
  const panels = [...new Set(rows.map((r) => r.panel))];
  assert.equal(panels.length, 5, panels.join('\n'));
  const twins = panels.filter((p) => p.startsWith('64'));
  assert.equal(twins.length, 2, panels.join('\n'));
  assert.ok(twins.some((p) => p.endsWith('(bs64-copy)')), twins.join('\n'));
  rmSync(root, { recursive: true, force: true });
});

test('gradient figure: each panel is titled with its setting, its spike counts (patch proj. / last block), its lag or none, and where it diverged', () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'panels', [0]);
  // one patch-proj. spike at 75, block1 spikes at 90 and 150: 1 / 2, lag 15
  writeFakeRun(dir, { id: 'bs512-one', config: { seed: 0, 'optim.batch_size': 512, 'optim.base_lr': 1e-4 }, spikes: { patch_proj: [75], block1: [90, 150] } });
  const { fig } = figureOf(dir, gradFigure);
  const spec = fig!.spec as unknown as { data: { values: Array<{ panel: string }> }; facet: { sort: string[] }; columns: number };
  assert.deepEqual(spec.facet.sort, [
    '64: spikes 0 / 0, no lag',
    '128: spikes 0 / 0, no lag',
    '256: spikes 2 / 2, lag 12.5 steps',
    '384: spikes 2 / 2, lag 12.5 steps, diverged @ 185',
    '512: spikes 1 / 2, lag 15 steps',
  ]);
  // more than three panels: two columns of them
  assert.equal(spec.columns, 2);
  rmSync(root, { recursive: true, force: true });
});

test('kNN figure: a diverged run\'s cross is at the epoch of the step it diverged, at its last kNN value', () => {
  const root = tmp();
  // batch 384 diverged at step 185 (epoch 185 / 25 = 7.4); its last kNN, at step 180, is 15 + 28 sqrt(0.9) = 41.56
  const { fig } = figureOf(writeBatchSweep(root, 'crossed', [0]), knnFigure);
  const layers = (fig!.spec as unknown as { layer: Array<Layers[number] & { mark: { shape?: string } }> }).layer;
  const crosses = layers.filter((l) => l.mark.shape === 'cross');
  assert.equal(crosses.length, 1);
  assert.deepEqual(crosses[0]!.data.values.map((v) => [v.run, v.epoch, v.knn, v.step]), [['bs384-lr1.0e-4-adamw-learned-s0-abc030', 7.4, 41.56, 185]]);
  assert.deepEqual(fig!.notes, undefined);
  rmSync(root, { recursive: true, force: true });
});

test('kNN figure: a run that failed ends in a square at its last value, and the report says what the square is', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'stopped', [0]);
  writeFakeRun(dir, { id: 'bs64-failed', config: { seed: 1, 'optim.batch_size': 64, 'optim.base_lr': 1e-4 }, status: 'failed', knnCurve: (f) => 20 + 10 * f });
  // stopped at step 100 of 100 with no final status and no live process: interrupted, its last kNN at epoch 100 / 25
  writeFakeRun(dir, { id: 'bs128-interrupted', config: { seed: 1, 'optim.batch_size': 128, 'optim.base_lr': 1e-4 }, status: 'interrupted', steps: 100, knnCurve: (f) => 25 + 10 * f });
  const { fig } = figureOf(dir, knnFigure);
  const layers = (fig!.spec as unknown as { layer: Array<Layers[number] & { mark: { shape?: string } }> }).layer;
  const squares = layers.filter((l) => l.mark.shape === 'square');
  assert.equal(squares.length, 1);
  // the fixture's last kNN row: step 200 of 200, epoch 8
  assert.deepEqual(squares[0]!.data.values.map((v) => [v.run, v.epoch, v.knn]), [['bs64-failed', 8, 30], ['bs128-interrupted', 4, 35]]);
  assert.deepEqual(fig!.notes, ['□ the last value of a run that failed or was interrupted']);
  await writeReport(dir, { format: 'md' });
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /✚ the step a run diverged; □ the last value of a run that failed or was interrupted \(PNG/);
  // the completed runs of a sweep get no square, and the sentence stays as it was
  const plain = writeBatchSweep(root, 'plain', [0]);
  assert.equal(figureOf(plain, knnFigure).fig!.notes, undefined);
  rmSync(root, { recursive: true, force: true });
});

test("kNN figure: a dip is marked where the table counts it: not on an unfinished run of a column that has finished ones", async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'partial', [0]);
  // batch 64's seed 0 completed without a dip; its seed 1 stopped after a 15-point dip
  writeFakeRun(dir, { id: 'bs64-s1-failed', config: { seed: 1, 'optim.batch_size': 64, 'optim.base_lr': 1e-4 }, status: 'failed', knnDrops: { 100: 15 } });
  const dipRuns = () => {
    const layers = (figureOf(dir, knnFigure).fig!.spec as unknown as { layer: Array<Layers[number] & { mark: { shape?: string } }> }).layer;
    return [...new Set(layers.filter((l) => l.mark.shape === 'triangle-down').flatMap((l) => l.data.values.map((v) => v.run)))].sort();
  };
  // the table: batch 64's dips are its completed run's, none
  await writeReport(dir, { format: 'md' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const dipsRow = md.split('\n').find((l) => l.startsWith('| kNN dips'))!;
  assert.equal(dipsRow.split('|')[2]!.trim(), '0', dipsRow);
  const marked = dipRuns();
  assert.ok(!marked.includes('bs64-s1-failed'), `marked: ${marked.join(', ')}`);
  assert.ok(marked.some((r) => String(r).startsWith('bs256-')), 'the dips the table counts are still marked');
  // alone in its column (no finished run beside it), its figures are the column's, "so far": its dip is marked
  rmSync(join(dir, 'bs64-lr1.0e-4-adamw-learned-s0-abc000'), { recursive: true, force: true });
  assert.ok(dipRuns().includes('bs64-s1-failed'));
  rmSync(root, { recursive: true, force: true });
});

test('kNN figure with the monitor off: two swept keys tell the lone points apart by shape; more seeds than dashes draw each setting\'s mean as a diamond', () => {
  const root = tmp();
  const onlyLast = (dir: string) => {
    for (const id of readdirSync(dir).filter((e) => existsSync(join(dir, e, 'metrics.jsonl')))) {
      const path = join(dir, id, 'metrics.jsonl');
      const rows = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      writeFileSync(path, rows.map((r, i) => { if (i !== rows.length - 1) { delete r.knn_top1; delete r.knn_top5; } return `${JSON.stringify(r)}\n`; }).join(''));
    }
  };
  const split = writeSimpleSweep(root, 'split', ['learned', 'frozen'].flatMap((p) => [0.01, 0.02].map((lr) => ({ 'model.patch_proj': p, 'optim.base_lr': lr }))));
  onlyLast(split);
  const f1 = figureOf(split, knnFigure).fig!;
  const lone = (f1.spec as unknown as { layer: Array<{ mark: { type: string }; data: { values: unknown[] }; encoding: { shape?: { field: string } } }> }).layer.find((l) => l.mark.type === 'point' && l.data.values.length === 4);
  assert.equal(lone?.encoding.shape?.field, 'dash');
  assert.match(f1.notes?.[0] ?? '', /^a run of one kNN value is a point \(its shape: /);
  const many = writeBatchSweep(root, 'many', [0, 1, 2, 3, 4, 5]);
  onlyLast(many);
  const f2 = figureOf(many, knnFigure).fig!;
  const diamonds = (f2.spec as unknown as { layer: Array<{ mark: { shape?: string }; data: { values: Array<{ setting: string; knn: number; runs: number }> } }> }).layer.filter((l) => l.mark.shape === 'diamond');
  assert.equal(diamonds.length, 1);
  // one mean per batch size; the diverged batch-384 seed ends early, so its setting's mean is over the runs that reach the end
  assert.equal(new Set(diamonds[0]!.data.values.map((v) => v.setting)).size, diamonds[0]!.data.values.length);
  assert.ok(diamonds[0]!.data.values.length >= 3, JSON.stringify(diamonds[0]!.data.values));
  rmSync(root, { recursive: true, force: true });
});
