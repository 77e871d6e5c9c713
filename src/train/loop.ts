/**
 * The training loop of one run, one readable function of the step (nanoGPT style): schedules, the MoCo
 * step, gradient monitoring, divergence, kNN monitor, checkpoints and the files of DESIGN.md.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname, cpus } from 'node:os';
import { join } from 'node:path';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { configHash, configToYaml } from '../config/load.ts';
import type { BackendInfo } from '../engine/backend.ts';
import { writeFileAtomic, writeJsonAtomic } from '../engine/files.ts';
import { writeSafetensors, type StTensor } from '../engine/safetensors.ts';
import { loadDataset, type Dataset, type ImageSplit } from '../data/index.ts';
import { batchIndices, gatherBatch, itersPerEpoch } from '../data/sampler.ts';
import { augmentConfigFor, canAugmentAsync, twoViewArraysAsync, twoViews, viewTensors, evalView, type AugmentConfig } from '../data/augment.ts';
import { MoCoViT, type MocoModelConfig } from '../model/moco.ts';
import { createOptimizer, type Optimizer } from '../optim/index.ts';
import { lrAt, momentumAt, scaledLr } from '../optim/schedule.ts';
import { knnAccuracy } from '../eval/knn.ts';
import { findLastCheckpoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint, stepDirName, type LoopState } from './checkpoint.ts';
import { appendMetric, statsToRow, truncateMetrics, type MetricRow } from './metrics.ts';
import { trainStep } from './step.ts';
import { packageVersions, gitCommit } from './meta.ts';

export type RunStatus = 'pending' | 'running' | 'completed' | 'diverged' | 'failed' | 'interrupted';

export type TrainEvent =
  | { type: 'start'; runDir: string; totalSteps: number; startStep: number; resumed: boolean; params: number }
  | { type: 'step'; step: number; totalSteps: number; row: MetricRow }
  | { type: 'knn'; step: number; top1: number; top5: number; seconds: number }
  | { type: 'checkpoint'; step: number; dir: string }
  | { type: 'phase'; step: number; text: string }
  | { type: 'end'; status: RunStatus; step: number; summary: Summary };

export interface Summary {
  status: RunStatus;
  steps: number;
  total_steps: number;
  epochs: number;
  knn_top1: number | null;
  knn_top5: number | null;
  best_knn_top1: number | null;
  linear_top1: number | null;
  linear_top5: number | null;
  diverged_at: number | null;
  wall_s: number;
  train_s: number;
  images_per_s: number | null;
  final_loss: number | null;
  backend: string;
  config_hash: string;
}

export interface TrainOptions {
  config: ResolvedRunConfig;
  runDir: string;
  backend: BackendInfo;
  /** continue from the newest checkpoint of runDir when there is one */
  resume?: boolean;
  command?: string[];
  /** write the two normalised views of the first N steps to views.safetensors */
  dumpViews?: number;
  onEvent?: (e: TrainEvent) => void;
  /** polled between steps: true checkpoints and returns 'interrupted' (Ctrl-C) */
  shouldStop?: () => boolean;
  /** preloaded data (tests, sweeps) */
  dataset?: Dataset;
  /** test hook: make the loss of this step NaN */
  injectNanAtStep?: number;
  /** seconds between automatic checkpoints when train.checkpoint_every is null */
  checkpointSeconds?: number;
}

export function modelConfigOf(c: ResolvedRunConfig): MocoModelConfig {
  return {
    imageSize: c.data.image_size,
    patchSize: c.model.patch_size,
    inChans: 3,
    dim: c.model.dim,
    depth: c.model.depth,
    heads: c.model.heads,
    mlpRatio: c.model.mlp_ratio,
    projHidden: c.moco.proj_hidden,
    projDim: c.moco.proj_dim,
    predHidden: c.moco.pred_hidden,
    temperature: c.moco.temperature,
    patchProj: c.model.patch_proj,
  };
}

