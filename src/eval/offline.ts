/**
 * Evaluation of a run folder's checkpoint: the weighted kNN on the full train set and the linear probe
 * (docs/MOCOV3.md "Evaluation"), with the results written into the run's summary.json (and knn.json /
 * linear.json) through src/runfolder/. The training loop calls the probe on its final weights.
 *
 * Linear probe views (main_lincls.py): train = RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) + flip,
 * new crops every epoch, so the frozen encoder runs on every batch; test = the centre (evaluation) view.
 * With augmentation off, the train features are computed once from the centre view and cached.
 */
import * as tf from '@tensorflow/tfjs-core';
import { basename, join, relative } from 'node:path';
import { augmentConfigOf, loadRunData, modelConfigOf } from '../components/index.ts';
import type { ResolvedRunConfig } from '../config/schema.ts';
import { Rng } from '../engine/rng.ts';
import { readSafetensors } from '../engine/safetensors.ts';
import { gatherBatch, type Dataset, type ImageBatch, type ImageSplit } from '../data/index.ts';
import { augmentPacked, normalizeLut, packParams, plainParams, sampleCropBox, type AugmentConfig } from '../data/augment.ts';
import { MoCoViT } from '../model/moco.ts';
import { checkNoStrayTensors, checkpointFolderStep, checkpointsDir, CheckpointError, findLastCheckpoint } from '../runfolder/checkpoints.ts';
import { configDiffs, readCheckpointState, resumeCheckpoint } from '../runfolder/resume.ts';
import { configHash } from '../config/load.ts';
import { readRunState } from '../runfolder/state.ts';
import { shellQuote } from '../engine/files.ts';
import { isObj, readJsonObject, runPath, samePath } from '../runfolder/paths.ts';
import { loadRunConfig, writeEvalResult } from '../runfolder/records.ts';
import { mergeSummary, readSummary } from '../runfolder/summary.ts';
import { extractFeaturesPolled, knnOfModel } from './features.ts';
import { cachedSource, linearProbe, type ProbeEpoch, type ProbeResult, type ProbeTrainSource } from './linear.ts';
// for the CLI, which loads this module (and TensorFlow.js) only when it evaluates
export { ProbeDiverged } from './linear.ts';

export interface LoadedModel {
  model: MoCoViT;
  /** the checkpoint folder read */
  checkpoint: string;
  step: number | null;
  /** which run it was of (runStamp), to tell before a result is written that the run is still the folder's */
  stamp: string | null;
}

/**
 * The identity of the run in a folder: its first start (meta.json: when and where), which its resumes keep
 * and `train --force` replaces; null without a meta.json.
 */
function runStamp(runDir: string): string | null {
  const m = readJsonObject(runPath(runDir, 'meta'));
  if (!m) return null;
  const first = Array.isArray(m.starts) && isObj(m.starts[0]) ? m.starts[0] : m;
  return `${String(first.started)}@${String(first.host)}`;
}

/**
 * A model with the base encoder of a checkpoint (the newest unless `checkpoint` names a folder). Only
 * the base encoder is built and read: the features of kNN and the probe come from it alone.
 */
