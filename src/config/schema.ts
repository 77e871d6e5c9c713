/**
 * The one run configuration. Every key has a default (the official MoCo v3 ViT recipe, docs/MOCOV3.md "Optimization");
 * unknown keys are errors. Keys are snake_case, as in the YAML files users write.
 */
import { z } from 'zod';
import { ARCH_NAMES } from './archs.ts';

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const posNum = z.number().positive();
const nonNeg = z.number().nonnegative();
const prob = z.number().min(0).max(1);
/** The largest data.image_size (the paper's is 224). */
export const MAX_IMAGE_SIZE = 4096;

export const DATASET_NAMES = ['synthetic', 'fashion-mnist', 'cifar10', 'cifar100', 'imagefolder'] as const;
/** The one list of optimizers (src/optim/ implements each) and of backends (src/engine/backend.ts starts each). */
export const OPTIMIZER_NAMES = ['adamw', 'lamb', 'lars', 'sgd'] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];
export const LINEAR_TRAIN_VIEWS = ['augmented', 'cached'] as const;
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_CHOICES)[number];

export const DataSchema = z
  .object({
    name: z.enum(DATASET_NAMES),
    path: z.string().min(1).nullable(),
    image_size: posInt.max(MAX_IMAGE_SIZE),
    train_size: posInt.nullable(),
    test_size: posInt.nullable(),
    /** null: the dataset's own classes; a number is checked against them (synthetic: how many to make) */
    num_classes: posInt.nullable(),
  })
  .strict();

export const ModelSchema = z
  .object({
    arch: z.enum(ARCH_NAMES as [string, ...string[]]),
    patch_size: posInt.nullable(),
    dim: posInt.nullable(),
    depth: posInt.nullable(),
    heads: posInt.nullable(),
    mlp_ratio: posNum.nullable(),
    patch_proj: z.enum(['learned', 'frozen']),
  })
  .strict();

export const MocoSchema = z
  .object({
    temperature: posNum,
    momentum: prob,
    momentum_schedule: z.enum(['cosine', 'constant']),
    proj_hidden: posInt,
    proj_dim: posInt,
    pred_hidden: posInt,
  })
  .strict();

export const OptimSchema = z
  .object({
    name: z.enum(OPTIMIZER_NAMES),
    base_lr: nonNeg,
    weight_decay: nonNeg,
    batch_size: posInt,
    epochs: posNum,
    warmup_epochs: nonNeg,
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]),
    eps: posNum,
    momentum: prob,
    trust_coefficient: posNum,
    lamb_exclude_bias_norm: z.boolean(),
    max_grad_norm: posNum.nullable(),
  })
  .strict();

export const AugmentSchema = z
  .object({
    preset: z.enum(['mocov3', 'none']),
    crop_min: z.number().gt(0).max(1),
    /** σ range of the Gaussian blur in pixels; null: the recipe's [0.1, 2.0] at 224 px, scaled to data.image_size */
    // at most 1000 px: far past any image's size (a blur that flat is a mean), and the box radius stays an int
    blur_sigma: z.tuple([posNum.max(1000), posNum.max(1000)]).nullable(),
  })
  .strict();

export const TrainSchema = z
  .object({
    backend: z.enum(BACKEND_CHOICES),
    micro_batch: posInt.nullable(),
    shuffle: z.boolean(),
    log_every: posInt,
    knn_every: posInt.nullable(),
    /** the kNN monitor's cadence in epochs (every batch size gets the same resolution); wins over knn_every */
    knn_every_epochs: posNum.nullable(),
    checkpoint_every: posInt.nullable(),
    max_steps: nonNegInt.nullable(),
  })
  .strict();

export const EvalSchema = z
  .object({
    knn: z
      .object({
        k: posInt,
        t: posNum,
        bank_size: posInt.nullable(),
        query_size: posInt.nullable(),
      })
      .strict(),
    linear: z
      .object({
        enabled: z.boolean(),
        epochs: posInt,
        base_lr: posNum,
        batch_size: posInt,
        /**
         * what the probe trains on: 'augmented' (the recipe: random-resized-crop + flip, recomputed every
         * epoch) or 'cached' (the centre view's features computed once: one forward pass in all)
         */
        train_views: z.enum(LINEAR_TRAIN_VIEWS),
      })
      .strict(),
  })
  .strict();

export const RunConfigSchema = z
  .object({
    seed: nonNegInt,
    data: DataSchema,
    model: ModelSchema,
    moco: MocoSchema,
    optim: OptimSchema,
    augment: AugmentSchema,
    train: TrainSchema,
    eval: EvalSchema,
  })
  .strict();

export type RunConfig = z.infer<typeof RunConfigSchema>;

/** A resolved config: every model size filled in from the arch. */
export type ResolvedRunConfig = RunConfig & {
  model: RunConfig['model'] & { patch_size: number; dim: number; depth: number; heads: number; mlp_ratio: number };
  augment: RunConfig['augment'] & { blur_sigma: [number, number] };
};

/** The recipe's blur σ range, [0.1, 2.0] px at 224 px (moco-v3 main_moco.py), scaled to an image size. */
export function recipeBlurSigma(imageSize: number): [number, number] {
  return [(0.1 * imageSize) / 224, (2.0 * imageSize) / 224];
}

/** The official ViT recipe (docs/MOCOV3.md "Optimization": the official main_moco.py and CONFIG.md) at ViT-B/16 scale. */
export const DEFAULTS: RunConfig = {
  seed: 0,
  data: { name: 'imagefolder', path: null, image_size: 224, train_size: null, test_size: null, num_classes: null },
  model: { arch: 'vit-base', patch_size: null, dim: null, depth: null, heads: null, mlp_ratio: null, patch_proj: 'frozen' },
  moco: { temperature: 0.2, momentum: 0.99, momentum_schedule: 'cosine', proj_hidden: 4096, proj_dim: 256, pred_hidden: 4096 },
  optim: {
    name: 'adamw',
    base_lr: 1.5e-4,
    weight_decay: 0.1,
    batch_size: 4096,
    epochs: 300,
    warmup_epochs: 40,
    betas: [0.9, 0.999],
    eps: 1e-8,
    momentum: 0.9,
    trust_coefficient: 0.001,
    lamb_exclude_bias_norm: false,
    max_grad_norm: null,
  },
  augment: { preset: 'mocov3', crop_min: 0.08, blur_sigma: null },
  train: { backend: 'auto', micro_batch: null, shuffle: true, log_every: 1, knn_every: null, knn_every_epochs: null, checkpoint_every: null, max_steps: null },
  eval: {
    knn: { k: 200, t: 0.1, bank_size: null, query_size: null },
    // main_lincls.py with the ViT setting --lr=3 (x batch/256)
    linear: { enabled: true, epochs: 90, base_lr: 3, batch_size: 1024, train_views: 'augmented' },
  },
};
