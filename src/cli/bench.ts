/** `moco3 bench`: steady-state speed of the training step on each backend. */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../engine/backend.ts';
import { Rng } from '../engine/rng.ts';
import { twoViews } from '../data/augment.ts';
import { MoCoViT } from '../model/moco.ts';
import { gradStats } from '../train/metrics.ts';
import { modelConfigOf, optimizerOf } from '../train/loop.ts';
import { stepFlops } from '../train/flops.ts';
import { addRunOptions, configFromFlags, type RunFlags } from './common.ts';
import { UsageError } from './errors.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';

interface BenchFlags extends RunFlags {
  batch?: string;
  steps: string;
  warmup: string;
  json?: boolean;
}

export interface BenchResult {
  backend: string;
  device: string;
  batch: number;
  steps: number;
  ms_per_step: number;
  images_per_s: number;
  gflops: number;
  augment_ms: number;
  augment_share: number;
  peak_rss_mb: number;
  num_tensors_start: number;
  num_tensors_end: number;
  cpu: string;
  threads: number;
  config: ResolvedRunConfig;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function benchOne(c: ResolvedRunConfig, backendName: BackendName, steps: number, warmup: number): Promise<BenchResult> {
  const info = await initBackend(backendName, { quiet: true });
  const B = c.optim.batch_size;
  const S = c.data.image_size;
  const rng = new Rng(c.seed, 'bench');
  const images = new Uint8Array(B * S * S * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
  const batch = { data: images, n: B, h: S, w: S, c: 3 as const };
  const aug = { preset: c.augment.preset, imageSize: S, cropMin: c.augment.crop_min, mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.25, 0.25, 0.25] as [number, number, number], blurSigma: c.augment.blur_sigma };
  const model = new MoCoViT(modelConfigOf(c), c.seed);
  const opt = optimizerOf(c, model);
  const trainable = model.trainableNames();
  const groups = model.paramGroups();
  const stepMs: number[] = [];
  const augMs: number[] = [];
  let tensorsStart = 0;
  for (let s = 0; s < warmup + steps; s++) {
    if (s === warmup) tensorsStart = tf.memory().numTensors;
    const t0 = performance.now();
    const { x1, x2 } = twoViews(batch, aug, c.seed, s);
    await x2.data(); // make the augmentation's cost visible on asynchronous backends
    const t1 = performance.now();
    const { loss, grads } = model.step(x1, x2, 0.99);
    x1.dispose();
    x2.dispose();
    const st = gradStats(loss, grads, groups);
    await st.data();
    st.dispose();
    loss.dispose();
    opt.step(model.vars, new Map(trainable.map((n) => [n, grads.get(n)!] as const)), 1e-4);
    for (const g of grads.values()) g.dispose();
    const t2 = performance.now();
    if (s >= warmup) {
      stepMs.push(t2 - t0);
      augMs.push(t1 - t0);
    }
  }
  const tensorsEnd = tf.memory().numTensors;
  opt.dispose();
  model.dispose();
  const ms = median(stepMs);
  const am = median(augMs);
  return {
    backend: info.name,
    device: info.device,
    batch: B,
    steps,
    ms_per_step: Number(ms.toFixed(1)),
    images_per_s: Number(((B * 1000) / ms).toFixed(1)),
    gflops: Number((stepFlops(c, B) / (ms / 1000) / 1e9).toFixed(2)),
    augment_ms: Number(am.toFixed(1)),
    augment_share: Number((am / ms).toFixed(4)),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    num_tensors_start: tensorsStart,
    num_tensors_end: tensorsEnd,
    cpu: cpus()[0]?.model ?? 'unknown',
    threads: cpus().length,
    config: c,
  };
}

function printResult(r: BenchResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  process.stdout.write(
    `${r.backend.padEnd(10)} batch ${r.batch}: ${r.ms_per_step} ms/step, ${r.images_per_s} img/s, ${r.gflops} GFLOP/s, ` +
      `augmentation ${r.augment_ms} ms (${(100 * r.augment_share).toFixed(1)}% of the step), peak RSS ${r.peak_rss_mb} MB, ` +
      `tensors ${r.num_tensors_start}->${r.num_tensors_end}  [${r.device}; ${r.cpu}, ${r.threads} cores]\n`,
  );
}

export function benchCommand(): Command {
  const cmd = new Command('bench').description('steady-state ms/step, images/s and GFLOP/s of the training step');
  addRunOptions(cmd)
    .option('-b, --batch <n>', 'batch size (default: the preset\'s)')
    .option('--steps <n>', 'timed steps', '5')
    .option('--warmup <n>', 'untimed steps first', '2')
    .option('--json', 'one JSON object per backend on stdout')
    .action(async (f: BenchFlags & { backend?: string }) => {
      const backendFlag = f.backend;
      const extra = f.batch ? [{ optim: { batch_size: Number(f.batch) } }] : [];
      if (f.batch && !(Number.isInteger(Number(f.batch)) && Number(f.batch) > 0)) throw new UsageError(`--batch ${f.batch}: expected a positive integer`);
      const c = configFromFlags({ ...f, backend: backendFlag === 'all' ? undefined : backendFlag }, extra);
      const steps = Number(f.steps);
      const warmup = Number(f.warmup);
      if (!(steps > 0) || !(warmup >= 0)) throw new UsageError('--steps must be > 0 and --warmup >= 0');
      if (f.dryRun) {
        process.stdout.write(`${JSON.stringify({ config: c, steps, warmup })}\n`);
        return;
      }
      if (backendFlag === 'all') {
        // one process per backend: peak memory and thread pools stay separate
        for (const b of ['tensorflow', 'native', 'wasm', 'cpu']) {
          const args = [process.argv[1]!, 'bench', ...process.argv.slice(3).filter((a, i, arr) => a !== '--backend' && arr[i - 1] !== '--backend' && a !== '--backend=all'), '--backend', b];
          const r = spawnSync(process.execPath, [...process.execArgv, ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
          if (r.status !== 0) {
            const why = r.stderr.toString().trim().split('\n').pop() ?? '';
            process.stderr.write(`moco3: bench ${b}: not available (${why.replace(/^moco3: /, '')})\n`);
          }
        }
        return;
      }
      const r = await benchOne(c, c.train.backend as BackendName, steps, warmup);
      printResult(r, Boolean(f.json));
    });
  // --backend all is allowed here only
  const opt = cmd.options.find((o) => o.long === '--backend');
  if (opt) opt.choices([...(opt.argChoices ?? []), 'all']);
  return cmd;
}
