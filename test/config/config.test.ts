import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:buffer';
import { join } from 'node:path';
import { buildConfig, ConfigError, configHash, configToYaml, parseSet } from '../../src/config/load.ts';
import { loadSweepFile, SweepError } from '../../src/sweep/file.ts';
import { DEFAULTS } from '../../src/config/schema.ts';
import { firstLine } from '../../src/config/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

function tmpFile(name: string, text: string): string {
  const dir = tempDir('moco3-cfg-');
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

test('defaults are the official ViT recipe', () => {
  const c = buildConfig({});
  assert.equal(c.optim.name, 'adamw');
  assert.equal(c.optim.base_lr, 1.5e-4);
  assert.equal(c.optim.weight_decay, 0.1);
  assert.equal(c.optim.warmup_epochs, 40);
  assert.deepEqual(c.optim.betas, [0.9, 0.999]);
  assert.equal(c.moco.temperature, 0.2);
  assert.equal(c.moco.momentum, 0.99);
  assert.equal(c.moco.momentum_schedule, 'cosine');
  assert.equal(c.model.patch_proj, 'frozen');
  assert.equal(c.augment.crop_min, 0.08);
  assert.equal(c.model.dim, 768);
  assert.deepEqual([c.optim.batch_size, c.optim.epochs], [4096, 300]);
  // main_lincls.py's ViT setting: 90 epochs, lr 3 x batch / 256 at batch 1024
  assert.deepEqual([c.eval.linear.epochs, c.eval.linear.base_lr, c.eval.linear.batch_size], [90, 3, 1024]);
});

test('presets fill the model from the arch', () => {
  const c = buildConfig({ preset: 'cpu' });
  assert.equal(c.model.arch, 'vit-micro');
  assert.equal(c.model.dim, 64);
  assert.equal(c.data.name, 'fashion-mnist');
  const s = buildConfig({ preset: 'smoke' });
  assert.equal(s.data.name, 'synthetic');
});

test('--set values are read as YAML scalars and override the file', () => {
  const f = tmpFile('run.yaml', 'optim:\n  base_lr: 2.0e-4\n  batch_size: 512\n');
  const c = buildConfig({ preset: 'smoke', file: f, sets: ['optim.base_lr=1e-4', 'train.shuffle=false', 'augment.blur_sigma=[0.2, 1]'] });
  assert.equal(c.optim.base_lr, 1e-4);
  assert.equal(c.optim.batch_size, 512);
  assert.equal(c.train.shuffle, false);
  assert.deepEqual(c.augment.blur_sigma, [0.2, 1]);
  assert.deepEqual(parseSet('a.b=null'), { a: { b: null } });
  // a # inside a word, text YAML cannot read (a path beginning with %), quotes: as written
  assert.deepEqual(parseSet('data.path=/d/a#b'), { data: { path: '/d/a#b' } });
  assert.deepEqual(parseSet('data.path=%x'), { data: { path: '%x' } });
  assert.deepEqual(parseSet('data.path=*imgs'), { data: { path: '*imgs' } });
  assert.deepEqual(parseSet('data.path="/d/run #2"'), { data: { path: '/d/run #2' } });
  // what YAML would read otherwise than written is refused, in one line that says how to quote it
  const refused: [string, string][] = [
    ['data.path=/d/run #2', `--set data.path=/d/run #2: a blank then # starts a YAML comment, which would cut the value short; quote the value: --set 'data.path="/d/run #2"'`],
    ['data.path=!foo', `--set data.path=!foo: Unresolved tag: !foo; quote the value: --set 'data.path="!foo"'`],
    ['data.path=&a /srv', `--set data.path=&a /srv: a leading & names a YAML anchor, which is not part of the value; quote the value: --set 'data.path="&a /srv"'`],
  ];
  for (const [expr, line] of refused) assert.throws(() => parseSet(expr), (e: unknown) => e instanceof ConfigError && e.message === line, expr);
});

test('a config or sweep file that is not UTF-8 is refused at its first bad byte (it was read with U+FFFD in its place)', () => {
  const f = tmpFile('latin1.yaml', '');
  writeFileSync(f, Buffer.concat([Buffer.from('data:\n  name: imagefolder\n  path: /srv/caf'), Buffer.from([0xe9]), Buffer.from('\n')]));
  assert.throws(() => buildConfig({ file: f }), (e: unknown) => e instanceof ConfigError && e.message === `${f}: not UTF-8 text (byte 42); save it as UTF-8`);
  const sweep = tmpFile('latin1-sweep.yaml', '');
  writeFileSync(sweep, Buffer.concat([Buffer.from('name: x\nparameters:\n  data.path: {value: /srv/caf'), Buffer.from([0xe9]), Buffer.from('}\n')]));
  assert.throws(() => loadSweepFile(sweep), (e: unknown) => e instanceof SweepError && e.message === `${sweep}: not UTF-8 text (byte 49); save it as UTF-8`);
  // UTF-8, with or without a byte-order mark: read as written
  const u = tmpFile('utf8.yaml', '\uFEFFdata:\n  name: imagefolder\n  path: /srv/café\n');
  assert.equal(buildConfig({ file: u }).data.path, '/srv/café');
});

test('a run\'s config.yaml as a base: another arch or image size given later derives its sizes and blur again; chosen values stay', () => {
  const run = buildConfig({ preset: 'smoke', sets: ['model.arch=vit-test', 'data.image_size=8'] });
  const f = tmpFile('run-config.yaml', configToYaml(run));
  assert.deepEqual(buildConfig({ file: f }), run, 'the file alone: the same config');
  const smoke = buildConfig({ file: f, sets: ['model.arch=vit-smoke', 'data.image_size=16'] });
  // vit-smoke's sizes (vit-test's were dim 8, 2 heads), the recipe's blur at 16 px
  assert.deepEqual([smoke.model.dim, smoke.model.depth, smoke.model.heads, smoke.model.patch_size, smoke.model.mlp_ratio], [32, 2, 4, 4, 2]);
  assert.deepEqual(smoke.augment.blur_sigma, [(0.1 * 16) / 224, (2.0 * 16) / 224]);
  // a size given with the new arch, or a value that is no arch's or recipe's, was chosen: kept
  assert.equal(buildConfig({ file: f, sets: ['model.arch=vit-smoke', 'model.dim=16'] }).model.dim, 16);
  assert.equal(buildConfig({ preset: 'cpu', sets: ['model.arch=vit-tiny'] }).model.patch_size, 7, "the preset's patch 7 is no arch's");
  // a size given alone was chosen, even when it is the arch's and the arch comes after it
  assert.equal(buildConfig({ preset: 'gpu', sets: ['model.patch_size=4', 'model.arch=vit-small'] }).model.patch_size, 4);
  assert.equal(buildConfig({ preset: 'gpu', sets: ['model.arch=vit-small', 'model.patch_size=4'] }).model.patch_size, 4);
  const own = tmpFile('own-blur.yaml', 'data:\n  image_size: 32\naugment:\n  blur_sigma: [0.1, 2.0]\n');
  assert.deepEqual(buildConfig({ preset: 'smoke', file: own, sets: ['data.image_size=64'] }).augment.blur_sigma, [0.1, 2.0]);
});

test('a model whose weight would pass the largest array (a mistyped size) is one line naming the key, before anything is built', () => {
  // sizes past 2^53 elements: beyond the largest array of any Node (20: 2^32; 22: 2^53 - 1)
  const most = constants.MAX_LENGTH;
  assert.throws(() => buildConfig({ preset: 'smoke', sets: ['model.dim=4000000000', 'model.heads=1'] }), (e: Error) => e instanceof ConfigError && e.message === `--set model.dim=4000000000: model.dim: makes the attention qkv weight (3 x dim x dim) of 48000000000000000000 elements, more than one array holds (${most})`);
  assert.throws(() => buildConfig({ preset: 'smoke', sets: ['moco.proj_hidden=100000000'] }), /^ConfigError: --set moco\.proj_hidden=100000000: moco\.proj_hidden: makes the projector's weights of 10000000000000000 elements/);
  assert.throws(() => buildConfig({ preset: 'smoke', sets: ['moco.pred_hidden=40000000000000', 'moco.proj_dim=256'] }), /moco\.pred_hidden: makes the predictor's weights of 10240000000000000 elements/);
  // past this Node's limit by one element, and at it
  const side = Math.ceil(Math.sqrt(most + 1));
  assert.throws(() => buildConfig({ preset: 'smoke', sets: [`moco.proj_hidden=${side}`] }), /moco\.proj_hidden: makes the projector's weights of/);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['moco.proj_hidden=65536', 'moco.proj_dim=8'] }).moco.proj_hidden, 65536);
});

test('data.path is kept and hashed as written: the runs made with a spelling keep their names and resume', () => {
  const of = (path: string) => buildConfig({ preset: 'smoke', sets: ['data.name=imagefolder', `data.path=${path}`] });
  assert.equal(of('/srv/imgs/').data.path, '/srv/imgs/');
  assert.notEqual(configHash(of('/srv/imgs/')), configHash(of('/srv/imgs')));
});

test('YAML merge keys (<<: *anchor) are read as PyYAML reads them', () => {
  const f = tmpFile('merge.yaml', 'optim:\n  batch_size: 512\n  epochs: 3\neval:\n  linear:\n    <<: {epochs: 7, batch_size: 64}\n    base_lr: 1\n');
  const c = buildConfig({ preset: 'smoke', file: f });
  assert.deepEqual([c.optim.batch_size, c.optim.epochs, c.eval.linear.epochs, c.eval.linear.batch_size, c.eval.linear.base_lr], [512, 3, 7, 64, 1]);
});

test('an unknown key names the file and the key', () => {
  const f = tmpFile('bad.yaml', 'optim:\n  learning_rate: 1\n');
  assert.throws(() => buildConfig({ file: f }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /bad\.yaml: unknown key optim\.learning_rate/);
    assert.match(e.message, /base_lr/);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});

test('a config file: a key that names an object\'s machinery (__proto__) is refused as unknown, not dropped; a number beyond a float\'s range is refused', () => {
  for (const [text, line] of [
    ['__proto__:\n  seed: 5\n', '__proto__: unknown key'],
    ['optim:\n  __proto__:\n    batch_size: 8\n', 'optim.__proto__: unknown key'],
    ['optim:\n  constructor: 1\n', 'optim.constructor: unknown key'],
    ['optim:\n  base_lr: 1e-400\n', 'optim.base_lr: 1e-400 is too small for a float: it would read as 0'],
    ['optim:\n  betas: [0.9, 1e999]\n', 'optim.betas: 1e999 is too large for a float: it would read as infinity'],
    // a list as a key: YAML would make it the string '[ a ]', with a warning of Node's on stderr
    ['optim:\n  ? [a]\n  : 1\n', 'optim.["a"]: a list or mapping as a key: expected a key name'],
    // under a merge key, named as written (not the YAML library's Symbol(<<))
    ['eval:\n  linear:\n    <<: {__proto__: 5}\n', 'eval.linear.<<.__proto__: unknown key'],
    // a null key: said, not a blank name
    ['~: 1\n', 'unknown key "" (an empty or null key) (expected one of: seed, data, model, moco, optim, augment, train, eval)'],
  ]) {
    const f = tmpFile('p.yaml', text);
    assert.throws(() => buildConfig({ file: f }), (e: unknown) => e instanceof ConfigError && e.message === `${f}: ${line}`, text);
  }
});

test('a wrong type and a negative batch name the key and the source', () => {
  const f = tmpFile('t.yaml', 'optim:\n  batch_size: "big"\n');
  assert.throws(() => buildConfig({ file: f }), /t\.yaml: optim\.batch_size: expected number, got "big"/);
  assert.throws(() => buildConfig({ sets: ['optim.batch_size=-4'] }), /--set optim\.batch_size=-4: optim\.batch_size: .*>0.*got -4/);
  assert.throws(() => buildConfig({ sets: ['optim.name=adam'] }), /optim\.name: expected one of "adamw", "lamb", "lars", "sgd", got "adam"/);
  assert.throws(() => buildConfig({ preset: 'laptop' }), /--preset laptop: unknown preset/);
  assert.throws(() => buildConfig({ sets: ['model.heads=5', 'model.arch=vit-micro'] }), /model\.heads: dim 64 must be divisible by heads 5/);
});

test('values the model or optimizer would refuse are refused here, blaming the key the user set last', () => {
  const bad = (sets: string[], re: RegExp) => assert.throws(() => buildConfig({ preset: 'smoke', sets }), (e: unknown) => e instanceof ConfigError && re.test(e.message) && !e.message.includes('\n'));
  // a check of two keys names the --set, wherever the other key came from (here the preset)
  bad(['optim.epochs=1'], /^--set optim\.epochs=1: optim\.warmup_epochs: must not exceed optim\.epochs 1, got 2$/);
  bad(['model.patch_size=5'], /^--set model\.patch_size=5: data\.image_size: must be a multiple of model\.patch_size 5, got 16$/);
  bad(['optim.betas=[0.9, 1]'], /^--set optim\.betas=\[0\.9, 1\]: optim\.betas\.1: expected number to be <1, got 1$/);
  bad(['optim.betas=[1, 0.999]'], /^--set optim\.betas=\[1, 0\.999\]: optim\.betas\.0: expected number to be <1, got 1$/);
  bad(['moco.momentum=1.5'], /^--set moco\.momentum=1\.5: moco\.momentum: expected number to be <=1, got 1\.5$/);
  bad(['augment.crop_min=0'], /^--set augment\.crop_min=0: augment\.crop_min: expected number to be >0, got 0$/);
  bad(['model.dim=6', 'model.heads=2'], /^--set model\.dim=6: model\.dim: must be divisible by 4 for the 2-D sin-cos position embedding, got 6$/);
  bad(['optim.batch_size=8', 'train.micro_batch=3'], /^--set train\.micro_batch=3: train\.micro_batch: must divide optim\.batch_size 8, got 3$/);
  bad(['optim.batch_size=8', 'train.micro_batch=16'], /^--set train\.micro_batch=16: train\.micro_batch: must not exceed optim\.batch_size 8, got 16$/);
  // the bounds themselves are allowed: a warmup of the whole run, one blur sigma, an lr of 0
  assert.equal(buildConfig({ preset: 'smoke', sets: ['optim.epochs=2', 'optim.warmup_epochs=2'] }).optim.warmup_epochs, 2);
  assert.deepEqual(buildConfig({ preset: 'smoke', sets: ['augment.blur_sigma=[1, 1]'] }).augment.blur_sigma, [1, 1]);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['optim.base_lr=0'] }).optim.base_lr, 0);
  bad(['model.mlp_ratio=1.3'], /^--set model\.mlp_ratio=1\.3: model\.mlp_ratio: must give a whole MLP width \(dim 32 x mlp_ratio\), got 1\.3$/);
  bad(['optim.batch_size=1'], /^--set optim\.batch_size=1: optim\.batch_size: must be at least 2 \(the heads' BatchNorm needs two images\), got 1$/);
  bad(['optim.batch_size=4', 'train.micro_batch=1'], /^--set train\.micro_batch=1: train\.micro_batch: must be at least 2/);
  bad(['data.image_size=100000'], /^--set data\.image_size=100000: data\.image_size: expected number to be <=4096, got 100000$/);
  // a blur wider than any image: its box radius overflowed the native kernel (a crash)
  bad(['augment.blur_sigma=[1, 1e10]'], /^--set augment\.blur_sigma=\[1, 1e10\]: augment\.blur_sigma\.1: expected number to be <=1000, got 10000000000$/);
  bad(['optim.base_lr=.nan'], /^--set optim\.base_lr=\.nan: optim\.base_lr: expected number, got NaN$/);
  // a pair given as one number, or as a list of another length: said as the pair it takes, not as zod's "tuple"
  bad(['optim.betas=0.9'], /^--set optim\.betas=0\.9: optim\.betas: expected a pair \[beta1, beta2\], e\.g\. \[0\.9, 0\.999\], got 0\.9$/);
  bad(['optim.betas=[0.9, 0.99, 1]'], /^--set optim\.betas=\[0\.9, 0\.99, 1\]: optim\.betas: expected a pair \[beta1, beta2\], e\.g\. \[0\.9, 0\.999\], got \[0\.9,0\.99,1\]$/);
  bad(['augment.blur_sigma=[1]'], /^--set augment\.blur_sigma=\[1\]: augment\.blur_sigma: expected a pair \[min, max\] of pixels, e\.g\. \[0\.1, 2\], or null \(from the image size\), got \[1\]$/);
  bad(['optim.epochs=1e400'], /^--set optim\.epochs=1e400: optim\.epochs: 1e400 is too large for a float: it would read as infinity$/);
  // a number below a float's range read as 0: an lr of 0 would train nothing without a word
  bad(['optim.base_lr=1e-400'], /^--set optim\.base_lr=1e-400: optim\.base_lr: 1e-400 is too small for a float: it would read as 0$/);
  bad(['optim={base_lr: -2.5e-999}'], /^--set optim=\{base_lr: -2\.5e-999\}: optim\.base_lr: -2\.5e-999 is too small for a float: it would read as 0$/);
  bad(['__proto__.x=1'], /^--set __proto__\.x=1: unknown key __proto__\.x$/);
  bad(['optim={__proto__: {batch_size: 8}}'], /^--set optim=\{__proto__: \{batch_size: 8\}\}: optim\.__proto__: unknown key$/);
  // zero written as zero is zero; a small number a float holds is that number
  assert.equal(buildConfig({ preset: 'smoke', sets: ['optim.weight_decay=0.0e0'] }).optim.weight_decay, 0);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['optim.weight_decay=1e-300'] }).optim.weight_decay, 1e-300);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['model.mlp_ratio=1.5', 'optim.batch_size=2'] }).model.mlp_ratio, 1.5);
  // the other key from the preset, the one set from a config or sweep file: the file is named, not the preset
  const fromFile = (value: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => buildConfig({ preset: 'smoke', fileObject: { label: 'run.yaml', value } }), (e: unknown) => e instanceof ConfigError && re.test(e.message));
  fromFile({ optim: { epochs: 1 } }, /^run\.yaml: optim\.warmup_epochs: must not exceed optim\.epochs 1, got 2$/);
  fromFile({ model: { patch_size: 5 } }, /^run\.yaml: data\.image_size: must be a multiple of model\.patch_size 5, got 16$/);
  // the lr used, base x batch / 256, beyond a float: infinite from the first step
  bad(['optim.base_lr=1e307', 'optim.batch_size=512'], /^--set optim\.batch_size=512: optim\.base_lr: 1e\+307 x optim\.batch_size 512 \/ 256 \(the lr used\) is beyond a float$/);
  bad(['eval.linear.base_lr=1e307'], /^--set eval\.linear\.base_lr=1e307: eval\.linear\.base_lr: 1e\+307 x eval\.linear\.batch_size 256 \/ 256 \(the lr used\) is beyond a float$/);
  // LAMB's own keys for another optimizer would be recorded and do nothing (AdamW trained unclipped)
  bad(['optim.max_grad_norm=0.5'], /^--set optim\.max_grad_norm=0\.5: optim\.max_grad_norm: clips LAMB's gradients only \(optim\.name is adamw\): set it to null, or optim\.name to lamb$/);
  bad(['optim.max_grad_norm=1', 'optim.name=lars'], /^--set optim\.name=lars: optim\.max_grad_norm: clips LAMB's gradients only \(optim\.name is lars\)/);
  bad(['optim.lamb_exclude_bias_norm=true'], /^--set optim\.lamb_exclude_bias_norm=true: optim\.lamb_exclude_bias_norm: applies to LAMB only \(optim\.name is adamw;/);
  const lamb = buildConfig({ preset: 'smoke', sets: ['optim.name=lamb', 'optim.max_grad_norm=0.5', 'optim.lamb_exclude_bias_norm=true'] }).optim;
  assert.deepEqual([lamb.max_grad_norm, lamb.lamb_exclude_bias_norm], [0.5, true]);
  // a path beside the built-in synthetic data reads nothing and would name another run; the key set last is blamed
  bad(['data.path=/srv/x'], /^--set data\.path=\/srv\/x: data\.path: the synthetic dataset is built in and reads no path \(got "\/srv\/x"\): set it to null, or data\.name to a dataset read from files$/);
  bad(['data.name=imagefolder', 'data.path=/srv/x', 'data.name=synthetic'], /^--set data\.name=synthetic: data\.path: the synthetic dataset is built in/);
  fromFile({ data: { path: '/srv/x' } }, /^run\.yaml: data\.path: the synthetic dataset is built in/);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['data.name=imagefolder', 'data.path=/srv/x'] }).data.path, '/srv/x');
});

