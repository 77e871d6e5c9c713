import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { loadSweep, parseSweep, SweepError } from '../../src/sweep/file.ts';
import { parseOptimizerFlag, parseSeedsFlag, planSweep, runLr, type PlanOptions } from '../../src/sweep/plan.ts';
import { describeState, formatPlan } from '../../src/sweep/table.ts';
import { resolvedSweep } from '../../src/sweep/resolved.ts';
import { readRunState } from '../../src/runfolder/state.ts';
import { scaleValue } from '../../src/config/scale.ts';
import { tempDir } from '../helpers/tmp.ts';
import { planFromFlags } from '../../src/cli/plan.ts';

const root = tempDir('moco3-sweep-plan-');
after(() => rmSync(root, { recursive: true, force: true }));

const plan = (name: string, opts: PlanOptions = {}) => planSweep(loadSweep(name), { results: '/nonexistent/results', ...opts });
const col = (p: ReturnType<typeof plan>, key: string, which: 'paper' | 'values' = 'values') => p.runs.map((r) => r[which][key]);

test('batch-size is Fig. 1: batch 1024-6144 at AdamW base lr 1.0e-4, learned patch projection (docs/MOCOV3.md "The stability study")', () => {
  const p = plan('batch-size', { preset: 'paper' });
  assert.equal(p.id, 'batch-size');
  assert.deepEqual(p.runs.map((r) => r.config.optim.batch_size), [1024, 2048, 4096, 6144]);
  for (const r of p.runs) {
    assert.equal(r.config.optim.name, 'adamw');
    assert.equal(r.config.optim.base_lr, 1.0e-4);
    assert.equal(r.config.model.patch_proj, 'learned');
    assert.equal(r.config.optim.epochs, 100);
    assert.equal(runLr(r.config), (1.0e-4 * r.config.optim.batch_size) / 256);
  }
  assert.deepEqual(p.varied, ['optim.batch_size']);
  assert.equal(p.runs[2]!.slug, 'bs4096-lr1.0e-4-adamw-learned-s0');
  assert.match(p.runs[2]!.id, /^bs4096-lr1\.0e-4-adamw-learned-s0-[0-9a-f]{8}$/);
});

test('a preset scales the batch grid and the epochs, keeping 1:2:4:6; the paper values stay beside', () => {
  const cpu = plan('batch-size', { preset: 'cpu' });
  assert.deepEqual(col(cpu, 'optim.batch_size'), [64, 128, 256, 384]);
  assert.deepEqual(col(cpu, 'optim.batch_size', 'paper'), [1024, 2048, 4096, 6144]);
  const smoke = plan('batch-size', { preset: 'smoke' });
  assert.deepEqual(col(smoke, 'optim.batch_size'), [32, 64, 128, 192]);
  assert.equal(smoke.runs[0]!.config.optim.epochs, 100 * smoke.scale.epochs);
  assert.equal(smoke.runs[0]!.paper['optim.epochs'], 100);
  // the schedule keeps its shape: warmup / epochs as in the paper (40 / 100)
  assert.ok(Math.abs(smoke.runs[0]!.config.optim.warmup_epochs / smoke.runs[0]!.config.optim.epochs - 0.4) < 1e-9);
  // the smoke train set holds many batches of the largest size
  assert.ok(smoke.runs[3]!.config.data.train_size! >= 10 * 192);
  const text = formatPlan(smoke, smoke.runs.map(() => readRunState('/nonexistent')));
  assert.match(text, /1024 -> 32/);
  assert.match(text, /6144 -> 192/);
  assert.match(text, /100 -> 4/);
  assert.match(text, /x1\/32/);
  // the header: the sweep file's description, the model and data as run
  assert.match(text, /^sweep batch-size: Fig\. 1: batch 1024, 2048, 4096, 6144 at AdamW base lr 1\.0e-4, learned patch projection \(sweeps\/batch-size\.yaml\)\n/);
  assert.match(text, /\nmodel vit-smoke \(dim 32, depth 2, heads 4, patch 4\), data synthetic 16 px, 2560 train images; lr = base_lr x batch \/ 256\n/);
  // the file's own preset (cpu) applies when none is given
  assert.deepEqual(col(plan('batch-size'), 'optim.batch_size'), [64, 128, 256, 384]);
  // sweep.yaml records every factor, the warmup's too (the cpu preset's differs from its epochs')
  const scale = resolvedSweep(cpu).scale as Record<string, unknown>;
  assert.deepEqual([scale.batch, scale.epochs, scale.warmup, scale.lr], [1 / 16, 0.02, 0.005, 160]);
});

