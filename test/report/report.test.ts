import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { DEFAULT_INSTABILITY, spikeOrderMarkdown, writeReport } from '../../src/report/index.ts';
import { analyzeRun, type RunInstability } from '../../src/report/instability.ts';
import { mapToPaper } from '../../src/report/paper.ts';
import { listSweeps, readSweep } from '../../src/report/results.ts';
import { acquireLock, procStart, releaseLock } from '../../src/runfolder/lock.ts';
import { fmtSci, followingKeys, formatValue, inferSweptKeys, pooledKeys, viewSweep } from '../../src/report/sweep.ts';
import { csvValue, fmtNum, formatSeconds } from '../../src/report/table.ts';
import { tmp, writeBatchSweep, writeFakeRun, writeSimpleSweep } from './fixtures.ts';

/** The table of report.md: label -> cells. */
function mdTable(md: string): { header: string[]; rows: Map<string, string[]> } {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| ') && lines[lines.indexOf(l) + 1]?.startsWith('|---'));
  const cells = (l: string) => l.slice(2, -2).split(' | ').map((c) => c.trim());
  const header = cells(lines[start]!).slice(1);
  const rows = new Map<string, string[]>();
  for (let i = start + 2; lines[i]?.startsWith('|'); i++) {
    const [label, ...rest] = cells(lines[i]!);
    rows.set(label!.replace(/\*/g, ''), rest.map((c) => c.replace(/\*/g, '')));
  }
  return { header, rows };
}

/** A run's line of runs.csv: column -> cell (no cell of these tests holds a comma or a quote). */
function runsCsvRow(dir: string, id: string): Record<string, string> {
  const [head, ...lines] = readFileSync(join(dir, 'runs.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const row = lines.find((l) => l[0] === id);
  assert.ok(row, `${id} in runs.csv`);
  return Object.fromEntries(head!.map((h, i) => [h, row[i]!]));
}

const paperRow = (rows: Map<string, string[]>) => [...rows].find(([k]) => k.startsWith('paper:'))?.[1];

test('batch-size sweep (grid scaled by 1/16): paper row, mean ± std over seeds, diverged run, files', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size', [0, 1]);
  const r = await writeReport(dir);
  for (const f of ['report.md', 'report.csv', 'runs.csv', 'plots/knn.svg', 'plots/knn.png', 'plots/grad.svg', 'plots/grad.png']) {
    assert.ok(existsSync(join(dir, f)), f);
  }
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const { header, rows } = mdTable(md);
  assert.deepEqual(header, ['64 (paper 1024)', '128 (paper 2048)', '256 (paper 4096)', '384 (paper 6144)']);
  assert.deepEqual(paperRow(rows), ['71.5', '72.6', '72.2', '69.7']);
  // linear top-1 = 40 - 3i + seed: seeds 0, 1 -> mean 40.5, std 0.7; the 384 column has seed 0 diverged
  assert.deepEqual(rows.get('linear top-1 (%)'), ['40.5 ± 0.7', '37.5 ± 0.7', '34.5 ± 0.7', '32.0 (1/2 diverged @ step 185)']);
  assert.equal(rows.get('runs')![3], '1× diverged @ step 185; 1× completed');
  // the diverged run's dips and spikes count (up to its divergence), and the report says so
  assert.match(md, /The other cells count a diverged run's figures up to its divergence/);
  assert.deepEqual(rows.get(`kNN dips (≥ ${DEFAULT_INSTABILITY.dipPoints} pts)`), ['0 ± 0', '0 ± 0', '2 ± 0', '2 ± 0']);
  assert.deepEqual(rows.get('grad spikes: patch proj.'), ['0 ± 0', '0 ± 0', '2 ± 0', '2 ± 0']);
  assert.deepEqual(rows.get('grad spikes: block1'), ['0 ± 0', '0 ± 0', '2 ± 0', '2 ± 0']);
  assert.deepEqual(rows.get('spike lag (steps)'), ['-', '-', '12.5 ± 0', '12.5 ± 0']);
  // the deepest dip pools the diverged run's (10.39 below the step-140 maximum at step 160, both seeds) with no note:
  // only accuracy cells leave a diverged run out
  assert.equal(rows.get('deepest dip (pts)')![3], '10.4 ± 0.0');
  // spike order: patch-proj. spikes at 75, 155, block1 spikes at 90, 165 (window 40 rows x 5 steps): both have one
  // after them, only 155 one before it (90)
  assert.deepEqual(rows.get('patch-proj. spikes with a block1 spike after them (≤ 200 steps)'), ['0 ± 0', '0 ± 0', '2 ± 0', '2 ± 0']);
  assert.deepEqual(rows.get('patch-proj. spikes with a block1 spike before them (≤ 200 steps)'), ['0 ± 0', '0 ± 0', '1 ± 0', '1 ± 0']);
  // and pooled over the four runs with those spikes (batch 256 and 384, two seeds each; 384 seed 0's came before its divergence)
  assert.match(md, /^Spike order \(Fig\. 4\): over the 4 runs with a patch-projection spike, 8 spikes; 8 had a last-block spike within 200 steps after them, 4 one within 200 steps before, 0 one at the same step\. /m);
  assert.equal(rows.get('wall time')![0], '30 s ± 0.0 s');
  assert.match(md, /!\[[^\]]*\]\(plots\/knn\.svg\)/);
  assert.match(md, /!\[[^\]]*\]\(plots\/grad\.svg\)/);
  assert.match(md, /Fig\. 1/);
  // the runs table, worked from the fixture: batch 384 seed 0 diverged at 185 of 200 steps; linear 40 - 3 x 3 = 31,
  // top-5 80; kNN at step 180 15 + 28 sqrt(0.9) = 41.56, also its best; dips at 80 and 160, the deepest 10.39;
  // spikes at 75, 155 and 90, 165 (lag median of 15 and 10); wall 30 + 10 x 3 s; 500 images/s
  assert.ok(md.includes('\n| `bs384-lr1.0e-4-adamw-learned-s0-abc030` | 0 | diverged @ step 185 | 185/200 | 31.0 / 80.0 | 41.6 (41.6) | 2 | 10.4 | 2 / 2 | 12.5 | 60 s | 500 |\n'), md);
  // its dips in the detail: 24.71 at step 80, 5.63 below the 30.34 of step 60; 28.04 at 160, 10.39 below the 38.43 of step 140
  assert.match(md, /`bs384-lr1\.0e-4-adamw-learned-s0-abc030`\)\n  - dips: steps 80-\d+ \(5\.6 pts below 30\.3\); steps 160-\w+ \(10\.4 pts below 38\.4\)\n/);

  // instability figures went into each run's summary.json
  const run = r.view.columns[2]!.runs[0]!;
  const s = JSON.parse(readFileSync(join(run.dir, 'summary.json'), 'utf8'));
  assert.equal(s.dips, 2);
  assert.equal(s['spikes/patch_proj'], 2);
  assert.equal(s['spikes/block1'], 2);
  assert.equal(s.spike_lag, 12.5);
  assert.ok(Math.abs(s.max_dip - 10.15) < 0.01);
  assert.equal(s.linear_top1, 34, 'existing summary keys are kept');

  // CSV: the same table, numbers only
  const csv = readFileSync(join(dir, 'report.csv'), 'utf8').trim().split('\n');
  const cols = (h: string) => [h, `${h} std`, `${h} n`, `${h} note`];
  assert.equal(csv[0], ['metric', ...['64 (paper 1024)', '128 (paper 2048)', '256 (paper 4096)', '384 (paper 6144)'].flatMap(cols)].join(','));
  assert.equal(csv.find((l) => l.startsWith('paper_linear_top1,')), 'paper_linear_top1,71.5,,1,,72.6,,1,,72.2,,1,,69.7,,1,');
  // the swept values sit under their columns' headers, one in each column's four
  assert.equal(csv.find((l) => l.startsWith('swept:')), 'swept:optim.batch_size,64,,,,128,,,,256,,,,384,,,');
  assert.ok(csv.find((l) => l.startsWith('spikes_before,'))!.startsWith('spikes_before,0,0,2,,0,0,2,,1,0,2,,1,0,2,'), csv.join('\n'));
  // mean, std, n, and what the table says in brackets: batch 384's linear top-1 is its seed 1's, seed 0 diverged
  assert.ok(csv.find((l) => l.startsWith('linear_top1,40.5,0.707106781187,2,,')), csv.join('\n'));
  assert.match(csv.find((l) => l.startsWith('linear_top1,'))!, /,32,,1,1\/2 diverged @ step 185$/);
  // a cell of no figure: why, as report.md says it there (batch 384 of seed 0 alone: diverged)
  const one = writeBatchSweep(tmp(), 'one-seed', [0]);
  await writeReport(one);
  const oneCsv = readFileSync(join(one, 'report.csv'), 'utf8').trim().split('\n');
  assert.match(oneCsv.find((l) => l.startsWith('linear_top1,'))!, /,,,0,diverged @ step 185$/, oneCsv.join('\n'));
  const runs = readFileSync(join(dir, 'runs.csv'), 'utf8').trim().split('\n');
  assert.equal(runs.length, 1 + 8);
  assert.match(runs.find((l) => l.includes('bs384') && l.includes(',diverged,'))!, /,185,/);

  // the kNN figure: one line per run, axis titles, a legend naming every setting
  const svg = readFileSync(join(dir, 'plots/knn.svg'), 'utf8');
  assert.equal(svg.match(/aria-roledescription="line mark"/g)?.length, 8);
  for (const text of ['epoch', 'kNN top-1 (%)', 'batch', '64', '128', '256', '384', 'seed']) assert.ok(svg.includes(`>${text}<`), text);
  const grad = readFileSync(join(dir, 'plots/grad.svg'), 'utf8');
  assert.ok(grad.includes('>step<') && grad.includes('>gradient ∞-norm<') && grad.includes('>patch projection<') && grad.includes('>last block<'));
  // 8 panels x 2 lines
  assert.equal(grad.match(/aria-roledescription="line mark"/g)?.length, 16);
  const png = readFileSync(join(dir, 'plots/knn.png'));
  assert.deepEqual([...png.subarray(1, 4)].map((b) => String.fromCharCode(b)).join(''), 'PNG');
  assert.ok(png.length > 20000, 'a PNG with lines, text and a legend is not tiny');
});

