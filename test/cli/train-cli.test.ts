import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli as runCli } from '../helpers/cli.ts';
import { main } from '../../src/cli/main.ts';
import { chancePercent } from '../../src/cli/train.ts';
import { tempDir } from '../helpers/tmp.ts';

/** Run the CLI in-process; returns the exit code and what it wrote to stderr. */
async function cli(args: string[]): Promise<{ code: number; err: string }> {
  const chunks: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string | Uint8Array) => {
    chunks.push(String(s));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, err: chunks.join('') };
  } finally {
    process.stderr.write = write;
    process.exitCode = 0;
  }
}

const dir = tempDir('moco3-cli-');
const classesFile = join(dir, 'cifar100.yaml');
writeFileSync(classesFile, 'data:\n  name: cifar100\n  num_classes: 100\n');

for (const [what, args, pattern] of [
  ['an unknown config key', ['--set', 'optim.lr=1'], /^moco3: --set optim\.lr=1: unknown key optim\.lr \(expected one of: name, base_lr/],
  ['a wrong type', ['--set', 'optim.epochs=many'], /^moco3: --set optim\.epochs=many: optim\.epochs: expected number, got "many"/],
  ['a negative batch', ['--set', 'optim.batch_size=-4'], /^moco3: --set optim\.batch_size=-4: optim\.batch_size: .*got -4/],
  ['a missing dataset path', ['--data', 'fashion-mnist:/nonexistent/fmnist'], /^moco3: fashion-mnist: .*\/nonexistent\/fmnist/],
  ['an unknown preset', ['--preset', 'laptop'], /^moco3: --preset laptop: unknown preset/],
  // the data's class count is a config error: it names its source as the others do, whether or not the data is there
  ['a synthetic class count it cannot make', ['--data', 'synthetic', '--set', 'data.num_classes=1'], /^moco3: --set data\.num_classes=1: data\.num_classes: the synthetic dataset has 2\.\.10 classes, got 1$/],
  ['a class count fashion-mnist does not have', ['--data', 'fashion-mnist:/nonexistent/fm', '--set', 'data.num_classes=3'], /^moco3: --set data\.num_classes=3: data\.num_classes: fashion-mnist has 10 classes, got 3$/],
  ['a config file\'s class count that --data changes the dataset of', ['--config', classesFile, '--data', 'cifar10'], /^moco3: --data cifar10: data\.num_classes: cifar10 has 10 classes, got 100$/],
  ['an image folder of one class by --set', ['--data', 'imagefolder:/nonexistent/imgs', '--set', 'data.num_classes=1'], /^moco3: --set data\.num_classes=1: data\.num_classes: an image folder needs at least 2 classes/],
] as const) {
  test(`train: ${what} gives one line and exit 2, and makes no run folder`, async () => {
    const out = join(dir, what.replace(/\W+/g, '-'));
    const r = await cli(['train', ...((args as readonly string[]).includes('--preset') ? [] : ['--preset', 'smoke']), ...args, '--out', out, '-q']);
    assert.equal(r.code, 2, r.err);
    const lines = r.err.trim().split('\n');
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0]!, pattern);
    assert.equal(existsSync(out), false);
  });
}

test('train --dry-run --json prints the run folder and resolved config as one JSON object', async () => {
  const out: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  try {
    assert.equal(await main(['train', '--preset', 'smoke', '--dry-run', '--json', '--out', join(dir, 'dry')]), 0);
  } finally {
    process.stdout.write = write;
  }
  const o = JSON.parse(out.join(''));
  assert.equal(o.run_dir, join(dir, 'dry'));
  assert.equal(o.config.model.arch, 'vit-smoke');
});