test('lr is Fig. 2 (AdamW); with --optimizer lamb it is Fig. 3: LAMB 5e-4, 6e-4, 8e-4 at wd 1e-3', () => {
  const adamw = plan('lr', { preset: 'paper' });
  assert.equal(adamw.id, 'lr');
  assert.deepEqual(col(adamw, 'optim.base_lr'), [0.5e-4, 1.0e-4, 1.5e-4]);
  assert.deepEqual(col(adamw, 'optim.batch_size'), [4096, 4096, 4096]);
  for (const r of adamw.runs) assert.equal(r.config.optim.weight_decay, 0.1);
  const lamb = plan('lr', { preset: 'paper', optimizers: ['lamb'] });
  assert.equal(lamb.id, 'lr-lamb');
  assert.deepEqual(col(lamb, 'optim.base_lr'), [5e-4, 6e-4, 8e-4]);
  for (const r of lamb.runs) {
    assert.equal(r.config.optim.name, 'lamb');
    assert.equal(r.config.optim.weight_decay, 1e-3);
    assert.equal(r.config.optim.batch_size, 4096);
  }
  assert.match(lamb.runs[0]!.id, /^bs4096-lr5\.0e-4-lamb-learned-s0-/);
  // the file's own optimizer named explicitly is the same sweep
  assert.equal(plan('lr', { optimizers: ['adamw'] }).id, 'lr');
  // both grids in one sweep
  assert.equal(plan('lr', { optimizers: ['adamw', 'lamb'] }).runs.length, 6);
  // an optimizer the file has no grid for
  assert.throws(() => plan('lr', { optimizers: ['lars'] }), (e: Error) => e instanceof SweepError && /--optimizer lars: sweeps\/lr\.yaml has no grid for lars/.test(e.message));
});

test('patch-proj is Fig. 5: learned and frozen x three AdamW lrs; temperature: 0.1, 0.2, 0.5, 1.0', () => {
  const p = plan('patch-proj', { preset: 'paper' });
  assert.equal(p.runs.length, 6);
  assert.deepEqual(new Set(p.runs.map((r) => `${r.config.model.patch_proj}/${r.config.optim.base_lr}`)).size, 6);
  assert.deepEqual([...new Set(col(p, 'model.patch_proj'))], ['learned', 'frozen']);
  // the grid's first key outermost, in file order: the runs' indices (Slurm's task ids) follow the file
  assert.deepEqual(
    p.runs.map((r) => `${r.paper['model.patch_proj']} ${r.paper['optim.base_lr']}`),
    ['learned 0.00005', 'learned 0.0001', 'learned 0.00015', 'frozen 0.00005', 'frozen 0.0001', 'frozen 0.00015'],
  );
  const t = plan('temperature', { preset: 'paper' });
  assert.deepEqual(t.runs.map((r) => r.config.moco.temperature), [0.1, 0.2, 0.5, 1.0]);
  assert.match(t.runs[1]!.slug, /-t0\.2-s0$/);
});

test('run ids: the same config gives the same id; any change of config gives another', () => {
  const a = plan('batch-size', { preset: 'smoke' });
  const b = plan('batch-size', { preset: 'smoke' });
  assert.deepEqual(a.runs.map((r) => r.id), b.runs.map((r) => r.id));
  const c = plan('batch-size', { preset: 'smoke', sets: ['moco.momentum=0.9'] });
  for (let i = 0; i < 4; i++) {
    assert.equal(c.runs[i]!.slug, a.runs[i]!.slug);
    assert.notEqual(c.runs[i]!.hash, a.runs[i]!.hash);
  }
  assert.equal(a.runs[0]!.dir, join('/nonexistent/results', 'batch-size', a.runs[0]!.id));
});

