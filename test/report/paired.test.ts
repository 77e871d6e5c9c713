/**
 * The report's "Paired by seed" section: which runs it pairs (two values of one swept key, the same seed
 * and the same other swept values, completed on both sides), and the numbers it prints, worked by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport } from '../../src/report/index.ts';
import { pairedComparisons } from '../../src/report/paired.ts';
import { tmp, writeBatchSweep, writeFakeRun } from './fixtures.ts';

/** patch proj. learned | frozen x base lr 1e-4 | 2e-4, seeds 0-2, plus runs that must not be paired. */
function writePatchSweep(): string {
  const dir = join(tmp(), 'patch-proj');
  const frozenLinear = [1, 2, 3]; // frozen - learned, per seed: mean 2, std 1
  for (const lr of [1e-4, 2e-4]) {
    for (const seed of [0, 1, 2]) {
      for (const pp of ['learned', 'frozen']) {
        const frozen = pp === 'frozen';
        writeFakeRun(dir, {
          id: `lr${lr}-${pp}-s${seed}`,
          config: { seed, 'optim.base_lr': lr, 'model.patch_proj': pp },
          summary: {
            linear_top1: 50 + seed + (frozen ? frozenLinear[seed]! : 0) + (lr === 2e-4 ? -4 : 0),
            knn_top1: 40 + seed - (frozen ? 1 : 0),
          },
        });
      }
    }
  }
  // seed 3 has only a learned run; seed 4 a frozen run still running: neither has a pair
  writeFakeRun(dir, { id: 'lr0.0001-learned-s3', config: { seed: 3, 'optim.base_lr': 1e-4 }, summary: { linear_top1: 90 } });
  writeFakeRun(dir, { id: 'lr0.0001-learned-s4', config: { seed: 4, 'optim.base_lr': 1e-4 }, summary: { linear_top1: 90 } });
  writeFakeRun(dir, { id: 'lr0.0001-frozen-s4', config: { seed: 4, 'optim.base_lr': 1e-4, 'model.patch_proj': 'frozen' }, status: 'running' });
  return dir;
}

test('paired by seed: each two-valued key, at each setting of the others, over the seeds both sides completed', async () => {
  const dir = writePatchSweep();
  const r = await writeReport(dir, { plots: false });
  const cmp = pairedComparisons(r.view, r.facts);
  assert.deepEqual(
    cmp.map((c) => [c.key, c.a, c.b, c.context, c.seeds]),
    [
      ['model.patch_proj', 'learned', 'frozen', 'base lr 1.0e-4', [0, 1, 2]],
      ['model.patch_proj', 'learned', 'frozen', 'base lr 2.0e-4', [0, 1, 2]],
      ['optim.base_lr', 0.0001, 0.0002, 'patch proj. learned', [0, 1, 2]],
      ['optim.base_lr', 0.0001, 0.0002, 'patch proj. frozen', [0, 1, 2]],
    ],
  );
  const lin = cmp[0]!.tests.get('linear_top1')!;
  assert.equal(lin.mean, 2);
  assert.equal(lin.std, 1);
  // t = 2 sqrt 3 with 2 degrees of freedom: p = 1 - sqrt(12 / 14) = 0.074
  assert.ok(Math.abs(lin.p - (1 - Math.sqrt(12 / 14))) < 1e-12);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const rows = md.split('\n').filter((l) => l.startsWith('| patch proj. frozen − learned') || l.startsWith('| base lr'));
  assert.equal(rows.length, 4);
  // kNN: frozen 1 point lower on every seed (no spread: the sign test's 2 x 0.5^3 = 0.25); base lr: linear 4 points lower, every seed
  assert.equal(rows[0], '| patch proj. frozen − learned | base lr 1.0e-4 | 0, 1, 2 | +2.0 ± 1.0 (p = 0.074) | −1.0 ± 0.0 (p = 0.25, sign test) | 0.0 ± 0.0 (p = 1.00) | 0.0 ± 0.0 (p = 1.00) |');
  assert.match(rows[2]!, /^\| base lr 2\.0e-4 − 1\.0e-4 \| patch proj\. learned \| 0, 1, 2 \| −4\.0 ± 0\.0 \(p = 0\.25, sign test\) \| 0\.0 ± 0\.0 \(p = 1\.00\) \|/);
  assert.match(md, /## Paired by seed[\s\S]*## Baselines|## Paired by seed[\s\S]*## kNN accuracy/);
});

test('paired by seed: a key with more than two values pairs each value with the next; under two shared seeds, no row', async () => {
  // batch 64 | 128 | 256 | 384, seeds 0 and 1; linear top-1 = 40 - 3 i + seed; batch 384 seed 0 diverged
  const batch = writeBatchSweep(tmp(), 'batch-size', [0, 1]);
  const rb = await writeReport(batch, { plots: false });
  assert.deepEqual(
    pairedComparisons(rb.view, rb.facts).map((c) => [c.key, c.a, c.b, c.seeds, c.tests.get('linear_top1')?.mean]),
    [
      ['optim.batch_size', 64, 128, [0, 1], -3],
      ['optim.batch_size', 128, 256, [0, 1], -3],
    ],
  );
  const bmd = readFileSync(join(batch, 'report.md'), 'utf8');
  assert.match(bmd, /\| batch 128 − 64 \| all \| 0, 1 \| −3\.0 ± 0\.0 \(p = 0\.50, sign test\) \|/);
  assert.match(bmd, /\| batch 256 − 128 \| all \| 0, 1 \| −3\.0 ± 0\.0 \(p = 0\.50, sign test\) \|/);
  // batch 256 has 2 dips on each seed, 128 none: the dips column is the count's difference, the deepest dip's its depth's
  const row256 = bmd.split('\n').find((l) => l.startsWith('| batch 256 − 128 |'))!.split(' | ');
  assert.equal(row256.at(-1), '+2.0 ± 0.0 (p = 0.50, sign test) |');
  assert.match(row256.at(-2)!, /^\+10\.\d ± 0\.0 \(p = 0\.50, sign test\)$/);
  assert.doesNotMatch(bmd, /\| batch 384 − /);

  const dir = join(tmp(), 'one-seed');
  writeFakeRun(dir, { id: 'learned-s0', config: { seed: 0 }, summary: { linear_top1: 50 } });
  writeFakeRun(dir, { id: 'frozen-s0', config: { seed: 0, 'model.patch_proj': 'frozen' }, summary: { linear_top1: 51 } });
  writeFakeRun(dir, { id: 'frozen-s1', config: { seed: 1, 'model.patch_proj': 'frozen' }, summary: { linear_top1: 52 } });
  const r = await writeReport(dir, { plots: false });
  assert.deepEqual(pairedComparisons(r.view, r.facts), []);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /Paired by seed/);
});

