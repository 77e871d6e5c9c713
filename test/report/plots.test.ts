import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport, DEFAULT_INSTABILITY } from '../../src/report/index.ts';
import { analyzeRun } from '../../src/report/instability.ts';
import { knnFigure, meanCurves, svgToPng } from '../../src/report/plots.ts';
import { readSweep } from '../../src/report/results.ts';
import { viewSweep } from '../../src/report/sweep.ts';
import { tmp, writeBatchSweep } from './fixtures.ts';

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
  rmSync(root, { recursive: true, force: true });
});
