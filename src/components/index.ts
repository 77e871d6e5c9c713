/**
 * The run config -> the components it names: the model's shape, the optimizer, the dataset and the
 * augmentation. The one place that reads config sections into component options (docs/ARCHITECTURE.md):
 * the training loop, the run-folder evaluation and the CLI build their components here.
 */
import type { ResolvedRunConfig } from '../config/schema.ts';
import { loadDataset, type Dataset } from '../data/index.ts';
import { augmentConfigFor, type AugmentConfig } from '../data/augment.ts';
import type { MocoModelConfig } from '../model/archs.ts';
import { createOptimizer, type NdimOf, type Optimizer } from '../optim/index.ts';

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

/** The optimizer of optim.*; `model` gives each parameter's PyTorch shape (rank rules go through it). */
export function optimizerOf(c: ResolvedRunConfig, model: { torchShape(name: string): number[] }): Optimizer {
  const o = c.optim;
  const ndimOf: NdimOf = (name) => model.torchShape(name).length;
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
    ndimOf,
  );
}

/**
 * The data section of a run config, as loadDataset options. Seed 0: the same data for every run seed
 * (seeds vary the training, not the dataset), so runs that differ only in `seed` share one dataset.
 */
export function dataOptionsOf(c: ResolvedRunConfig): Parameters<typeof loadDataset>[0] {
  return {
    name: c.data.name,
    path: c.data.path,
    trainSize: c.data.train_size,
    testSize: c.data.test_size,
    numClasses: c.data.num_classes ?? undefined,
    imageSize: c.data.image_size,
    seed: 0,
    syntheticImageSize: c.data.image_size,
  };
}

export async function loadRunData(c: ResolvedRunConfig): Promise<Dataset> {
  return loadDataset(dataOptionsOf(c));
}

/** The run's augmentation settings, normalising with the dataset's mean and std. */
export function augmentConfigOf(c: ResolvedRunConfig, ds: Pick<Dataset, 'mean' | 'std'>): AugmentConfig {
  return augmentConfigFor(ds, c.data.image_size, c.augment.preset, c.augment.crop_min, c.augment.blur_sigma);
}
