import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig } from '../../src/config/load.ts';
import { fmtExp, sweepRunSlug, trainRunSlug } from '../../src/runfolder/names.ts';

const cfg = (sets: string[]) => buildConfig({ preset: 'smoke', sets });

test('moco3 train names: the values one decimal writes keep their names; others are written out, so they do not collide', () => {
  const c = cfg(['optim.base_lr=1.5e-4', 'optim.batch_size=256', 'seed=0']);
  assert.equal(trainRunSlug(c), `${c.model.arch}-bs256-lr1.5e-4-adamw-${c.model.patch_proj}-s0`);
  assert.match(trainRunSlug(cfg(['optim.base_lr=3'])), /-lr3\.0e\+0-/);
  const a = trainRunSlug(cfg(['optim.base_lr=1.25e-4']));
  const b = trainRunSlug(cfg(['optim.base_lr=1.3e-4']));
  assert.match(a, /-lr1\.25e-4-/);
  assert.notEqual(a, b);
});

test('sweep names: shortest exact exponent, no plus sign, the varied keys, the seed', () => {
  assert.equal(fmtExp(1e-4), '1.0e-4');
  assert.equal(fmtExp(1.25e-5), '1.25e-5');
  assert.equal(fmtExp(3), '3.0e0');
  assert.equal(fmtExp(3, true), '3.0e+0');
  const c = cfg(['optim.base_lr=1e-4', 'optim.batch_size=1024', 'optim.weight_decay=0.05', 'seed=2']);
  assert.equal(sweepRunSlug(c, ['optim.weight_decay']), `bs1024-lr1.0e-4-adamw-${c.model.patch_proj}-wd0.05-s2`);
  // a value of exactly 0.01 is written as it reads; an unlisted key's underscores go from its short name; an lr of 0 is 0
  const d = cfg(['optim.base_lr=0', 'optim.weight_decay=0.01', 'train.knn_every=20', 'seed=0']);
  assert.equal(sweepRunSlug(d, ['optim.weight_decay', 'train.knn_every']), `bs${d.optim.batch_size}-lr0-adamw-${d.model.patch_proj}-wd0.01-knnevery20-s0`);
  assert.match(trainRunSlug(d), /-lr0-/);
});

test('sweep names of the other varied keys keep their short names and value forms (a changed one would rename finished runs, which a sweep then trains again)', () => {
  const c = cfg(['optim.base_lr=1.234e-4', 'optim.weight_decay=0.005', 'augment.crop_min=0.2', 'moco.temperature=0.2', 'moco.momentum=0.99', 'optim.warmup_epochs=1', 'train.checkpoint_every=null', 'seed=1']);
  const keys = ['optim.weight_decay', 'augment.crop_min', 'moco.temperature', 'moco.momentum', 'optim.warmup_epochs', 'train.checkpoint_every', 'data.name'];
  assert.equal(sweepRunSlug(c, keys), `bs${c.optim.batch_size}-lr1.234e-4-adamw-${c.model.patch_proj}-wd5.0e-3-crop0.2-t0.2-m0.99-wu1-checkpointeverynull-${c.data.name}-s1`);
  // an lr of a positive exponent: no plus sign, as the sweep's folders have always been named
  assert.match(sweepRunSlug(cfg(['optim.base_lr=2']), []), /-lr2\.0e0-/);
});