test('AdamW lr sweep at 10x the paper lr: Fig. 2 row by common scale factor', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'lr', [0.5e-3, 1.0e-3, 1.5e-3].map((lr) => ({ 'optim.base_lr': lr, 'optim.batch_size': 256 })));
  const r = await writeReport(dir, { plots: false });
  assert.equal(r.view.paper?.figure, 'Fig. 2');
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['5.0e-4 (paper 5.0e-5)', '1.0e-3 (paper 1.0e-4)', '1.5e-3 (paper 1.5e-4)']);
  assert.deepEqual(paperRow(rows), ['70.4', '72.2', '71.7']);
});

test('LAMB lr sweep with an extra lr: Fig. 3 row where the paper has the value, "-" elsewhere', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(
    root,
    'lr-lamb',
    [3e-4, 5e-4, 6e-4, 8e-4].map((lr) => ({ 'optim.name': 'lamb', 'optim.base_lr': lr, 'optim.weight_decay': 1e-3 })),
  );
  const r = await writeReport(dir, { plots: false });
  assert.deepEqual(r.view.sweptKeys, ['optim.base_lr']);
  assert.equal(r.view.paper?.figure, 'Fig. 3');
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['3.0e-4', '5.0e-4', '6.0e-4', '8.0e-4']);
  assert.deepEqual(paperRow(rows), ['-', '72.5', '70.9', '66.5']);
});

test("patch-proj sweep: learned vs frozen x lr, paper values from sweep.yaml's record", async () => {
  const root = tmp();
  const settings = ['learned', 'frozen'].flatMap((pp) => [1e-3, 2e-3].map((lr) => ({ 'model.patch_proj': pp, 'optim.base_lr': lr })));
  // the sweep runner's record: these two lrs stand for the paper's 1.0e-4 and 1.5e-4 (a scale factor would say 0.5e-4 and 1.0e-4)
  const dir = writeSimpleSweep(root, 'patch-proj', settings, {
    name: 'patch-proj',
    parameters: { 'model.patch_proj': { values: ['learned', 'frozen'] }, 'optim.base_lr': { values: [1e-3, 2e-3], paper: [1.0e-4, 1.5e-4] } },
  });
  const r = await writeReport(dir, { plots: false });
  assert.equal(r.view.paper?.figure, 'Fig. 5');
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['learned, 1.0e-3 (paper 1.0e-4)', 'learned, 2.0e-3 (paper 1.5e-4)', 'frozen, 1.0e-3 (paper 1.0e-4)', 'frozen, 2.0e-3 (paper 1.5e-4)']);
  assert.deepEqual(paperRow(rows), ['72.2', '71.7', '72.8', '73.4']);

  // per-run records (runs: [{id, paper}]) work too
  const dir2 = writeSimpleSweep(root, 'patch-proj-2', settings, null);
  const ids = readSweep(dir2).runs.map((x) => x.id);
  const paperLr = (id: string) => (id.includes('0.001') ? 0.5e-4 : 1.0e-4);
  writeFileSync(join(dir2, 'sweep.yaml'), YAML.stringify({ runs: ids.map((id) => ({ id, paper: { 'optim.base_lr': paperLr(id) } })) }));
  const r2 = await writeReport(dir2, { plots: false, format: 'md' });
  assert.deepEqual(r2.view.columns.map((c) => c.paperTop1), [70.4, 72.2, 70.8, 72.8]);
});

test("the paper values sweep.yaml records: a run's own record first (the latest invocation's over an earlier one's), then the values' list", async () => {
  const root = tmp();
  const lrs = [1e-3, 2e-3].map((lr) => ({ 'optim.base_lr': lr }));
  // runs 0.001-s0-def000 and 0.002-s0-def001; the list alone would say 0.5e-4 and 1.0e-4
  const dir = writeSimpleSweep(root, 'lr', lrs, {
    name: 'lr',
    parameters: { 'optim.base_lr': { values: [1e-3, 2e-3], paper: [0.5e-4, 1.0e-4] } },
    runs: [{ id: 'lr/0.001-s0-def000', paper: { 'optim.base_lr': 1.5e-4 } }],
    earlier_runs: [
      { id: '0.001-s0-def000', paper: { 'optim.base_lr': 1.0e-4 } },
      { id: '0.002-s0-def001', paper: { 'optim.base_lr': 1.5e-4 } },
    ],
  });
  const r = await writeReport(dir, { plots: false });
  assert.equal(r.view.paper?.figure, 'Fig. 2');
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['1.0e-3 (paper 1.5e-4)', '2.0e-3 (paper 1.5e-4)']);
  // Fig. 2 at 1.5e-4: 71.7
  assert.deepEqual(paperRow(rows), ['71.7', '71.7']);
});

test("the paper values sweep.yaml records: a column whose runs' records disagree is matched by its value; a list of another length than the values is no record", async () => {
  const dir = join(tmp(), 'lr');
  writeFakeRun(dir, { id: 'lr1-s0', config: { 'optim.base_lr': 1e-3, seed: 0 } });
  writeFakeRun(dir, { id: 'lr2-s0', config: { 'optim.base_lr': 2e-3, seed: 0 } });
  writeFakeRun(dir, { id: 'lr2-s1', config: { 'optim.base_lr': 2e-3, seed: 1 } });
  writeFileSync(
    join(dir, 'sweep.yaml'),
    YAML.stringify({
      name: 'lr',
      parameters: { 'optim.base_lr': { values: [1e-3, 2e-3] } },
      // one paper value for two run values: which it belongs to is not said
      paper: { 'optim.base_lr': [1.5e-4] },
      runs: [
        { id: 'lr2-s0', paper: { 'optim.base_lr': 1.5e-4 } },
        { id: 'lr2-s1', paper: { 'optim.base_lr': 1.0e-4 } },
      ],
    }),
  );
  await writeReport(dir, { plots: false });
  // matched by the values: 1e-3 and 2e-3 at the factor 0.05 are the paper's 0.5e-4 and 1.0e-4 (70.4, 72.2)
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['1.0e-3 (paper 5.0e-5)', '2.0e-3 (paper 1.0e-4)']);
  assert.deepEqual(paperRow(rows), ['70.4', '72.2']);
});

test('swept keys of a sweep of one run so far: the keys sweep.yaml gives several values that its config holds', () => {
  const dir = writeSimpleSweep(tmp(), 'bs', [{ 'optim.batch_size': 64 }], {
    name: 'bs',
    parameters: { 'optim.batch_size': { values: [64, 128] }, 'optim.base_lr': { values: [1e-4] }, 'model.not_a_key': { values: [1, 2] } },
  });
  assert.deepEqual(viewSweep(readSweep(dir)).sweptKeys, ['optim.batch_size']);
});

test('a sweep that is not the paper has no paper row; running runs show their step; no sweep.yaml needed', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  writeFakeRun(dir, { id: 'running-one', config: { 'moco.temperature': 0.5 }, status: 'running', steps: 200, divergedAt: null });
  // metrics up to step 200 written, status says 120 of 400; running while another live process holds its lock
  const run = join(dir, 'running-one');
  const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    const now = new Date().toISOString();
    writeFileSync(join(run, '.lock'), JSON.stringify({ pid: holder.pid, host: hostname(), proc_start: procStart(holder.pid!), since: now, sweep: 'temperature', heartbeat: now }));
    writeFileSync(join(run, 'status.json'), JSON.stringify({ status: 'running', step: 120, total_steps: 400, pid: holder.pid, host: hostname() }));
    const r = await writeReport(dir, { plots: false });
    assert.equal(r.view.paper, null);
    const { rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
    assert.equal(paperRow(rows), undefined);
    assert.deepEqual(rows.get('linear top-1 (%)'), ['30.0', '31.0', 'running (step 120/400)']);
    // its figures so far are shown as such, never as a result
    assert.match(rows.get('kNN top-1 (%)')![2]!, /^\d+\.\d \(so far\)$/);
  } finally {
    holder.kill();
  }
  await new Promise((r) => holder.on('close', r));
  // its process gone without a final status (killed outright): interrupted, as plan and sweep see it
  await writeReport(dir, { plots: false });
  assert.deepEqual(mdTable(readFileSync(join(dir, 'report.md'), 'utf8')).rows.get('linear top-1 (%)')?.[2], 'interrupted (step 120/400)');
});