export function optimizerOf(c: ResolvedRunConfig, model: MoCoViT): Optimizer {
  const o = c.optim;
  return createOptimizer(
    {
      name: o.name,
      weightDecay: o.weight_decay,
      betas: o.betas,
      eps: o.eps,
      momentum: o.momentum,
      trustCoefficient: o.trust_coefficient,
      lambExcludeBiasNorm: o.lamb_exclude_bias_norm,
      lambMaxGradNorm: o.max_grad_norm,
    },
    (name) => model.torchShape(name).length,
  );
}

export async function loadRunData(c: ResolvedRunConfig): Promise<Dataset> {
  return loadDataset({
    name: c.data.name,
    path: c.data.path,
    trainSize: c.data.train_size,
    testSize: c.data.test_size,
    numClasses: c.data.num_classes ?? undefined,
    imageSize: c.data.image_size,
    seed: 0, // the same data for every run seed: seeds vary the training, not the dataset
    syntheticImageSize: c.data.image_size,
  });
}

/** The run's augmentation settings, normalising with the dataset's mean and std. */
export function augmentConfigOf(c: ResolvedRunConfig, ds: Pick<Dataset, 'mean' | 'std'>): AugmentConfig {
  return augmentConfigFor(ds, c.data.image_size, c.augment.preset, c.augment.crop_min, c.augment.blur_sigma);
}

/** Class-token features of the first `n` images of a split, [n, dim]. */
export function extractFeatures(model: MoCoViT, split: ImageSplit, n: number, aug: AugmentConfig, batch = 256): tf.Tensor2D {
  const parts: tf.Tensor2D[] = [];
  for (let s = 0; s < n; s += batch) {
    const idx = Int32Array.from({ length: Math.min(batch, n - s) }, (_, i) => s + i);
    parts.push(tf.tidy(() => model.features(evalView(gatherBatch(split, idx), aug))));
  }
  const out = tf.concat(parts) as tf.Tensor2D;
  parts.forEach((p) => p.dispose());
  return out;
}

export async function knnMonitor(model: MoCoViT, ds: Dataset, c: ResolvedRunConfig, aug: AugmentConfig): Promise<{ top1: number; top5: number }> {
  const nb = Math.min(ds.train.n, c.eval.knn.bank_size ?? ds.train.n);
  const nq = Math.min(ds.test.n, c.eval.knn.query_size ?? ds.test.n);
  const bank = extractFeatures(model, ds.train, nb, aug);
  const queries = extractFeatures(model, ds.test, nq, aug);
  try {
    const r = await knnAccuracy(bank, ds.train.labels.subarray(0, nb), queries, ds.test.labels.subarray(0, nq), {
      k: c.eval.knn.k,
      t: c.eval.knn.t,
      numClasses: ds.numClasses,
    });
    return { top1: r.top1, top5: r.top5 };
  } finally {
    bank.dispose();
    queries.dispose();
  }
}

/** wasm's heap stops at 4 GiB and it aborts when a step does not fit: say so in words. */
function stepOrExplain<T>(f: () => T, backend: BackendInfo, batch: number): T {
  try {
    return f();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (backend.heapLimit !== null && /abort|out of memory|OOM|enlarge memory|Array buffer allocation/i.test(msg)) {
      throw new Error(
        `the ${backend.name} backend ran out of its ${(backend.heapLimit / 2 ** 30).toFixed(0)} GiB heap in a step at batch ${batch}: ` +
          'use a smaller optim.batch_size, or --backend native (no heap cap)',
      );
    }
    throw e;
  }
}

function writeStatus(runDir: string, status: RunStatus, step: number, totalSteps: number, extra: Record<string, unknown> = {}): void {
  writeJsonAtomic(join(runDir, 'status.json'), {
    status,
    step,
    total_steps: totalSteps,
    pid: process.pid,
    host: hostname(),
    heartbeat: new Date().toISOString(),
    ...extra,
  });
}

/**
 * Whether the loop computes the next step's views in the background, while the current step runs: by
 * default with every backend but `native` (whose kernels use the same thread pool as the augmentation;
 * with `tensorflow` the model runs on a GPU or in TensorFlow's threads, with `wasm` on one thread).
 * MOCO3_PREFETCH=1 or 0 forces it. Needs the native augmentation kernel. The views are the same either way.
 */