test('config hash ignores the backend but not the batch', () => {
  const a = buildConfig({ preset: 'smoke' });
  const b = buildConfig({ preset: 'smoke', sets: ['train.backend=cpu'] });
  const c = buildConfig({ preset: 'smoke', sets: ['optim.batch_size=64'] });
  assert.equal(configHash(a), configHash(b));
  assert.notEqual(configHash(a), configHash(c));
  assert.match(configHash(a), /^[0-9a-f]{8}$/);
  assert.equal(DEFAULTS.optim.batch_size, 4096); // defaults untouched by merging
  // a run folder written before train.knn_every_epochs and eval.linear.train_views existed hashes as one with them at
  // the value it stands for (its name and resume stay); the keys' order is no part of the hash
  const d = buildConfig({});
  const { knn_every_epochs: _k, ...oldTrain } = d.train;
  const { train_views: _v, ...oldLinear } = d.eval.linear;
  const older = { ...d, train: oldTrain, eval: { ...d.eval, linear: oldLinear } } as unknown as typeof d;
  assert.equal(configHash(older), configHash(d));
  assert.notEqual(configHash({ ...d, train: { ...d.train, knn_every_epochs: 0.5 } }), configHash(d));
  const reversed = Object.fromEntries(Object.entries(a).reverse()) as typeof a;
  assert.equal(configHash({ ...reversed, optim: Object.fromEntries(Object.entries(a.optim).reverse()) as typeof a.optim }), configHash(a));
});