export function loadRunModel(runDir: string, config: ResolvedRunConfig, checkpoint?: string): LoadedModel {
  // read before the checkpoint: a --force and a new start between the two would otherwise go unseen
  const stamp = runStamp(runDir);
  const dir = evalCheckpoint(runDir, checkpoint);
  const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
  const model = new MoCoViT(modelConfigOf(config), config.seed, { encoderOnly: true });
  try {
    // the base encoder's tensors only: the momentum encoder and the predictor are not read
    checkNoStrayTensors(dir, tensors.keys(), (name) => model.vars.has(name), (name) => name.startsWith('base_encoder.'));
    for (const name of model.vars.keys()) {
      if (name.endsWith('num_batches_tracked')) continue;
      const t = tensors.get(name);
      if (!t) throw new CheckpointError(`${dir}/model.safetensors: missing tensor ${name}`);
      const want = model.torchShape(name);
      if (t.shape.join(',') !== want.join(',')) throw new CheckpointError(`${dir}/model.safetensors: ${name} has shape [${t.shape}], the model expects [${want}]`);
      if (t.dtype !== 'F32') throw new CheckpointError(`${dir}/model.safetensors: ${name} is stored as ${t.dtype}, expected F32`);
      // weights gone to NaN or infinity would be evaluated as chance and recorded: refused, with the first such tensor
      const data = t.data as Float32Array;
      const at = data.findIndex((x) => !Number.isFinite(x));
      if (at >= 0) {
        throw new CheckpointError(
          `${dir}/model.safetensors: ${name} holds ${data[at]} (element ${at} of ${data.length}); a checkpoint with weights that are not finite cannot be evaluated: give an earlier one with --checkpoint`,
        );
      }
      const tt = tf.tensor(t.data as Float32Array, t.shape, 'float32');
      try {
        model.assignTorch(name, tt);
      } finally {
        tt.dispose();
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, checkpoint: dir, step: checkpointFolderStep(dir), stamp };
}

/**
 * The checkpoint an evaluation reads (the newest unless `checkpoint` names one), validated; a damaged one
 * fails with one line that offers the newest older complete checkpoint.
 */
export function evalCheckpoint(runDir: string, checkpoint?: string): string {
  const dir = resumeCheckpoint(runDir, checkpoint, {
    offer: (c) => `evaluate the ${c.which} checkpoint with --checkpoint ${c.dir}`,
    none: ' to evaluate',
    evaluate: true,
  });
  if (!dir) {
    // a run that diverged before its first checkpoint was trained: it has no finite weights to evaluate
    const st = readRunState(runDir);
    if (st.state === 'diverged') throw new CheckpointError(`${checkpointsDir(runDir)}: no checkpoint to evaluate: the run diverged${st.step !== null ? ` at step ${st.step}` : ''}, before its first checkpoint`);
    // a completed run keeps its final checkpoint: one with none was trained elsewhere and copied without them (the
    // shipped results keep none); its config trains it again, into a folder of its own. (A run killed before its
    // first checkpoint is to be trained first, here.)
    if (st.state === 'completed') {
      throw new CheckpointError(
        `${checkpointsDir(runDir)}: no checkpoint to evaluate: this completed run's checkpoints are not here (copied without them?); ` +
          `to evaluate its config, train it again: moco3 train -c ${shellQuote(join(runDir, 'config.yaml'))} --out <a new folder>`,
      );
    }
    throw new CheckpointError(`${checkpointsDir(runDir)}: no checkpoint to evaluate (train the run first)`);
  }
  checkCheckpointOfRun(runDir, dir);
  return dir;
}

/**
 * A checkpoint copied in from another run (another seed, lr, model) would be evaluated and its result filed
 * as this run's: its config hash must be the run's, as meta.json records it or as config.yaml hashes now.
 */
function checkCheckpointOfRun(runDir: string, dir: string): void {
  const state = readCheckpointState(dir);
  const hashes = new Set<string>();
  const meta = readJsonObject(runPath(runDir, 'meta'));
  if (typeof meta?.config_hash === 'string') hashes.add(meta.config_hash);
  let config: ResolvedRunConfig | null = null;
  try {
    config = loadRunConfig(runDir);
    hashes.add(configHash(config));
  } catch {
    /* a damaged config.yaml: the evaluation's own read of it says so */
  }
  if (hashes.size === 0 || hashes.has(state.config_hash)) return;
  const diffs = config && isObj(state.config) ? configDiffs(state.config, config) : [];
  throw new CheckpointError(
    `${join(dir, 'state.json')}: a checkpoint of another run (config ${state.config_hash}, this run's ${[...hashes].join(' or ')}` +
      `${diffs.length ? `; its config -> this run's: ${diffs.join(', ')}` : ''}): evaluate it in its own run folder`,
  );
}

// ---------------------------------------------------------------------------------------------
// views of the probe

/**
 * The batch a linear probe trains with: the one asked, or the whole train split when that is smaller (its
 * lr then follows the smaller batch). Runs and baselines (src/train/baselines.ts) alike.
 */
export const probeBatchSize = (asked: number, trainN: number): number => Math.min(asked, trainN);

/** torchvision RandomResizedCrop's default scale for the probe (main_lincls.py). */
export const PROBE_CROP_SCALE: [number, number] = [0.08, 1];

/**
 * RandomResizedCrop + horizontal flip of a batch, normalised NHWC [n, S, S, 3]: the probe's training
 * view (main_lincls.py), computed as PIL does by the augmentation pipeline, with crop boxes and flips
 * drawn from `new Rng(seed, 'probe-aug', epoch, batch)`.
 */
export function probeTrainView(batch: ImageBatch, aug: AugmentConfig, seed: number, epoch: number, batchIndex: number): tf.Tensor4D {
  const S = aug.imageSize;
  const rng = new Rng(seed, 'probe-aug', epoch, batchIndex);
  const params = Array.from({ length: batch.n }, () => {
    const box = sampleCropBox(rng, batch.h, batch.w, PROBE_CROP_SCALE);
    return plainParams(box, rng.bernoulli(0.5));
  });
  return tf.tensor4d(augmentPacked(batch, packParams(params), S, normalizeLut(aug.mean, aug.std)), [batch.n, S, S, 3]);
}

/** Train features recomputed from new random crops in every batch of every epoch. */
export function augmentedSource(model: MoCoViT, split: ImageSplit, aug: AugmentConfig, seed: number): ProbeTrainSource {
  return {
    n: split.n,
    labels: split.labels,
    augmented: true,
    features: (idx, epoch, b) => {
      const x = probeTrainView(gatherBatch(split, idx), aug, seed, epoch, b);
      try {
        return model.features(x);
      } finally {
        x.dispose();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// kNN

export interface KnnRunOptions {
  k?: number;
  t?: number;
  config?: ResolvedRunConfig;
  dataset?: Dataset;
  /** evaluate this model instead of the newest checkpoint's */
  model?: MoCoViT;
  checkpoint?: string;
  /** the kNN monitor's splits (eval.knn.bank_size / query_size: the first images of each) instead of the whole ones */
  monitor?: boolean;
  /** write knn.json and summary.json's `knn_eval` (default true) */
  write?: boolean;
  /** after each batch of features: the images done of the bank's and the queries' together */
  onProgress?: (done: number, total: number) => void;
}

export interface KnnRunResult {
  top1: number;
  top5: number;
  k: number;
  t: number;
  bank: number;
  queries: number;
  step: number | null;
  /** the checkpoint folder evaluated, relative to the run folder (null: the model the loop just trained) */
  checkpoint: string | null;
  seconds: number;
  /** the files written (write: true) */
  wrote?: string[];
}

/**
 * Whether an evaluation is of the run's final weights: the newest checkpoint of a completed run, or the
 * model the loop just trained (`loaded` null). A run not completed has no final weights on disk: training,
 * interrupted or failed, its newest checkpoint is not its last; diverged, its newest is of before the divergence.
 */
function ofFinalWeights(runDir: string, loaded: LoadedModel | null): boolean {
  if (!loaded) return true;
  const newest = findLastCheckpoint(checkpointsDir(runDir));
  return (newest === null || samePath(loaded.checkpoint, newest)) && readRunState(runDir).state === 'completed';
}

/**
 * Where an evaluation's result goes. Of the run's final weights (ofFinalWeights): `<kind>.json`, and its
 * figures merged into summary.json, which speaks for them. Of an earlier checkpoint (`--checkpoint step-N`),
 * or of a run not completed: `<kind>-step-N.json` alone, so the run's own result stays.
 */
function recordEval(runDir: string, kind: 'knn' | 'linear', result: object, loaded: LoadedModel | null, summary: Record<string, unknown>): string[] {
  // the run may have been trained anew (--force moves it aside) while this evaluation ran: its result is then
  // of a run no longer in the folder, and would be filed as the new one's
  // (a run without a readable meta.json at the start, a copied folder, has nothing to tell it by: a resume
  // that writes one meanwhile is no new run)
  if (loaded && loaded.stamp !== null && runStamp(runDir) !== loaded.stamp) {
    throw new CheckpointError(
      `${runDir}: the run was trained anew (--force) while its checkpoint ${basename(loaded.checkpoint)} was evaluated: the result is of the run moved aside, and is not written`,
    );
  }
  if (loaded && !ofFinalWeights(runDir, loaded)) {
    const step = loaded.step ?? basename(loaded.checkpoint);
    const kept = writeEvalResult(runDir, kind, result, step);
    return [`${kind}-step-${step}.json`, ...(kept ? [`${kept} (the earlier ${kind}-step-${step}.json, kept)`] : [])];
  }
  const kept = writeEvalResult(runDir, kind, result);
  mergeSummary(runDir, summary);
  return [`${kind}.json`, 'summary.json', ...(kept ? [`${kept} (the earlier ${kind}.json, kept)`] : [])];
}

/** Weighted kNN (cosine, exp(sim / t) votes of the k nearest) with the whole train split as the bank, on the whole test split. */
export async function knnForRun(runDir: string, opts: KnnRunOptions = {}): Promise<KnnRunResult> {
  const t0 = performance.now();
  const c = opts.config ?? loadRunConfig(runDir);
  const t = opts.t ?? c.eval.knn.t;
  const ds = opts.dataset ?? (await loadRunData(c));
  // the whole splits, or the monitor's: the first bank_size train and query_size test images (src/eval/features.ts)
  const bank = opts.monitor ? Math.min(ds.train.n, c.eval.knn.bank_size ?? ds.train.n) : ds.train.n;
  const queries = opts.monitor ? Math.min(ds.test.n, c.eval.knn.query_size ?? ds.test.n) : ds.test.n;
  // the k used: no more neighbours than the bank holds
  const k = Math.min(opts.k ?? c.eval.knn.k, bank);
  const aug = augmentConfigOf(c, ds);
  const loaded = opts.model ? null : loadRunModel(runDir, c, opts.checkpoint);
  const model = opts.model ?? loaded!.model;
  try {
    // a summary.json the result goes into is checked before the work: a damaged one fails now, with nothing written
    if (opts.write !== false && ofFinalWeights(runDir, loaded)) readSummary(runDir);
    const r = await knnOfModel(model, ds, aug, { k, t, bank, queries }, opts.onProgress);
    const out: KnnRunResult = {
      top1: r.top1,
      top5: r.top5,
      k,
      t,
      bank,
      queries,
      step: loaded?.step ?? null,
      // where it is in the run folder, whatever folder the command ran in
      checkpoint: loaded ? relative(runDir, loaded.checkpoint) : null,
      seconds: (performance.now() - t0) / 1000,
    };
    if (opts.write !== false) {
      out.wrote = recordEval(runDir, 'knn', out, loaded, { knn_eval: { top1: out.top1, top5: out.top5, k, t, bank: out.bank, queries: out.queries, step: out.step } });
    }
    return out;
  } finally {
    loaded?.model.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// linear probe

export interface LinearRunOptions {
  config?: ResolvedRunConfig;
  dataset?: Dataset;
  /** probe this model (e.g. the one the training loop just finished) instead of the newest checkpoint's */
  model?: MoCoViT;
  /** with `model`: the training step its weights are of (recorded as the probe's step) */
  step?: number;
  checkpoint?: string;
  /** default: eval.linear.{epochs, base_lr, batch_size} of the config */
  epochs?: number;
  baseLr?: number;
  batchSize?: number;
  /** random-resized-crop + flip on train (default true); false: centre-view features, computed once and cached */
  augment?: boolean;
  onEpoch?: (e: ProbeEpoch) => void;
  /** called between batches once Node has had a turn (signal handlers run): throws to stop the probe */
  check?: () => void;
  /** write linear.json and summary.json's linear_top1 / linear_top5 / linear (default true) */
  write?: boolean;
}

export interface LinearRunResult extends ProbeResult {
  baseLr: number;
  batchSize: number;
  augmented: boolean;
  trainSize: number;
  testSize: number;
  step: number | null;
  /** the checkpoint folder evaluated, relative to the run folder (null: the model the loop just trained) */
  checkpoint: string | null;
  seconds: number;
  /** the files written (write: true) */
  wrote?: string[];
}

/** The linear probe's training views, in the words summary.json and baselines.json record them. */
export function probeViews(augmented: boolean): string {
  return augmented ? 'random-resized-crop + flip, every epoch' : 'centre view, features cached';
}

export async function linearProbeForRun(runDir: string, opts: LinearRunOptions = {}): Promise<LinearRunResult> {
  const t0 = performance.now();
  const c = opts.config ?? loadRunConfig(runDir);
  const epochs = opts.epochs ?? c.eval.linear.epochs;
  const baseLr = opts.baseLr ?? c.eval.linear.base_lr;
  const batchSize = opts.batchSize ?? c.eval.linear.batch_size;
  const augment = opts.augment ?? c.eval.linear.train_views === 'augmented';
  const ds = opts.dataset ?? (await loadRunData(c));
  const aug = augmentConfigOf(c, ds);
  const loaded = opts.model ? null : loadRunModel(runDir, c, opts.checkpoint);
  const model = opts.model ?? loaded!.model;
  let cached: tf.Tensor2D | null = null;
  let testFeatures: tf.Tensor2D | null = null;
  try {
    // a summary.json the result goes into is checked before the work: a damaged one fails now, with nothing written
    if (opts.write !== false && ofFinalWeights(runDir, loaded)) readSummary(runDir);
    const check = opts.check ?? (() => {});
    testFeatures = await extractFeaturesPolled(model, ds.test, ds.test.n, aug, check);
    let source: ProbeTrainSource;
    if (augment) {
      source = augmentedSource(model, ds.train, aug, c.seed);
    } else {
      cached = await extractFeaturesPolled(model, ds.train, ds.train.n, aug, check);
      source = cachedSource(cached, ds.train.labels);
    }
    const r = await linearProbe(source, { features: testFeatures, labels: ds.test.labels }, {
      numClasses: ds.numClasses,
      epochs,
      baseLr,
      batchSize: probeBatchSize(batchSize, ds.train.n),
      seed: c.seed,
      onEpoch: opts.onEpoch,
      check,
    });
    const out: LinearRunResult = {
      ...r,
      baseLr,
      batchSize: probeBatchSize(batchSize, ds.train.n),
      augmented: augment,
      trainSize: ds.train.n,
      testSize: ds.test.n,
      step: loaded?.step ?? opts.step ?? null,
      // where it is in the run folder, whatever folder the command ran in
      checkpoint: loaded ? relative(runDir, loaded.checkpoint) : null,
      seconds: (performance.now() - t0) / 1000,
    };
    if (opts.write !== false) {
      check(); // the last word before linear.json and summary.json are written (a lost lock, Ctrl-C)
      out.wrote = recordEval(runDir, 'linear', out, loaded, {
        linear_top1: out.top1,
        linear_top5: out.top5,
        // a probe of the training's end that diverged said so: this one did not
        linear_error: undefined,
        linear: {
          epochs,
          base_lr: baseLr,
          lr: out.lr,
          batch_size: out.batchSize,
          train_views: probeViews(augment),
          train_size: out.trainSize,
          test_size: out.testSize,
          step: out.step,
          final_loss: out.losses[out.losses.length - 1] ?? null,
          seconds: Number(out.seconds.toFixed(3)),
        },
      });
    }
    return out;
  } finally {
    cached?.dispose();
    testFeatures?.dispose();
    loaded?.model.dispose();
  }
}