test('--seeds multiplies the grid, seed outermost; --set pins unscaled; --set on a varied key is refused', () => {
  const p = plan('batch-size', { preset: 'smoke', seeds: parseSeedsFlag('0-1') });
  assert.equal(p.runs.length, 8);
  assert.deepEqual(p.runs.map((r) => r.config.seed), [0, 0, 0, 0, 1, 1, 1, 1]);
  assert.ok(p.varied.includes('seed'));
  const e = plan('batch-size', { preset: 'smoke', sets: ['optim.epochs=10'] });
  assert.equal(e.runs[0]!.config.optim.epochs, 10);
  assert.equal(e.runs[0]!.config.optim.warmup_epochs, 1.6);
  assert.throws(() => plan('batch-size', { sets: ['optim.batch_size=64'] }), /--set optim\.batch_size=64: sweeps\/batch-size\.yaml varies optim\.batch_size/);
  assert.throws(() => plan('batch-size', { sets: ['seed=3'] }), /--seeds/);
  assert.deepEqual(parseSeedsFlag('3,5'), [3, 5]);
  // a range of one seed is that seed; one that runs backwards is a typo, not no seeds (the file's would run)
  assert.deepEqual(parseSeedsFlag('2-2,7'), [2, 7]);
  assert.throws(() => parseSeedsFlag('5-3'), /^SweepError: --seeds 5-3: range 5-3 runs backwards$/);
  assert.throws(() => parseSeedsFlag('0-2,1'), /^SweepError: --seeds 0-2,1: a seed is listed twice$/);
  assert.throws(() => parseSeedsFlag('a'), SweepError);
  // a typo's range is refused before it is counted out (a Set of 10^8 seeds exceeded Node's maximum)
  assert.throws(() => parseSeedsFlag('0-100000000'), /^SweepError: --seeds 0-100000000: more than 1000 seeds$/);
  assert.throws(() => parseSeedsFlag('0-999,1000'), /more than 1000 seeds/);
  assert.equal(parseSeedsFlag('0-999').length, 1000);
  assert.throws(() => parseSeedsFlag('9007199254740993'), /--seeds 9007199254740993: 9007199254740993 is larger than a seed can be/);
  assert.throws(() => parseOptimizerFlag('adam'), /--optimizer adam: unknown optimizer 'adam'/);
  assert.throws(() => parseOptimizerFlag('lamb,adamw,lamb'), /^SweepError: --optimizer lamb,adamw,lamb: 'lamb' is listed twice$/);
  for (const v of ['adamw,', ',lamb', 'lamb,,adamw', 'adamw, ']) {
    assert.throws(() => parseOptimizerFlag(v), new RegExp(`^SweepError: --optimizer ${v}: an empty name in the list \\(expected names separated by commas: adamw, lamb, lars, sgd\\)$`), v);
  }
  assert.throws(() => parseOptimizerFlag(' , '), /^SweepError: --optimizer  , : expected an optimizer name/);
  assert.deepEqual(parseOptimizerFlag(' adamw , lamb'), ['adamw', 'lamb']);
});