test('paired by seed: a mean difference that rounds to zero prints without a sign', async () => {
  const dir = join(tmp(), 'near-zero');
  // frozen - learned linear top-1: -0.02 and -0.04 (mean -0.03, prints 0.0); kNN: +0.06 and +0.04 (+0.1)
  for (const [seed, dl, dk] of [[0, -0.02, 0.06], [1, -0.04, 0.04]] as const) {
    writeFakeRun(dir, { id: `learned-s${seed}`, config: { seed }, summary: { linear_top1: 50, knn_top1: 40 } });
    writeFakeRun(dir, { id: `frozen-s${seed}`, config: { seed, 'model.patch_proj': 'frozen' }, summary: { linear_top1: 50 + dl, knn_top1: 40 + dk } });
  }
  await writeReport(dir, { plots: false });
  const row = readFileSync(join(dir, 'report.md'), 'utf8').split('\n').find((l) => l.startsWith('| patch proj. frozen − learned'));
  assert.match(row!, /^\| patch proj\. frozen − learned \| all \| 0, 1 \| 0\.0 ± 0\.0 \(p = [\d.]+\) \| \+0\.1 ± 0\.0 \(p = [\d.]+\) \|/);
});

test('paired by seed: where the other keys differ in the values run, each setting pairs its own neighbours', async () => {
  // adamw at lr 8e-3 and 2.4e-2, lamb at 8e-3 and 1.28e-2 (three lrs over the sweep, two per optimizer)
  const dir = join(tmp(), 'mixed-grid');
  const linear: Record<string, number> = { 'adamw-0.008': 78, 'adamw-0.024': 76, 'lamb-0.008': 77, 'lamb-0.0128': 73 };
  for (const [name, lr] of [['adamw', 0.008], ['adamw', 0.024], ['lamb', 0.008], ['lamb', 0.0128]] as const) {
    for (const seed of [0, 1]) {
      writeFakeRun(dir, {
        id: `${name}-lr${lr}-s${seed}`,
        config: { seed, 'optim.name': name, 'optim.base_lr': lr },
        summary: { linear_top1: linear[`${name}-${lr}`]! + seed },
      });
    }
  }
  const r = await writeReport(dir, { plots: false });
  assert.deepEqual(
    pairedComparisons(r.view, r.facts).map((c) => [c.key, c.a, c.b, c.context, c.tests.get('linear_top1')?.mean]),
    [
      ['optim.name', 'adamw', 'lamb', 'base lr 8.0e-3', -1],
      ['optim.base_lr', 0.008, 0.0128, 'optimizer lamb', -4],
      ['optim.base_lr', 0.008, 0.024, 'optimizer adamw', -2],
    ],
  );
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\| base lr 1\.28e-2 − 8\.0e-3 \| optimizer lamb \| 0, 1 \| −4\.0 ± 0\.0 \(p = 0\.50, sign test\) \|/);
});

