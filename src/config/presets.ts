/**
 * Scale presets (README.md "Presets"): a preset fixes model, data and epochs; a sweep fixes what varies.
 * Each is a partial config laid over the official defaults.
 */
import type { RunConfig } from './schema.ts';

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

export const PRESET_NAMES = ['smoke', 'cpu', 'gpu', 'paper'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const PRESETS: Record<PresetName, { about: string; config: DeepPartial<RunConfig> }> = {
  smoke: {
    about: 'ViT-Smoke (dim 32, depth 2) on built-in synthetic 16 px images: tests and the demo, seconds',
    config: {
      data: { name: 'synthetic', image_size: 16, train_size: 2560, test_size: 500 },
      model: { arch: 'vit-smoke' },
      moco: { proj_hidden: 128, proj_dim: 64, pred_hidden: 128 },
      optim: { batch_size: 128, epochs: 12, warmup_epochs: 2, base_lr: 1.5e-3 },
      // the monitor in epochs, so every batch size of a smoke sweep has the same points on the epoch axis
      train: { log_every: 1, knn_every: null, knn_every_epochs: 1 },
      eval: { knn: { bank_size: null, query_size: null }, linear: { epochs: 20, batch_size: 256 } },
    },
  },
  cpu: {
    about: 'ViT-Micro/7 (dim 64, depth 4, 16 patches) on Fashion-MNIST at 28 px: a CPU, 10-30 minutes of training per sweep and seed',
    // calibrated so that the paper's sweeps show instability on 2 cores (docs/CALIBRATION.md): 28 px with
    // 7 px patches is 4x faster than 32 px with 4 px ones; the base lr is the official 1.5e-4 x 160 (the
    // sweep scale's lr factor) and the warmup 10% of training (the scale's warmup factor)
    config: {
      data: { name: 'fashion-mnist', image_size: 28, train_size: null, test_size: null },
      model: { arch: 'vit-micro', patch_size: 7 },
      moco: { proj_hidden: 256, proj_dim: 64, pred_hidden: 256 },
      optim: { batch_size: 256, epochs: 2, warmup_epochs: 0.2, base_lr: 2.4e-2 },
      train: { log_every: 1, knn_every: null, knn_every_epochs: 0.05 },
      eval: { knn: { bank_size: 5000, query_size: 2500 }, linear: { epochs: 30, batch_size: 256, train_views: 'cached' } },
    },
  },
  gpu: {
    about: 'ViT-Tiny/4 (dim 192, depth 12, 12 heads) on CIFAR-10 at 32 px: one GPU, hours',
    config: {
      data: { name: 'cifar10', image_size: 32 },
      model: { arch: 'vit-tiny' },
      optim: { batch_size: 1024, epochs: 100, warmup_epochs: 10 },
      // every epoch whatever the batch, as the paper's curves
      train: { log_every: 1, knn_every: null, knn_every_epochs: 1 },
      eval: { knn: { bank_size: null, query_size: null }, linear: { epochs: 90, batch_size: 1024 } },
    },
  },
  paper: {
    about: 'ViT-B/16 on an ImageNet-style image folder at 224 px, 100 epochs: the real thing, big hardware',
    config: {
      data: { name: 'imagefolder', image_size: 224 },
      model: { arch: 'vit-base' },
      optim: { batch_size: 4096, epochs: 100, warmup_epochs: 40 },
      train: { log_every: 10, knn_every: null, knn_every_epochs: 1 },
      eval: { knn: { bank_size: 128000, query_size: 10000 }, linear: { epochs: 90, batch_size: 1024 } },
    },
  },
};
