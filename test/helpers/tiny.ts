import { buildConfig } from '../../src/config/load.ts';

/**
 * `moco3 train` flags for a run small enough to train in seconds: the smoke preset on the cpu backend,
 * vit-test at 8 px on 64 synthetic images, batch 16 for 2 epochs (8 steps), kNN every 4 steps, a
 * checkpoint every 3, no linear probe. `sets` come after these, so they override them.
 */
export function tinyTrainArgs(...sets: string[]): string[] {
  return [
    '--preset', 'smoke', '--backend', 'cpu', '-q',
    ...['model.arch=vit-test', 'data.image_size=8', 'data.train_size=64', 'data.test_size=32', 'moco.proj_hidden=16', 'moco.proj_dim=8', 'moco.pred_hidden=16']
      .concat(['train.knn_every=4', 'train.checkpoint_every=3', 'optim.batch_size=16', 'optim.epochs=2', 'eval.linear.enabled=false'], sets)
      .flatMap((s) => ['--set', s]),
  ];
}

/**
 * The resolved config of such a run, for trainRun: the smoke preset, vit-test at 8 px on 64 synthetic
 * images, batch 16 for 3 epochs (12 steps) with 1 of warmup at base lr 0.01, a metrics row every step, the
 * kNN monitor every epoch, no linear probe. `sets` come after these.
 */
export function tinyConfig(sets: string[] = []) {
  return buildConfig({
    preset: 'smoke',
    sets: [
      'model.arch=vit-test',
      'data.image_size=8',
      'data.train_size=64',
      'data.test_size=32',
      'moco.proj_hidden=16',
      'moco.proj_dim=8',
      'moco.pred_hidden=16',
      'optim.batch_size=16',
      'optim.epochs=3',
      'optim.warmup_epochs=1',
      'optim.base_lr=0.01',
      'train.knn_every=null',
      'train.log_every=1',
      'eval.linear.enabled=false',
      ...sets,
    ],
  });
}