test('a setting with a finished and an unfinished run pools the finished one only', async () => {
  const dir = join(tmp(), 'temperature');
  writeFakeRun(dir, { id: 't0.1-s0-aaaaaaaa', config: { 'moco.temperature': 0.1, seed: 0 }, knnCurve: (f) => 20 + 40 * f, wallS: 100 });
  // seed 1 stopped half-way: its kNN so far (40) and wall time differ from seed 0's final 60 and 100 s
  writeFakeRun(dir, { id: 't0.1-s1-bbbbbbbb', config: { 'moco.temperature': 0.1, seed: 1 }, knnCurve: (f) => 20 + 40 * f, steps: 100, status: 'interrupted', wallS: 30 });
  await writeReport(dir, { plots: false, format: 'md' });
  const { rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(rows.get('runs'), ['1× completed; 1× interrupted (step 100/100)']);
  assert.deepEqual(rows.get('kNN top-1 (%)'), ['60.0']);
  assert.deepEqual(rows.get('wall time'), ['100 s']);
});

test('a figure only some finished runs of a setting have is over those, out of the finished runs, not counting an unfinished one', async () => {
  const dir = join(tmp(), 'temperature');
  // seed 0: a patch-proj. spike at 75 and block1 spikes at 90 (lag 15) and 150; seed 1: no spikes; seed 2 stopped early, no status
  writeFakeRun(dir, { id: 't0.1-s0', config: { 'moco.temperature': 0.1, seed: 0 }, spikes: { patch_proj: [75], block1: [90, 150] } });
  writeFakeRun(dir, { id: 't0.1-s1', config: { 'moco.temperature': 0.1, seed: 1 } });
  writeFakeRun(dir, { id: 't0.1-s2', config: { 'moco.temperature': 0.1, seed: 2 }, steps: 100, status: 'interrupted', spikes: { patch_proj: [75], block1: [80] } });
  await writeReport(dir, { plots: false });
  const { rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(rows.get('runs'), ['2× completed; 1× interrupted (step 100/100)']);
  assert.deepEqual(rows.get('spike lag (steps)'), ['15 (1 of 2 runs)']);
  const csv = readFileSync(join(dir, 'report.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.find((l) => l.startsWith('spike_lag,')), 'spike_lag,15,,1,1 of 2 runs');
  // the runs table: spikes patch proj. / last block, and the lag
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /\n\| `t0\.1-s0` \| 0 \| completed \|[^\n]*\| 1 \/ 2 \| 15 \| 42 s \| 500 \|\n/);
});

test("a diverged run whose summary.json does not say where (an older one) is diverged at its status.json's step", async () => {
  const dir = join(tmp(), 'lr');
  writeFakeRun(dir, { id: 'ok', config: { 'optim.base_lr': 1e-4 } });
  writeFakeRun(dir, { id: 'nan', config: { 'optim.base_lr': 1e-2 }, divergedAt: 185 });
  const path = join(dir, 'nan', 'summary.json');
  const { diverged_at: _gone, ...rest } = JSON.parse(readFileSync(path, 'utf8'));
  writeFileSync(path, JSON.stringify(rest));
  await writeReport(dir, { plots: false });
  const row = runsCsvRow(dir, 'nan');
  assert.deepEqual([row.status, row.diverged_at], ['diverged', '185']);
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /\| `nan` \| 0 \| diverged @ step 185 \| 185\/200 \|/);
});

test('runs.csv: each run\'s own top-5 and throughput; a config without a seed is seed 0, as the columns read it', async () => {
  const dir = join(tmp(), 'temperature');
  // the final kNN top-5 is the top-1 + 30 (summary.json), images/s 500; wall time 42 s
  writeFakeRun(dir, { id: 'a', config: { 'moco.temperature': 0.1 }, knnCurve: (f) => 20 + 40 * f });
  writeFakeRun(dir, { id: 'b', config: { 'moco.temperature': 0.2 }, knnCurve: (f) => 25 + 40 * f });
  // run b's config.yaml has no seed key at all (written by hand)
  const cfgPath = join(dir, 'b', 'config.yaml');
  const cfg = YAML.parse(readFileSync(cfgPath, 'utf8'));
  delete cfg.seed;
  writeFileSync(cfgPath, YAML.stringify(cfg));
  // a copy of it whose config says seed 0: the same seed in the same column
  cpSync(join(dir, 'b'), join(dir, 'b-copy'), { recursive: true });
  writeFileSync(join(dir, 'b-copy', 'config.yaml'), YAML.stringify({ ...cfg, seed: 0 }));
  await writeReport(dir, { plots: false });
  const a = runsCsvRow(dir, 'a');
  assert.deepEqual([a.knn_top1, a.knn_top5, a.wall_s, a.images_per_s], ['60', '90', '42', '500']);
  const b = runsCsvRow(dir, 'b');
  assert.deepEqual([b.seed, b.knn_top1, b.knn_top5], ['0', '65', '95']);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\*\*Runs of the same seed in one column:\*\* temperature 0\.2, seed 0: `b`, `b-copy`\./);
  assert.match(md, /\| `b` \| 0 \| completed \|/);
});

test('seeds are in numeric order: the header and each column\'s runs (seed 2 before seed 10, whatever the folder names)', async () => {
  const dir = join(tmp(), 'temperature');
  for (const seed of [10, 2]) for (const t of [0.1, 0.2]) writeFakeRun(dir, { id: `t${t}-s${seed}`, config: { 'moco.temperature': t, seed } });
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /; seeds 2, 10\.\n/);
  const ids = readFileSync(join(dir, 'runs.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')[0]);
  assert.deepEqual(ids, ['t0.1-s2', 't0.1-s10', 't0.2-s2', 't0.2-s10']);
});

test('a run stopped before its first kNN after step 0 has no kNN so far (step 0 is the untrained encoder)', async () => {
  const dir = join(tmp(), 'temperature');
  // no final status, no lock: interrupted, its metrics' only kNN at step 0
  const run = writeFakeRun(dir, { id: 't0.1-s0-aaaaaaaa', config: { 'moco.temperature': 0.1, seed: 0 }, knnCurve: (f) => 20 + 40 * f, steps: 10, status: 'running' });
  const rows = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  writeFileSync(join(run, 'metrics.jsonl'), `${rows.map((r) => JSON.stringify(r.step === 0 ? r : { ...r, knn_top1: undefined, knn_top5: undefined })).join('\n')}\n`);
  await writeReport(dir, { plots: false, format: 'md' });
  const table = mdTable(readFileSync(join(dir, 'report.md'), 'utf8')).rows;
  assert.deepEqual(table.get('kNN top-1 (%)'), ['interrupted (step 10/10)']);
  // stopped by Ctrl-C, its summary.json records step 0's kNN as its last (knn_step 0): not its figure either
  // (its best kNN counts step 0, as an older moco3's summary did: not the run's best either)
  writeFileSync(
    join(run, 'summary.json'),
    JSON.stringify({ status: 'interrupted', steps: 10, total_steps: 10, knn_top1: rows[0]!.knn_top1, knn_top5: 50, knn_step: 0, best_knn_top1: rows[0]!.knn_top1 }),
  );
  writeFileSync(join(run, 'status.json'), JSON.stringify({ status: 'interrupted', step: 10, total_steps: 10 }));
  await writeReport(dir, { plots: false, format: 'both' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.deepEqual(mdTable(md).rows.get('kNN top-1 (%)'), ['interrupted (step 10/10)']);
  assert.match(md, /\| `t0\.1-s0-aaaaaaaa` \| 0 \| interrupted \| 10\/10 \| - \/ - \| - \(-\) \|/);
  const csvRow = runsCsvRow(dir, 't0.1-s0-aaaaaaaa');
  assert.deepEqual([csvRow.knn_top1, csvRow.knn_top5, csvRow.best_knn_top1], ['', '', '']);
  // a completed run of 0 steps (train.max_steps 0): step 0's kNN is its final one, and shown
  writeFakeRun(dir, { id: 't0.2-s0-bbbbbbbb', config: { 'moco.temperature': 0.2, seed: 0 }, steps: 0, summary: { knn_top1: 21.5, knn_step: 0, steps: 0, total_steps: 0 } });
  await writeReport(dir, { plots: false, format: 'md' });
  assert.deepEqual(mdTable(readFileSync(join(dir, 'report.md'), 'utf8')).rows.get('kNN top-1 (%)'), ['interrupted (step 10/10)', '21.5']);
  rmSync(join(dir, 't0.2-s0-bbbbbbbb'), { recursive: true });
  rmSync(join(run, 'summary.json'));
  // its kNN at step 10 kept (the curve's end, 20 + 40): that one, so far
  writeFileSync(join(run, 'metrics.jsonl'), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  await writeReport(dir, { plots: false, format: 'md' });
  assert.deepEqual(mdTable(readFileSync(join(dir, 'report.md'), 'utf8')).rows.get('kNN top-1 (%)'), ['60.0 (so far)']);
});

test('the instability detail lists a run\'s first 12 spikes, and points to summary.json for the rest only where it wrote them there', async () => {
  const dir = join(tmp(), 'temperature');
  // 15 patch-projection spikes, every third logged row (the median of the 20 before stays a plain row's)
  const spikeSteps = Array.from({ length: 15 }, (_, k) => 30 + 15 * k);
  const spec = { config: { 'moco.temperature': 0.1, seed: 0 }, steps: 400, spikes: { patch_proj: spikeSteps } };
  const done = writeFakeRun(dir, { id: 't0.1-s0-aaaaaaaa', ...spec });
  await writeReport(dir, { plots: false, format: 'md' });
  const line = () => readFileSync(join(dir, 'report.md'), 'utf8').split('\n').find((l) => l.startsWith('  - spikes: '));
  const listed = spikeSteps.slice(0, 12).join(', ');
  assert.equal(line(), `  - spikes: patch_proj 15 (steps ${listed}, ... all 15 in the run's summary.json, instability.spike_steps)`);
  assert.deepEqual((JSON.parse(readFileSync(join(done, 'summary.json'), 'utf8')).instability as { spike_steps: Record<string, number[]> }).spike_steps.patch_proj, spikeSteps);
  // a run without a summary.json (killed before its end): none written, none named
  rmSync(done, { recursive: true });
  writeFakeRun(dir, { id: 't0.1-s0-aaaaaaaa', ...spec, status: 'running' });
  await writeReport(dir, { plots: false, format: 'md' });
  assert.equal(line(), `  - spikes: patch_proj 15 (steps ${listed}, ... 3 more)`);
});

test('a config edited after training is said in report.md, and its run\'s recorded paper value does not name its new column\'s', async () => {
  const dir = join(tmp(), 'lr');
  cpSync(join('docs', 'results', 'cpu', 'lr'), dir, { recursive: true });
  const id = 'bs256-lr1.6e-2-adamw-learned-s0-9a5d244f';
  const cfg = join(dir, id, 'config.yaml');
  const text = readFileSync(cfg, 'utf8');
  assert.ok(text.includes('  base_lr: 0.016\n'));
  writeFileSync(cfg, text.replace('  base_lr: 0.016\n', '  base_lr: 0.008\n'));
  await writeReport(dir, { plots: false, format: 'md' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const { header, rows } = mdTable(md);
  // the 8.0e-3 column (now with the edited run in it) is the paper's 5.0e-5, as sweep.yaml records for its other runs
  assert.deepEqual(header, ['8.0e-3 (paper 5.0e-5)', '1.6e-2 (paper 1.0e-4)', '2.4e-2 (paper 1.5e-4)']);
  assert.deepEqual(paperRow(rows), ['70.4', '72.2', '71.7']);
  assert.match(md, new RegExp(`\\*\\*A run's config\\.yaml is not the config it was trained with\\*\\* \\(its hash is not the one meta\\.json records: edited since\\?\\): \`${id}\`\\. It is reported, in its column, as the config says now`));
});

test('a finished run whose summary.json is of an earlier step than its metrics: its figures left out and said so, not "no linear probe yet"', async () => {
  const dir = join(tmp(), 'temperature');
  writeFakeRun(dir, { id: 't0.1-s0-aaaaaaaa', config: { 'moco.temperature': 0.1, seed: 0 }, summary: { linear_top1: 70, steps: 100 } });
  await writeReport(dir, { plots: false, format: 'md' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.deepEqual(mdTable(md).rows.get('linear top-1 (%)'), ['-']);
  assert.match(md, /\*\*1 finished run's summary\.json is not of the step its metrics\.jsonl ends at\*\* \(a copy of another part of the run, a damaged file\): `t0\.1-s0-aaaaaaaa` \(summary\.json of step 100, metrics to step 200\)\. Its final figures/);
  assert.doesNotMatch(md, /no linear probe yet/);
  // the sweep's name is its folder's, also when it is given as `.` (from inside it)
  await writeReport(`${dir}/.`, { plots: false, format: 'md' });
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /^# Sweep `temperature`\n/);
});

test('a partly finished sweep: the planned runs without a folder are listed as missing', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const ids = readSweep(dir).runs.map((x) => x.id);
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ varied: ['moco.temperature'], runs: [...ids, 't0.5-s0-0badc0de', 't1-s0-0badc0df'].map((id) => ({ id })) }));
  const r = await writeReport(dir, { plots: false, format: 'md' });
  assert.deepEqual(r.missing, ['t0.5-s0-0badc0de', 't1-s0-0badc0df']);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\*\*Missing: 2 of the 4 planned runs have no results yet\*\* \(not started\): `t0\.5-s0-0badc0de`, `t1-s0-0badc0df`\./);
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ runs: ids.map((id) => ({ id })) }));
  assert.deepEqual((await writeReport(dir, { plots: false, format: 'md' })).missing, []);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /Missing|Not planned/);
  // a run folder sweep.yaml does not list (copied in from another sweep): named
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ runs: ids.slice(1).map((id) => ({ id })) }));
  await writeReport(dir, { plots: false, format: 'md' });
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), new RegExp(`\\*\\*Not planned by this sweep: 1 run folder\\*\\* that sweep\\.yaml does not list \\(copied in from elsewhere\\?\\): \`${ids[0]}\`\\. It is reported beside the sweep's own runs`));
  // a run an earlier invocation planned too (runs and earlier_runs) is one missing run, not two
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ runs: [...ids, 't0.5-s0-0badc0de'].map((id) => ({ id })), earlier_runs: [{ id: 't0.5-s0-0badc0de' }, { id: 't2-s0-0badc0e0' }] }));
  assert.deepEqual((await writeReport(dir, { plots: false, format: 'md' })).missing, ['t0.5-s0-0badc0de', 't2-s0-0badc0e0']);
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /\*\*Missing: 2 of the 4 planned runs have no results yet\*\* \(not started\): `t0\.5-s0-0badc0de`, `t2-s0-0badc0e0`\./);
  // a sweep.yaml that lists no runs (written by hand: its parameters only) names none as unplanned
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ name: 'temperature', parameters: { 'moco.temperature': { values: [0.1, 0.2] } } }));
  assert.deepEqual((await writeReport(dir, { plots: false, format: 'md' })).missing, []);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /Missing|Not planned/);
});

