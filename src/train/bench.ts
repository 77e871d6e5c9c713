/** Steady-state speed of the training step (the library side of `moco3 bench`). */
import { availableParallelism, cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../engine/backend.ts';
import { Rng } from '../engine/rng.ts';
import { augmentEngine, twoViews, type AugmentConfig } from '../data/augment.ts';
import { batchIndices, gatherBatch, type ImageBatch } from '../data/index.ts';
import { MoCoViT } from '../model/moco.ts';
import { trainStep } from './step.ts';
import { augmentConfigOf, loadRunData, modelConfigOf, optimizerOf } from '../components/index.ts';
import { stepFlops } from './flops.ts';
import { canPack } from '../engine/webgpu-kernels.ts';
import { releaseFreeGpuBuffers } from '../engine/webgpu.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { firstLine, InputError } from '../config/errors.ts';

export interface BenchResult {
  backend: string;
  device: string;
  batch: number;
  /** the timed steps (ms_per_step and the other per-step figures are their medians), after `warmup` untimed ones */
  steps: number;
  warmup: number;
  ms_per_step: number;
  /** process CPU time (user + system, all threads) per step, median: comparable on a shared machine */
  cpu_ms_per_step: number;
  images_per_s: number;
  /** the loss of the first step (the untrained model on the seed's first batch; a micro-batched step gives the same up to BatchNorm's per-chunk statistics) */
  loss_step1: number;
  gflops: number;
  augment_ms: number;
  augment_share: number;
  /** what computed the views: the native kernel or the JS pipeline */
  augment_engine: string;
  /** the images the views were made from: the run's dataset, or random pixels of its image size */
  data: string;
  peak_rss_mb: number;
  /** webgpu: the most GPU buffer memory the backend held (its pool keeps freed buffers); else null */
  gpu_peak_mb: number | null;
  /** webgpu: whether the optimizer, momentum and gradient-statistics kernels ran once per parameter group (packed) or once per parameter; else null */
  webgpu_packed: boolean | null;
  /** tensors after the first step (the optimizer's state made) and after the last: equal unless a step leaks */
  num_tensors_start: number;
  num_tensors_end: number;
  cpu: string;
  /** the cores this process may run on (its CPU affinity: taskset, a Slurm task's cpuset), not all the machine's; the native kernels' own thread count (MOCO3_THREADS) is in `device` */
  threads: number;
  config: ResolvedRunConfig;
  /** with `profile`: one more step's kernel time summed by kernel, largest first (webgpu: GPU timestamps) */
  profile?: { kernel: string; calls: number; ms: number; share: number }[];
  profile_timer?: string;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * The images a bench trains on: the run's dataset, checked (data named with --data must load; the batch
 * must fit its train split), or null with the reason when the preset's own data is absent (random pixels).
 */
export async function benchDataset(c: ResolvedRunConfig, dataRequired: boolean): Promise<{ ds: Awaited<ReturnType<typeof loadRunData>> | null; loadError: unknown }> {
  const B = c.optim.batch_size;
  let ds: Awaited<ReturnType<typeof loadRunData>> | null = null;
  let loadError: unknown = null;
  try {
    ds = await loadRunData(c);
  } catch (e) {
    if (dataRequired) throw e;
    loadError = e;
  }
  // a batch the data cannot fill is the batch's fault, not the data's: said as such (random pixels would hide it)
  if (ds && B > ds.train.n) {
    throw new InputError(`batch ${B} (--batch, optim.batch_size): more than the ${ds.train.n} images of ${ds.name}'s train split; give at most ${ds.train.n}, or more images (data.train_size)`);
  }
  return { ds, loadError };
}

export async function benchOne(c: ResolvedRunConfig, backendName: BackendName, steps: number, warmup: number, profile = false, dataRequired = false, onReady?: () => void): Promise<BenchResult> {
  const info = await initBackend(backendName, { quiet: true });
  // the GPU peak is this bench's own: buffers an earlier one in this process kept for reuse are given back
  releaseFreeGpuBuffers();
  const B = c.optim.batch_size;
  const S = c.data.image_size;
  // real images of the run's dataset (their size and channels set the augmentation's cost), else random pixels
  let batch: ImageBatch;
  let aug: AugmentConfig;
  let data: string;
  const { ds, loadError } = await benchDataset(c, dataRequired);
  if (!ds) {
    const why = firstLine(loadError);
    process.stderr.write(`moco3: bench: ${c.data.name} not loadable (${why}); timing on random pixels of its size\n`);
  }
  // the backend started and the data read: what is timed can be said (random pixels at 224 px take a while)
  onReady?.();
  if (ds) {
    batch = gatherBatch(ds.train, batchIndices(0, { n: ds.train.n, batchSize: B, seed: c.seed, shuffle: true }));
    aug = augmentConfigOf(c, ds);
    data = `${ds.name} ${batch.h}x${batch.w}x${batch.c}`;
  } else {
    const rng = new Rng(c.seed, 'bench');
    const images = new Uint8Array(B * S * S * 3);
    for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
    batch = { data: images, n: B, h: S, w: S, c: 3 };
    aug = augmentConfigOf(c, { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
    data = `random ${S}x${S}x3 (${c.data.name} not loadable)`;
  }
  const model = new MoCoViT(modelConfigOf(c), c.seed);
  // a step that fails (out of memory at a large batch) leaves no tensor behind: bench runs in-process too
  let made: { dispose(): void } | null = null;
  try {
    const opt = optimizerOf(c, model);
    made = opt;
    const stepMs: number[] = [];
    const augMs: number[] = [];
    const cpuMs: number[] = [];
    let tensorsStart = 0;
    let firstLoss = NaN;
    let gpuPeak: number | null = null;
    const sampleGpu = () => {
      const m = tf.memory() as { numBytesAllocatedInGPU?: number };
      if (typeof m.numBytesAllocatedInGPU === 'number') gpuPeak = Math.max(gpuPeak ?? 0, m.numBytesAllocatedInGPU);
    };
    for (let s = 0; s < warmup + steps; s++) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const { x1, x2 } = twoViews(batch, aug, c.seed, s);
      await x2.data(); // make the augmentation's cost visible on asynchronous backends
      const t1 = performance.now();
      const { stats } = await trainStep(model, opt, x1, x2, { momentum: 0.99, lr: 1e-4, microBatch: c.train.micro_batch });
      const t2 = performance.now();
      // counted after the first step, which makes the optimizer's state: a leak shows as a rise from there
      if (s === 0) {
        tensorsStart = tf.memory().numTensors;
        // the untrained model's loss (read back with the step's statistics, as every step does): micro-batches must not move it
        firstLoss = stats[0]!;
      }
      sampleGpu();
      if (s >= warmup) {
        stepMs.push(t2 - t0);
        augMs.push(t1 - t0);
        const cu = process.cpuUsage(c0);
        cpuMs.push((cu.user + cu.system) / 1000);
      }
    }
    const tensorsEnd = tf.memory().numTensors;
    let prof: BenchResult['profile'];
    let timer: string | undefined;
    if (profile) {
      const { x1, x2 } = twoViews(batch, aug, c.seed, warmup + steps);
      const pi = await tf.profile(async () => {
        await trainStep(model, opt, x1, x2, { momentum: 0.99, lr: 1e-4, microBatch: c.train.micro_batch });
      });
      const by = new Map<string, { calls: number; ms: number }>();
      for (const k of pi.kernels) {
        const e = by.get(k.name) ?? { calls: 0, ms: 0 };
        e.calls++;
        e.ms += Number(k.kernelTimeMs) || 0;
        by.set(k.name, e);
      }
      const total = [...by.values()].reduce((a, e) => a + e.ms, 0);
      prof = [...by]
        .map(([kernel, e]) => ({ kernel, calls: e.calls, ms: Number(e.ms.toFixed(2)), share: total > 0 ? Number((e.ms / total).toFixed(4)) : 0 }))
        .sort((a, b) => b.ms - a.ms);
      const ts = (tf.backend() as unknown as { supportTimestampQuery?: boolean }).supportTimestampQuery;
      timer = info.name === 'webgpu' ? (ts ? 'GPU timestamp-query' : 'none: the adapter has no timestamp-query, times are zero') : 'wall clock per kernel';
    }
    const ms = median(stepMs);
    const am = median(augMs);
    return {
      backend: info.name,
      device: info.device,
      batch: B,
      steps,
      warmup,
      ms_per_step: Number(ms.toFixed(1)),
      cpu_ms_per_step: Number(median(cpuMs).toFixed(1)),
      images_per_s: Number(((B * 1000) / ms).toFixed(1)),
      gflops: Number((stepFlops(c, B) / (ms / 1000) / 1e9).toFixed(2)),
      augment_ms: Number(am.toFixed(1)),
      augment_share: Number((am / ms).toFixed(4)),
      augment_engine: augmentEngine(),
      data,
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      gpu_peak_mb: gpuPeak === null ? null : Number((gpuPeak / 2 ** 20).toFixed(1)),
      webgpu_packed: info.name === 'webgpu' ? canPack() : null,
      loss_step1: Number(firstLoss.toFixed(4)),
      num_tensors_start: tensorsStart,
      num_tensors_end: tensorsEnd,
      cpu: cpus()[0]?.model ?? 'unknown',
      threads: availableParallelism(),
      config: c,
      ...(prof ? { profile: prof, profile_timer: timer } : {}),
    };
  } finally {
    made?.dispose();
    model.dispose();
  }
}

