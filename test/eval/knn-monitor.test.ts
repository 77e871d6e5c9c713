/** `moco3 eval knn --monitor` gives the points of the run's own kNN curve (metrics.jsonl) again from its checkpoints. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { readdirSync, readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join, resolve } from 'node:path';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { cli } from '../helpers/cli.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

test("eval knn --monitor reproduces the run's kNN curve at its checkpoints (the first bank_size / query_size images); without it, the whole splits", async () => {
  const run = join(tempDir('moco3-knn-monitor-'), 'run');
  const t = await cli(['train', ...tinyTrainArgs('eval.knn.bank_size=40', 'eval.knn.query_size=20'), '--out', run]);
  assert.equal(t.code, 0, t.err);
  const curve = new Map(readMetrics(join(run, 'metrics.jsonl')).filter((r) => r.knn_top1 !== undefined).map((r) => [r.step, r.knn_top1]));
  for (const step of [0, 8]) {
    assert.ok(curve.has(step), `a kNN point at step ${step}`);
    const r = await cli(['eval', 'knn', run, '--monitor', '--checkpoint', `step-${step}`, '--json']);
    assert.equal(r.code, 0, r.err);
    const o = JSON.parse(r.out);
    assert.deepEqual([o.bank, o.queries, o.step], [40, 20, step]);
    assert.equal(o.top1, curve.get(step), `step ${step}: the curve's point`);
  }
  const whole = JSON.parse((await cli(['eval', 'knn', run, '--json'])).out);
  assert.deepEqual([whole.bank, whole.queries], [64, 32]);
  // a -k past the bank, or a --batch-size past the split: cut to it, and said (the result line gives the values used)
  const big = await cli(['eval', 'knn', run, '-k', '500']);
  assert.equal(big.code, 0, big.err);
  assert.match(big.err, /^moco3: note: -k 500 is more than the bank's 64 images: 64 neighbours used$/m);
  assert.match(big.out, /^kNN \(k 64, /);
  const lin = await cli(['eval', 'linear', run, '--batch-size', '1000', '--epochs', '1', '--no-augment']);
  assert.equal(lin.code, 0, lin.err);
  assert.match(lin.err, /^moco3: note: --batch-size 1000 is more than the 64 training images: batches of 64, lr 0\.750$/m);
  assert.match(lin.out, /= 3 x 64\/256/);
  const asked = await cli(['eval', 'knn', run, '-k', '10']);
  assert.equal(asked.code, 0, asked.err);
  assert.doesNotMatch(asked.err, /note: -k/);
  assert.match(asked.out, /^kNN \(k 10, /);
  // nor a --batch-size the split holds
  const fits = await cli(['eval', 'linear', run, '--batch-size', '32', '--epochs', '1', '--no-augment']);
  assert.equal(fits.code, 0, fits.err);
  assert.doesNotMatch(fits.err, /note: --batch-size/);
  assert.match(fits.out, /= 3 x 32\/256/);
  // under --json the values used are in the object: no note on stderr, stdout the one object alone
  for (const [args, used] of [[['knn', run, '-k', '500'], { k: 64 }], [['linear', run, '--batch-size', '1000', '--epochs', '1', '--no-augment'], { batchSize: 64, lr: 0.75 }]] as const) {
    const j = await cli(['eval', ...args, '--json']);
    assert.equal(j.code, 0, j.err);
    assert.equal(j.err, '', args.join(' '));
    assert.match(j.out, /^\{.*\}\n$/);
    const o = JSON.parse(j.out);
    for (const [key, v] of Object.entries(used)) assert.equal(o[key], v, `${args[0]} ${key}`);
  }
});

/** A tiny run whose eval.knn.query_size (1000) is past its 32 test images and whose eval.linear.batch_size is 16: trained once, by the first test that asks. */
let smallRun: Promise<string> | undefined;
function small(): Promise<string> {
  smallRun ??= (async () => {
    const run = join(tempDir('moco3-eval-small-'), 'run');
    const t = await cli(['train', ...tinyTrainArgs('eval.knn.query_size=1000', 'eval.linear.batch_size=16'), '--out', run]);
    assert.equal(t.code, 0, t.err);
    return run;
  })();
  return smallRun;
}

