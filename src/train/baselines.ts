/**
 * What pretraining has to beat, per dataset: the untrained (random-init) encoder, evaluated exactly as a
 * run's final weights are (the kNN monitor and the linear probe of the run's config, its training views
 * included: `eval.linear.train_views`), and a linear classifier on the pixels themselves (the centre view,
 * normalised with the dataset mean/std as the encoder sees it, with the same probe's epochs, lr and batch).
 * The report prints them beside every sweep's numbers.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ResolvedRunConfig } from '../config/schema.ts';
import type { Dataset, ImageSplit } from '../data/index.ts';
import { gatherBatch } from '../data/sampler.ts';
import { evalView, type AugmentConfig } from '../data/augment.ts';
import { MoCoViT } from '../model/moco.ts';
import { cachedSource, linearProbe, ProbeDiverged, type ProbeTrainSource } from '../eval/linear.ts';
import { augmentedSource, probeBatchSize, probeViews } from '../eval/offline.ts';
import { augmentConfigOf, loadRunData, modelConfigOf } from '../components/index.ts';
import { extractFeaturesPolled, knnMonitor } from '../eval/features.ts';
import { knnSettingsOf, type KnnSettings } from '../runfolder/baselines.ts';

export interface BaselineFigures {
  /** the random-init encoder (seed = the config's seed) */
  random_init: { knn_top1: number; knn_top5: number; linear_top1: number; linear_top5: number };
  /** one linear layer on the normalised centre-view pixels */
  pixels: { linear_top1: number; linear_top5: number; dim: number };
  /** how the linear probes were trained; train_views: the encoder's, in the words of a run's summary.json (the pixels': the centre view) */
  linear: { epochs: number; base_lr: number; batch_size: number; train_views: string };
  /** the kNN monitor's settings (eval.knn; not in files written before they were recorded) */
  knn?: KnnSettings;
  seed: number;
  /** the TensorFlow.js backend they were computed on (not in files written before it was recorded) */
  backend?: string;
  seconds: number;
}

/** Normalised centre-view pixels of the first n images, flattened to [n, C*H*W]. */
export function pixelFeatures(split: ImageSplit, n: number, aug: AugmentConfig, batch = 512): tf.Tensor2D {
  const parts: tf.Tensor2D[] = [];
  for (let s = 0; s < n; s += batch) {
    const idx = Int32Array.from({ length: Math.min(batch, n - s) }, (_, i) => s + i);
    parts.push(tf.tidy(() => {
      const v = evalView(gatherBatch(split, idx), aug);
      return tf.reshape(v, [idx.length, -1]) as tf.Tensor2D;
    }));
  }
  const out = tf.concat(parts) as tf.Tensor2D;
  parts.forEach((p) => p.dispose());
  return out;
}

async function probeOn(whose: string, train: ProbeTrainSource, test: tf.Tensor2D, ds: Dataset, c: ResolvedRunConfig, check?: () => void): Promise<{ top1: number; top5: number }> {
  try {
    const r = await linearProbe(train, { features: test, labels: ds.test.labels }, {
      ...(check ? { check } : {}),
      numClasses: ds.numClasses,
      epochs: c.eval.linear.epochs,
      baseLr: c.eval.linear.base_lr,
      // as the runs' probe (src/eval/offline.ts)
      batchSize: probeBatchSize(c.eval.linear.batch_size, ds.train.n),
      seed: c.seed,
    });
    return { top1: r.top1, top5: r.top5 };
  } catch (e) {
    // which probe, and the key that set its lr
    if (e instanceof ProbeDiverged) throw new ProbeDiverged(e.epoch, e.lr, e.what, whose, `eval.linear.base_lr ${c.eval.linear.base_lr}, seed ${c.seed}`);
    throw e;
  }
}

/**
 * The baselines of a run config's dataset and encoder (its seed, its probe). `check` is called between
 * its parts and after each batch of its feature passes and probes, once Node has had a turn (signal handlers
 * and timers run): it throws to stop them, with every tensor freed. `onPart` is told each part as it ends (each
 * takes minutes on a CPU: a log is not silent meanwhile).
 */
export async function computeBaselines(c: ResolvedRunConfig, dataset?: Dataset, check?: () => void, onPart?: (text: string) => void): Promise<BaselineFigures> {
  const t0 = performance.now();
  const ds = dataset ?? (await loadRunData(c));
  const aug = augmentConfigOf(c, ds);
  const model = new MoCoViT(modelConfigOf(c), c.seed);
  const held: tf.Tensor[] = [];
  try {
    // every pass gives Node a turn between its batches: a lock's heartbeat (the sweep's baselines lock) must
    // not starve for the minutes a large split takes, and a signal stops it within a batch
    const poll = check ?? (() => {});
    const knn = await knnMonitor(model, ds, c, aug, poll);
    onPart?.(`part 1 of 3: untrained encoder kNN ${knn.top1.toFixed(2)}%; its linear probe next`);
    const augmented = c.eval.linear.train_views === 'augmented';
    const teF = await extractFeaturesPolled(model, ds.test, ds.test.n, aug, poll);
    held.push(teF);
    let encTrain: ProbeTrainSource;
    if (augmented) {
      encTrain = augmentedSource(model, ds.train, aug, c.seed);
    } else {
      const trF = await extractFeaturesPolled(model, ds.train, ds.train.n, aug, poll);
      held.push(trF);
      encTrain = cachedSource(trF, ds.train.labels);
    }
    check?.();
    const enc = await probeOn("the baselines' linear probe of the untrained encoder", encTrain, teF, ds, c, check);
    onPart?.(`part 2 of 3: untrained encoder linear ${enc.top1.toFixed(2)}%; linear on pixels next`);
    tf.dispose(held.splice(0));
    const trP = pixelFeatures(ds.train, ds.train.n, aug);
    held.push(trP);
    const teP = pixelFeatures(ds.test, ds.test.n, aug);
    held.push(teP);
    const pix = await probeOn("the baselines' linear probe on pixels", cachedSource(trP, ds.train.labels), teP, ds, c, check);
    return {
      random_init: { knn_top1: knn.top1, knn_top5: knn.top5, linear_top1: enc.top1, linear_top5: enc.top5 },
      pixels: { linear_top1: pix.top1, linear_top5: pix.top5, dim: trP.shape[1] },
      linear: { epochs: c.eval.linear.epochs, base_lr: c.eval.linear.base_lr, batch_size: probeBatchSize(c.eval.linear.batch_size, ds.train.n), train_views: probeViews(augmented) },
      knn: knnSettingsOf(c),
      seed: c.seed,
      backend: tf.getBackend(),
      seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
    };
  } finally {
    tf.dispose(held);
    model.dispose();
  }
}