test('run folders sweep.yaml does not list: the first 12 named, the rest counted', async () => {
  const dir = join(tmp(), 'copied');
  const ids = Array.from({ length: 13 }, (_, i) => `copied-${String(i).padStart(2, '0')}`);
  for (const [i, id] of [...ids, 'planned'].entries()) writeFakeRun(dir, { id, config: { seed: i }, steps: 20 });
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ runs: [{ id: 'planned' }] }));
  const named = (n: number) => ids.slice(0, n).map((id) => `\`${id}\``).join(', ');
  await writeReport(dir, { plots: false, format: 'md' });
  assert.ok(
    readFileSync(join(dir, 'report.md'), 'utf8').includes(
      `\n**Not planned by this sweep: 13 run folders** that sweep.yaml does not list (copied in from elsewhere?): ${named(12)}, and 1 more. They are reported beside the sweep's own runs, `,
    ),
  );
  rmSync(join(dir, ids[12]!), { recursive: true });
  await writeReport(dir, { plots: false, format: 'md' });
  assert.ok(
    readFileSync(join(dir, 'report.md'), 'utf8').includes(
      `\n**Not planned by this sweep: 12 run folders** that sweep.yaml does not list (copied in from elsewhere?): ${named(12)}. They are reported beside the sweep's own runs, `,
    ),
  );
});

test('the sweeps of a results folder: folders holding a run folder, sorted; results/train only as a sweep of that name (with its sweep.yaml)', () => {
  const results = join(tmp(), 'results');
  writeSimpleSweep(results, 'lr', [1e-4, 2e-4].map((x) => ({ 'optim.base_lr': x })));
  writeSimpleSweep(results, 'bs', [64, 128].map((b) => ({ 'optim.batch_size': b })));
  writeSimpleSweep(results, 'train', [{ 'optim.base_lr': 1e-4 }]);
  mkdirSync(join(results, 'empty', 'not-a-run'), { recursive: true });
  assert.deepEqual(listSweeps(results), ['bs', 'lr'].map((d) => join(results, d)));
  writeFileSync(join(results, 'train', 'sweep.yaml'), YAML.stringify({ name: 'train', parameters: { 'optim.base_lr': { values: [1e-4] } } }));
  assert.deepEqual(listSweeps(results), ['bs', 'lr', 'train'].map((d) => join(results, d)));
});

test("a sweep folder holding one of a run's files without its config.yaml (a metrics.jsonl alone) is refused, naming it", () => {
  const dir = writeSimpleSweep(tmp(), 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const [first] = readSweep(dir).runs;
  mkdirSync(join(dir, 'lost'));
  cpSync(join(first!.dir, 'metrics.jsonl'), join(dir, 'lost', 'metrics.jsonl'));
  assert.throws(() => readSweep(dir), (e: Error) => e.name === 'ReportError' && e.message.startsWith(`${join(dir, 'lost')}: holds a run's metrics.jsonl but no config.yaml; put it back`));
});

test('a hidden folder in a sweep (a backup copy of a run, .ipynb_checkpoints) is no run of it', async () => {
  const dir = writeSimpleSweep(tmp(), 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const [first] = readSweep(dir).runs;
  cpSync(first!.dir, join(dir, `.${first!.id}`), { recursive: true });
  assert.deepEqual(readSweep(dir).runs.map((r) => r.id), [first!.id, readSweep(dir).runs[1]!.id]);
  const r = await writeReport(dir, { plots: false });
  assert.deepEqual(r.view.columns.map((c) => c.runs.length), [1, 1]);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /^2 runs; /m);
  // one seed in the sweep: the detail names each run by its setting alone
  assert.ok(md.includes(`- **0.1** (\`${first!.id}\`)`), md);
});

test('a previous run moved aside by train --force is left out, and the report says so', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'forced', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const [first] = readSweep(dir).runs.map((x) => x.id);
  const aside = `${first}.old-20261205T052715`;
  writeFakeRun(dir, { id: aside, config: { 'moco.temperature': 0.1 }, summary: { linear_top1: 10 } });
  writeFakeRun(dir, { id: 'named.old-notastamp', config: { 'moco.temperature': 0.3 }, summary: { linear_top1: 12 } });
  const r = await writeReport(dir, { plots: false, format: 'both' });
  assert.deepEqual(r.asideRuns, [aside]);
  assert.deepEqual([...r.facts.keys()].sort(), [first, 'named.old-notastamp', readSweep(dir).runs[1]!.id].sort());
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.ok(md.includes(`Left out: 1 previous run that \`moco3 train --force\` moved aside when it trained its folder again (\`${aside}\`)`), md);
  assert.doesNotMatch(readFileSync(join(dir, 'runs.csv'), 'utf8'), /20261205T052715/);
  // the setting's linear top-1 is the new run's alone (30), not pooled with the old one's (10)
  assert.equal(mdTable(md).rows.get('linear top-1 (%)')?.[0], '30.0');
  // the header counts the runs reported: the two of the sweep and the one of another name, not the one set aside
  assert.match(md, /^3 runs; swept: /m);
});

test('completed runs without a linear top-1: trained with the probe off, or not probed yet, each said as such', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const report = async () => {
    await writeReport(dir, { plots: false, format: 'md' });
    return readFileSync(join(dir, 'report.md'), 'utf8');
  };
  assert.doesNotMatch(await report(), /linear probe (yet|off)/);
  writeFakeRun(dir, { id: 'probe-off', config: { 'moco.temperature': 0.5, 'eval.linear.enabled': false } });
  let md = await report();
  assert.match(md, /^1 completed run was trained with the linear probe off \(`eval\.linear\.enabled: false`/m);
  assert.doesNotMatch(md, /no linear probe yet/);
  writeFakeRun(dir, { id: 'not-yet-1', config: { 'moco.temperature': 1 } });
  writeFakeRun(dir, { id: 'not-yet-2', config: { 'moco.temperature': 2, 'eval.linear.enabled': true } });
  md = await report();
  assert.match(md, /^1 completed run was trained with the linear probe off/m);
  assert.match(md, /^2 completed runs have no linear probe yet \(linear top-1 "-"\)/m);
  // a probe that diverged at the end of training: said with its error and a smaller --lr, not "not probed yet"
  const why = 'the linear probe diverged: loss NaN in epoch 1 at lr 1.00e+300';
  writeFakeRun(dir, { id: 'diverged-probe', config: { 'moco.temperature': 3 }, summary: { linear_top1: null, linear_top5: null, linear_error: why } });
  md = await report();
  assert.match(md, /^2 completed runs have no linear probe yet/m);
  assert.ok(md.includes(`1 completed run had its linear probe diverge (linear top-1 "-"; its \`linear_error\` in summary.json: ${why}): \`diverged-probe\`; \`moco3 eval linear <run-dir> --lr <smaller>\` probes it again, then \`moco3 report\` again.`), md);
});

test('swept keys: from the configs when there is no sweep.yaml; keys that follow another key or the seed are not swept', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'bs', [
    { 'optim.batch_size': 64, 'train.knn_every': 40 },
    { 'optim.batch_size': 128, 'train.knn_every': 20 },
    { 'optim.batch_size': 256, 'train.knn_every': 10 },
  ]);
  writeFakeRun(dir, { id: 'seed1', config: { seed: 1, 'data.path': '/other', 'optim.batch_size': 64, 'train.knn_every': 40 } });
  const runs = readSweep(dir).runs;
  assert.deepEqual(inferSweptKeys(runs), ['optim.batch_size']);
  const v = viewSweep(readSweep(dir));
  assert.deepEqual(v.columns.map((c) => c.runs.length), [2, 1, 1]);
  assert.deepEqual(v.seeds, [0, 1]);
  // what changes with the columns: the cadence; not the data path, which one column's runs differ in (and
  // the hash leaves out: where the data is, not what it is)
  assert.deepEqual([...followingKeys(v)], [['train.knn_every', ['40', '20', '10']]]);
  assert.deepEqual([...pooledKeys(v).keys()], []);
  // report.md says so, with every value
  await writeReport(dir, { plots: false, format: 'md' });
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /\nChanging with the columns besides the swept key: `train\.knn_every` \(40, 20, 10\) \(each column's/);
  rmSync(dir, { recursive: true });
});