test("eval knn --monitor: an eval.knn.query_size past the test split is cut to it, as the run's kNN curve was", async () => {
  const run = await small();
  const r = await cli(['eval', 'knn', run, '--monitor', '--json']);
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out);
  assert.deepEqual([o.bank, o.queries, o.step], [64, 32, 8]);
  const curve = readMetrics(join(run, 'metrics.jsonl')).find((m) => m.step === 8 && m.knn_top1 !== undefined);
  assert.equal(o.top1, curve?.knn_top1);
});

test('eval linear --lr: an lr used beyond a float (with the --batch-size given) is refused before the probe, a probe that diverges after it; one line, exit 2, nothing written', async () => {
  const run = await small();
  // a linear.json and summary.json's linear figures to keep
  const ok = await cli(['eval', 'linear', run, '--epochs', '1', '--no-augment']);
  assert.equal(ok.code, 0, ok.err);
  const files = readdirSync(run).sort();
  const summary = readFileSync(join(run, 'summary.json'));
  const linear = readFileSync(join(run, 'linear.json'));
  const refused = async (args: string[], line: RegExp) => {
    const r = await cli(['eval', 'linear', run, ...args]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, line, args.join(' '));
    assert.equal(r.out, '');
    assert.deepEqual(readdirSync(run).sort(), files);
    assert.deepEqual(readFileSync(join(run, 'summary.json')), summary, 'summary.json untouched');
    assert.deepEqual(readFileSync(join(run, 'linear.json')), linear, 'linear.json untouched');
  };
  const diverged = (lr: string, at: string) => new RegExp(`^moco3: --lr ${lr}: the linear probe diverged: loss (NaN|-?Infinity) in epoch 1 at lr ${at}; nothing written; give a smaller --lr\n$`);
  await refused(['--lr', '1e300'], diverged('1e300', '6\\.25e\\+298'));
  // 1e307 x the run's batch 16 / 256 is a float (the probe diverges); x 32 or 512 / 256 is not
  await refused(['--lr', '1e307'], diverged('1e307', '6\\.25e\\+305'));
  for (const batch of ['32', '512']) {
    await refused(['--lr', '1e307', '--batch-size', batch], new RegExp(`^moco3: --lr 1e307: x batch ${batch} / 256 \\(the lr used\\) is beyond a float; give a smaller --lr\n$`));
  }
});

test('eval on a run folder it cannot write to fails before the work, one line, exit 2 (it failed once the probe was done)', async () => {
  const run = join(tempDir('moco3-eval-ro-'), 'run');
  const t = await cli(['train', ...tinyTrainArgs('eval.linear.enabled=false'), '--out', run]);
  assert.equal(t.code, 0, t.err);
  const before = readdirSync(run).sort();
  // a read-only file system where the run lies (root can write anywhere else)
  const access = fs.accessSync;
  fs.accessSync = ((path: fs.PathLike, mode?: number) => {
    if (resolve(String(path)) === resolve(run) && mode === fs.constants.W_OK) throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
    return access(path, mode);
  }) as typeof fs.accessSync;
  syncBuiltinESMExports();
  try {
    for (const kind of ['knn', 'linear']) {
      const r = await cli(['eval', kind, run, '--json']);
      assert.equal(r.code, 2, r.err);
      assert.equal(r.err, `moco3: ${run}: cannot write in ${resolve(run)} (a read-only file system): give a folder you can write to\n`);
      assert.equal(r.out, '');
    }
  } finally {
    fs.accessSync = access;
    syncBuiltinESMExports();
  }
  assert.deepEqual(readdirSync(run).sort(), before);
});
