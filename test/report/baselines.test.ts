import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport } from '../../src/report/index.ts';
import { readBaselines } from '../../src/report/baselines.ts';
import { tmp, writeBatchSweep } from './fixtures.ts';

const seed = (s: number, knn: number, enc: number, pix: number) => ({
  seed: s,
  random_init: { knn_top1: knn, knn_top5: 90, linear_top1: enc, linear_top5: 95 },
  pixels: { linear_top1: pix, linear_top5: 99, dim: 2352 },
  linear: { epochs: 30, base_lr: 3, batch_size: 256, train_views: 'centre view, features cached' },
  seconds: 1,
});

function section(md: string): string {
  const s = md.indexOf('## Baselines');
  return md.slice(s, md.indexOf('\n## ', s + 3));
}

test('report: the baselines beside the runs, mean ± std over seeds, and whether pretraining beat them', async () => {
  const dir = writeBatchSweep(tmp(), 'batch-size', [0, 1]);
  // the fixture's runs reach linear top-1 28-41 (40 - 3i + seed, one diverged)
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'fashion-mnist', image_size: 28, arch: 'vit-micro', train_size: 1, test_size: 1, seeds: [seed(0, 50, 30, 80), seed(1, 52, 32, 82)] }));
  await writeReport(dir, { plots: false });
  const md = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  // 50, 52 -> 51.0 ± 1.4; 30, 32 -> 31.0 ± 1.4; 80, 82 -> 81.0 ± 1.4
  assert.match(md, /\| untrained \(random init\) \| 51\.0 ± 1\.4 \| 31\.0 ± 1\.4 \|/);
  assert.match(md, /linear classifier on the normalised pixels \(2352 inputs\) \| - \| 81\.0 ± 1\.4 \|/);
  assert.match(md, /\*\*Pretraining did not beat the linear classifier on pixels \(82\.0\)\*\*: the best run's linear top-1 is 41\.0/);
  assert.doesNotMatch(md, /untrained encoder \(/);

  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'fashion-mnist', image_size: 28, arch: 'vit-micro', seeds: [seed(0, 50, 30, 35)] }));
  await writeReport(dir, { plots: false });
  assert.match(section(readFileSync(join(dir, 'report.md'), 'utf8')), /Pretraining beat both baselines: the best run's linear top-1 is 41\.0, the untrained encoder's 30\.0, pixels' 35\.0/);
});

test('report without baselines says how to make them; a damaged baselines.json is one line naming it', async () => {
  const dir = writeBatchSweep(tmp());
  await writeReport(dir, { plots: false });
  assert.match(section(readFileSync(join(dir, 'report.md'), 'utf8')), /No baselines yet: `moco3 baselines <sweep>`/);
  writeFileSync(join(dir, 'baselines.json'), '{"dataset": "x", "seeds": [');
  assert.throws(() => readBaselines(dir), (e: Error) => e.name === 'ReportError' && e.message.includes('baselines.json: not JSON') && !e.message.includes('\n'));
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'x', image_size: 8, arch: 'a', seeds: [{ seed: 0 }] }));
  assert.throws(() => readBaselines(dir), /seeds\[0\]: expected seed, random_init/);
});
