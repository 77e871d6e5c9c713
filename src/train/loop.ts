/**
 * The training loop of one run (docs/ARCHITECTURE.md "How a step flows"): setup, `for step`, teardown.
 * The step itself (views -> MoCo forward/backward -> gradient statistics -> optimizer) is trainStep in
 * step.ts; the run folder's files are written through src/runfolder/.
 */
import { mkdirSync } from 'node:fs';
import { augmentConfigOf, loadRunData, modelConfigOf, optimizerOf } from '../components/index.ts';
import { configHash, configToYaml } from '../config/load.ts';
import { firstLine, notInputFault } from '../config/errors.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import type { BackendInfo } from '../engine/backend.ts';
import { shellQuote } from '../engine/files.ts';
import { clearWebGpuErrors, releaseFreeGpuBuffers } from '../engine/webgpu.ts';
import { DataError, type Dataset } from '../data/index.ts';
import { itersPerEpoch } from '../data/sampler.ts';
import { knnMonitor } from '../eval/features.ts';
import { linearProbeForRun } from '../eval/offline.ts';
import { ProbeDiverged } from '../eval/linear.ts';
import { MoCoViT } from '../model/moco.ts';
import { lrAt, momentumAt, scaledLr } from '../optim/schedule.ts';
import { CheckpointError, checkpointsDir, pruneCheckpoints, rewindLast } from '../runfolder/checkpoints.ts';
import { appendMetric, metricsPath, readMetrics, resetMetrics, syncMetrics, truncateMetrics, type MetricRow } from '../runfolder/metrics.ts';
import { runPath } from '../runfolder/paths.ts';
import { checkResumeConfig, readCheckpointState, resumeCheckpoint } from '../runfolder/resume.ts';
import { writeMeta, writeRunConfig } from '../runfolder/records.ts';
import { assertLockHeld, mayWrite } from '../runfolder/lock.ts';
import { StatusWriter, type RunStatus } from '../runfolder/status.ts';
import { mergeSummary, readSummary, writeSummary, type Summary } from '../runfolder/summary.ts';
import { loadCheckpoint, saveCheckpoint, type LoopState } from './checkpoint.ts';
import { runMeta } from './meta.ts';
import { statsToRow } from './metrics.ts';
import { trainStep, weightsFinite } from './step.ts';
import { stepViews, ViewDump, viewsOfSteps } from './views.ts';

export type TrainEvent =
  | { type: 'start'; runDir: string; totalSteps: number; startStep: number; resumed: boolean; params: number; knnTop1: number | null }
  | { type: 'step'; step: number; totalSteps: number; row: MetricRow }
  | { type: 'knn'; step: number; top1: number; top5: number; seconds: number }
  | { type: 'checkpoint'; step: number; dir: string }
  | { type: 'phase'; step: number; text: string }
  | { type: 'end'; status: RunStatus; step: number; summary: Summary };

