import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/cli.ts';
import { tmp, writeBatchSweep, writeFakeRun, writeSimpleSweep } from './fixtures.ts';

test('moco3 report <sweep> --format csv writes the CSVs only; no argument reports every sweep', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const csv = await cli(['report', 'batch-size', '--results', root, '--format', 'csv']);
  assert.equal(csv.code, 0, csv.err);
  assert.ok(existsSync(join(dir, 'report.csv')));
  assert.ok(!existsSync(join(dir, 'report.md')));
  assert.ok(!existsSync(join(dir, 'plots')));
  assert.match(csv.out, /batch-size: 4 runs \(1 diverged\), swept optim\.batch_size, paper Fig\. 1/);

  const lr = writeSimpleSweep(root, 'lr', [1e-4, 2e-4].map((x) => ({ 'optim.base_lr': x })));
  const all = await cli(['report', '--results', root, '--no-png', '--dip', '5']);
  assert.equal(all.code, 0, all.err);
  for (const d of [dir, lr]) {
    assert.ok(existsSync(join(d, 'report.md')));
    assert.ok(existsSync(join(d, 'plots/knn.svg')));
    assert.ok(!existsSync(join(d, 'plots/knn.png')));
  }
  // the path of a sweep folder works as well as its name
  assert.equal((await cli(['report', dir, '--format', 'md', '--no-plots'])).code, 0);
});

test('moco3 report --dip-above-init: an early fall below the untrained encoder is no dip; the report says the rule', async () => {
  const root = tmp();
  // step 0 = 60; step 20 = 62 - 3 = 59, below it; step 40 = 64 - 8 = 56: 3 below the first evaluation
  const dir = join(root, 'early');
  writeFakeRun(dir, { id: 'run-s0', steps: 200, knnCurve: (f) => 60 + 20 * f, knnDrops: { 20: 3, 40: 8 } });
  const maxDip = () => {
    const [head, row] = readFileSync(join(dir, 'runs.csv'), 'utf8').trim().split('\n');
    return Number(row!.split(',')[head!.split(',').indexOf('max_dip')]);
  };
  assert.equal((await cli(['report', dir, '--no-plots'])).code, 0);
  assert.equal(maxDip(), 3);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /above step 0's kNN top-1/);
  const r = await cli(['report', dir, '--no-plots', '--dip-above-init']);
  assert.equal(r.code, 0, r.err);
  assert.equal(maxDip(), 0);
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /counted only where that maximum is above step 0's kNN top-1/);
});

test('moco3 report: bad input is one line and exit code 2', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const cases: string[][] = [
    ['report', 'nope', '--results', root],
    ['report', '--results', join(root, 'empty')],
    ['report', 'batch-size', '--results', root, '--dip', '-1'],
    ['report', 'batch-size', '--results', root, '--spike-window', '2.5'],
    ['report', 'batch-size', '--results', root, '--format', 'pdf'],
    ['report', join(dir, 'bs64-lr1.0e-4-adamw-learned-s0-abc000')],
  ];
  for (const args of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.ok(r.err.trim().length > 0 && r.err.trim().split('\n').length <= 2, r.err);
  }
});