test('paired by seed: a metric some runs lack is tested on the seeds that have it, and its cell says how many', async () => {
  const dir = join(tmp(), 'probe-missing');
  for (const seed of [0, 1, 2]) {
    writeFakeRun(dir, { id: `learned-s${seed}`, config: { seed }, summary: { linear_top1: 50 + seed, knn_top1: 40 } });
    // seed 2's frozen run has no linear probe
    writeFakeRun(dir, { id: `frozen-s${seed}`, config: { seed, 'model.patch_proj': 'frozen' }, summary: { linear_top1: seed === 2 ? null : 51 + 2 * seed, knn_top1: 41 } });
  }
  await writeReport(dir, { plots: false });
  const row = readFileSync(join(dir, 'report.md'), 'utf8').split('\n').find((l) => l.startsWith('| patch proj. frozen − learned'))!;
  // linear: differences 1 and 2 on seeds 0, 1: mean 1.5, std 0.71, t = 3, 1 degree of freedom: p = 0.20;
  // kNN: +1 on all three seeds, no spread: the sign test's 2 x 0.5^3 = 0.25, marked
  assert.equal(row.split(' | ').slice(2, 5).join(' | '), '0, 1, 2 | +1.5 ± 0.7 (p = 0.20, 2 seeds) | +1.0 ± 0.0 (p = 0.25, sign test)');
});

test('p-values: two decimals from 0.1, three below; never rounded up to 0.01, 0.05 or 0.1 from below', async () => {
  const { fmtP } = await import('../../src/report/paired.ts');
  assert.equal(fmtP(0.5), 'p = 0.50');
  assert.equal(fmtP(0.0742), 'p = 0.074');
  assert.equal(fmtP(0.049803), 'p = 0.0498');
  assert.equal(fmtP(0.099819), 'p = 0.0998');
  assert.equal(fmtP(0.00999), 'p = 0.00999');
  assert.equal(fmtP(0.0504), 'p = 0.050');
  assert.equal(fmtP(0.1), 'p = 0.10');
  assert.equal(fmtP(0.0004), 'p < 0.001');
  assert.equal(fmtP(0.09999999), 'p = 0.09999999');
});

test('paired by seed: keys that change with the columns beside the swept one are named in the row, and the note says what that means', async () => {
  // AdamW at base lr 1e-4 against LAMB at 5e-4 (two runs of each optimizer's own lr, as a hand-made folder has them), seeds 0-1
  const dir = join(tmp(), 'optimizers');
  for (const seed of [0, 1]) {
    writeFakeRun(dir, { id: `adamw-s${seed}`, config: { seed, 'optim.name': 'adamw', 'optim.base_lr': 1e-4, 'optim.weight_decay': 0.1 }, summary: { linear_top1: 50 + seed } });
    writeFakeRun(dir, { id: `lamb-s${seed}`, config: { seed, 'optim.name': 'lamb', 'optim.base_lr': 5e-4, 'optim.weight_decay': 0.05 }, summary: { linear_top1: 48 + seed } });
  }
  const r = await writeReport(dir, { plots: false });
  const cmp = pairedComparisons(r.view, r.facts);
  assert.deepEqual(cmp.map((c) => [c.key, c.a, c.b, c.also]), [['optim.name', 'adamw', 'lamb', 'base lr 5.0e-4 vs 1.0e-4, wd 5.0e-2 vs 1.0e-1']]);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\n\| optimizer lamb − adamw \(and base lr 5\.0e-4 vs 1\.0e-4, wd 5\.0e-2 vs 1\.0e-1\) \| all \| 0, 1 \| −2\.0 ± 0\.0 \(p = 0\.50, sign test\) \|/);
  assert.match(md, /A row that names other keys in brackets pairs settings that differ in those too/);
  // a sweep without such keys: no brackets, no such sentence
  const batch = writeBatchSweep(tmp(), 'batch-size', [0, 1]);
  const rb = await writeReport(batch, { plots: false });
  assert.deepEqual(pairedComparisons(rb.view, rb.facts).map((c) => c.also), ['', '']);
  assert.doesNotMatch(readFileSync(join(batch, 'report.md'), 'utf8'), /A row that names other keys/);
});