test("a preset's subset sizes and class count stay with its own dataset; --set still wins", () => {
  const own = buildConfig({ preset: 'smoke' });
  assert.deepEqual([own.data.train_size, own.data.test_size], [2560, 500]);
  const other = buildConfig({ preset: 'smoke', overrides: [{ data: { name: 'imagefolder', path: '/x' } }] });
  assert.deepEqual([other.data.train_size, other.data.test_size, other.data.num_classes], [null, null, null]);
  const set = buildConfig({ preset: 'smoke', overrides: [{ data: { name: 'imagefolder', path: '/x' } }], sets: ['data.train_size=100'] });
  assert.equal(set.data.train_size, 100);
  // another dataset by --set alike (it kept the smoke subset: 2560 Fashion-MNIST images)
  const bySet = buildConfig({ preset: 'smoke', sets: ['data.name=fashion-mnist'] });
  assert.deepEqual([bySet.data.train_size, bySet.data.test_size, bySet.data.num_classes], [null, null, null]);
  assert.equal(buildConfig({ preset: 'smoke', sets: ['data.name=fashion-mnist', 'data.test_size=50'] }).data.test_size, 50);
});

test('a config file: a section of keys all commented out is absent; a list or value where a section goes is refused, naming it', () => {
  const dir = tempDir('moco3-sections-');
  try {
    const put = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    assert.equal(buildConfig({ preset: 'smoke', file: put('c.yaml', 'optim:\n  # base_lr: 1e-3\nseed: 3\n') }).optim.base_lr, buildConfig({ preset: 'smoke' }).optim.base_lr);
    assert.throws(() => buildConfig({ file: put('l.yaml', 'eval:\n  linear: [1]\n'), sets: ['eval.linear.epochs=2'] }), (e: Error) => /l\.yaml: eval\.linear: expected a mapping of eval\.linear keys \(enabled, .*\), got \[1\]$/.test(e.message));
    assert.throws(() => buildConfig({ file: put('t.yaml', 'data: {name: !dataset synthetic}\n') }), (e: Error) => /t\.yaml: not valid YAML: Unresolved tag: !dataset/.test(e.message));
    // a file of comments alone (a config.yaml cut to nothing) is said to be empty, not read as the defaults
    assert.throws(() => buildConfig({ file: put('e.yaml', '# optim:\n') }), (e: Error) => e instanceof ConfigError && /e\.yaml: empty: expected a YAML mapping of config sections/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('blur sigma: null is the recipe range [0.1, 2] px at 224 scaled to the image size; a given range is kept', () => {
  assert.deepEqual(buildConfig({}).augment.blur_sigma, [0.1, 2.0]);
  const c = buildConfig({ preset: 'cpu' });
  assert.deepEqual(c.augment.blur_sigma, [(0.1 * 28) / 224, (2 * 28) / 224]);
  assert.deepEqual(buildConfig({ preset: 'cpu', sets: ['data.image_size=56'] }).augment.blur_sigma, [(0.1 * 56) / 224, (2 * 56) / 224]);
  assert.deepEqual(buildConfig({ preset: 'cpu', sets: ['augment.blur_sigma=[0.5, 1]'] }).augment.blur_sigma, [0.5, 1]);
});

test("the kNN cadence: the later source that gives train.knn_every or train.knn_every_epochs wins, the other becomes null", () => {
  const cadence = (c: ReturnType<typeof buildConfig>) => [c.train.knn_every, c.train.knn_every_epochs];
  // the cpu preset counts in epochs; a --set in steps is obeyed (it was outranked by the preset's epochs)
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu' })), [null, 0.05]);
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', sets: ['train.knn_every=10'] })), [10, null]);
  // the smoke preset too (a smoke sweep's batch sizes get the same points on the epoch axis)
  assert.deepEqual(cadence(buildConfig({ preset: 'smoke' })), [null, 1]);
  assert.deepEqual(cadence(buildConfig({ preset: 'smoke', sets: ['train.knn_every=60'] })), [60, null]);
  // and back: a file in steps, then --set in epochs
  assert.deepEqual(cadence(buildConfig({ preset: 'smoke', fileObject: { label: 'f', value: { train: { knn_every: 5 } } }, sets: ['train.knn_every_epochs=0.5'] })), [null, 0.5]);
  // a file in between, and the last --set of several
  let file = tmpFile('cadence.yaml', 'train: {knn_every: 25}\n');
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', file })), [25, null]);
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', file, sets: ['train.knn_every_epochs=0.1'] })), [null, 0.1]);
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', sets: ['train.knn_every_epochs=0.1', 'train.knn_every=7'] })), [7, null]);
  // a run's own config.yaml (one of the two, the other null) reads as written
  file = tmpFile('run.yaml', 'train: {knn_every: null, knn_every_epochs: 0.05}\n');
  assert.deepEqual(cadence(buildConfig({ file })), [null, 0.05]);
  // a source that gives both keeps both as given (knn_every_epochs counts), whatever came before
  assert.deepEqual(cadence(buildConfig({ preset: 'smoke', fileObject: { label: 'f', value: { train: { knn_every: 10, knn_every_epochs: 1 } } } })), [10, 1]);
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', fileObject: { label: 'f', value: { train: { knn_every: 10, knn_every_epochs: 0.05 } } } })), [10, 0.05]);
  // null given for one alone is no choice: the monitor's other key stands
  assert.deepEqual(cadence(buildConfig({ preset: 'cpu', sets: ['train.knn_every=null'] })), [null, 0.05]);
});

test('-0 is read as the 0 it means: written back as 0, hashed as 0', () => {
  const c = buildConfig({ preset: 'smoke', sets: ['seed=-0', 'optim.weight_decay=-0.0'] });
  assert.ok(Object.is(c.seed, 0) && Object.is(c.optim.weight_decay, 0));
  assert.match(configToYaml(c), /^seed: 0$/m);
  assert.doesNotMatch(configToYaml(c), /-0/);
  assert.equal(configHash(c), configHash(buildConfig({ preset: 'smoke', sets: ['seed=0', 'optim.weight_decay=0'] })));
});

test('firstLine: the first line of an error message, or of any other thrown value as a string', () => {
  assert.equal(firstLine(new Error('cannot open shared object\nRequire stack:\n- /x.js')), 'cannot open shared object');
  assert.equal(firstLine(new TypeError('one line')), 'one line');
  assert.equal(firstLine(new Error('')), '');
  assert.equal(firstLine('thrown text\nsecond'), 'thrown text');
  assert.equal(firstLine(42), '42');
  assert.equal(firstLine(undefined), 'undefined');
});