test('train --data, --seed and the batch against the train split, as --dry-run resolves them: NAME:PATH and a --set of data.path refused together, NAME alone then --set data.path taken; bad --data one line naming it; a split of exactly one batch taken, one image fewer refused', async () => {
  const dry = async (...args: string[]) => {
    const r = await runCli(['train', '--preset', 'smoke', '--dry-run', '--json', '--out', join(dir, 'dry-data'), ...args]);
    return { ...r, config: r.code === 0 ? (JSON.parse(r.out).config as { seed: number; data: { name: string; path: string | null; train_size: number } }) : null };
  };
  const both = await dry('--data', 'fashion-mnist:/x/fm', '--set', 'data.path=/y/fm');
  assert.equal(both.code, 2);
  assert.equal(both.err, 'moco3: --data fashion-mnist:/x/fm: --set data.path=/y/fm sets data.path too; give one of them\n');
  const named = await dry('--data', 'fashion-mnist', '--set', 'data.path=/y/fm');
  assert.equal(named.code, 0, named.err);
  assert.deepEqual([named.config!.data.name, named.config!.data.path], ['fashion-mnist', '/y/fm']);
  const withPath = await dry('--data', 'cifar10:/x/c10');
  assert.deepEqual([withPath.config!.data.name, withPath.config!.data.path], ['cifar10', '/x/c10']);
  for (const [v, line] of [
    ['fashion-mnist: ', "--data fashion-mnist: : an empty PATH after ':'; give the path, or --data fashion-mnist for the default location"],
    ['synthetic:/x', '--data synthetic:/x: the synthetic dataset is built in and reads no PATH (give --data synthetic)'],
    ['mnist', "--data mnist: unknown dataset 'mnist' (expected one of: synthetic, fashion-mnist, cifar10, cifar100, imagefolder)"],
  ] as const) {
    const r = await dry('--data', v);
    assert.equal(r.code, 2, `${v}: ${r.err}`);
    assert.equal(r.err, `moco3: ${line}\n`);
  }
  // seed 0 is a seed
  const seed = await dry('--seed', '0', '--set', 'optim.batch_size=128');
  assert.equal(seed.code, 0, seed.err);
  assert.equal(seed.config!.seed, 0);
  // the smoke preset's batch is 128: 128 images fill it exactly
  const exact = await dry('--set', 'data.train_size=128');
  assert.equal(exact.code, 0, exact.err);
  const short = await dry('--set', 'data.train_size=127');
  assert.equal(short.code, 2);
  assert.match(short.err, /^moco3: .*127 images cannot fill one batch of optim\.batch_size 128: use more images or a smaller batch\n$/);
  // a blank --preset is refused, not taken for no preset
  const blank = await runCli(['train', '--preset', ' ', '--dry-run']);
  assert.equal(blank.code, 2);
  assert.match(blank.err, /expected a name, got an empty string/);
});

test('train --json writes a non-finite number as metrics.jsonl does ("NaN", not null: a divergence told apart from "not measured")', async () => {
  const r = await runCli(['train', '--preset', 'smoke', '--backend', 'cpu', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8', '--set', 'train.max_steps=3',
    '--set', 'optim.base_lr=1e9', '--set', 'optim.warmup_epochs=0', '--set', 'train.knn_every_epochs=null', '--json', '--out', join(dir, 'nan')]);
  const rows = r.out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; row?: Record<string, unknown> });
  const stepRows = rows.filter((e) => e.type === 'step').map((e) => e.row!);
  assert.ok(stepRows.some((row) => Object.values(row).includes('NaN')), r.out);
  assert.ok(!stepRows.some((row) => Object.values(row).includes(null)), r.out);
});

test("train's last line says a probe that diverged (its lr too large), with no linear accuracy, and the run completes", async () => {
  const r = await runCli(['train', '--preset', 'smoke', '--backend', 'cpu', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8', '--set', 'train.max_steps=2',
    '--set', 'train.knn_every_epochs=null', '--set', 'eval.linear.base_lr=1e300', '--set', 'eval.linear.epochs=1', '--out', join(dir, 'probe-nan')]);
  assert.equal(r.code, 0, r.err);
  const last = r.out.trim().split('\n').filter((l) => /^completed /.test(l));
  assert.equal(last.length, 1, r.out);
  assert.match(last[0]!, /; linear probe diverged \(its lr too large: summary\.json says\)$/);
  assert.doesNotMatch(last[0]!, /linear top-1/);
});

