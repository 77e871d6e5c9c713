import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeReport } from '../../src/report/index.ts';
import { baselinesCommandFor, baselinesMismatch } from '../../src/report/baselines.ts';
import { knnSettingsOf, readBaselines } from '../../src/runfolder/baselines.ts';
import { flatten, type RunRecord } from '../../src/report/results.ts';
import { loadSweep } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { missingBaselineSeeds, writeSweepBaselines } from '../../src/sweep/baselines.ts';
import { tmp, writeBatchSweep, writeFakeRun } from './fixtures.ts';

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
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', train_size: 1, test_size: 1, seeds: [seed(0, 50, 30, 80), seed(1, 52, 32, 82)] }));
  await writeReport(dir, { plots: false });
  const md = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  // 50, 52 -> 51.0 ± 1.4; 30, 32 -> 31.0 ± 1.4; 80, 82 -> 81.0 ± 1.4
  assert.match(md, /\| untrained \(random init\) \| 51\.0 ± 1\.4 \| 31\.0 ± 1\.4 \|/);
  assert.match(md, /linear classifier on the normalised pixels \(2352 inputs\) \| - \| 81\.0 ± 1\.4 \|/);
  assert.match(md, /\*\*Pretraining did not beat the linear classifier on pixels \(82\.0, its best seed\)\*\*: the best run's linear top-1 is 41\.0/);
  assert.doesNotMatch(md, /untrained encoder \(/);

  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', seeds: [seed(0, 50, 30, 35)] }));
  await writeReport(dir, { plots: false });
  assert.match(section(readFileSync(join(dir, 'report.md'), 'utf8')), /Pretraining beat both baselines: the best run's linear top-1 is 41\.0, the untrained encoder's 30\.0, pixels' 35\.0/);
});

test('report: baselines of another model or data are named as such, and no verdict is drawn from them', async () => {
  const dir = writeBatchSweep(tmp(), 'batch-size', [0]);
  const put = (b: Record<string, unknown>) => writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ train_size: 1, test_size: 1, seeds: [seed(0, 50, 30, 35)], ...b }));
  const md = async () => {
    await writeReport(dir, { plots: false });
    return section(readFileSync(join(dir, 'report.md'), 'utf8'));
  };
  // the fixture's runs: synthetic data at 16 px, vit-smoke at depth 2
  put({ dataset: 'fashion-mnist', image_size: 28, arch: 'vit-smoke' });
  let s = await md();
  assert.match(s, /\*\*These baselines were computed for another model or data than this sweep's runs\*\* \(data\.name synthetic \(baselines: fashion-mnist\); data\.image_size 16 \(baselines: 28\)\)/);
  assert.doesNotMatch(s, /Pretraining (did not )?beat/);
  // an older file's label is read for its keys: the depth differs
  put({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke (dim 32, depth 12, patch 4)' });
  assert.match(await md(), /another model or data than this sweep's runs\*\* \(model\.depth 2 \(baselines: 12\)\)/);
  // a newer file's model keys
  put({ dataset: 'synthetic', image_size: 16, arch: 'x', model: { arch: 'vit-smoke', depth: 2 } });
  s = await md();
  assert.doesNotMatch(s, /another model/);
  assert.match(s, /Pretraining beat both baselines: the best run's linear top-1 is 40\.0, the untrained encoder's 30\.0, pixels' 35\.0\./);
  put({ dataset: 'synthetic', image_size: 16, arch: 'x', model: { arch: 'vit-tiny', depth: 2 } });
  s = await md();
  assert.match(s, /\(model\.arch vit-smoke \(baselines: vit-tiny\)\)/);
  // the command that makes this sweep's, from its sweep.yaml: the fixture's names the sweep and its preset
  assert.ok(s.includes("`moco3 baselines batch-size --preset smoke --seeds 0` (with the sweep's `--results`) computes them for this sweep"), s);
  // its optimizers, seeds and --set included
  writeFileSync(join(dir, 'sweep.yaml'), 'name: lr\nid: lr-lamb\nfile: sweeps/lr.yaml\npreset: smoke\noptimizers: [lamb]\nseeds: [0, 1, 2]\nsets: ["moco.temperature=0.3", "data.name=cifar10", "data.path=/my data"]\n');
  assert.ok((await md()).includes("`moco3 baselines sweeps/lr.yaml --preset smoke --optimizer lamb --seeds 0-2 --set moco.temperature=0.3 --set data.name=cifar10 --set 'data.path=/my data'` (with the sweep's `--results`) computes them"));
});

test("report: the baselines command it suggests is the sweep's own (baselinesCommandFor)", () => {
  assert.equal(baselinesCommandFor(null), 'moco3 baselines <sweep>');
  const spec = { name: 'batch-size', id: 'batch-size', file: 'sweeps/batch-size.yaml', preset: 'smoke', optimizers: ['adamw'], seeds: [0], sets: [] as string[] };
  assert.equal(baselinesCommandFor(spec), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0');
  // seeds as a flag takes them; the same whatever the working folder (a report reads the same anywhere)
  assert.equal(baselinesCommandFor({ ...spec, seeds: [3, 4, 5, 6] }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 3-6');
  assert.equal(baselinesCommandFor({ ...spec, seeds: [0, 2, 5] }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0,2,5');
  // --data: the runs' dataset where it is not the preset's, with its path
  const run = (data: object) => [{ id: 'x', config: { data } }];
  assert.equal(baselinesCommandFor({ ...spec, runs: run({ name: 'synthetic', path: null }) }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0');
  assert.equal(baselinesCommandFor({ ...spec, runs: run({ name: 'cifar10', path: null }) }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0 --data cifar10');
  assert.equal(baselinesCommandFor({ ...spec, preset: 'cpu', runs: run({ name: 'fashion-mnist', path: '/d/fm' }) }), 'moco3 baselines sweeps/batch-size.yaml --preset cpu --seeds 0 --data fashion-mnist:/d/fm');
  // another data.* --set is no dataset: --data stays
  assert.equal(baselinesCommandFor({ ...spec, sets: ['data.image_size=28'], runs: run({ name: 'cifar10', path: null }) }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0 --data cifar10 --set data.image_size=28');
  // ... unless a --set gives the data
  assert.equal(baselinesCommandFor({ ...spec, sets: ['data.name=cifar10'], runs: run({ name: 'cifar10', path: null }) }), 'moco3 baselines sweeps/batch-size.yaml --preset smoke --seeds 0 --set data.name=cifar10');
  // a sweep file by an absolute path (another machine's) is a place to fill in
  assert.equal(baselinesCommandFor({ ...spec, file: '/home/me/scan.yaml' }), 'moco3 baselines <sweep file> --preset smoke --seeds 0');
  // no preset: none given (the sweep file's own, or the defaults); a value with a space or a quote quoted for the shell
  assert.equal(baselinesCommandFor({ name: 'my', id: 'my', file: 'my.yaml', preset: null, sets: ["a.b=it's"] }), "moco3 baselines my.yaml --set 'a.b=it'\\''s'");
});

test('report without baselines says how to make them; a damaged baselines.json is one line naming it', async () => {
  const dir = writeBatchSweep(tmp());
  await writeReport(dir, { plots: false });
  assert.match(section(readFileSync(join(dir, 'report.md'), 'utf8')), /No baselines yet: `moco3 baselines batch-size --preset smoke --seeds 0` \(with the sweep's `--results`\)/);
  writeFileSync(join(dir, 'baselines.json'), '{"dataset": "x", "seeds": [');
  assert.throws(() => readBaselines(dir), (e: Error) => e.name === 'RunFolderError' && e.message.includes('baselines.json: not JSON') && !e.message.includes('\n'));
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'x', image_size: 8, arch: 'a', seeds: [{ seed: 0 }] }));
  assert.throws(() => readBaselines(dir), /seeds\[0\]: expected seed, random_init/);
});

test('baselines.json names the model it was computed for, and the report matches it against the runs', async () => {
  const tiny = ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'data.test_size=32', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'eval.linear.epochs=1'];
  const plan = planSweep(loadSweep('batch-size'), { preset: 'smoke', sets: tiny, seeds: [0], results: tmp(), overrides: [{ train: { backend: 'cpu' } }] });
  await writeSweepBaselines(plan);
  const b = readBaselines(plan.dir)!;
  const m = plan.runs[0]!.config.model;
  assert.deepEqual(b.model, { arch: 'vit-test', dim: m.dim, depth: m.depth, patch_size: m.patch_size, heads: m.heads, mlp_ratio: m.mlp_ratio });
  const record = (config: unknown) => ({ flat: flatten(config) }) as RunRecord;
  assert.deepEqual(baselinesMismatch(b, plan.runs.map((r) => record(r.config))), []);
  const deeper = { ...plan.runs[0]!.config, model: { ...m, depth: m.depth + 1 } };
  assert.deepEqual(baselinesMismatch(b, [record(deeper)]), [`model.depth ${m.depth + 1} (baselines: ${m.depth})`]);
  // the splits' sizes: the kNN bank and the probe come from them. A run's null size (the whole split) is what
  // its probe recorded having; a run without a probe's record is not judged on it
  assert.deepEqual([b.train_size, b.test_size], [64, 32]);
  const sized = (train: number | null, test: number | null, summary: unknown = null) =>
    ({ flat: flatten({ ...plan.runs[0]!.config, data: { ...plan.runs[0]!.config.data, train_size: train, test_size: test } }), summary }) as RunRecord;
  assert.deepEqual(baselinesMismatch(b, [sized(48, 32)]), ['data.train_size 48 (baselines: 64)']);
  assert.deepEqual(baselinesMismatch(b, [sized(null, null, { linear: { train_size: 64, test_size: 32 } })]), []);
  assert.deepEqual(baselinesMismatch(b, [sized(null, null, { linear: { train_size: 64, test_size: 100 } }), sized(64, 16)]), ['data.test_size 100, 16 (baselines: 32)']);
  assert.deepEqual(baselinesMismatch(b, [sized(null, null)]), []);
});

test('seeds added to a sweep get their baselines; the seeds already there keep theirs, a file of another model is redone', async () => {
  const tiny = ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'data.test_size=32', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', 'eval.linear.epochs=1'];
  const results = tmp();
  const plan = (seeds: number[], sets: string[] = []) =>
    planSweep(loadSweep('batch-size'), { preset: 'smoke', sets: [...tiny, ...sets], seeds, results, overrides: [{ train: { backend: 'cpu' } }] });
  const one = plan([0]);
  assert.deepEqual(missingBaselineSeeds(one), [0]);
  // each part of a seed said as it ends (a seed takes minutes on a CPU: a log is not silent meanwhile)
  const parts: string[] = [];
  await writeSweepBaselines(one, { onPart: (seed, text) => parts.push(`${seed}: ${text}`) });
  const seed0 = readBaselines(one.dir)!.seeds[0]!;
  assert.deepEqual(parts, [
    `0: part 1 of 3: untrained encoder kNN ${seed0.random_init.knn_top1.toFixed(2)}%; its linear probe next`,
    `0: part 2 of 3: untrained encoder linear ${seed0.random_init.linear_top1.toFixed(2)}%; linear on pixels next`,
  ]);
  // a file written before baselines.json named its model (the arch label alone), or with a seed written
  // twice, is of the same settings: kept, nothing set aside
  const path = join(one.dir, 'baselines.json');
  const current = JSON.parse(readFileSync(path, 'utf8'));
  const { model: _model, ...older } = current;
  for (const file of [older, { ...current, seeds: [seed0, seed0] }]) {
    writeFileSync(path, JSON.stringify(file));
    assert.deepEqual(missingBaselineSeeds(one), []);
    const set: string[] = [];
    await writeSweepBaselines(one, { missingOnly: true, onSetAside: (p) => set.push(p) });
    assert.deepEqual(set, []);
  }
  writeFileSync(path, JSON.stringify(current));
  const two = plan([0, 1]);
  assert.deepEqual(missingBaselineSeeds(two), [1]);
  const computed: number[] = [];
  await writeSweepBaselines(two, { missingOnly: true, onSeed: (s) => computed.push(s) });
  assert.deepEqual(computed, [1]);
  const b = readBaselines(two.dir)!;
  assert.deepEqual(b.seeds.map((f) => f.seed), [0, 1]);
  assert.deepEqual(b.seeds[0], seed0, 'seed 0 kept as it was');
  assert.deepEqual(missingBaselineSeeds(two), []);
  // 'moco3 baselines' for seed 1 alone recomputes it and keeps seed 0
  const recomputed: number[] = [];
  await writeSweepBaselines(plan([1]), { onSeed: (s) => recomputed.push(s) });
  assert.deepEqual(recomputed, [1]);
  const again = readBaselines(two.dir)!;
  assert.deepEqual(again.seeds.map((f) => f.seed), [0, 1]);
  assert.deepEqual(again.seeds[0], seed0);
  // recomputing both, stopped once seed 0 is done: seed 1's entry stays as it was (before: dropped)
  const seed1 = again.seeds[1]!;
  let done = 0;
  await assert.rejects(
    writeSweepBaselines(two, {
      onSeed: () => done++,
      check: () => {
        if (done === 1) throw new Error('stop');
      },
    }),
    /stop/,
  );
  const stopped = readBaselines(two.dir)!;
  assert.deepEqual(stopped.seeds.map((f) => f.seed), [0, 1]);
  assert.deepEqual(stopped.seeds[1], seed1);
  // the same folder with another encoder: the file is of another model, so every seed is missing
  const deeper = plan([0, 1], ['model.depth=3']);
  assert.equal(deeper.dir, two.dir);
  assert.deepEqual(missingBaselineSeeds(deeper), [0, 1]);
  // fewer images, or another probe: the same folder, other baselines
  assert.deepEqual(missingBaselineSeeds(plan([0, 1], ['data.train_size=48'])), [0, 1]);
  assert.deepEqual(missingBaselineSeeds(plan([0, 1], ['eval.linear.epochs=2'])), [0, 1]);
  // another kNN monitor (the untrained encoder's kNN is measured with it): other baselines
  assert.deepEqual(readBaselines(two.dir)!.seeds[0]!.knn, { k: 200, t: 0.1, bank_size: null, query_size: null });
  assert.deepEqual(missingBaselineSeeds(plan([0, 1], ['eval.knn.k=5'])), [0, 1]);
  assert.deepEqual(missingBaselineSeeds(plan([0, 1], ['eval.knn.bank_size=32'])), [0, 1]);
  const fewer: number[] = [];
  const asides: [string, number][] = [];
  const before = readFileSync(join(two.dir, 'baselines.json'), 'utf8');
  await writeSweepBaselines(plan([1], ['data.train_size=48']), { onSeed: (s) => fewer.push(s), onSetAside: (p, n) => asides.push([p, n]) });
  const replaced = readBaselines(two.dir)!;
  assert.deepEqual([fewer, replaced.seeds.map((f) => f.seed)], [[1], [1]], 'seed 0 of 64 images is not kept beside seed 1 of 48');
  // ... and not lost either: the file of 64 images is kept beside, whole, and said
  assert.equal(asides.length, 1);
  assert.equal(asides[0]![1], 2);
  // named as a run moved aside is: <name>.old-<YYYYMMDDTHHMMSS>
  assert.match(basename(asides[0]![0]), /^baselines\.old-\d{8}T\d{6}(-\d+)?\.json$/);
  assert.equal(readFileSync(asides[0]![0], 'utf8'), before);
  // a rewrite of the same settings keeps its entries and sets nothing aside
  await writeSweepBaselines(plan([1], ['data.train_size=48']), { onSetAside: (p, n) => asides.push([p, n]) });
  assert.equal(asides.length, 1);
  // an entry that does not record its kNN settings (an older file) counts as of the same monitor
  const p48 = (seeds: number[]) => plan(seeds, ['data.train_size=48']);
  const file48 = JSON.parse(readFileSync(join(two.dir, 'baselines.json'), 'utf8'));
  const entry1 = file48.seeds[0];
  const { knn: _knn, ...noKnn } = entry1;
  writeFileSync(join(two.dir, 'baselines.json'), JSON.stringify({ ...file48, seeds: [noKnn] }));
  assert.deepEqual(missingBaselineSeeds(p48([1])), []);
  // nothing to compute: the file is still written as returned, its seeds in order
  writeFileSync(join(two.dir, 'baselines.json'), JSON.stringify({ ...file48, seeds: [entry1, { ...entry1, seed: 0 }] }));
  const returned = await writeSweepBaselines(p48([0, 1]), { missingOnly: true });
  assert.deepEqual(readBaselines(two.dir)!.seeds.map((f) => f.seed), [0, 1]);
  assert.deepEqual(readBaselines(two.dir), JSON.parse(JSON.stringify(returned)));
  // a file of other settings that another process set aside (or removed) meanwhile: the seed is written all the same
  writeFileSync(join(two.dir, 'baselines.json'), before);
  const set2: string[] = [];
  await writeSweepBaselines(p48([1]), { onPart: () => rmSync(join(two.dir, 'baselines.json'), { force: true }), onSetAside: (p) => set2.push(p) });
  assert.deepEqual([set2, readBaselines(two.dir)!.seeds.map((f) => f.seed)], [[], [1]]);
  // a damaged file is one line, and nothing is computed over it
  writeFileSync(join(two.dir, 'baselines.json'), '{"dataset": "synth');
  await assert.rejects(writeSweepBaselines(plan([1], ['data.train_size=48'])), (e: Error) => e.name === 'RunFolderError' && /baselines\.json: not JSON/.test(e.message));
  assert.equal(readFileSync(join(two.dir, 'baselines.json'), 'utf8'), '{"dataset": "synth');
});

test("report: runs probed on other views than the baselines' are left out of the verdict, and a table of two probe protocols says so", async () => {
  const dir = join(tmp(), 'views');
  const AUG = 'random-resized-crop + flip, every epoch';
  const CACHED = 'centre view, features cached';
  // two settings; the first probed on augmented views (61), the second re-probed on cached features (85)
  writeFakeRun(dir, { id: 'learned', summary: { linear_top1: 61, linear: { train_views: AUG } } });
  writeFakeRun(dir, { id: 'frozen', config: { 'model.patch_proj': 'frozen' }, summary: { linear_top1: 85, linear: { train_views: CACHED } } });
  const put = (views: string) =>
    writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', seeds: [{ ...seed(0, 50, 68, 70), linear: { ...seed(0, 0, 0, 0).linear, train_views: views } }] }));
  put(AUG);
  await writeReport(dir, { plots: false });
  let md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\*\*The linear top-1 of the table comes from probes trained differently\*\* \(1 run: centre view, features cached; 1 run: random-resized-crop \+ flip, every epoch;/);
  let s = section(md);
  assert.match(s, /1 completed run's linear probe trained on other views \(centre view, features cached\) than the baselines' \(random-resized-crop \+ flip, every epoch\)/);
  // the augmented run alone is compared: 61 against the untrained encoder's 68
  assert.match(s, /\*\*Pretraining did not beat the untrained encoder \(68\.0\) nor the linear classifier on pixels \(70\.0\)\*\*: the best run's linear top-1 is 61\.0/);
  put(CACHED);
  await writeReport(dir, { plots: false });
  s = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.match(s, /Pretraining beat both baselines: the best run's linear top-1 is 85\.0/);
});

test("report: runs whose probe trained other epochs, lr or batch than the baselines' are left out of the verdict, and named", async () => {
  const dir = join(tmp(), 'settings');
  const CACHED = 'centre view, features cached';
  // the 30-epoch probe reached 85; a run of the sweep re-probed with 5 epochs reached 60
  writeFakeRun(dir, { id: 'long', summary: { linear_top1: 85, linear: { train_views: CACHED, epochs: 30, base_lr: 3, batch_size: 256 } } });
  writeFakeRun(dir, { id: 'short', config: { 'model.patch_proj': 'frozen' }, summary: { linear_top1: 60, linear: { train_views: CACHED, epochs: 5, base_lr: 3, batch_size: 256 } } });
  const put = (epochs: number) =>
    writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', seeds: [{ ...seed(0, 50, 68, 70), linear: { ...seed(0, 0, 0, 0).linear, epochs } }] }));
  // baselines of 5 epochs: only the 5-epoch run is compared (60 against 68 and 70), the other is named
  put(5);
  await writeReport(dir, { plots: false });
  let s = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.match(s, /1 completed run's linear probe trained with other settings \(30 epochs, base lr 3, batch 256\) than the baselines' \(5 epochs, base lr 3, batch 256\): it is left out/);
  assert.match(s, /\| pretrained: this sweep's completed runs \(lowest - highest\) \| .* \| 60\.0 - 60\.0 \|/);
  assert.match(s, /\*\*Pretraining did not beat the untrained encoder \(68\.0\) nor the linear classifier on pixels \(70\.0\)\*\*: the best run's linear top-1 is 60\.0/);
  put(30);
  await writeReport(dir, { plots: false });
  s = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.match(s, /\(5 epochs, base lr 3, batch 256\) than the baselines' \(30 epochs, base lr 3, batch 256\)/);
  assert.match(s, /Pretraining beat both baselines: the best run's linear top-1 is 85\.0/);
  // with no baselines to compare with, the table itself says that its linear column mixes two probe protocols
  rmSync(join(dir, 'baselines.json'));
  await writeReport(dir, { plots: false });
  assert.match(
    readFileSync(join(dir, 'report.md'), 'utf8'),
    /\*\*The linear top-1 of the table comes from probes trained differently\*\* \(1 run: centre view, features cached, 30 epochs, base lr 3, batch 256; 1 run: centre view, features cached, 5 epochs, base lr 3, batch 256;/,
  );
});

test("report: runs whose kNN monitor has other settings than the baselines' are left out of the kNN column, and named", async () => {
  const dir = join(tmp(), 'knn-settings');
  writeFakeRun(dir, { id: 'k200', summary: { knn_top1: 61 } });
  writeFakeRun(dir, { id: 'k5', config: { 'model.patch_proj': 'frozen', 'eval.knn.k': 5 }, summary: { knn_top1: 90 } });
  const knn = { k: 200, t: 0.1, bank_size: null, query_size: null };
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', seeds: [{ ...seed(0, 50, 68, 70), knn }] }));
  await writeReport(dir, { plots: false });
  let s = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.match(s, /\| pretrained: this sweep's completed runs \(lowest - highest\) \| 61\.0 - 61\.0 \|/);
  assert.match(s, /1 completed run's kNN monitor ran with other settings \(k 5, t 0\.1, bank all, queries all\) than the baselines' \(k 200, t 0\.1, bank all, queries all\): it is left out of the kNN column above/);
  // an entry written before the settings were recorded counts as the same
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify({ dataset: 'synthetic', image_size: 16, arch: 'vit-smoke', seeds: [seed(0, 50, 68, 70)] }));
  await writeReport(dir, { plots: false });
  s = section(readFileSync(join(dir, 'report.md'), 'utf8'));
  assert.match(s, /\| 61\.0 - 90\.0 \|/);
  assert.doesNotMatch(s, /kNN monitor ran with other settings/);
});

test("readBaselines refuses a file without its keys (an empty seeds list, no arch, a seed's number missing or not finite); knnSettingsOf records the monitor's bank and query sizes each as its own", () => {
  const dir = tmp();
  const good = { dataset: 'fashion-mnist', image_size: 28, arch: 'vit-micro', seeds: [seed(0, 10, 20, 30)] };
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify(good));
  assert.equal(readBaselines(dir)!.seeds[0]!.pixels.linear_top1, 30);
  const top = /baselines\.json: expected an object with dataset, image_size, arch and a non-empty seeds list; delete it and run `moco3 baselines <sweep>` again$/;
  const entry = /baselines\.json: seeds\[0\]: expected seed, random_init\.\{knn_top1, linear_top1\}, pixels\.\{linear_top1, dim\}, linear\.epochs; delete it/;
  const s0 = seed(0, 10, 20, 30);
  for (const [bad, message] of [
    [{ ...good, seeds: [] }, top],
    [{ ...good, arch: undefined }, top],
    [{ ...good, seeds: [{ ...s0, random_init: { ...s0.random_init, knn_top1: undefined } }] }, entry],
    [{ ...good, seeds: [{ ...s0, pixels: { ...s0.pixels, linear_top1: '30' } }] }, entry],
  ] as const) {
    writeFileSync(join(dir, 'baselines.json'), JSON.stringify(bad));
    assert.throws(() => readBaselines(dir), (e: Error) => e.name === 'RunFolderError' && message.test(e.message), JSON.stringify(bad));
  }
  // JSON has no Infinity: a number past float range reads as one
  writeFileSync(join(dir, 'baselines.json'), JSON.stringify(good).replace('"linear_top1":20', '"linear_top1":1e999'));
  assert.throws(() => readBaselines(dir), entry);
  assert.deepEqual(knnSettingsOf({ eval: { knn: { k: 20, t: 0.07, bank_size: 5000, query_size: 1000 } } }), { k: 20, t: 0.07, bank_size: 5000, query_size: 1000 });
  assert.deepEqual(knnSettingsOf({ eval: { knn: { k: 20, t: 0.07 } as never } }), { k: 20, t: 0.07, bank_size: null, query_size: null });
});