export function prefetchViews(backend: string): boolean {
  if (!canAugmentAsync()) return false;
  const env = process.env.MOCO3_PREFETCH;
  if (env === '1' || env === '0') return env === '1';
  return backend !== 'native';
}

export function countParams(model: MoCoViT): number {
  return model.trainableNames().reduce((a, n) => a + model.vars.get(n)!.size, 0);
}

/** The kNN monitor's cadence in steps: train.knn_every_epochs (rounded to whole steps) or train.knn_every. */
export function knnEverySteps(c: ResolvedRunConfig, itersPerEpoch: number): number | null {
  if (c.train.knn_every_epochs !== null) return Math.max(1, Math.round(c.train.knn_every_epochs * itersPerEpoch));
  return c.train.knn_every;
}

export async function trainRun(opts: TrainOptions): Promise<Summary> {
  const c = opts.config;
  const { runDir } = opts;
  const emit = opts.onEvent ?? (() => {});
  const hash = configHash(c);
  mkdirSync(runDir, { recursive: true });
  const ckptRoot = join(runDir, 'checkpoints');
  const metricsPath = join(runDir, 'metrics.jsonl');

  const ds = opts.dataset ?? (await loadRunData(c));
  const aug = augmentConfigOf(c, ds);
  const B = c.optim.batch_size;
  if (ds.train.n < B) throw new Error(`data.train_size: the train split has ${ds.train.n} images, fewer than one batch of ${B}`);
  const ipe = itersPerEpoch(ds.train.n, B);
  const scheduleSteps = Math.max(1, Math.floor(c.optim.epochs * ipe));
  const totalSteps = c.train.max_steps === null ? scheduleSteps : Math.min(scheduleSteps, c.train.max_steps);
  const lr = scaledLr(c.optim.base_lr, B);
  const knnEvery = knnEverySteps(c, ipe);

  const model = new MoCoViT(modelConfigOf(c), c.seed);
  const optimizer = optimizerOf(c, model);
  const groups = model.paramGroups();

  let state: LoopState = {
    step: 0,
    epoch: 0,
    wall_s: 0,
    train_s: 0,
    images_seen: 0,
    best_knn_top1: null,
    last_knn_top1: null,
    last_knn_top5: null,
    last_loss: null,
    config_hash: hash,
    optimizer: {},
  };
  let lastLoss: number | null = null;
  let resumed = false;
  const last = opts.resume ? findLastCheckpoint(ckptRoot) : null;
  if (last) {
    state = loadCheckpoint(last, model, optimizer);
    if (state.config_hash !== hash) {
      throw new Error(`${last}: checkpoint belongs to config ${state.config_hash}, this run's config is ${hash}`);
    }
    truncateMetrics(metricsPath, state.step);
    resumed = true;
    lastLoss = state.last_loss ?? null;
  } else {
    writeFileAtomic(metricsPath, '');
  }

  writeFileAtomic(join(runDir, 'config.yaml'), configToYaml(c));
  writeJsonAtomic(join(runDir, 'meta.json'), {
    moco3: packageVersions(),
    git_commit: gitCommit(),
    backend: opts.backend.name,
    device: opts.backend.device,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? null,
    host: hostname(),
    command: opts.command ?? process.argv,
    started: new Date().toISOString(),
    resumed_from_step: resumed ? state.step : null,
    config_hash: hash,
    params_trainable: countParams(model),
  });
  writeStatus(runDir, 'running', state.step, totalSteps);
  emit({ type: 'start', runDir, totalSteps, startStep: state.step, resumed, params: countParams(model) });

  const t0 = performance.now();
  const wallAtStart = state.wall_s;
  const wall = () => wallAtStart + (performance.now() - t0) / 1000;
  let lastCkptTime = performance.now();
  const ckptEvery = c.train.checkpoint_every;
  const autoCkptMs = (opts.checkpointSeconds ?? 120) * 1000;
  const dumpN = Math.min(opts.dumpViews ?? 0, totalSteps);
  const dumped = new Map<string, StTensor>();

  const checkpoint = () => {
    state.wall_s = wall();
    state.optimizer = optimizer.stateJson();
    const dir = saveCheckpoint(ckptRoot, model, optimizer, state, { config_hash: hash });
    pruneCheckpoints(ckptRoot, (s) => ckptEvery !== null && s % ckptEvery === 0, dir);
    lastCkptTime = performance.now();
    emit({ type: 'checkpoint', step: state.step, dir });
  };
  const runKnn = async () => {
    const k0 = performance.now();
    const k = await knnMonitor(model, ds, c, aug);
    state.last_knn_top1 = k.top1;
    state.last_knn_top5 = k.top5;
    state.best_knn_top1 = Math.max(state.best_knn_top1 ?? -Infinity, k.top1);
    emit({ type: 'knn', step: state.step, top1: k.top1, top5: k.top5, seconds: (performance.now() - k0) / 1000 });
    return k;
  };

  let status: RunStatus = 'running';
  let divergedAt: number | null = null;
  try {
    if (!resumed) {
      if (knnEvery !== null) {
        const k = await runKnn();
        appendMetric(metricsPath, { step: 0, epoch: 0, knn_top1: k.top1, knn_top5: k.top5 });
      }
      // step 0: the initial weights (for checks against other implementations), after the step-0 kNN so a
      // resumed run keeps it in its best kNN
      if (ckptEvery !== null) checkpoint();
    }
    // The views of step s are a function of (seed, s) only. With prefetching they are computed on a
    // background thread while the previous step runs (see prefetchViews).
    const orderOf = { n: ds.train.n, batchSize: B, seed: c.seed, shuffle: c.train.shuffle };
    const prefetch = prefetchViews(opts.backend.name);
    let pending: { step: number; views: Promise<{ v1: Float32Array; v2: Float32Array }> } | null = null;
    const start = (step: number) => {
      const views = twoViewArraysAsync(gatherBatch(ds.train, batchIndices(step, orderOf)), aug, c.seed, step);
      views.catch(() => {}); // a prefetch the loop leaves behind (stop, divergence) must not fail the process
      return { step, views };
    };
    const viewsOf = async (step: number): Promise<{ x1: tf.Tensor4D; x2: tf.Tensor4D }> => {
      if (!prefetch) return twoViews(gatherBatch(ds.train, batchIndices(step, orderOf)), aug, c.seed, step);
      const job = pending?.step === step ? pending : start(step);
      pending = step + 1 < totalSteps ? start(step + 1) : null;
      return viewTensors(await job.views, aug.imageSize);
    };
    while (state.step < totalSteps) {
      if (opts.shouldStop?.()) {
        status = 'interrupted';
        break;
      }
      const s = state.step; // optimizer steps done so far; this iteration makes step s+1
      const e = s / ipe;
      const lrNow = lrAt(e, { lr, epochs: c.optim.epochs, warmupEpochs: c.optim.warmup_epochs });
      const m = momentumAt(e, { m0: c.moco.momentum, epochs: c.optim.epochs, schedule: c.moco.momentum_schedule });
      const ts = performance.now();

      const { x1, x2 } = await viewsOf(s);
      if (s < dumpN) {
        for (const [name, x] of [['x1', x1], ['x2', x2]] as const) {
          const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]));
          dumped.set(`step${s}.${name}`, { dtype: 'F32', shape: nchw.shape, data: nchw.dataSync() as Float32Array });
          nchw.dispose();
        }
      }
      const { stats, finite } = await trainStep(model, optimizer, x1, x2, {
        momentum: m,
        lr: lrNow,
        microBatch: c.train.micro_batch,
        guard: (f) => stepOrExplain(f, opts.backend, B),
        injectNan: opts.injectNanAtStep === s + 1,
      });
      const stepS = (performance.now() - ts) / 1000;

      state.step = s + 1;
      state.epoch = state.step / ipe;
      state.images_seen += B;
      state.train_s += stepS;
      const row: MetricRow = {
        step: state.step,
        epoch: Number(state.epoch.toFixed(6)),
        lr: lrNow,
        momentum: m,
        ...statsToRow(stats, groups),
        images_per_s: B / stepS,
      };
      lastLoss = stats[0]!;
      state.last_loss = Number.isFinite(lastLoss) ? lastLoss : null;
      if (!finite) {
        status = 'diverged';
        divergedAt = state.step;
        appendMetric(metricsPath, row);
        emit({ type: 'step', step: state.step, totalSteps, row });
        break;
      }
      const isLast = state.step === totalSteps;
      if (knnEvery !== null && (state.step % knnEvery === 0 || isLast)) {
        const k = await runKnn();
        row.knn_top1 = k.top1;
        row.knn_top5 = k.top5;
      }
      if (state.step % c.train.log_every === 0 || isLast || row.knn_top1 !== undefined) appendMetric(metricsPath, row);
      emit({ type: 'step', step: state.step, totalSteps, row });
      if (s < dumpN && state.step === dumpN) {
        writeSafetensors(join(runDir, 'views.safetensors'), dumped, {
          layout: 'x1 and x2 of step s (0-based) as tensors "step{s}.x1" / "step{s}.x2": float32 [batch, 3, H, W] (NCHW, PyTorch), normalised with the dataset mean/std; rows in batch order',
          steps: String(dumpN),
          seed: String(c.seed),
        });
        dumped.clear();
      }
      const due = ckptEvery !== null ? state.step % ckptEvery === 0 : performance.now() - lastCkptTime > autoCkptMs;
      if (due && !isLast) checkpoint();
      if (state.step % 10 === 0) writeStatus(runDir, 'running', state.step, totalSteps);
      // the step's awaits resolve without giving Node a turn: yield so signal handlers (Ctrl-C) can run
      await new Promise<void>((r) => setImmediate(r));
    }
    if (status === 'running') status = 'completed';
    if (status === 'completed' && knnEvery === null) await runKnn();
    if (status !== 'diverged' || state.step > 0) checkpoint();
  } catch (err) {
    status = 'failed';
    const msg = err instanceof Error ? err.message : String(err);
    writeStatus(runDir, 'failed', state.step, totalSteps, { error: msg });
    optimizer.dispose();
    model.dispose();
    throw err;
  }
  const summary: Summary = {
    status,
    steps: state.step,
    total_steps: totalSteps,
    epochs: Number(state.epoch.toFixed(6)),
    knn_top1: state.last_knn_top1,
    knn_top5: state.last_knn_top1 !== null && Number.isFinite(state.last_knn_top5) ? (state.last_knn_top5 ?? null) : null,
    best_knn_top1: state.best_knn_top1,
    linear_top1: null,
    linear_top5: null,
    diverged_at: divergedAt,
    wall_s: Number(wall().toFixed(3)),
    train_s: Number(state.train_s.toFixed(3)),
    images_per_s: state.train_s > 0 ? Number((state.images_seen / state.train_s).toFixed(2)) : null,
    final_loss: lastLoss,
    backend: opts.backend.name,
    config_hash: hash,
  };
  writeJsonAtomic(join(runDir, 'summary.json'), summary);
  if (status === 'completed' && c.eval.linear.enabled) {
    // linear probe on the final weights (imported lazily: eval/offline.ts imports this module)
    const { linearProbeForRun } = await import('../eval/offline.ts');
    emit({ type: 'phase', step: state.step, text: `linear probe: ${c.eval.linear.epochs} epochs on the frozen encoder` });
    try {
      const lin = await linearProbeForRun(runDir, {
        config: c,
        dataset: ds,
        model,
        onEpoch: (e) =>
          emit({ type: 'phase', step: state.step, text: `linear probe: epoch ${e.epoch}/${e.epochs}, loss ${e.loss.toFixed(4)}, train top-1 ${e.trainTop1.toFixed(2)}% (${e.seconds.toFixed(0)} s)` }),
      });
      summary.linear_top1 = lin.top1;
      summary.linear_top5 = lin.top5;
    } catch (err) {
      optimizer.dispose();
      model.dispose();
      throw err;
    }
  }
  writeStatus(runDir, status, state.step, totalSteps, divergedAt !== null ? { diverged_at: divergedAt } : {});
  emit({ type: 'end', status, step: state.step, summary });
  optimizer.dispose();
  model.dispose();
  return summary;
}

export function readStatus(runDir: string): { status: RunStatus; step: number; pid?: number } | null {
  const p = join(runDir, 'status.json');
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8'));
  } catch {
    return null;
  }
}

export { stepDirName };