const bad: [string, string, RegExp][] = [
  ['unknown top-level key', 'name: x\nmethod: grid\nparameters: {optim.base_lr: {value: 1.0e-4}}\nprogram: train.py\n', /^bad\.yaml: program: unknown key/],
  ['unknown config key', 'parameters: {optim.batchsize: {values: [1, 2]}}\n', /^bad\.yaml: parameters\.optim\.batchsize: unknown key/],
  ['wrong type', 'parameters: {optim.batch_size: {values: [1024, big]}}\n', /^bad\.yaml: parameters\.optim\.batch_size: expected number, got "big"$/],
  ['not an integer', 'parameters: {optim.batch_size: {value: 10.5}}\n', /^bad\.yaml: parameters\.optim\.batch_size: expected int, got 10\.5$/],
  ['empty grid', 'parameters: {optim.base_lr: {values: []}}\n', /^bad\.yaml: parameters\.optim\.base_lr\.values: empty grid/],
  ['no parameters', 'name: x\nparameters: {}\n', /^bad\.yaml: parameters: empty grid/],
  ['unknown optimizer in by_optimizer', 'parameters: {optim.base_lr: {value: 1.0e-4}}\nby_optimizer: {adam: {optim.base_lr: {value: 1.0e-3}}}\n', /^bad\.yaml: by_optimizer\.adam: unknown optimizer/],
  ['unknown optimizer name', 'parameters: {optim.name: {value: adam}}\n', /^bad\.yaml: parameters\.optim\.name: expected one of "adamw", "lamb", "lars", "sgd", got "adam"$/],
  ['random search', 'method: random\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: method: expected grid/],
  ['W&B distribution', 'parameters: {optim.base_lr: {min: 1.0e-4, max: 1.0e-3}}\n', /^bad\.yaml: parameters\.optim\.base_lr\.min: unknown key/],
  ['seed as a parameter', 'parameters: {seed: {values: [0, 1]}}\n', /^bad\.yaml: parameters\.seed: set seeds/],
  ['bad seeds', 'seeds: [0, -1]\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: seeds: expected non-negative integers/],
  ['a seed beyond a safe integer', 'seeds: [100000000000000000000]\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: seeds: expected non-negative integers, got 100000000000000000000$/],
  ['unknown preset', 'preset: laptop\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: preset: expected one of smoke, cpu, gpu, paper/],
  ['value and values', 'parameters: {optim.base_lr: {value: 1.0e-4, values: [1.0e-4]}}\n', /^bad\.yaml: parameters\.optim\.base_lr: expected exactly one of value or values$/],
  ['neither value nor values', 'parameters: {optim.base_lr: {}}\n', /^bad\.yaml: parameters\.optim\.base_lr: expected exactly one of value or values$/],
  ['a list under value, where values was meant', 'parameters: {optim.base_lr: {value: [1.0e-4, 2.0e-4]}}\n', /^bad\.yaml: parameters\.optim\.base_lr: expected number, got \[0\.0001,0\.0002\] \(a grid of several values is written \{values: \[\.\.\.\]\}\)$/],
  ['values not a list', 'parameters: {optim.base_lr: {values: 1.0e-4}}\n', /^bad\.yaml: parameters\.optim\.base_lr\.values: expected a list, got 0\.0001$/],
  ['a value listed twice', 'parameters: {optim.base_lr: {values: [1.0e-4, 2.0e-4, 1.0e-4]}}\n', /^bad\.yaml: parameters\.optim\.base_lr\.values: 0\.0001 is listed twice$/],
  ['a seed listed twice', 'seeds: [0, 1, 0]\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: seeds: a seed is listed twice$/],
  ['a name that is no folder name', 'name: ../elsewhere\nparameters: {optim.base_lr: {value: 1.0e-4}}\n', /^bad\.yaml: name: expected a folder-safe name \(letters, digits, \., _, -\), got "\.\.\/elsewhere"$/],
  ['optim.name in a by_optimizer grid', 'parameters: {optim.base_lr: {value: 1.0e-4}}\nby_optimizer: {lamb: {optim.name: {value: adamw}}}\n', /^bad\.yaml: by_optimizer\.lamb\.optim\.name: the optimizer is the key of this grid; remove it$/],
  ['an empty by_optimizer grid', 'parameters: {optim.base_lr: {value: 1.0e-4}}\nby_optimizer: {lamb: {}}\n', /^bad\.yaml: by_optimizer\.lamb: empty grid/],
];

for (const [what, yaml, re] of bad) {
  test(`a sweep file with ${what} is refused with one line naming file and key`, () => {
    const parse = () => planSweep(parseSweep(YAML.parse(yaml), 'bad.yaml'));
    assert.throws(parse, (e: Error) => {
      assert.ok(e instanceof SweepError, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  });
}

test('a combination that breaks a rule across keys names the file and key', () => {
  const spec = parseSweep(YAML.parse('parameters: {optim.epochs: {value: 10}, optim.warmup_epochs: {value: 20}}'), 'cross.yaml');
  assert.throws(() => planSweep(spec, { preset: 'paper' }), (e: Error) => /^cross\.yaml: optim\.warmup_epochs: must not exceed optim\.epochs/.test(e.message));
  // a broken rule that names no scaled key gets no list of them (the base lr is scaled too, and unrelated)
  const unscaled = parseSweep(YAML.parse('parameters: {optim.base_lr: {value: 1.0e-4}, model.patch_size: {values: [3, 4]}}'), 'pp.yaml');
  assert.throws(() => planSweep(unscaled, { preset: 'smoke' }), (e: Error) => /^pp\.yaml: data\.image_size: must be a multiple of model\.patch_size 3, got 16$/.test(e.message));
  // under a preset that scales them, the line says the values run and the file's
  assert.throws(
    () => planSweep(spec, { preset: 'smoke' }),
    (e: Error) => /^cross\.yaml: optim\.warmup_epochs: must not exceed optim\.epochs 0\.4, got 0\.8 \(preset smoke runs the file's optim\.epochs 10 as 0\.4, optim\.warmup_epochs 20 as 0\.8\)$/.test(e.message),
  );
  // a --set that gives a key runs it as set: the list names no scaling of it, and a line of no rule gets none
  assert.throws(
    () => planSweep(spec, { preset: 'smoke', sets: ['optim.epochs=0.5'] }),
    (e: Error) => /^--set optim\.epochs=0\.5: optim\.warmup_epochs: must not exceed optim\.epochs 0\.5, got 0\.8 \(preset smoke runs the file's optim\.warmup_epochs 20 as 0\.8\)$/.test(e.message),
  );
  assert.throws(() => planSweep(spec, { preset: 'smoke', sets: ['optim.epochs'] }), (e: Error) => /^--set optim\.epochs: expected key=value with a dotted key, e\.g\. optim\.base_lr=1e-4$/.test(e.message));
  // a class count the dataset cannot give: refused when planned, not at the run's turn
  const classes = parseSweep(YAML.parse('parameters: {data.num_classes: {values: [5, 11]}}'), 'nc.yaml');
  assert.throws(() => planSweep(classes, { preset: 'smoke' }), (e: Error) => /^nc\.yaml: data\.num_classes: the synthetic dataset has 2\.\.10 classes, got 11$/.test(e.message));
  const dup = parseSweep(YAML.parse('parameters: {optim.batch_size: {values: [1024, 1030]}}'), 'dup.yaml');
  // ... naming the key whose two values meet once scaled
  assert.throws(
    () => planSweep(dup, { preset: 'smoke' }),
    (e: Error) => e instanceof SweepError && /^dup\.yaml: runs 1 and 2 resolve to the same config \(\S+\) under preset smoke: optim\.batch_size 1024 and 1030 both run as 32; remove one of the values$/.test(e.message),
  );
  // ... or the key that is no part of a run's identity
  const logs = parseSweep(YAML.parse('parameters: {train.log_every: {values: [1, 2]}}'), 'logs.yaml');
  assert.throws(
    () => planSweep(logs, { preset: 'smoke' }),
    (e: Error) => e instanceof SweepError && /^logs\.yaml: runs 1 and 2 resolve to the same config \(\S+\) under preset smoke: train\.log_every 1 and 2 are one run: train\.log_every is not part of a run's identity; remove one of the values$/.test(e.message),
  );
});

test('--data NAME is the dataset at its default location: the sweep file\'s data.path is not kept; NAME:PATH gives one', () => {
  const dir = tempDir('moco3-plan-data-');
  try {
    const file = join(dir, 'dp.yaml');
    writeFileSync(file, 'name: dp\nparameters:\n  data.name: {value: cifar10}\n  data.path: {value: /srv/cifar}\n');
    const flags = { preset: 'smoke', set: [], results: join(dir, 'r') };
    assert.deepEqual(planFromFlags(file, flags).runs.map((r) => [r.config.data.name, r.config.data.path]), [['cifar10', '/srv/cifar']]);
    assert.deepEqual(planFromFlags(file, { ...flags, data: 'fashion-mnist' }).runs.map((r) => [r.config.data.name, r.config.data.path]), [['fashion-mnist', null]]);
    assert.deepEqual(planFromFlags(file, { ...flags, data: 'fashion-mnist:/x' }).runs.map((r) => r.config.data.path), ['/x']);
    // a file that varies the dataset (or the backend): --data (--backend) is refused as --set is, not said as
    // two runs of one config
    const two = join(dir, 'two.yaml');
    writeFileSync(two, 'name: two\nparameters:\n  data.name: {values: [synthetic, cifar10]}\n  train.backend: {values: [cpu, native]}\n');
    assert.throws(() => planFromFlags(two, { ...flags, data: 'synthetic' }), /^SweepError: --data synthetic: .*two\.yaml varies data\.name; edit the grid in the file instead$/);
    assert.throws(() => planFromFlags(two, { ...flags, backend: 'cpu' }), /^SweepError: --backend cpu: .*two\.yaml varies train\.backend; edit the grid in the file instead$/);
    // a train split that cannot fill one batch: refused by plan as by sweep, naming the --set
    assert.throws(
      () => planFromFlags(file, { ...flags, set: ['data.train_size=8'] }),
      /^UsageError: --set data\.train_size=8: run \S+: data\.train_size 8 cannot fill one batch of optim\.batch_size 128: use more images or smaller batches$/,
    );
    // a split of exactly one batch fills it; of two --set of the key, the one in effect (the last) is named
    assert.equal(planFromFlags(file, { ...flags, set: ['data.train_size=128'] }).runs[0]!.config.data.train_size, 128);
    assert.throws(() => planFromFlags(file, { ...flags, set: ['data.train_size=64', 'data.train_size=8'] }), /^UsageError: --set data\.train_size=8: run \S+: data\.train_size 8 cannot/);
    // where this sweep's folder goes, a run folder (a `train --out` there): refused, as --results a run folder is
    const sweepDir = planFromFlags(file, flags).dir;
    mkdirSync(sweepDir, { recursive: true });
    writeFileSync(join(sweepDir, 'config.yaml'), 'seed: 0\n');
    writeFileSync(join(sweepDir, 'status.json'), '{}');
    assert.throws(() => planFromFlags(file, flags), (e: Error) => e.name === 'UsageError' && e.message === `--results ${flags.results}: ${sweepDir} is a run folder (it holds config.yaml and status.json); give the folder that holds sweeps (the default: results)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const cliEntry = join(import.meta.dirname, 'fixtures', 'plan-cli.ts');
const repo = join(import.meta.dirname, '..', '..');

test('moco3 plan prints the paper grid and the scaled one without loading TensorFlow.js', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cliEntry, 'plan', 'lr', '--optimizer', 'lamb', '--preset', 'cpu', '--results', '/nonexistent'], { cwd: repo, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /sweep lr-lamb/);
  // the paper's LAMB grid, and the cpu preset's base lr x160 beside it: 5e-4 x 160 = 0.08 (lr 8.0e-2 at batch 256)
  // (base lrs printed as the runs' names print them, 8.0e-2, not 0.08)
  for (const [paper, run] of [['5.0e-4', '8.0e-2'], ['6.0e-4', '9.6e-2'], ['8.0e-4', '1.28e-1']]) assert.match(r.stdout, new RegExp(`${paper!.replace('.', '\\.')} -> ${run!.replace('.', '\\.')} `));
  // the warmup as run, beside the epochs: its own factor (x1/200) makes 40 -> 0.2
  assert.match(r.stdout, /\bepochs +warmup +status\n/);
  assert.match(r.stdout, / 100 -> 2 +40 -> 0\.2 +new\n/);
  for (const lr of ['8.0e-2', '9.6e-2', '1.28e-1']) assert.match(r.stdout, new RegExp(`lr${lr.replace('.', '\\.')}-lamb`));
  assert.match(r.stdout, /4096 -> 256/);
  assert.match(r.stderr, /tfjs-loaded: false/);
});

test('a bad sweep file: exit 2, one line naming the file and key, nothing written', async () => {
  const dir = mkdtempSync(join(root, 'moco3-plan-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'name: bad\nparameters:\n  optim.base_lr: {values: [1.0e-4, fast]}\n');
  const { main } = await import('../../src/cli/main.ts');
  for (const cmd of ['plan', 'sweep']) {
    const lines: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main([cmd, file, '--results', join(dir, 'results')]);
    } finally {
      process.stderr.write = write;
    }
    assert.equal(code, 2, cmd);
    const text = lines.join('');
    assert.equal(text.trimEnd().split('\n').length, 1, text);
    assert.match(text, new RegExp(`bad\\.yaml: parameters\\.optim\\.base_lr: expected number, got "fast"`));
  }
  assert.equal(existsSync(join(dir, 'results')), false);
  // --optimizer with no grid in the file is bad input too
  const write = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await main(['sweep', 'lr', '--optimizer', 'adam', '--results', join(dir, 'results')]), 2);
    assert.equal(await main(['plan', 'no-such-sweep']), 2);
  } finally {
    process.stderr.write = write;
  }
  process.exitCode = 0;
});

test('a preset scales warmup epochs by its own factor: a shorter warmup than the paper\'s share is possible and stated', () => {
  const s = { batch: 1 / 16, epochs: 0.02, warmup: 0.005, lr: 80, about: 'test' };
  assert.equal(scaleValue('optim.epochs', 100, s), 2);
  assert.equal(scaleValue('optim.warmup_epochs', 40, s), 0.2);
  assert.equal(scaleValue('optim.base_lr', 1.0e-4, s), 0.008);
  assert.equal(scaleValue('optim.batch_size', 6144, s), 384);
  // a batch the factor does not divide is rounded to the nearest (1000 / 16 = 62.5 -> 63, 1000 / 32 = 31.25 -> 31), at least 1
  assert.equal(scaleValue('optim.batch_size', 1000, s), 63);
  assert.equal(scaleValue('optim.batch_size', 1000, { ...s, batch: 1 / 32 }), 31);
  assert.equal(scaleValue('optim.batch_size', 4, s), 1);
});

test('--set of a whole section cannot change what the file varies; --optimizer in any order is the same sweep', () => {
  const lr = loadSweep('lr');
  const opts = (sets: string[], optimizers: string[] | null = null) => ({ preset: 'smoke', sets, optimizers, results: root });
  assert.throws(() => planSweep(lr, opts(['optim={base_lr: 1.0e-2}'])), /^SweepError: --set optim=\{base_lr: 1\.0e-2\}: .*lr\.yaml varies optim\.base_lr; edit the grid in the file instead$/);
  assert.throws(() => planSweep(lr, opts(['optim={name: lamb}'])), /choose a sweep's optimizer with --optimizer/);
  // a section's keys the file does not vary are pinned as one --set each would
  const pinned = planSweep(lr, opts(['optim={weight_decay: 0.05}']));
  assert.ok(pinned.runs.every((r) => r.config.optim.weight_decay === 0.05));
  const a = planSweep(lr, opts([], parseOptimizerFlag('lamb,adamw')));
  const b = planSweep(lr, opts([], parseOptimizerFlag('adamw, lamb')));
  assert.equal(a.id, 'lr-adamw-lamb');
  assert.deepEqual(a.runs.map((r) => r.id), b.runs.map((r) => r.id));
  // a file whose parameters vary the optimizer: --optimizer with some of them is another sweep's folder, all of them the file's;
  // a file without seeds runs seed 0
  const both = parseSweep(YAML.parse('name: both\nparameters: {optim.name: {values: [adamw, lamb]}}\n'), 'both.yaml');
  assert.equal(planSweep(both, opts([], ['lamb'])).id, 'both-lamb');
  const all = planSweep(both, opts([], ['lamb', 'adamw']));
  assert.equal(all.id, 'both');
  assert.deepEqual(all.seeds, [0]);
  assert.deepEqual(all.runs.map((r) => r.config.seed), [0, 0]);
});

test('the plan table: each run its own status, the lr column as run (base lr x batch / 256), the paper value only where the preset changed it, the counts of each status', () => {
  const cpu = plan('batch-size', { preset: 'cpu' });
  const base = readRunState('/nonexistent');
  const states = [
    { ...base, state: 'interrupted' as const, step: 30, total_steps: 100, checkpoint_step: 20 },
    { ...base, state: 'interrupted' as const, step: 30, total_steps: 100, checkpoint_step: 20, resume_error: 'damaged' },
    { ...base, state: 'failed' as const, step: 12, total_steps: 100, error: `${'x'.repeat(70)}\nat line 2` },
    { ...base, state: 'running' as const, lock: { pid: 4242, host: 'node-b', proc_start: null, since: '', heartbeat: '', sweep: 'x', timeout_s: 600 } },
  ];
  const lines = formatPlan(cpu, states).split('\n');
  assert.ok(lines.includes('results: /nonexistent/results/batch-size (4 runs: 2 interrupted, 1 failed, 1 running)'), lines.join('\n'));
  const row = (i: number) => lines.find((l) => l.startsWith(`${i}  `))!;
  // cpu: base lr 1.0e-4 x160 = 1.6e-2; lr = 1.6e-2 x 64 / 256 = 4.0e-3, x 384 / 256 = 2.4e-2
  assert.match(row(1), / 1024 -> 64 +1\.0e-4 -> 1\.6e-2 +4\.0e-3 +adamw .*interrupted at step 30\/100, resumes at 20$/);
  assert.match(row(2), /interrupted at step 30\/100, its checkpoint damaged \(moco3 sweep stops on it and says how to resume it\)$/);
  assert.match(row(3), new RegExp(`failed at step 12/100 \\(${'x'.repeat(57)}\\.\\.\\.\\), restarts$`));
  assert.match(row(4), / 6144 -> 384 +1\.0e-4 -> 1\.6e-2 +2\.4e-2 .*running \(pid 4242 on node-b\)$/);
  const one = { ...cpu, runs: cpu.runs.slice(0, 1) };
  assert.match(formatPlan(one, [{ ...base, state: 'diverged', step: 77, total_steps: 100 }]), /\(1 run: 1 diverged\)\n[^]*diverged at step 77\n$/);
  assert.deepEqual([describeState(base), describeState({ ...base, state: 'completed', step: 100, total_steps: 100 })], ['new', 'completed']);
  // an error of several lines: its first
  assert.equal(describeState({ ...base, state: 'failed', step: 5, total_steps: 100, checkpoint_step: 0, error: 'out of memory\n    at step (loop.ts:1)' }), 'failed at step 5/100 (out of memory), resumes at 0');
  // the paper's own values: shown once, not "1024 -> 1024"
  const paper = plan('batch-size', { preset: 'paper', sets: ['train.log_every=5'] });
  const text = formatPlan(paper, paper.runs.map(() => base));
  assert.doesNotMatch(text, / -> /);
  assert.match(text, /\n--set train\.log_every=5\n/);
  assert.match(text, /\n1 +bs1024\S+ +1024 +1\.0e-4 +4\.0e-4 +adamw/);
  // a varied key beyond the usual columns gets its own (the temperature sweep's temp)
  const temp = plan('temperature', { preset: 'paper' });
  assert.match(formatPlan(temp, temp.runs.map(() => base)), /\bpatch proj +temp +seed\b/);
});