test('train --json of a finished run writes a line saying so (stdout was empty)', async () => {
  const args = ['train', '--preset', 'smoke', '--backend', 'cpu', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8', '--set', 'train.max_steps=2', '--set', 'train.knn_every_epochs=null', '--out', join(dir, 'twice')];
  assert.equal((await runCli([...args, '-q'])).code, 0);
  const r = await runCli([...args, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { run: 'train', type: 'already', runDir: join(dir, 'twice'), status: 'completed', step: 2 });
});

test('train --dry-run and sweep --dry-run create no file, not even for a moment, in the folder they check', async () => {
  const watched = join(dir, 'watched');
  mkdirSync(watched);
  const seen: string[] = [];
  const w = watch(watched, (_event, name) => seen.push(String(name)));
  const settle = () => new Promise((r) => setTimeout(r, 300));
  const stdout = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    assert.equal(await main(['train', '--preset', 'smoke', '--dry-run', '--out', join(watched, 'run')]), 0);
    assert.equal(await main(['sweep', 'batch-size', '--preset', 'smoke', '--dry-run', '--results', watched]), 0);
    await settle();
    assert.deepEqual(seen, []);
    // the watch sees a file made there: the empty list above is not a deaf watcher's
    writeFileSync(join(watched, 'control'), '');
    await settle();
    assert.ok((seen as string[]).includes('control'), seen.join(', '));
  } finally {
    process.stdout.write = stdout;
    w.close();
  }
});

test('bench --dry-run prints the resolved config as YAML, as train --dry-run does, and one JSON object with --json', async () => {
  const run = async (args: string[]) => {
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    try {
      assert.equal(await main(['bench', '--preset', 'smoke', '--batch', '24', '--steps', '3', '--dry-run', ...args]), 0);
    } finally {
      process.stdout.write = write;
    }
    return out.join('');
  };
  const yaml = await run([]);
  assert.match(yaml, /^# bench: 3 timed steps after 2 untimed\n/);
  assert.match(yaml, /^  batch_size: 24$/m);
  const o = JSON.parse(await run(['--json']));
  assert.deepEqual([o.steps, o.warmup, o.config.optim.batch_size], [3, 2, 24]);
});

test('train: a config file with an unknown key names the file and key', async () => {
  const f = join(dir, 'run.yaml');
  writeFileSync(f, 'model:\n  depht: 3\n');
  const r = await cli(['train', '--config', f, '--out', join(dir, 'x'), '-q']);
  assert.equal(r.code, 2);
  assert.match(r.err, new RegExp(`^moco3: ${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: unknown key model\\.depht`));
});

test('train --data NAME reads the dataset from its default location, not the data.path of a --config file', async () => {
  const cfg = join(dir, 'cif.yaml');
  writeFileSync(cfg, 'data:\n  name: cifar10\n  path: /tmp/cifarx\n');
  const dry = async (...args: string[]) => {
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    try {
      assert.equal(await main(['train', '--config', cfg, ...args, '--dry-run', '--json', '--out', join(dir, 'dry-data')]), 0);
    } finally {
      process.stdout.write = write;
    }
    return JSON.parse(out.join('')).config.data as { name: string; path: string | null };
  };
  const fromFile = await dry();
  assert.equal(fromFile.name, 'cifar10');
  assert.equal(fromFile.path, '/tmp/cifarx');
  const fm = await dry('--data', 'fashion-mnist');
  assert.equal(fm.name, 'fashion-mnist');
  assert.equal(fm.path, null);
  assert.equal((await dry('--data', 'cifar10')).path, null);
  assert.equal((await dry('--data', 'cifar10:/data/c10')).path, '/data/c10');
  // a --set still has the last word
  assert.equal((await dry('--data', 'fashion-mnist', '--set', 'data.path=/data/fm')).path, '/data/fm');
});

test('train --out <a completed run> --dry-run, no flag shaping a config: the config the run holds, not the defaults', async () => {
  const out = join(dir, 'done-run');
  const t = await runCli(['train', '--preset', 'smoke', '--backend', 'cpu', '-q', '--set', 'model.arch=vit-test', '--set', 'data.image_size=8', '--set', 'train.max_steps=2',
    '--set', 'eval.linear.enabled=false', '--set', 'train.knn_every_epochs=null', '--out', out]);
  assert.equal(t.code, 0, t.err);
  const dry = await runCli(['train', '--out', out, '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.err, /is already completed at step 2 .*: nothing would be trained/);
  const o = JSON.parse(dry.out) as { config: { model: { arch: string }; data: { image_size: number } } };
  assert.equal(o.config.model.arch, 'vit-test');
  assert.equal(o.config.data.image_size, 8);
});

test("train's last line: kNN's chance level keeps its digits past 1000 classes", () => {
  assert.equal(chancePercent(10), '10.0%');
  assert.equal(chancePercent(3), '33.3%');
  assert.equal(chancePercent(1000), '0.1%');
  // 100 / 1053 = 0.09497: below what one decimal shows as 0.1
  assert.equal(chancePercent(1053), '0.095%');
  assert.equal(chancePercent(2001), '0.050%');
  assert.equal(chancePercent(21843), '0.0046%');
});