export interface TrainOptions {
  config: ResolvedRunConfig;
  runDir: string;
  backend: BackendInfo;
  /** continue from the newest checkpoint of runDir when there is one */
  resume?: boolean;
  /** with resume: this checkpoint folder instead of the newest (validated by resumeCheckpoint) */
  checkpoint?: string;
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

/**
 * What a run needs of its data, checked before anything is written: one full batch of training images
 * (batches are never partial), and a train split whose every channel varies (the views are divided by its
 * per-channel std).
 */
export function checkRunData(ds: Pick<Dataset, 'name' | 'train' | 'std' | 'source'>, batchSize: number): void {
  if (ds.train.n < batchSize) {
    throw new DataError(
      `data.train_size: the ${ds.name} train split has ${ds.train.n} images, fewer than one batch of optim.batch_size ${batchSize}: use more images or a smaller batch`,
    );
  }
  const flat = ds.std.findIndex((s) => !(s > 0));
  if (flat >= 0) {
    const channel = ['red', 'green', 'blue'][flat];
    throw new DataError(
      `${ds.source}: the ${channel} channel is the same value in every train image (std 0), and the views are divided by that std; use images whose every channel varies`,
    );
  }
}

/**
 * A checkpoint goes on only with the data it was trained on: its step over its epoch is the steps an epoch
 * it had. An image folder that gained or lost files since (or that moco3 now reads otherwise) keeps the run's
 * config and hash, but would change the schedule in the middle of the run, and what the steps saw.
 */
export function checkResumeData(runDir: string, st: { step: number; epoch: number; train_images?: number }, ipe: number, batch: number, images: number): void {
  const todo = 'give it the data it was trained on, or train it anew (`moco3 train --force`; in a sweep, move its folder out of the sweep\'s)';
  // the images it was trained on, which checkpoints keep since they were counted; before, its steps an epoch
  if (st.train_images !== undefined) {
    if (st.train_images === images) return;
    throw new CheckpointError(`${runDir}: its checkpoint of step ${st.step} was trained on a train split of ${st.train_images} images, which now holds ${images}: to resume it, ${todo}`);
  }
  if (!(st.step > 0 && st.epoch > 0)) return;
  const had = st.step / st.epoch;
  if (Math.abs(had - ipe) <= 1e-6 * ipe) return;
  throw new CheckpointError(
    `${runDir}: its checkpoint of step ${st.step} was trained at ${Math.round(had)} steps an epoch, and the data now gives ${ipe} ` +
      `(batch ${batch}): the train split changed since; to resume it, ${todo}`,
  );
}

/** The linear probe was stopped between two of its batches (shouldStop: Ctrl-C, a lost lock). */
class ProbeStopped extends Error {}

export function countParams(model: MoCoViT): number {
  return model.trainableNames().reduce((a, n) => a + model.vars.get(n)!.size, 0);
}

/**
 * The steps of the schedule: optim.epochs x iterations per epoch, whole steps (at least one). The product
 * is rounded to 12 digits first: 0.57 x 100 is 56.99999999999999 in floating point, and its floor lost the
 * last step of such a fractional epoch count.
 */
export function scheduleSteps(epochs: number, itersPerEpoch: number): number {
  return Math.max(1, Math.floor(Number((epochs * itersPerEpoch).toPrecision(12))));
}

/** summary.json's keys of a linear probe, emptied (undefined: the key goes) where the training it probed is not the summary's. */
const NO_PROBE = { linear_top1: null, linear_top5: null, linear: undefined, linear_error: undefined };

/** summary.json's figures of the training so far (no status, probe or divergence). */
type TrainingFigures = Pick<
  Summary,
  'steps' | 'total_steps' | 'epochs' | 'knn_top1' | 'knn_top5' | 'knn_step' | 'best_knn_top1' | 'wall_s' | 'train_s' | 'images_per_s' | 'final_loss'
>;

/** The kNN monitor's cadence in steps: train.knn_every_epochs (rounded to whole steps) or train.knn_every. */
export function knnEverySteps(c: ResolvedRunConfig, itersPerEpoch: number): number | null {
  if (c.train.knn_every_epochs !== null) return Math.max(1, Math.round(c.train.knn_every_epochs * itersPerEpoch));
  return c.train.knn_every;
}

function freshState(hash: string): LoopState {
  return {
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
}

export async function trainRun(opts: TrainOptions): Promise<Summary> {
  // ---- setup: data, schedule, model, optimizer, the run folder
  const c = opts.config;
  const { runDir } = opts;
  const emit = opts.onEvent ?? (() => {});
  const hash = configHash(c);
  const ckptRoot = checkpointsDir(runDir);
  // an error the GPU reported after the previous run's last read-back (a sweep's runs share a process) is not this run's
  clearWebGpuErrors();
  // nor are the GPU buffers the previous run left for reuse, at its own sizes, this one's to carry
  releaseFreeGpuBuffers();

  const ds = opts.dataset ?? (await loadRunData(c));
  const aug = augmentConfigOf(c, ds);
  const B = c.optim.batch_size;
  checkRunData(ds, B);
  const ipe = itersPerEpoch(ds.train.n, B);
  const schedule = scheduleSteps(c.optim.epochs, ipe);
  const totalSteps = c.train.max_steps === null ? schedule : Math.min(schedule, c.train.max_steps);
  const lr = scaledLr(c.optim.base_lr, B);
  const knnEvery = knnEverySteps(c, ipe);

  // the checkpoint and its config are checked before a tensor or a folder exists
  const lostRows: string[] = [];
  const last = opts.resume ? (opts.checkpoint ?? resumeCheckpoint(runDir, undefined, { note: (t) => lostRows.push(t), logEvery: c.train.log_every })) : null;
  if (last) {
    const st = readCheckpointState(last);
    checkResumeConfig(runDir, c, st);
    checkResumeData(runDir, st, ipe, B, ds.train.n);
  }
  // and its metrics, which the resume cuts at the checkpoint's step: a damaged line fails here, status untouched
  if (last) readMetrics(metricsPath(runDir));

  mkdirSync(runDir, { recursive: true });
  const model = new MoCoViT(modelConfigOf(c), c.seed);
  let optimizer: ReturnType<typeof optimizerOf>;
  try {
    optimizer = optimizerOf(c, model);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const groups = model.paramGroups();
  const status = new StatusWriter(runDir, totalSteps);
  let state = freshState(hash);
  // the step of the last kNN (summary.json's knn_step): a diverged run's may be step 0's
  let knnStep: number | null = null;
  let started = false; // from here on status.json speaks for this run
  // the training's figures so far (summary.json's), once the loop's state is set up: a failure writes them
  let figures: (() => TrainingFigures) | null = null;
  // the linear probe of this part's final weights has ended (its figures, or why it has none, are in summary.json)
  let probed = false;
  try {
    // the data may have taken long to load: a run taken over meanwhile is not touched, not even reset
    assertLockHeld(runDir);
    if (last) {
      state = loadCheckpoint(last, model, optimizer);
      // a checkpoint asked for, or older than the newest (whose metrics rows were lost): the run goes on
      // from it, and so does a resume after a kill. The status first: killed between these writes, the run
      // reads interrupted (not a completed run's last.json rewound), and a resume from either checkpoint
      // cuts the metrics to its own step. Resumed from the newest, last.json already names it
      status.running(state.step);
      // from here on a failure is the run's: failed, with its error (not left running)
      started = true;
      rewindLast(checkpointsDir(runDir), last, state.step);
      for (const text of lostRows) emit({ type: 'phase', step: state.step, text });
      const kept = truncateMetrics(runDir, state.step, (note) => emit({ type: 'phase', step: state.step, text: note }));
      knnStep = kept.filter((r) => r.knn_top1 !== undefined).at(-1)?.step ?? null;
    } else {
      resetMetrics(runDir);
    }
    const resumed = last !== null;
    let lastLoss: number | null = state.last_loss ?? null;
    writeRunConfig(runDir, configToYaml(c));
    const metaNote = writeMeta(runDir, runMeta({ backend: opts.backend, command: opts.command ?? process.argv, resumedFrom: resumed ? state.step : null, hash, params: countParams(model) }), resumed);
    if (metaNote) emit({ type: 'phase', step: state.step, text: metaNote });
    status.running(state.step);
    started = true;
    // a resumed run's last kNN (its checkpoint keeps it): the progress shows it until the monitor runs again
    emit({ type: 'start', runDir, totalSteps, startStep: state.step, resumed, params: countParams(model), knnTop1: resumed ? (state.last_knn_top1 ?? null) : null });

    const t0 = performance.now();
    const wallAtStart = state.wall_s;
    const wall = () => wallAtStart + (performance.now() - t0) / 1000;
    let lastCkptTime = performance.now();
    const ckptEvery = c.train.checkpoint_every;
    const autoCkptMs = (opts.checkpointSeconds ?? 120) * 1000;
    // the resolved config goes with every checkpoint: a resume refused for another config names the keys that differ
    const ckptConfig = JSON.parse(JSON.stringify(c)) as Record<string, unknown>;
    const checkpoint = async () => {
      assertLockHeld(runDir);
      state.wall_s = wall();
      state.optimizer = optimizer.stateJson();
      syncMetrics(runDir);
      const dir = await saveCheckpoint(ckptRoot, model, optimizer, { ...state, config: ckptConfig, train_images: ds.train.n }, { config_hash: hash });
      pruneCheckpoints(ckptRoot, (s) => ckptEvery !== null && s % ckptEvery === 0, dir);
      lastCkptTime = performance.now();
      emit({ type: 'checkpoint', step: state.step, dir });
    };
    const runKnn = async () => {
      const k0 = performance.now();
      const k = await knnMonitor(model, ds, c, aug);
      state.last_knn_top1 = k.top1;
      state.last_knn_top5 = k.top5;
      knnStep = state.step;
      // the best the training reached: step 0 is the untrained encoder, no part of it (as in the report)
      if (state.step > 0) state.best_knn_top1 = Math.max(state.best_knn_top1 ?? -Infinity, k.top1);
      emit({ type: 'knn', step: state.step, top1: k.top1, top5: k.top5, seconds: (performance.now() - k0) / 1000 });
      return k;
    };

    if (!resumed) {
      // step 0 is also the last of a run of no steps (train.max_steps=0: the untrained encoder), which ends
      // as every run does, with its kNN (its checkpoint comes at the end, as every run's last one does)
      if (knnEvery !== null || totalSteps === 0) {
        const k = await runKnn();
        assertLockHeld(runDir);
        appendMetric(runDir, { step: 0, epoch: 0, knn_top1: k.top1, knn_top5: k.top5 });
      }
      // step 0: the initial weights (for checks against other implementations)
      if (ckptEvery !== null) await checkpoint();
    }

    // ---- for step: s optimizer steps are done, this iteration makes step s+1
    const viewsOf = stepViews(ds, aug, c, opts.backend.name, totalSteps);
    const dumpSteps = Math.min(opts.dumpViews ?? 0, totalSteps);
    const dump = new ViewDump(runPath(runDir, 'views'), dumpSteps, c.seed);
    // a resume before step N (the file is written at step N), or after it without a file of these N steps (none,
    // one of fewer steps asked before, or one cut at a divergence): the views of the steps before the checkpoint
    // are made again; they depend on (seed, step) only
    if (resumed && dumpSteps > 0 && state.step > 0 && (state.step < dumpSteps || !viewsOfSteps(runPath(runDir, 'views'), dumpSteps, c.seed))) {
      const remake = stepViews(ds, aug, c, opts.backend.name, dumpSteps);
      for (let s = 0; s < Math.min(state.step, dumpSteps); s++) {
        const v = await remake(s);
        try {
          await dump.add(s, v);
        } finally {
          v.x1.dispose();
          v.x2.dispose();
        }
      }
      dump.flush(Math.min(state.step, dumpSteps));
    }
    let outcome: 'completed' | 'diverged' | 'interrupted' = 'completed';
    // the last step's metrics row where train.log_every left it out (a divergence found at a stop writes it)
    let unlogged: MetricRow | null = null;
    let divergedAt: number | null = null;
    figures = () => ({
      steps: state.step,
      total_steps: totalSteps,
      epochs: Number(state.epoch.toFixed(6)),
      knn_top1: state.last_knn_top1,
      knn_top5: state.last_knn_top1 !== null && Number.isFinite(state.last_knn_top5) ? (state.last_knn_top5 ?? null) : null,
      knn_step: state.last_knn_top1 === null ? null : knnStep,
      best_knn_top1: state.best_knn_top1,
      wall_s: Number(wall().toFixed(3)),
      train_s: Number(state.train_s.toFixed(3)),
      images_per_s: state.train_s > 0 ? Number((state.images_seen / state.train_s).toFixed(2)) : null,
      final_loss: lastLoss,
    });
    // a resumed run's summary.json is its earlier end's (completed, with a probe of other weights; interrupted at
    // another step): from here on it speaks for this part, running at the checkpoint's figures, until the end
    // rewrites it (killed meanwhile, it said completed with the old accuracies while status.json said running)
    if (resumed && readSummary(runDir)) {
      assertLockHeld(runDir);
      mergeSummary(runDir, { ...figures(), ...NO_PROBE, status: 'running', diverged_at: null, error: undefined });
    }
    for (let s = state.step; s < totalSteps; s++) {
      if (opts.shouldStop?.()) {
        outcome = 'interrupted';
        break;
      }
      const e = s / ipe;
      const lrNow = lrAt(e, { lr, epochs: c.optim.epochs, warmupEpochs: c.optim.warmup_epochs });
      const m = momentumAt(e, { m0: c.moco.momentum, epochs: c.optim.epochs, schedule: c.moco.momentum_schedule });
      const ts = performance.now();
      const views = await viewsOf(s);
      try {
        await dump.add(s, views);
      } catch (e) {
        // the step takes the views over only once it runs
        views.x1.dispose();
        views.x2.dispose();
        throw e;
      }
      const { stats, finite: statsFinite } = await trainStep(model, optimizer, views.x1, views.x2, {
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
      const row: MetricRow = { step: state.step, epoch: Number(state.epoch.toFixed(6)), lr: lrNow, momentum: m, ...statsToRow(stats, groups), images_per_s: B / stepS };
      lastLoss = stats[0]!;
      state.last_loss = Number.isFinite(lastLoss) ? lastLoss : null;
      const isLast = state.step === totalSteps;
      const knnDue = isLast || (knnEvery !== null && state.step % knnEvery === 0);
      const due = ckptEvery !== null ? state.step % ckptEvery === 0 : performance.now() - lastCkptTime > autoCkptMs;
      // an update that overflowed under a finite loss (an absurd lr) left non-finite weights: the next step's
      // loss would show it, but a kNN, checkpoint or end of training that comes first would measure or save
      // them. The weights are checked there (one number read back), and the run diverged at this step
      const finite = statsFinite && (!(knnDue || due) || (await weightsFinite(model.vars)));
      if (!finite) {
        outcome = 'diverged';
        divergedAt = state.step;
        assertLockHeld(runDir);
        appendMetric(runDir, row);
        emit({ type: 'step', step: state.step, totalSteps, row });
        // --dump-views: the steps up to the divergence are the ones to replay (the run is final, never resumed)
        dump.flushPartial(state.step);
        break;
      }
      // the monitor's cadence, and the end of training with the monitor off too: the final kNN goes into the
      // last step's metrics row either way
      if (knnDue) {
        const k = await runKnn();
        row.knn_top1 = k.top1;
        row.knn_top5 = k.top5;
      }
      // another process that took the run over (this one was frozen past the lock timeout) owns it now
      assertLockHeld(runDir);
      const logged = state.step % c.train.log_every === 0 || isLast || row.knn_top1 !== undefined;
      if (logged) appendMetric(runDir, row);
      unlogged = logged ? null : row;
      emit({ type: 'step', step: state.step, totalSteps, row });
      dump.flush(state.step);
      if (due && !isLast) await checkpoint();
      // every 10 steps, and at the last: the final checkpoint, summary and linear probe follow at that step
      if (state.step % 10 === 0 || isLast) {
        assertLockHeld(runDir);
        status.running(state.step);
      }
      // the step's awaits resolve without giving Node a turn: yield so signal handlers (Ctrl-C) can run
      await new Promise<void>((r) => setImmediate(r));
    }

    // ---- teardown: checkpoint, summary, linear probe, final status (the final kNN ran at the last step)
    // a diverged run keeps its last finite checkpoint: its non-finite weights are nothing to resume from, and
    // a run killed before its final status, resumed, trains to the same divergence again
    // a run stopped right after an update that overflowed (its weights unchecked since): diverged there
    if (outcome === 'interrupted' && state.step > 0 && !(await weightsFinite(model.vars))) {
      outcome = 'diverged';
      divergedAt = state.step;
      // as a divergence found in the loop: its step's row, and the views of the steps up to it
      assertLockHeld(runDir);
      if (unlogged?.step === state.step) appendMetric(runDir, unlogged);
      const unmarked = dump.flushPartial(state.step);
      if (unmarked) emit({ type: 'phase', step: state.step, text: `--dump-views: ${unmarked}` });
    }
    if (outcome !== 'diverged') await checkpoint();
    const f = figures();
    const summary: Summary = {
      status: outcome,
      steps: f.steps,
      total_steps: f.total_steps,
      epochs: f.epochs,
      knn_top1: f.knn_top1,
      knn_top5: f.knn_top5,
      knn_step: f.knn_step,
      best_knn_top1: f.best_knn_top1,
      linear_top1: null,
      linear_top5: null,
      diverged_at: divergedAt,
      wall_s: f.wall_s,
      train_s: f.train_s,
      images_per_s: f.images_per_s,
      final_loss: f.final_loss,
      backend: opts.backend.name,
      config_hash: hash,
    };
    // what `moco3 eval knn` merged in before a resume stays: it says which checkpoint step it measured
    let evaluated: Record<string, unknown> = {};
    try {
      const prev = readSummary(runDir);
      if (prev && prev.knn_eval !== undefined) evaluated = { knn_eval: prev.knn_eval };
    } catch {
      /* a damaged summary.json is replaced by this one */
    }
    // the training's figures are written before the linear probe runs, the run still 'running' until it has
    const probing = outcome === 'completed' && c.eval.linear.enabled;
    assertLockHeld(runDir);
    writeSummary(runDir, { ...evaluated, ...summary, ...(probing ? { status: 'running' } : {}) } as Summary);
    if (probing) {
      emit({ type: 'phase', step: state.step, text: `linear probe: ${c.eval.linear.epochs} epochs on the frozen encoder` });
      try {
        const lin = await linearProbeForRun(runDir, {
          config: c,
          dataset: ds,
          model,
          step: state.step,
          onEpoch: (e) =>
            emit({ type: 'phase', step: state.step, text: `linear probe: epoch ${e.epoch}/${e.epochs}, loss ${e.loss.toFixed(4)}, train top-1 ${e.trainTop1.toFixed(2)}% (${e.seconds.toFixed(0)} s)` }),
          check: () => {
            assertLockHeld(runDir);
            if (opts.shouldStop?.()) throw new ProbeStopped();
          },
        });
        summary.linear_top1 = lin.top1;
        summary.linear_top5 = lin.top5;
        probed = true;
        assertLockHeld(runDir);
        mergeSummary(runDir, { status: outcome });
      } catch (e) {
        if (e instanceof ProbeDiverged) {
          // the pretraining completed; the probe's lr was too large: no accuracy (its head would score 0%), said
          const note = `${e.message} (eval.linear.base_lr ${c.eval.linear.base_lr}): linear top-1 left empty; \`moco3 eval linear ${shellQuote(runDir)} --lr <smaller>\` probes it again`;
          emit({ type: 'phase', step: state.step, text: note });
          summary.linear_error = e.message;
          probed = true;
          assertLockHeld(runDir);
          mergeSummary(runDir, { status: outcome, linear_error: e.message });
        } else if (e instanceof ProbeStopped) {
          // stopped in the probe (Ctrl-C): the training is checkpointed at its last step; a resume runs the probe
          outcome = 'interrupted';
          summary.status = outcome;
          assertLockHeld(runDir);
          mergeSummary(runDir, { status: outcome });
        } else throw e;
      }
    }
    assertLockHeld(runDir);
    status.final(outcome, state.step, divergedAt);
    emit({ type: 'end', status: outcome, step: state.step, summary });
    return summary;
  } catch (err) {
    // a lock lost (LockLostError or another error after it) leaves the run to its new holder: nothing written
    if (started && mayWrite(runDir)) {
      // status.json and summary.json tell the truth: failed, with the error. Best effort: on a full disk
      // these small writes may fail too, and the run's own error is the one to report.
      const msg = firstLine(err);
      try {
        status.failed(state.step, msg);
        // a summary.json there (an earlier part of a resumed run's, or this one's before its probe) takes the
        // figures reached, not only the status: they would be the earlier part's
        // no probe either: one there was of an earlier part's weights (a run resumed from an older checkpoint)
        // (undefined: the key goes); a probe of this part's final weights that ended before the failure stays
        if (readSummary(runDir)) mergeSummary(runDir, { ...(figures?.() ?? {}), ...(figures && !probed ? NO_PROBE : {}), status: 'failed', error: msg });
      } catch {
        /* the run's error below says what happened */
      }
      // a run that began and failed exits 1, whatever the error (src/cli/main.ts): not 2, bad input
      if (err instanceof Error) notInputFault(err);
    }
    throw err;
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