test('report: runs of two presets in one folder: what changes with the columns besides the swept key is said under the table heading', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'lr', [
    { 'optim.base_lr': 1e-4 },
    { 'optim.base_lr': 2e-4 },
    // the same sweep under another preset: its own lrs, image size and epochs
    { 'optim.base_lr': 1.6e-2, 'data.image_size': 28, 'optim.epochs': 2 },
    { 'optim.base_lr': 3.2e-2, 'data.image_size': 28, 'optim.epochs': 2 },
  ]);
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /swept: base lr \(`optim\.base_lr`\)/);
  assert.match(md, /\nChanging with the columns besides the swept key: `data\.image_size` \(16, 28\); `optim\.epochs` \(\d+, 2\) \(each column's runs share them; the columns differ in them too\)\.\n/);
  // a sweep whose columns differ in the swept key alone says nothing of the kind
  const plain = writeSimpleSweep(root, 'lr2', [{ 'optim.base_lr': 1e-4 }, { 'optim.base_lr': 2e-4 }]);
  await writeReport(plain, { plots: false });
  assert.doesNotMatch(readFileSync(join(plain, 'report.md'), 'utf8'), /Changing with the columns/);
});

test('swept keys: a key an older config.yaml lacks, at the value it stands for, or where a run ran, is no column', () => {
  const dir = join(tmp(), 'mixed-age');
  for (const bs of [64, 128]) for (const seed of [0, 1]) {
    // one run written by a newer moco3 (it records the probe's views, at the old default), one on another backend
    const extra = bs === 128 && seed === 1 ? { 'eval.linear.train_views': 'augmented' } : bs === 64 && seed === 1 ? { 'train.backend': 'native' } : {};
    writeFakeRun(dir, { id: `bs${bs}-s${seed}`, config: { seed, 'optim.batch_size': bs, ...extra } });
  }
  const runs = readSweep(dir).runs;
  assert.deepEqual(inferSweptKeys(runs), ['optim.batch_size']);
  const v = viewSweep(readSweep(dir));
  assert.deepEqual(v.columns.map((c) => [c.label, c.runs.length]), [['64', 2], ['128', 2]]);
  assert.equal(v.paper?.figure, 'Fig. 1');
  // another probe protocol than the old default is a column
  writeFakeRun(dir, { id: 'bs128-s1', config: { seed: 1, 'optim.batch_size': 128, 'eval.linear.train_views': 'cached' } });
  assert.deepEqual(inferSweptKeys(readSweep(dir).runs), ['optim.batch_size', 'eval.linear.train_views']);
  rmSync(dir, { recursive: true });
});

test('swept keys: a key sweep.yaml declares stays a column when each of its values ran on other seeds', () => {
  const root = tmp();
  const dir = join(root, 'lr-apart');
  const lrs = [8e-3, 8e-3, 2.4e-2, 2.4e-2];
  lrs.forEach((lr, seed) => writeFakeRun(dir, { id: `lr${lr}-s${seed}`, config: { seed, 'optim.base_lr': lr }, summary: { linear_top1: lr < 0.01 ? 78 + seed : 70 + seed } }));
  const runs = readSweep(dir).runs;
  assert.deepEqual(inferSweptKeys(runs), [], 'undeclared, a key that follows the seed is not swept');
  assert.deepEqual(inferSweptKeys(runs, ['optim.base_lr']), ['optim.base_lr']);
  writeFileSync(join(dir, 'sweep.yaml'), YAML.stringify({ name: 'lr-apart', method: 'grid', varied: ['optim.base_lr'] }));
  const v = viewSweep(readSweep(dir));
  assert.deepEqual(v.columns.map((c) => c.runs.length), [2, 2]);
  rmSync(dir, { recursive: true });
});

test('the runs table: the best kNN is the best after step 0 (the untrained encoder), whatever summary.json says', async () => {
  const root = tmp();
  const dir = join(root, 'collapse');
  // the untrained encoder's 60 is never reached again; the run's summary counts step 0, as the train loop's does
  writeFakeRun(dir, { id: 'falls', knnCurve: (f) => (f === 0 ? 60 : 40 + 10 * f), summary: { best_knn_top1: 60 } });
  writeFakeRun(dir, { id: 'climbs', config: { 'optim.base_lr': 1e-4 }, knnCurve: (f) => 20 + 40 * f });
  await writeReport(dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\| kNN top-1 \(best after step 0\) \|/);
  assert.match(md, /\| `falls` \|[^\n]*\| 50\.0 \(50\.0\) \|/);
  assert.match(md, /\| `climbs` \|[^\n]*\| 60\.0 \(60\.0\) \|/);
  rmSync(dir, { recursive: true });
});

test('runs of different depths and logging intervals: the last block and the spike-order window are named for all of them', async () => {
  const root = tmp();
  const dir = join(root, 'mixed');
  // depth 2 logged every step, depth 4 every 5 steps: each a patch-projection spike, its last block's 10 steps later
  writeFakeRun(dir, { id: 'd2', config: { 'optim.base_lr': 1e-4 }, depth: 2, logEvery: 1, spikes: { patch_proj: [100], block1: [110] } });
  writeFakeRun(dir, { id: 'd4', config: { 'optim.base_lr': 2e-4 }, depth: 4, logEvery: 5, spikes: { patch_proj: [100], block3: [110] } });
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\| grad spikes: last block \|/);
  assert.match(md, /\| patch-proj\. spikes with a last block spike after them \(≤ 40 logged rows\) \|/);
  assert.match(md, /had a last-block spike within the lead window \(its logged rows\) after/);
  // one depth, one interval: the block's name and the window in steps, as before
  const one = join(root, 'one');
  writeFakeRun(one, { id: 'a', config: { 'optim.base_lr': 1e-4 }, depth: 2, logEvery: 5, spikes: { patch_proj: [100], block1: [110] } });
  writeFakeRun(one, { id: 'b', config: { 'optim.base_lr': 2e-4 }, depth: 2, logEvery: 5, spikes: { patch_proj: [100], block1: [110] } });
  // a run that diverged at step 7, off its logging cadence, with no spike: it changes no window
  writeFakeRun(one, { id: 'c', config: { 'optim.base_lr': 3e-4 }, depth: 2, logEvery: 5, divergedAt: 7 });
  await writeReport(one, { plots: false });
  const md1 = readFileSync(join(one, 'report.md'), 'utf8');
  assert.match(md1, /\| patch-proj\. spikes with a block1 spike after them \(≤ 200 steps\) \|/);
  assert.match(md1, /within 200 steps after/);
});

test("the gradient lead and the spike-order window are measured at the run's train.log_every, not over the kNN monitor's rows off that cadence", async () => {
  const dir = join(tmp(), 'cadence');
  // logged every 10 steps, the kNN monitor every 12 (rows off that cadence); the last block's spikes 20 steps after the patch projection's
  const run = writeFakeRun(dir, { id: 'r', steps: 2000, logEvery: 10, knnEvery: 12, spikes: { patch_proj: [500, 1200, 1700], block1: [520, 1220, 1720] } });
  const rows = readSweep(dir).runs[0]!.metrics;
  const lead = analyzeRun(rows, DEFAULT_INSTABILITY, 10).gradLead!;
  assert.equal(lead.lag, 20);
  // over every row (the cadence not known), the lead would be another
  assert.notEqual(analyzeRun(rows, DEFAULT_INSTABILITY).gradLead?.lag, 20);
  await writeReport(dir, { plots: false });
  const s = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
  assert.deepEqual([s.grad_lead, s.grad_lead_r], [lead.lag, Math.round(lead.r * 1e4) / 1e4]);
  assert.equal(runsCsvRow(dir, 'r').grad_lead, '20');
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /^ {2}- gradient excursions, patch proj\. vs block1: correlation [-\d.]+ at the same step, largest [\d.]+ at a lead of 20 steps$/m);
  // 40 logged rows of 10 steps
  assert.match(md, /\| patch-proj\. spikes with a block1 spike after them \(≤ 400 steps\) \|/);
});

test('a run too short for the gradient lead shows "-" there, and the table\'s note says why; a sweep whose runs all have one says nothing of it', async () => {
  const root = tmp();
  const need = 4 * DEFAULT_INSTABILITY.leadMaxLag + DEFAULT_INSTABILITY.minHistory;
  const notes: boolean[] = [];
  for (const steps of [need - 1, need]) {
    const dir = join(root, `s${steps}`);
    writeFakeRun(dir, { id: 'r', steps, logEvery: 1 });
    await writeReport(dir, { plots: false });
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    const lead = mdTable(md).rows.get('grad. lead, patch proj. → last block (steps)')![0];
    assert.equal(lead === '-', steps < need, `${steps} logged steps: lead ${lead}`);
    notes.push(md.includes(`A "-" in the gradient-lead rows is a run too short to estimate the lead: it needs ${need} logged steps of both gradients`));
  }
  assert.deepEqual(notes, [true, false]);
  rmSync(root, { recursive: true });
});

