import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/cli.ts';
import { tmp, writeBatchSweep, writeSimpleSweep } from './fixtures.ts';

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
