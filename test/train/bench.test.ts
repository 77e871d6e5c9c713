/**
 * `moco3 bench`: the tensor count it reports is taken after the first step (which makes the optimizer's
 * state) and after the last, so that it is flat without warmup steps too; a leak would show as a rise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.ts';
import { benchLine } from '../../src/cli/bench.ts';
import { configFromFlags } from '../../src/cli/common.ts';
import { tempDir } from '../helpers/tmp.ts';
import { readMetrics } from '../../src/runfolder/metrics.ts';

const TINY = ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'].flatMap((s) => ['--set', s]);

test('bench: the tensor count is flat across steps, with and without warmup steps', async () => {
  for (const warmup of ['0', '1']) {
    const r = await cli(['bench', '--preset', 'smoke', '--backend', 'cpu', ...TINY, '--batch', '8', '--steps', '3', '--warmup', warmup, '--json']);
    assert.equal(r.code, 0, r.err);
    // what is timed is said first (on stderr: stdout is the JSON)
    assert.equal(r.err, `moco3: bench: vit-test at 8 px, batch 8, 3 timed steps after ${warmup} untimed (preset smoke)\n`);
    const out = JSON.parse(r.out.trim().split('\n').pop()!) as { num_tensors_start: number; num_tensors_end: number; steps: number; warmup: number };
    assert.ok(out.num_tensors_start > 0);
    // the record says how it was timed: a --warmup 0 figure (setup timed in) is told from the others
    assert.deepEqual([out.steps, out.warmup], [3, Number(warmup)]);
    // counted before the first step (as it was with --warmup 0), the optimizer's state made by that step read as a leak
    assert.equal(out.num_tensors_end, out.num_tensors_start, `--warmup ${warmup}: ${out.num_tensors_start} -> ${out.num_tensors_end}`);
  }
});

test("bench: the loss at step 1 is the training run's first loss (same seed, batch and views)", async () => {
  const r = await cli(['bench', '--preset', 'smoke', '--backend', 'cpu', ...TINY, '--batch', '8', '--steps', '1', '--warmup', '0', '--json']);
  assert.equal(r.code, 0, r.err);
  const bench = JSON.parse(r.out.trim().split('\n').pop()!) as { loss_step1: number };
  const out = join(tempDir('moco3-bench-loss-'), 'run');
  const t = await cli(['train', '--preset', 'smoke', '--backend', 'cpu', ...TINY, '--set', 'optim.batch_size=8', '--set', 'train.max_steps=1', '--set', 'eval.linear.enabled=false', '-q', '--out', out]);
  assert.equal(t.code, 0, t.err);
  const first = readMetrics(join(out, 'metrics.jsonl')).find((m) => m.step === 1)!;
  assert.ok(Number.isFinite(bench.loss_step1) && bench.loss_step1 > 0, String(bench.loss_step1));
  assert.equal(bench.loss_step1, Number(Number(first.loss).toFixed(4)));
});

test('bench: the cores it reports are those the process may run on (taskset -c 0: one), as the native kernels use', () => {
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'moco3.js');
  const r = spawnSync('taskset', ['-c', '0', process.execPath, bin, 'bench', '--preset', 'smoke', '--backend', 'cpu', ...TINY, '--batch', '8', '--steps', '1', '--warmup', '0', '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number }).threads, 1);
  // doctor alike
  const d = spawnSync('taskset', ['-c', '0', process.execPath, bin, 'doctor'], { encoding: 'utf8', timeout: 120_000 });
  // and the machine's, where it has more
  assert.match(d.stdout.split('\n')[0]!, cpus().length > 1 ? new RegExp(`, 1 of ${cpus().length} cores \\(`) : /, 1 cores \(/);
});

test('bench without --preset says it times the official recipe (ViT-B/16, 224 px, batch 4096), and how to time a CPU-sized step; changed by flags, says so', async () => {
  const r = await cli(['bench', '--backend', 'cpu', '--data', 'synthetic', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8', '--batch', '8', '--steps', '1', '--warmup', '0', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^moco3: bench: vit-test at 8 px, batch 8, 1 timed step after 0 untimed \(no --preset: the official recipe as -c, --set and --batch change it\)\n$/);
  // as it is (not timed here: ViT-B/16 at batch 4096)
  const official = configFromFlags({ set: [], results: '' });
  assert.equal(
    benchLine(official, { set: [] }, 5, 2),
    'moco3: bench: vit-base at 224 px, batch 4096, 5 timed steps after 2 untimed (the official recipe: no --preset; `--preset cpu` times a step sized for a CPU)',
  );
  // a --set alone, or a config file alone, changes the recipe too
  const changed = ' (no --preset: the official recipe as -c, --set and --batch change it)';
  assert.ok(benchLine(official, { set: ['seed=1'] }, 5, 2).endsWith(changed));
  assert.ok(benchLine(official, { set: [], config: 'x.yaml' }, 5, 2).endsWith(changed));
});

test('bench in-process: a step that fails (a kernel out of memory) leaves no tensor of its model or optimizer behind', async () => {
  const { tf } = await import('../helpers/tf.ts');
  const { benchOne } = await import('../../src/train/bench.ts');
  const { buildConfig } = await import('../../src/config/load.ts');
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'optim.batch_size=8'] });
  // Softmax (attention) on the cpu backend throws while armed
  const k = tf.getKernel('Softmax', 'cpu')!;
  let armed = false;
  tf.unregisterKernel('Softmax', 'cpu');
  tf.registerKernel({
    ...k,
    kernelFunc: ((args: Parameters<typeof k.kernelFunc>[0]) => {
      if (armed) throw new Error('injected: out of memory');
      return k.kernelFunc(args);
    }) as typeof k.kernelFunc,
  });
  try {
    await benchOne(c, 'cpu', 1, 0); // kernels and caches made once
    const before = tf.memory().numTensors;
    armed = true;
    await assert.rejects(benchOne(c, 'cpu', 2, 0), /injected: out of memory/);
    armed = false;
    assert.equal(tf.memory().numTensors, before);
  } finally {
    tf.unregisterKernel('Softmax', 'cpu');
    tf.registerKernel(k);
  }
});

test('bench --dry-run --backend all says every backend is timed in turn (the config printed holds train.backend auto)', async () => {
  const r = await cli(['bench', '--preset', 'smoke', '--dry-run', '--backend', 'all']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^# bench: 5 timed steps after 2 untimed, on every backend in turn \(--backend all; train\.backend below is not used\)\n/);
  const j = await cli(['bench', '--preset', 'smoke', '--dry-run', '--backend', 'all', '--json']);
  assert.equal(JSON.parse(j.out).backends, 'all');
  const one = await cli(['bench', '--preset', 'smoke', '--dry-run', '--backend', 'cpu', '--json']);
  assert.equal('backends' in JSON.parse(one.out), false);
});

test('stepFlops: 2 x the multiply-adds of each view: queries forward and backward (3 x forward), keys forward, per image', async () => {
  const { stepFlops } = await import('../../src/train/flops.ts');
  const { buildConfig } = await import('../../src/config/load.ts');
  // vit-test at 8 px: D 8, 2 blocks of 2 heads, MLP 16, patch 4 (4 patches + the class token); heads 16 / 8 / 16
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'] });
  const mm = (m: number, k: number, n: number) => 2 * m * k * n; // [m, k] x [k, n]
  const [D, hd, H, N, T] = [8, 4, 16, 4, 5];
  const patch = mm(N, 3 * 4 * 4, D);
  const block = mm(T, D, 3 * D) + 2 * (mm(T, hd, T) + mm(T, T, hd)) + mm(T, D, D) + mm(T, D, H) + mm(T, H, D);
  const vit = patch + 2 * block;
  const projector = mm(1, D, 16) + mm(1, 16, 16) + mm(1, 16, 8);
  const predictor = mm(1, 8, 16) + mm(1, 16, 8);
  const perImage = 2 * (3 * (vit + projector + predictor) + (vit + projector));
  assert.equal(perImage, 130560); // worked out: vit 14912, projector 1024, predictor 512
  assert.equal(stepFlops(c, 1), perImage);
  assert.equal(stepFlops(c, 16), 16 * perImage);
  assert.equal(stepFlops(c), c.optim.batch_size * perImage);
});

test('bench figures: medians of the timed steps only (an even count: the mean of the middle two), of wall and of process CPU time; images/s, GFLOP/s and the augmentation share from them', async () => {
  const { benchOne } = await import('../../src/train/bench.ts');
  const { stepFlops } = await import('../../src/train/flops.ts');
  const { buildConfig } = await import('../../src/config/load.ts');
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'optim.batch_size=8', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16'] });
  // bench's clock, scripted per step: [step start, views made, step done]; a warmup step of 500 ms, then 40, 10, 20, 30
  const total = [500, 40, 10, 20, 30];
  const aug = [100, 4, 1, 2, 3];
  const script = total.flatMap((t, s) => [1000 * s, 1000 * s + aug[s]!, 1000 * s + t]);
  const real = performance.now.bind(performance);
  let calls = 0;
  const fromBench = () => /\/src\/train\/bench\.ts:/.test(new Error().stack!.split('\n')[3] ?? '');
  performance.now = () => (fromBench() ? script[calls++]! : real());
  // its process CPU time per timed step, scripted too (user + system, microseconds): 40, 10, 20 and 90 ms
  const cpuScript = [
    { user: 30_000, system: 10_000 },
    { user: 10_000, system: 0 },
    { user: 15_000, system: 5_000 },
    { user: 80_000, system: 10_000 },
  ];
  const realCpu = process.cpuUsage.bind(process);
  let cpuCalls = 0;
  process.cpuUsage = ((prev?: NodeJS.CpuUsage) => (prev && fromBench() ? cpuScript[cpuCalls++]! : realCpu(prev))) as typeof process.cpuUsage;
  let r: Awaited<ReturnType<typeof benchOne>>;
  try {
    r = await benchOne(c, 'cpu', 4, 1);
  } finally {
    performance.now = real;
    process.cpuUsage = realCpu;
  }
  assert.equal(calls, script.length);
  assert.equal(cpuCalls, cpuScript.length);
  // the median of 40, 10, 20 and 90 (the mean would be 40)
  assert.equal(r.cpu_ms_per_step, 30);
  // timed: 40, 10, 20, 30 -> 25 (with the warmup step: 30); views 4, 1, 2, 3 -> 2.5
  assert.equal(r.ms_per_step, 25);
  assert.equal(r.augment_ms, 2.5);
  assert.equal(r.augment_share, 0.1);
  assert.equal(r.images_per_s, 320);
  assert.equal(r.gflops, Number((stepFlops(c, 8) / 0.025 / 1e9).toFixed(2)));
  assert.equal(r.batch, 8);
  assert.deepEqual([r.steps, r.warmup], [4, 1]);
  // the first step's loss, warmup or not: that of a bench of one step
  assert.equal(r.loss_step1, (await benchOne(c, 'cpu', 1, 0)).loss_step1);
});

test('bench --steps, --warmup and --batch: the figures --dry-run prints are the ones given; a value out of range is one line naming the flag, exit 2', async () => {
  const j = await cli(['bench', '--preset', 'smoke', '--dry-run', '--json', '--steps', '3', '--warmup', '0', '--batch', '2']);
  assert.equal(j.code, 0, j.err);
  const o = JSON.parse(j.out) as { steps: number; warmup: number; config: { optim: { batch_size: number } } };
  assert.deepEqual([o.steps, o.warmup, o.config.optim.batch_size], [3, 0, 2]);
  const y = await cli(['bench', '--preset', 'smoke', '--dry-run', '--steps', '7', '--warmup', '1']);
  assert.equal(y.code, 0, y.err);
  assert.match(y.out, /^# bench: 7 timed steps after 1 untimed\n/);
  for (const [flag, v, what] of [
    ['--steps', '0', 'a positive integer'],
    ['--warmup', '-1', 'a non-negative integer'],
    // the heads' BatchNorm needs two images
    ['--batch', '1', 'an integer of at least 2'],
  ] as const) {
    const r = await cli(['bench', '--preset', 'smoke', '--dry-run', flag, v]);
    assert.equal(r.code, 2, `${flag} ${v}: ${r.err}`);
    assert.equal(r.err, `moco3: ${flag} ${v}: expected ${what}\n`);
    assert.equal(r.out, '');
  }
});

test('bench without --json: one line whose figures are those of the run (the augmentation share in percent of the step)', async () => {
  const r = await cli(['bench', '--preset', 'smoke', '--backend', 'cpu', ...TINY, '--batch', '8', '--steps', '2', '--warmup', '0']);
  assert.equal(r.code, 0, r.err);
  const m = r.out.match(/^cpu +batch 8: ([\d.]+) ms\/step \(process CPU [\d.]+ ms\), [\d.]+ img\/s, [\d.]+ GFLOP\/s, augmentation ([\d.]+) ms \(([\d.]+)% of the step, (js|native)\), .*tensors (\d+)->(\d+) +\[.*; medians of 2 steps after 0 untimed\]\n$/);
  assert.ok(m, r.out);
  const [ms, aug, pct] = [Number(m[1]), Number(m[2]), Number(m[3])];
  assert.ok(ms > 0, r.out);
  // the share is the augmentation's time over the step's, in percent: within what the times printed to 0.1 ms
  // and the share printed to 0.1 % allow
  const [lo, hi] = [(100 * Math.max(0, aug - 0.05)) / (ms + 0.05) - 0.05, (100 * (aug + 0.05)) / (ms - 0.05) + 0.05];
  assert.ok(pct >= lo && pct <= hi, `${pct}% not in [${lo.toFixed(3)}, ${hi.toFixed(3)}]: ${r.out}`);
  assert.equal(m[5], m[6]);
});

test("bench's data: a batch as large as the train split is taken; one image more is refused, naming both (random pixels would hide it)", async () => {
  const { benchDataset } = await import('../../src/train/bench.ts');
  const { buildConfig } = await import('../../src/config/load.ts');
  // the config's own check knows data.train_size; an image folder's count is known only once read: the
  // batch is set past that check here, as a folder of 64 images would leave it
  const c = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.name=synthetic', 'data.image_size=8', 'data.train_size=64', 'optim.batch_size=64'] });
  const { ds } = await benchDataset(c, true);
  assert.equal(ds?.train.n, 64);
  const over = { ...c, optim: { ...c.optim, batch_size: 65 } };
  await assert.rejects(benchDataset(over, true), {
    message: "batch 65 (--batch, optim.batch_size): more than the 64 images of synthetic's train split; give at most 64, or more images (data.train_size)",
  });
});

test("bench: the preset's own data absent, it times on random pixels of its size and says so; the same data named with --data must load", async () => {
  const empty = tempDir('moco3-bench-nodata-');
  const tiny = ['model.arch=vit-test', 'model.patch_size=4', 'data.image_size=8', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16', `data.path=${empty}`].flatMap((s) => ['--set', s]);
  const r = await cli(['bench', '--preset', 'cpu', '--backend', 'cpu', ...tiny, '--batch', '8', '--steps', '1', '--warmup', '0', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^moco3: bench: fashion-mnist not loadable \(fashion-mnist: missing file train-images-idx3-ubyte.*\); timing on random pixels of its size\n/);
  assert.equal((JSON.parse(r.out.trim().split('\n').pop()!) as { data: string }).data, 'random 8x8x3 (fashion-mnist not loadable)');
  const named = await cli(['bench', '--preset', 'cpu', '--backend', 'cpu', '--data', 'fashion-mnist', ...tiny, '--batch', '8', '--steps', '1', '--warmup', '0', '--json']);
  assert.notEqual(named.code, 0);
  assert.match(named.err, /fashion-mnist: missing file train-images-idx3-ubyte/);
  assert.equal(named.out, '');
});