test("the paper row: an AdamW lr sweep with the patch projection fixed frozen is Fig. 5's frozen series; a frozen batch-size sweep has none", async () => {
  const root = tmp();
  const lr = writeSimpleSweep(root, 'lr-frozen', [0.5e-4, 1.0e-4, 1.5e-4].map((v) => ({ 'optim.base_lr': v, 'model.patch_proj': 'frozen' })));
  await writeReport(lr, { plots: false });
  const md = readFileSync(join(lr, 'report.md'), 'utf8');
  assert.match(md, /This is the paper's Fig\. 5 sweep/);
  assert.match(md, /\| \*paper: linear top-1 \(%\), Fig\. 5, ViT-B\/16 ImageNet\* \| \*70\.8\* \| \*72\.8\* \| \*73\.4\* \|/);
  const learned = writeSimpleSweep(root, 'lr-learned', [0.5e-4, 1.0e-4, 1.5e-4].map((v) => ({ 'optim.base_lr': v, 'model.patch_proj': 'learned' })));
  await writeReport(learned, { plots: false });
  assert.match(readFileSync(join(learned, 'report.md'), 'utf8'), /\| \*paper: linear top-1 \(%\), Fig\. 2, ViT-B\/16 ImageNet\* \| \*70\.4\* \| \*72\.2\* \| \*71\.7\* \|/);
  const bs = writeSimpleSweep(root, 'bs-frozen', [1024, 2048].map((b) => ({ 'optim.batch_size': b, 'model.patch_proj': 'frozen' })));
  await writeReport(bs, { plots: false });
  assert.doesNotMatch(readFileSync(join(bs, 'report.md'), 'utf8'), /paper: linear top-1/);
  // nor has a LAMB lr sweep with it frozen: Fig. 3's runs learned theirs
  const lamb = writeSimpleSweep(root, 'lamb-frozen', [5e-4, 6e-4, 8e-4].map((v) => ({ 'optim.name': 'lamb', 'optim.base_lr': v, 'model.patch_proj': 'frozen' })));
  await writeReport(lamb, { plots: false });
  assert.doesNotMatch(readFileSync(join(lamb, 'report.md'), 'utf8'), /paper: linear top-1|Fig\. 3/);
});

test('the header says when runs were cut short by train.max_steps', async () => {
  const root = tmp();
  const cut = writeSimpleSweep(root, 'cut', [64, 128].map((b) => ({ 'optim.batch_size': b, 'train.max_steps': 20 })));
  await writeReport(cut, { plots: false });
  assert.match(readFileSync(join(cut, 'report.md'), 'utf8'), /^Fixed: .*max steps 20 \(`train\.max_steps`: a run stops there, before the end of its epochs and lr schedule if they are longer\)\.$/m);
  // some runs cut, or cut at two steps: not "Fixed", but how many stop where
  const some = writeSimpleSweep(root, 'some', [64, 128, 256].map((b, i) => ({ 'optim.batch_size': b, 'train.max_steps': [null, 900, 40][i] })));
  await writeReport(some, { plots: false });
  const md = readFileSync(join(some, 'report.md'), 'utf8');
  assert.doesNotMatch(md, /^Fixed: .*max steps/m);
  assert.match(md, /^Cut short: 1 run at 40 steps, 1 run at 900 steps; 1 run not \(`train\.max_steps`: a run stops there, before the end of its epochs and lr schedule if they are longer\)\.$/m);
  const whole = writeSimpleSweep(root, 'whole', [64, 128].map((b) => ({ 'optim.batch_size': b })));
  await writeReport(whole, { plots: false });
  assert.doesNotMatch(readFileSync(join(whole, 'report.md'), 'utf8'), /max steps/);
  // one run cut, one not: the cap is no fixed setting, however many caps there are
  const half = writeSimpleSweep(root, 'half', [64, 128].map((b, i) => ({ 'optim.batch_size': b, 'train.max_steps': [null, 40][i] })));
  await writeReport(half, { plots: false });
  const hmd = readFileSync(join(half, 'report.md'), 'utf8');
  assert.doesNotMatch(hmd, /^Fixed: .*max steps/m);
  assert.match(hmd, /^Cut short: 1 run at 40 steps; 1 run not \(`train\.max_steps`/m);
});

test("a --set that changed what the paper's sweep holds fixed (its batch, in an lr sweep): no paper row, and why", async () => {
  const root = tmp();
  const lrs = [0.5e-4, 1.0e-4, 1.5e-4];
  const runs = lrs.map((v) => ({ 'optim.base_lr': v, 'model.patch_proj': 'learned', 'optim.batch_size': 64 }));
  const file = (sets: string[]) => ({ name: 'lr', sets, runs: lrs.map((v) => ({ paper: { 'optim.batch_size': 4096, 'optim.base_lr': v, 'optim.weight_decay': 0.1, 'optim.name': 'adamw', seed: 0 } })) });
  const pinned = writeSimpleSweep(root, 'lr-batch64', runs, file(['train.max_steps=20', 'optim.batch_size=64']));
  await writeReport(pinned, { plots: false });
  const md = readFileSync(join(pinned, 'report.md'), 'utf8');
  assert.doesNotMatch(md, /paper: linear top-1|This is the paper's/);
  assert.match(md, /^Not compared with the paper's Fig\. 2 sweep: `--set optim\.batch_size=64` changed what that sweep holds at the paper's value, so these runs are not it at this scale \(no paper row\)\.$/m);
  // a --set of a key the sweep file does not hold (a step cap, betas, in a section or not), or of a held key at
  // the value the plan gives it (the paper's wd; the batch the preset scales 4096 to): the paper row stays
  const scaled = { ...file([]), scale: { batch: 1 / 16, epochs: 0.02, warmup: 0.005, lr: 160 } };
  for (const sets of [['train.max_steps=20'], ['moco={temperature: 0.2}'], ['optim={betas: [0.9, 0.95]}'], ['optim.weight_decay=0.1'], ['optim.batch_size=256']]) {
    const other = writeSimpleSweep(root, `lr-${sets[0]!.replace(/\W/g, '')}`, runs, { ...scaled, sets });
    await writeReport(other, { plots: false });
    assert.match(readFileSync(join(other, 'report.md'), 'utf8'), /This is the paper's Fig\. 2 sweep/, sets[0]);
  }
  // a section set that covers one
  const section = writeSimpleSweep(root, 'lr-section', runs, file(['optim={batch_size: 64}']));
  await writeReport(section, { plots: false });
  assert.match(readFileSync(join(section, 'report.md'), 'utf8'), /^Not compared with the paper's Fig\. 2 sweep: `--set optim=\{batch_size: 64\}`/m);
});

test("the header gives the warmup the runs share, as a share of training beside the paper's 40%", async () => {
  const root = tmp();
  const short = writeSimpleSweep(root, 'short', [64, 128].map((b) => ({ 'optim.batch_size': b, 'optim.epochs': 2, 'optim.warmup_epochs': 0.2 })));
  await writeReport(short, { plots: false });
  assert.match(readFileSync(join(short, 'report.md'), 'utf8'), /^Fixed: .*epochs 2, warmup 0\.2 epochs \(10% of training, the paper's 40%\), /m);
  const paper = writeSimpleSweep(root, 'paper', [64, 128].map((b) => ({ 'optim.batch_size': b, 'optim.epochs': 100, 'optim.warmup_epochs': 40 })));
  await writeReport(paper, { plots: false });
  assert.match(readFileSync(join(paper, 'report.md'), 'utf8'), /^Fixed: .*epochs 100, warmup 40 epochs \(40% of training, as the paper\), /m);
  // a share that is no whole percent keeps three digits: 1 of 3 epochs is 33.3%
  const third = writeSimpleSweep(root, 'third', [64, 128].map((b) => ({ 'optim.batch_size': b, 'optim.epochs': 3, 'optim.warmup_epochs': 1 })));
  await writeReport(third, { plots: false });
  assert.match(readFileSync(join(third, 'report.md'), 'utf8'), /^Fixed: .*epochs 3, warmup 1 epochs \(33\.3% of training, the paper's 40%\), /m);
  // a swept key is never "fixed", even where the runs there so far share it (one run of a planned scan)
  const one = writeSimpleSweep(root, 'one', [{ 'optim.warmup_epochs': 0.8, 'optim.epochs': 2 }], { name: 'one', parameters: { 'optim.warmup_epochs': { values: [0.8, 0.2] } } });
  await writeReport(one, { plots: false });
  assert.doesNotMatch(readFileSync(join(one, 'report.md'), 'utf8'), /^Fixed: .*warmup/m);
  const oneLr = writeSimpleSweep(root, 'one-lr', [{ 'optim.base_lr': 1e-3 }], { name: 'one-lr', parameters: { 'optim.base_lr': { values: [1e-3, 2e-3] } } });
  await writeReport(oneLr, { plots: false });
  assert.doesNotMatch(readFileSync(join(oneLr, 'report.md'), 'utf8'), /^Fixed: .*base lr/m);
  // warmups that differ between runs: not fixed
  const mixed = writeSimpleSweep(root, 'mixed', [64, 128].map((b, i) => ({ 'optim.batch_size': b, 'optim.warmup_epochs': [0.2, 0.4][i] })));
  await writeReport(mixed, { plots: false });
  assert.doesNotMatch(readFileSync(join(mixed, 'report.md'), 'utf8'), /^Fixed: .*warmup/m);
});

test('a sweep of two batch sizes without its sweep.yaml, which two scale factors map alike: the paper row is left empty, saying why', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'two', [128, 256].map((b) => ({ 'optim.batch_size': b })));
  rmSync(join(dir, 'sweep.yaml'), { force: true });
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /This is the paper's Fig\. 1 sweep/);
  assert.ok(md.includes(" Which of the paper's settings these runs stand for is not recorded (the sweep's `sweep.yaml` names it) and cannot be told from the values, so the paper row is left empty.\n"), md);
  assert.match(md, /\| \*paper: linear top-1 \(%\), Fig\. 1, ViT-B\/16 ImageNet\* \| - \| - \|/);
  // with a sweep.yaml that records no paper values for them: no column matched, said so
  const recorded = writeSimpleSweep(root, 'two-recorded', [128, 256].map((b) => ({ 'optim.batch_size': b })), { name: 'two-recorded', runs: [] });
  await writeReport(recorded, { plots: false });
  const md2 = readFileSync(join(recorded, 'report.md'), 'utf8');
  assert.ok(md2.includes(' No column is matched to one of the paper\'s settings, so the paper row is left empty.\n'), md2);
  assert.doesNotMatch(md2, /is not recorded/);
});

test('mapping to the paper grid: exact values, a common factor, rank order, or nothing', () => {
  const m = (a: number[], b: number[]) => (mapToPaper(a, b) ? Object.fromEntries(mapToPaper(a, b)!) : null);
  assert.deepEqual(m([1024, 4096], [1024, 2048, 4096, 6144]), { 1024: 1024, 4096: 4096 });
  assert.deepEqual(m([64, 128, 256, 384], [1024, 2048, 4096, 6144]), { 64: 1024, 128: 2048, 256: 4096, 384: 6144 });
  assert.deepEqual(m([100, 200, 300], [5e-4, 6e-4, 8e-4]), { 100: 5e-4, 200: 6e-4, 300: 8e-4 });
  assert.equal(m([7], [1, 2, 3]), null);
  // two factors fit as well (x8: 1024, 2048; x16: 2048, 4096): no guess; the exact values win such a tie
  assert.equal(m([128, 256], [1024, 2048, 4096, 6144]), null);
  assert.deepEqual(m([1024, 2048, 5000], [1024, 2048, 4096, 6144]), { 1024: 1024, 2048: 2048 });
  // a value of float noise (1.5e-3 / 10 = 1.5000000000000001e-4) is the paper's value it stands for
  assert.deepEqual(m([1e-4, 1.5e-3 / 10], [0.5e-4, 1e-4, 1.5e-4]), { 1e-4: 1e-4, [String(1.5e-3 / 10)]: 1.5e-4 });
});

test("mapping to the paper grid: rank order never moves a run value that is one of the paper's to another paper setting", async () => {
  const m = (a: number[], b: number[]) => (mapToPaper(a, b) ? Object.fromEntries(mapToPaper(a, b)!) : null);
  // the paper's 1.0e-4 and 1.5e-4 and an lr of our own: the two are themselves, the third has no paper value
  assert.deepEqual(m([1e-4, 1.5e-4, 3e-4], [0.5e-4, 1e-4, 1.5e-4]), { 1e-4: 1e-4, 1.5e-4: 1.5e-4 });
  // one exact value alone is not taken as the grid's alignment (as with fewer values than the paper's): nothing
  assert.equal(m([1e-4, 7e-4, 9e-4], [0.5e-4, 1e-4, 1.5e-4]), null);
  assert.equal(m([1e-4, 7e-4], [0.5e-4, 1e-4, 1.5e-4]), null);
  // rank order that keeps the exact ones still stands (LAMB's 5e-4, 6e-4, and 1e-3 for its 8e-4)
  assert.deepEqual(m([5e-4, 6e-4, 1e-3], [5e-4, 6e-4, 8e-4]), { 5e-4: 5e-4, 6e-4: 6e-4, 1e-3: 8e-4 });
  const dir = writeSimpleSweep(tmp(), 'lr', [1e-4, 1.5e-4, 3e-4].map((lr) => ({ 'optim.base_lr': lr })));
  await writeReport(dir, { plots: false });
  const { header, rows } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.deepEqual(header, ['1.0e-4', '1.5e-4', '3.0e-4']);
  // Fig. 2: 72.2 at 1.0e-4, 71.7 at 1.5e-4
  assert.deepEqual(paperRow(rows), ['72.2', '71.7', '-']);
});

test('a finished sweep reports in well under 2 s of CPU time (plots and PNGs included)', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'timed', [0, 1]);
  await writeReport(dir); // warm: module loading and first-render compilation are not the sweep's cost
  const c0 = process.cpuUsage();
  const r = await writeReport(dir);
  const c = process.cpuUsage(c0);
  const ms = (c.user + c.system) / 1000;
  assert.ok(ms < 2000, `report took ${ms.toFixed(0)} ms of CPU (wall ${r.seconds.toFixed(2)} s)`);
});

test('swept values print as set: an lr of 1.28e-2 is not rounded to 1.3e-2, float noise of a scaled lr is', () => {
  assert.equal(fmtSci(0.0128), '1.28e-2');
  assert.equal(fmtSci(0.008), '8.0e-3');
  assert.equal(fmtSci(1.5e-4 * 160), '2.4e-2'); // 0.023999999999999997
  assert.equal(fmtSci(1.25e-5), '1.25e-5');
  assert.equal(fmtSci(0.012345), '1.235e-2');
  assert.equal(formatValue('optim.base_lr', 0.0128), '1.28e-2');
  assert.equal(formatValue('optim.weight_decay', 0.1), '1.0e-1');
  assert.equal(formatValue('optim.batch_size', 256), '256');
  // other keys: exponent form below 0.01 in size only
  assert.equal(formatValue('moco.temperature', 0.01), '0.01');
  assert.equal(formatValue('moco.temperature', 0.005), '5.0e-3');
  assert.equal(formatValue('train.shift', -5), '-5');
});

test('a table figure: whole numbers as they are, others to their digits; a value that rounds to zero is 0, never -0', () => {
  assert.equal(fmtNum(197, 1), '197');
  assert.equal(fmtNum(26.66, 1), '26.7');
  assert.equal(fmtNum(-0.04, 1), '0.0'); // a mean lead of -0.04 steps
  assert.equal(fmtNum(-0.004, 2), '0.00');
  assert.equal(fmtNum(-0.06, 1), '-0.1');
  assert.equal(fmtNum(-0, 1), '0');
  // a figure of two digits (a correlation) keeps them when it is whole: 1.00, 0.00
  assert.equal(fmtNum(1, 2), '1.00');
  assert.equal(fmtNum(0, 2), '0.00');
  // wall time: seconds below 120 s (whole from 10 s), minutes from there
  assert.deepEqual([formatSeconds(9.94), formatSeconds(10), formatSeconds(119), formatSeconds(120)], ['9.9 s', '10 s', '119 s', '2.0 min']);
});

test('the CSV files write a number to 12 significant digits: float noise goes, digits that mean something stay', async () => {
  assert.equal(csvValue(71.96 - 70.28), 1.68); // 1.6799999999999926
  assert.equal(csvValue(0.1 + 0.2), 0.3);
  assert.equal(csvValue(0.21747963783691837), 0.217479637837);
  assert.equal(csvValue(1530.088), 1530.088);
  assert.equal(csvValue(1.25e-5), 1.25e-5);
  assert.equal(csvValue(null), '');
  assert.equal(csvValue(undefined), '');
  assert.equal(csvValue('block3'), 'block3');
  // a sweep whose seeds give a mean and a dip with float noise: the files hold the short numbers
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size', [0, 1]);
  await writeReport(dir);
  for (const f of ['report.csv', 'runs.csv']) {
    const long = readFileSync(join(dir, f), 'utf8').match(/\d\.\d{13,}/g);
    assert.equal(long, null, `${f}: ${long?.join(' ')}`);
  }
});

test('a run without a kNN curve (the monitor off: the final kNN alone) has no dips to count: "-", not 0, and it is left out of the dips cell', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size', [0, 1, 2]);
  const run = join(dir, 'bs256-lr1.0e-4-adamw-learned-s2-abc022');
  const p = join(run, 'metrics.jsonl');
  const rows = readFileSync(p, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  // as such a run writes them: the last step's row keeps its kNN, no other row has one
  writeFileSync(p, `${rows.map(({ knn_top1: a, knn_top5: b, ...r }, i) => JSON.stringify(i === rows.length - 1 ? { ...r, knn_top1: a, knn_top5: b } : r)).join('\n')}\n`);
  assert.ok(rows.at(-1).knn_top1 !== undefined);
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const { rows: t } = mdTable(md);
  // batch 256: the two runs with a curve dip twice each; the third is not counted as 0, and the cell says so
  assert.equal(t.get(`kNN dips (≥ ${DEFAULT_INSTABILITY.dipPoints} pts)`)![2], '2 ± 0 (2 of 3 runs)');
  assert.equal(t.get(`kNN dips (≥ ${DEFAULT_INSTABILITY.dipPoints} pts)`)![1], '0 ± 0', 'a cell of every run says nothing more');
  const s = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
  assert.equal(s.dips, null);
  assert.equal(s.max_dip, null);
  assert.match(md, /`bs256-lr1\.0e-4-adamw-learned-s2-abc022`\)\n  - dips: - \(no kNN curve\)/);
  const runsCsv = readFileSync(join(dir, 'runs.csv'), 'utf8');
  assert.ok(runsCsv.includes('bs256-lr1.0e-4-adamw-learned-s2-abc022'));
  rmSync(root, { recursive: true });
});

test('a run folder copied beside itself (one column, one seed, twice) is named: the table would count it as a second seed', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size', [0, 1]);
  const id = 'bs128-lr1.0e-4-adamw-learned-s1-abc011';
  cpSync(join(dir, id), join(dir, `${id}-copy`), { recursive: true });
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, new RegExp(`\\*\\*Runs of the same seed in one column:\\*\\* batch 128, seed 1: \`${id}\`, \`${id}-copy\`\\. The table counts each`));
  // one line for the copy alone: no other column or seed is named
  assert.equal(md.match(/seed \d+: `/g)?.length, 1);
  rmSync(join(dir, `${id}-copy`), { recursive: true });
  await writeReport(dir, { plots: false });
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /Runs of the same seed/);
  rmSync(root, { recursive: true });
});

test('a value holding a line break or a | stays on its table row', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'paths', [{ 'data.name': 'imagefolder', 'data.path': 'a|b\nc' }, { 'data.name': 'imagefolder', 'data.path': 'd' }, { 'data.name': 'imagefolder', 'data.path': 'e\r\nf\rg' }]);
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const header = md.split('\n').find((l) => l.startsWith('| ') && l.includes('a\\|b'));
  assert.ok(header, md);
  assert.match(header, /a\\\|b c/);
  // Windows and old Mac line breaks too
  assert.ok(header.includes(' | e f g |'), header);
  assert.ok(!header.includes('\r'), header);
  // and in the instability detail's list: each run's item on one line, its label and its folder together
  const items = md.split('\n').filter((l) => l.startsWith('- **'));
  assert.deepEqual(items.map((l) => l.replace(/-def00\d/, '')), ['- **a|b c** (`imagefolder-abc-s0`)', '- **d** (`imagefolder-d-s0`)', '- **e f g** (`imagefolder-efg-s0`)']);
  assert.ok(!md.includes('\r'));
  rmSync(root, { recursive: true });
});

test('runs a column pools as seeds that differ in more than the seed are named, with their values', async () => {
  const root = tmp();
  const dir = join(root, 'mixed');
  // seed 2 trained at 10x the lr: base lr follows the seed, so it is no column, and the cells pool it
  for (const seed of [0, 1, 2]) {
    for (const b of [64, 128]) {
      writeFakeRun(dir, { id: `bs${b}-s${seed}`, config: { seed, 'optim.batch_size': b, 'optim.base_lr': seed === 2 ? 1e-3 : 1e-4 } });
    }
  }
  await writeReport(dir, { plots: false });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\*\*Pooled as seeds, though they differ in more than the seed:\*\* `optim\.base_lr` \(1\.0e-4, 1\.0e-3\)\. Within a column/);
  // two seeds a column, each at its own lr: both values named
  const two = join(root, 'two');
  for (const seed of [0, 1]) writeFakeRun(two, { id: `s${seed}`, config: { seed, 'optim.base_lr': [1e-4, 3e-4][seed] } });
  await writeReport(two, { plots: false });
  assert.match(readFileSync(join(two, 'report.md'), 'utf8'), /\*\*Pooled as seeds, though they differ in more than the seed:\*\* `optim\.base_lr` \(1\.0e-4, 3\.0e-4\)\. /);
  // keys that do not change what a run computes (where it ran, how often it logged), and a key an older
  // config.yaml lacks where the others hold its old value, are no difference
  const agents = join(root, 'agents');
  for (const seed of [0, 1]) {
    writeFakeRun(agents, {
      id: `s${seed}`,
      config: { seed, 'train.backend': seed ? 'webgpu' : 'native', 'train.log_every': seed + 1, ...(seed ? { 'eval.linear.train_views': 'augmented' } : {}) },
    });
  }
  await writeReport(agents, { plots: false });
  assert.doesNotMatch(readFileSync(join(agents, 'report.md'), 'utf8'), /Pooled as seeds/);
  // a sweep whose columns differ only in the seed says nothing of it
  const plain = writeBatchSweep(root, 'batch-size', [0, 1]);
  await writeReport(plain, { plots: false });
  assert.doesNotMatch(readFileSync(join(plain, 'report.md'), 'utf8'), /Pooled as seeds/);
  rmSync(root, { recursive: true });
});

test("a summary.json of another step than the metrics' end (a resume killed before it wrote its own, a rewind) is not shown as the run's figures", async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  // trained to step 200, killed; its summary is the one written when it was stopped at step 100 before
  const stale = { status: 'interrupted', steps: 100, knn_top1: 11.1, knn_top5: 41.1, linear_top1: 22.2, wall_s: 7, images_per_s: 1 };
  writeFakeRun(dir, { id: 'resumed-killed', config: { 'moco.temperature': 0.5 }, status: 'interrupted', steps: 200, divergedAt: null, summary: stale });
  // rewound to step 50 (metrics cut there), killed before its summary: the old one speaks of step 200
  const cut = writeFakeRun(dir, { id: 'rewound', config: { 'moco.temperature': 0.7 }, status: 'interrupted', steps: 200, divergedAt: null, summary: { ...stale, steps: 200 } });
  const rows = readFileSync(join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n');
  writeFileSync(join(cut, 'metrics.jsonl'), `${rows.filter((l) => JSON.parse(l).step <= 50).join('\n')}\n`);
  await writeReport(dir, { plots: false, format: 'both' });
  const { rows: table } = mdTable(readFileSync(join(dir, 'report.md'), 'utf8'));
  const knn = table.get('kNN top-1 (%)')!;
  assert.match(knn[2]!, /^60\.0 \(so far\)$/, 'the metrics\' last kNN (the curve ends at 60), not the summary\'s 11.1');
  assert.match(knn[3]!, /^28\.0 \(so far\)$/, 'the rewound run\'s last kNN, at step 40 of its cut metrics (20 + 40 * 40/200)');
  assert.ok(![...table.values()].flat().some((c) => /22\.2|11\.1/.test(c)), 'no figure of the stale summaries');
  const csv = readFileSync(join(dir, 'runs.csv'), 'utf8');
  assert.ok(!/22\.2|11\.1/.test(csv), csv);
  // an unfinished run's older summary.json is what a resume or a rewind leaves: nothing to say of it
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /summary\.json (is|are) not of the step/);
  // the same summary of a finished run is said
  writeFileSync(join(dir, 'resumed-killed', 'status.json'), JSON.stringify({ status: 'completed', step: 200, total_steps: 200 }));
  await writeReport(dir, { plots: false, format: 'md' });
  assert.match(
    readFileSync(join(dir, 'report.md'), 'utf8'),
    /\n\*\*1 finished run's summary\.json is not of the step its metrics\.jsonl ends at\*\* \(a copy of another part of the run, a damaged file\): `resumed-killed` \(summary\.json of step 100, metrics to step 200\)\. /,
  );
});

test("a finished run whose metrics.jsonl stops early (a copy cut short) or is gone: summary.json's figures, and the report says where its rows end", async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1].map((t) => ({ 'moco.temperature': t })));
  const done = { linear_top1: 77.96, knn_top1: 68.16 };
  const cut = writeFakeRun(dir, { id: 'cut', config: { 'moco.temperature': 0.5 }, steps: 200, summary: done });
  const rows = readFileSync(join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n');
  writeFileSync(join(cut, 'metrics.jsonl'), `${rows.filter((l) => JSON.parse(l).step <= 100).join('\n')}\n`);
  const gone = writeFakeRun(dir, { id: 'gone', config: { 'moco.temperature': 0.7 }, steps: 200, summary: done });
  rmSync(join(gone, 'metrics.jsonl'));
  await writeReport(dir, { plots: false, format: 'both' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const { rows: table } = mdTable(md);
  for (const col of [1, 2]) {
    assert.equal(table.get('kNN top-1 (%)')![col], '68.2', 'the final kNN, not the last of the rows left');
    assert.equal(table.get('linear top-1 (%)')![col], '78.0');
  }
  assert.ok(!/no linear probe yet/.test(md), 'the probe is there');
  assert.match(md, /\*\*2 finished runs' metrics\.jsonl stop before their last step\*\* \(a copy cut short, a damaged file\): `cut` \(rows to step 100 of 200\), `gone` \(no rows of 200\)\./);
  assert.match(md, /\(`gone`\)\n {2}- dips: - \(no kNN curve\)\n {2}- spikes: - \(no gradient rows\)\n/);
  assert.match(md, /\(`cut`\)\n {2}- dips: [^\n]*\n {2}- spikes: (none|patch)/);
});

test("a finished run's metrics.jsonl one train.log_every or more short of its summary.json's step is said to stop early; less than that is not", async () => {
  const dir = join(tmp(), 'temperature');
  const cutAt = (run: string, last: number) => {
    const rows = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    writeFileSync(join(run, 'metrics.jsonl'), `${rows.filter((l) => JSON.parse(l).step <= last).join('\n')}\n`);
  };
  // logged every 5 steps, rows to step 195 of 200: one log_every short
  cutAt(writeFakeRun(dir, { id: 'short', config: { 'moco.temperature': 0.1 }, steps: 200, logEvery: 5 }), 195);
  // the same rows at a log_every of 6: 5 steps short, under one log_every
  cutAt(writeFakeRun(dir, { id: 'within', config: { 'moco.temperature': 0.2, 'train.log_every': 6 }, steps: 200, logEvery: 5 }), 195);
  await writeReport(dir, { plots: false, format: 'md' });
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\n\*\*1 finished run's metrics\.jsonl stops before its last step\*\* \(a copy cut short, a damaged file\): `short` \(rows to step 195 of 200\)\. /);
});

test('report: a run whose config.yaml holds a seed train would refuse is one line naming it, nothing written', async () => {
  const dir = writeSimpleSweep(tmp(), 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const run = writeFakeRun(dir, { id: 'edited', config: { 'moco.temperature': 0.5 } });
  const path = join(run, 'config.yaml');
  writeFileSync(path, readFileSync(path, 'utf8').replace(/^seed: .*$/m, 'seed: abc'));
  await assert.rejects(writeReport(dir, { plots: false }), (e: Error) => e.name === 'ReportError' && e.message === `${path}: seed: expected an integer >= 0, got "abc"`);
  assert.ok(!existsSync(join(dir, 'report.md')));
  // a negative seed, as train refuses it
  writeFileSync(path, readFileSync(path, 'utf8').replace(/^seed: .*$/m, 'seed: -1'));
  await assert.rejects(writeReport(dir, { plots: false }), (e: Error) => e.name === 'ReportError' && e.message === `${path}: seed: expected an integer >= 0, got -1`);
  assert.ok(!existsSync(join(dir, 'report.md')));
  // a fraction: no seed train runs (pairing by seed would pair it with nothing)
  writeFileSync(path, readFileSync(path, 'utf8').replace(/^seed: .*$/m, 'seed: 1.5'));
  await assert.rejects(writeReport(dir, { plots: false }), (e: Error) => e.name === 'ReportError' && e.message === `${path}: seed: expected an integer >= 0, got 1.5`);
  assert.ok(!existsSync(join(dir, 'report.md')));
});

test("report: a run whose process holds its lock keeps its summary.json as that process wrote it (the report's rewrite could land over the probe's result)", async () => {
  const dir = join(tmp(), 'held');
  writeFakeRun(dir, { id: 'a', config: { 'optim.batch_size': 64 }, knnDrops: { 120: 10 } });
  const b = writeFakeRun(dir, { id: 'b', config: { 'optim.batch_size': 128 }, knnDrops: { 120: 10 } });
  const before = readFileSync(join(b, 'summary.json'), 'utf8');
  assert.equal(acquireLock(b, 'held'), null);
  try {
    await writeReport(dir, { plots: false });
    assert.equal(readFileSync(join(b, 'summary.json'), 'utf8'), before, 'the held run: untouched');
    assert.equal(JSON.parse(readFileSync(join(dir, 'a', 'summary.json'), 'utf8')).dips, 1, 'the other run: its instability figures');
  } finally {
    releaseLock(b);
  }
  await writeReport(dir, { plots: false });
  assert.equal(JSON.parse(readFileSync(join(b, 'summary.json'), 'utf8')).dips, 1, 'once released, filled in');
});

test("the spike order's sentence gives its p as the report's other p-values do: never rounded up to a threshold", () => {
  // 7 of 7 runs lean after: p = 0.5^7 = 0.0078; 15 of 19: p = 0.0096, which 3 decimals would print as 0.010
  const runs = (after: number, before: number) => [
    ...Array.from({ length: after }, () => ({ order: { window: 40, spikes: 1, after: 1, before: 0, together: 0 } })),
    ...Array.from({ length: before }, () => ({ order: { window: 40, spikes: 1, after: 0, before: 1, together: 0 } })),
  ] as unknown as RunInstability[];
  assert.match(spikeOrderMarkdown(runs(7, 0))!, /\(one-sided sign test: p = 0\.008; the paper's order leans after\)\.$/);
  assert.match(spikeOrderMarkdown(runs(15, 4))!, /\(one-sided sign test: p = 0\.0096; /);
  assert.match(spikeOrderMarkdown(runs(2, 0))!, /\(one-sided sign test: p = 0\.25; /);
});

test('report: the command offered for a run a killed train --force was moving aside is quoted for the shell', () => {
  const dir = join(tmp(), "my sweep's runs");
  const run = join(dir, 'r0');
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, '.aside.json'), '{"to": "r0.old-20261205T000000"}');
  const quoted = `'${run.replace(/'/g, `'\\''`)}'`;
  assert.throws(() => readSweep(dir), (e: Error) => e.message.endsWith(`\`moco3 train --out ${quoted} --resume\` (or the sweep) puts them back`) && e.message.startsWith(`${run}: `));
});
