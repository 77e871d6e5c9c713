import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../helpers/tf.ts';
import { buildConfig } from '../../src/config/load.ts';
import type { BackendInfo } from '../../src/engine/backend.ts';
import type { ImageBatch } from '../../src/data/index.ts';
import { augmentConfigOf, loadRunData, modelConfigOf } from '../../src/components/index.ts';
import { augmentedSource, evalCheckpoint, knnForRun, linearProbeForRun, loadRunModel, probeTrainView } from '../../src/eval/offline.ts';
import { extractFeatures } from '../../src/eval/features.ts';
import { linearProbe } from '../../src/eval/linear.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { CheckpointError } from '../../src/runfolder/checkpoints.ts';
import { loadRunConfig } from '../../src/runfolder/records.ts';
import { trainRun } from '../../src/train/loop.ts';
import { tempDir } from '../helpers/tmp.ts';
import { writeCheckpointFile } from '../helpers/checkpoint.ts';

const backend: BackendInfo = { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null };

const SETS = [
  'model.arch=vit-test',
  'data.image_size=8',
  'data.train_size=64',
  'data.test_size=40',
  'moco.proj_hidden=16',
  'moco.proj_dim=8',
  'moco.pred_hidden=16',
  'optim.batch_size=16',
  'optim.epochs=1',
  'optim.warmup_epochs=0',
  'train.knn_every=null',
  'eval.linear.epochs=2',
  'eval.linear.batch_size=32',
];
const config = buildConfig({ preset: 'smoke', sets: SETS });

const runDir = tempDir('moco3-probe-');
const trained = trainRun({ config, runDir, backend });

test('linear probe of a finished run: reads the newest checkpoint, writes summary.json and linear.json', async () => {
  await trained;
  const before = tf.memory().numTensors;
  const epochs: number[] = [];
  const losses: number[] = [];
  const r = await linearProbeForRun(runDir, { onEpoch: (e) => (epochs.push(e.epoch), losses.push(e.loss)) });
  assert.deepEqual(epochs, [1, 2]);
  assert.equal(r.augmented, true);
  assert.equal(r.trainSize, 64);
  assert.equal(r.testSize, 40);
  assert.equal(r.step, 4);
  // where the checkpoint is in the run folder, not where the command ran
  assert.equal(r.checkpoint, join('checkpoints', 'step-0000004'));
  assert.equal(JSON.parse(readFileSync(join(runDir, 'linear.json'), 'utf8')).checkpoint, r.checkpoint);
  assert.equal(r.lr, (3 * 32) / 256);
  assert.ok(r.top1 >= 0 && r.top1 <= 100 && r.top5 >= r.top1);
  const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
  assert.equal(summary.linear_top1, r.top1);
  assert.equal(summary.linear_top5, r.top5);
  assert.equal(summary.status, 'completed', 'the loop keys are kept');
  assert.match(summary.linear.train_views, /random-resized-crop/);
  // the training split's size (report/baselines.ts reads it) and the last epoch's loss
  assert.deepEqual([summary.linear.train_size, summary.linear.test_size], [64, 40]);
  assert.notEqual(losses[0], losses[1]);
  assert.equal(summary.linear.final_loss, losses[1]);
  assert.ok(existsSync(join(runDir, 'linear.json')));
  assert.equal(tf.memory().numTensors, before, 'tensors leaked');
});

test('without augmentation the train features are cached: same result twice, and said so', async () => {
  await trained;
  const a = await linearProbeForRun(runDir, { augment: false, write: false });
  const b = await linearProbeForRun(runDir, { augment: false, write: false });
  assert.equal(a.augmented, false);
  assert.equal(a.top1, b.top1);
  assert.deepEqual(a.losses, b.losses);
  // and not the augmented views (as deterministic for a seed): the cached centre views train otherwise
  const augmented = await linearProbeForRun(runDir, { augment: true, write: false });
  assert.equal(augmented.augmented, true);
  assert.notDeepEqual(augmented.losses, a.losses);
});

test('offline kNN uses the whole train split as the bank and writes knn_eval', async () => {
  await trained;
  const r = await knnForRun(runDir, { k: 20, t: 0.07 });
  assert.equal(r.checkpoint, join('checkpoints', 'step-0000004'));
  assert.equal(r.bank, 64);
  assert.equal(r.queries, 40);
  assert.equal(r.k, 20);
  const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
  assert.equal(summary.knn_eval.top1, r.top1);
  assert.equal(summary.knn_eval.t, 0.07);
});

test("summary.json's knn_eval is the kNN as it ran: the k and t used, the monitor's bank and query counts, the checkpoint's step", async () => {
  await trained;
  const dir = tempDir('moco3-knn-record-');
  cpSync(runDir, dir, { recursive: true });
  const disk = loadRunConfig(dir);
  const c = { ...disk, eval: { ...disk.eval, knn: { ...disk.eval.knn, bank_size: 40, query_size: 20 } } };
  const r = await knnForRun(dir, { config: c, monitor: true, k: 3, t: 0.2 });
  assert.deepEqual([r.k, r.t, r.bank, r.queries, r.step], [3, 0.2, 40, 20, 4]);
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual(summary.knn_eval, { top1: r.top1, top5: r.top5, k: 3, t: 0.2, bank: 40, queries: 20, step: 4 });
  assert.equal(JSON.parse(readFileSync(join(dir, 'knn.json'), 'utf8')).top5, r.top5);
  // top-5 of 3 neighbours' votes: a hit wherever top-1 is, so never less
  assert.ok(r.top5 >= r.top1);
});

test('offline kNN tells its progress through the features of the bank, then the queries, with the same result', async () => {
  await trained;
  const seen: [number, number][] = [];
  const r = await knnForRun(runDir, { k: 20, t: 0.07, write: false, onProgress: (done, total) => seen.push([done, total]) });
  const plain = await knnForRun(runDir, { k: 20, t: 0.07, write: false });
  assert.deepEqual([r.top1, r.top5], [plain.top1, plain.top5]);
  // batches of 256: the bank's 64 images, then the queries' 40
  assert.deepEqual(seen, [[64, 104], [104, 104]]);
});

test('the checkpoint loads into the same features as the run config builds', async () => {
  await trained;
  const c = loadRunConfig(runDir);
  assert.deepEqual(c, config);
  const a = loadRunModel(runDir, c);
  const fresh = new MoCoViT(modelConfigOf(c), c.seed);
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  const f = a.model.features(x);
  const f0 = fresh.features(x);
  assert.deepEqual(f.shape, [2, 8]);
  assert.ok(Array.from(f.dataSync()).every(Number.isFinite));
  // four training steps moved the weights: the loaded encoder is not the initial one
  assert.ok(tf.max(tf.abs(tf.sub(f, f0))).dataSync()[0]! > 1e-4, 'checkpoint weights were not loaded');
  tf.dispose([x, f, f0]);
  a.model.dispose();
  fresh.dispose();
});

test("probe train view: normalised, [n, S, S, 3], deterministic per (seed, epoch, batch)", async () => {
  const ds = await loadRunData(config);
  const aug = { preset: 'mocov3' as const, imageSize: 8, cropMin: 0.08, mean: ds.mean, std: ds.std, blurSigma: [0.1, 2] as [number, number] };
  // a constant image stays constant under any crop, flip and resize
  const flat: ImageBatch = { data: new Uint8Array(2 * 5 * 7 * 3).fill(51), n: 2, h: 5, w: 7, c: 3 };
  const v = probeTrainView(flat, aug, 0, 0, 0);
  assert.deepEqual(v.shape, [2, 8, 8, 3]);
  const vals = v.dataSync();
  for (let i = 0; i < vals.length; i++) assert.ok(Math.abs(vals[i]! - (0.2 - aug.mean[i % 3]!) / aug.std[i % 3]!) < 1e-5);
  v.dispose();
  // grayscale images become three equal channels
  const gray: ImageBatch = { data: Uint8Array.from({ length: 3 * 6 * 6 }, (_, i) => (i * 37) % 256), n: 3, h: 6, w: 6, c: 1 };
  const g = probeTrainView(gray, { ...aug, mean: [0.5, 0.5, 0.5], std: [1, 1, 1] }, 0, 0, 0);
  const gv = g.dataSync();
  for (let i = 0; i < gv.length; i += 3) assert.ok(gv[i] === gv[i + 1] && gv[i] === gv[i + 2]);
  g.dispose();
  const batch: ImageBatch = { data: Uint8Array.from({ length: 4 * 8 * 8 * 3 }, (_, i) => (i * 97) % 256), n: 4, h: 8, w: 8, c: 3 };
  const [a, b, c] = [probeTrainView(batch, aug, 0, 1, 2), probeTrainView(batch, aug, 0, 1, 2), probeTrainView(batch, aug, 0, 2, 2)];
  assert.deepEqual(a.dataSync(), b.dataSync());
  assert.notDeepEqual(a.dataSync(), c.dataSync());
  tf.dispose([a, b, c]);
});

test('the end-of-run hook form: probing a live model leaves it usable and writes the summary', async () => {
  await trained;
  const c = loadRunConfig(runDir);
  const ds = await loadRunData(c);
  const { model } = loadRunModel(runDir, c);
  const r = await linearProbeForRun(runDir, { config: c, dataset: ds, model, epochs: 1 });
  assert.equal(r.step, null);
  assert.equal(r.checkpoint, null);
  assert.equal(JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8')).linear.epochs, 1);
  const x = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
  const f = model.features(x); // still alive: the probe does not dispose a model it was given
  tf.dispose([x, f]);
  model.dispose();
});

test("summary.json records the probe as it ran: epochs, base lr, the lr and batch used (cut to the train split), the config's views, sizes, step and last loss", async () => {
  await trained;
  const dir = tempDir('moco3-probe-record-');
  cpSync(runDir, dir, { recursive: true });
  const disk = loadRunConfig(dir);
  // eval.linear.train_views: cached, no augment option: the centre views, computed once
  const c = { ...disk, eval: { ...disk.eval, linear: { ...disk.eval.linear, train_views: 'cached' as const } } };
  const ds = await loadRunData(c);
  const { model } = loadRunModel(dir, c);
  try {
    // the end-of-run hook form, with the step the weights are of; --batch-size 100 of 64 images: 64, lr 2 x 64 / 256
    const r = await linearProbeForRun(dir, { config: c, dataset: ds, model, step: 7, epochs: 1, baseLr: 2, batchSize: 100 });
    assert.deepEqual([r.augmented, r.batchSize, r.lr, r.step, r.baseLr], [false, 64, 0.5, 7, 2]);
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    assert.equal(typeof summary.linear.seconds, 'number');
    assert.deepEqual(
      { ...summary.linear, seconds: 0 },
      { epochs: 1, base_lr: 2, lr: 0.5, batch_size: 64, train_views: 'centre view, features cached', train_size: 64, test_size: 40, step: 7, final_loss: r.losses[0], seconds: 0 },
    );
    assert.deepEqual([summary.linear_top1, summary.linear_top5], [r.top1, r.top5]);
  } finally {
    model.dispose();
  }
});

test("the probe is the run's seed's: its head, order and crops are those of config.seed", async () => {
  await trained;
  const disk = loadRunConfig(runDir);
  const c = { ...disk, seed: 3 };
  const ds = await loadRunData(c);
  const r = await linearProbeForRun(runDir, { config: c, dataset: ds, epochs: 1, write: false });
  // the same probe built here from its parts, at seed 3
  const { model } = loadRunModel(runDir, c);
  const aug = augmentConfigOf(c, ds);
  const testFeatures = extractFeatures(model, ds.test, ds.test.n, aug);
  try {
    const want = await linearProbe(augmentedSource(model, ds.train, aug, 3), { features: testFeatures, labels: ds.test.labels }, { numClasses: ds.numClasses, epochs: 1, baseLr: c.eval.linear.base_lr, batchSize: 32, seed: 3 });
    assert.deepEqual([r.losses, r.top1, r.top5], [want.losses, want.top1, want.top5]);
    // and not seed 0's
    const other = await linearProbeForRun(runDir, { epochs: 1, write: false });
    assert.notDeepEqual(other.losses, r.losses);
  } finally {
    testFeatures.dispose();
    model.dispose();
  }
});

test("the probe's last check comes after its last epoch, before linear.json and summary.json are written", async () => {
  await trained;
  const dir = tempDir('moco3-probe-lastcheck-');
  cpSync(runDir, dir, { recursive: true });
  const files = readdirSync(dir).sort();
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  const linear = readFileSync(join(dir, 'linear.json'), 'utf8');
  // a Ctrl-C (or a lost lock) once the probe has trained: the check after the last batch passed
  let trainedAll = false;
  await assert.rejects(
    linearProbeForRun(dir, { epochs: 1, augment: false, onEpoch: () => (trainedAll = true), check: () => { if (trainedAll) throw new Error('interrupted'); } }),
    /^Error: interrupted$/,
  );
  assert.ok(trainedAll);
  assert.deepEqual(readdirSync(dir).sort(), files);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summary);
  assert.equal(readFileSync(join(dir, 'linear.json'), 'utf8'), linear);
});

test('an earlier checkpoint evaluated: its own file, and summary.json keeps the run\'s final figures; k is the k used', async () => {
  const dir = tempDir('moco3-probe-early-');
  await trainRun({ config: buildConfig({ preset: 'smoke', sets: [...SETS, 'train.checkpoint_every=2'] }), runDir: dir, backend });
  const final = readFileSync(join(dir, 'summary.json'), 'utf8');
  const finalLinear = readFileSync(join(dir, 'linear.json'), 'utf8');
  const early = await linearProbeForRun(dir, { checkpoint: join(dir, 'checkpoints', 'step-0000000') });
  assert.equal(early.step, 0);
  assert.deepEqual(early.wrote, ['linear-step-0.json']);
  assert.equal(JSON.parse(readFileSync(join(dir, 'linear-step-0.json'), 'utf8')).top1, early.top1);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), final, 'summary.json untouched');
  assert.equal(readFileSync(join(dir, 'linear.json'), 'utf8'), finalLinear, 'the run\'s own linear.json untouched');
  const knn = await knnForRun(dir, { k: 1000 });
  assert.equal(knn.k, 64, 'no more neighbours than the bank holds');
  assert.deepEqual(knn.wrote, ['knn.json', 'summary.json']);
  assert.equal(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).knn_eval.k, 64);
});

test('a checkpoint to evaluate is named as eval --help says: step-N, N or its folder', async () => {
  await trained;
  const ckpt = join(runDir, 'checkpoints', 'step-0000004');
  for (const name of ['step-4', '4', ckpt, 'step-0000004']) assert.equal(evalCheckpoint(runDir, name), ckpt, name);
  // as a result names it (checkpoints/step-N, from the run folder), from any folder
  assert.equal(process.cwd() === runDir, false);
  assert.equal(evalCheckpoint(runDir, join('checkpoints', 'step-0000004')), join(runDir, 'checkpoints', 'step-0000004'));
  // a file of the checkpoint, the checkpoints folder, the run folder: said what they are and what to give
  const refused = (name: string, re: RegExp) => assert.throws(() => evalCheckpoint(runDir, name), (e: Error) => e instanceof CheckpointError && re.test(e.message), name);
  refused(join(ckpt, 'model.safetensors'), /: a file of checkpoint step-0000004; give its folder \(or step-0000004\)$/);
  refused(join(runDir, 'checkpoints'), /: the run's checkpoints folder, not one checkpoint; give step-N \(.* holds step-4\)$/);
  refused(runDir, /: the run's folder, not one checkpoint; give step-N/);
});

test('a completed run copied without its checkpoints (as the shipped results are) names the command that trains its config again', async () => {
  await trained;
  const dir = tempDir('moco3-probe-nockpt-');
  cpSync(runDir, dir, { recursive: true });
  rmSync(join(dir, 'checkpoints'), { recursive: true });
  assert.throws(
    () => evalCheckpoint(dir),
    (e: Error) =>
      e instanceof CheckpointError &&
      e.message === `${join(dir, 'checkpoints')}: no checkpoint to evaluate: this completed run's checkpoints are not here (copied without them?); to evaluate its config, train it again: moco3 train -c ${join(dir, 'config.yaml')} --out <a new folder>`,
  );
  // a run stopped before its first checkpoint is one to train here, not a copy
  const status = join(dir, 'status.json');
  writeFileSync(status, JSON.stringify({ ...JSON.parse(readFileSync(status, 'utf8')), status: 'interrupted' }));
  assert.throws(() => evalCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.message === `${join(dir, 'checkpoints')}: no checkpoint to evaluate (train the run first)`);
});

test('a checkpoint tensor stored as I64 is a damaged checkpoint, named with its tensor', async () => {
  await trained;
  const dir = tempDir('moco3-probe-i64-');
  cpSync(runDir, dir, { recursive: true });
  const ckpt = join(dir, 'checkpoints', 'step-0000004');
  const st = readSafetensors(join(ckpt, 'model.safetensors'));
  const t = st.tensors.get('base_encoder.cls_token')!;
  st.tensors.set('base_encoder.cls_token', { dtype: 'I64', shape: t.shape, data: BigInt64Array.from(t.data as Float32Array, () => 0n) });
  // with its digest (a file of another writer): the dtype is what is named
  writeCheckpointFile(join(ckpt, 'model.safetensors'), st.tensors, st.metadata);
  assert.throws(() => loadRunModel(dir, config), (e: Error) => e instanceof CheckpointError && e.message === `${ckpt}/model.safetensors: base_encoder.cls_token is stored as I64, expected F32`);
});

test("a checkpoint tensor of another shape is refused, also one of the model's element count", async () => {
  await trained;
  const dir = tempDir('moco3-probe-shape-');
  cpSync(runDir, dir, { recursive: true });
  const ckpt = join(dir, 'checkpoints', 'step-0000004');
  const st = readSafetensors(join(ckpt, 'model.safetensors'));
  const t = st.tensors.get('base_encoder.cls_token')!;
  const n = t.shape.reduce((a, b) => a * b, 1);
  // [1, 1, D] stored as [1, D, 1] in both encoders: the same numbers, laid out otherwise
  for (const name of ['base_encoder.cls_token', 'momentum_encoder.cls_token']) st.tensors.set(name, { ...st.tensors.get(name)!, shape: [1, n, 1] });
  writeCheckpointFile(join(ckpt, 'model.safetensors'), st.tensors, st.metadata);
  assert.throws(
    () => loadRunModel(dir, config),
    (e: Error) => e instanceof CheckpointError && e.message === `${ckpt}/model.safetensors: base_encoder.cls_token has shape [1,${n},1], the model expects [${t.shape}]`,
  );
});

test('a checkpoint whose weights hold NaN or infinity is refused, named with its first such tensor, and nothing is written', async () => {
  await trained;
  const dir = tempDir('moco3-probe-nan-');
  cpSync(runDir, dir, { recursive: true });
  const ckpt = join(dir, 'checkpoints', 'step-0000004');
  const file = join(ckpt, 'model.safetensors');
  const st = readSafetensors(file);
  const names = [...st.tensors.keys()];
  const later = names.find((n) => n.includes('blocks.1.') && n.endsWith('.weight'))!;
  // weights moco3 wrote so (an update that overflowed, the divergence found at the next step): their digest recorded
  (st.tensors.get(later)!.data as Float32Array)[5] = Infinity;
  writeCheckpointFile(file, st.tensors, st.metadata);
  assert.throws(() => loadRunModel(dir, config), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${file}: ${later} holds Infinity (element 5 of `));
  (st.tensors.get('base_encoder.cls_token')!.data as Float32Array)[3] = NaN;
  writeCheckpointFile(file, st.tensors, st.metadata);
  const before = readdirSync(dir).sort();
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  const refused = (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${file}: base_encoder.cls_token holds NaN (element 3 of `) && e.message.endsWith('give an earlier one with --checkpoint');
  assert.throws(() => loadRunModel(dir, config), refused);
  await assert.rejects(knnForRun(dir), refused);
  await assert.rejects(linearProbeForRun(dir), refused);
  assert.deepEqual(readdirSync(dir).sort(), before);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summary);
});

test('a resumed run keeps the knn_eval that moco3 eval knn merged into summary.json', async () => {
  await trained;
  const dir = tempDir('moco3-probe-resume-');
  cpSync(runDir, dir, { recursive: true });
  const r = await knnForRun(dir, { k: 5 });
  await trainRun({ config, runDir: dir, backend, resume: true });
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(summary.status, 'completed');
  assert.deepEqual([summary.knn_eval?.top1, summary.knn_eval?.k, summary.knn_eval?.step], [r.top1, 5, 4]);
});

test("a run not completed (interrupted, diverged, or without status.json): its newest checkpoint is evaluated into its own file; summary.json waits for the run's end", async () => {
  const dir = tempDir('moco3-probe-unfinished-');
  await trainRun({ config: buildConfig({ preset: 'smoke', sets: [...SETS, 'train.checkpoint_every=2'] }), runDir: dir, backend });
  // as a run stopped at its last checkpoint before the end reads
  const st = join(dir, 'status.json');
  writeFileSync(st, JSON.stringify({ ...JSON.parse(readFileSync(st, 'utf8')), status: 'interrupted' }));
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  rmSync(join(dir, 'knn.json'), { force: true });
  const knn = await knnForRun(dir);
  assert.ok(knn.step !== null && knn.step > 0);
  assert.deepEqual(knn.wrote, [`knn-step-${knn.step}.json`]);
  assert.equal(JSON.parse(readFileSync(join(dir, `knn-step-${knn.step}.json`), 'utf8')).top1, knn.top1);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summary, 'summary.json untouched');
  assert.equal(existsSync(join(dir, 'knn.json')), false);
  // again with other settings: the earlier result of that checkpoint is kept beside the new one
  const other = await knnForRun(dir, { k: 3 });
  assert.equal(other.wrote?.length, 2, String(other.wrote));
  const kept = new RegExp(`^(knn-step-${knn.step}\\.old-\\d{8}T\\d{6}\\.json) \\(the earlier knn-step-${knn.step}\\.json, kept\\)$`).exec(other.wrote![1]!);
  assert.ok(kept, other.wrote![1]);
  assert.equal(JSON.parse(readFileSync(join(dir, kept[1]!), 'utf8')).top1, knn.top1);
  for (const f of [kept[1]!, `knn-step-${knn.step}.json`]) rmSync(join(dir, f));
  // a folder copied without its status.json reads as not finished too
  rmSync(st);
  assert.deepEqual((await knnForRun(dir)).wrote, [`knn-step-${knn.step}.json`]);
  // a diverged run has no final weights on disk: its newest checkpoint is of before the divergence (the
  // untrained encoder, where it diverged before its first checkpoint), and is no figure of the run's own
  writeFileSync(st, JSON.stringify({ status: 'diverged', step: knn.step + 1, total_steps: knn.step + 4, diverged_at: knn.step + 1 }));
  const before = readFileSync(join(dir, 'summary.json'), 'utf8');
  assert.deepEqual((await knnForRun(dir)).wrote, [`knn-step-${knn.step}.json`]);
  assert.deepEqual((await linearProbeForRun(dir, { epochs: 1 })).wrote, [`linear-step-${knn.step}.json`]);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), before, 'summary.json untouched');
  // and a damaged summary.json does not stop the evaluation of an earlier checkpoint, which does not write it
  // (of the newest, the run's state is read from it: said, as before)
  writeFileSync(join(dir, 'summary.json'), '{bad');
  assert.deepEqual((await knnForRun(dir, { checkpoint: 'step-0' })).wrote, ['knn-step-0.json']);
  await assert.rejects(knnForRun(dir), /summary\.json: not valid JSON/);
  writeFileSync(join(dir, 'summary.json'), before);
});

test('a damaged summary.json the probe or the kNN would write into is refused before their work: the one line naming it, no epoch, nothing written', async () => {
  await trained;
  const dir = tempDir('moco3-probe-badsummary-');
  cpSync(runDir, dir, { recursive: true });
  writeFileSync(join(dir, 'summary.json'), '{bad');
  const linear = readFileSync(join(dir, 'linear.json'), 'utf8');
  const files = readdirSync(dir).sort();
  const refused = (e: Error) =>
    e.message === `${join(dir, 'summary.json')}: not valid JSON (truncated?); remove it (\`moco3 train --resume\` or the sweep writes it again) or train the run again with \`moco3 train --force\``;
  const epochs: number[] = [];
  await assert.rejects(linearProbeForRun(dir, { onEpoch: (e) => epochs.push(e.epoch) }), refused);
  // the end-of-run hook form alike: a live model, no checkpoint read
  const c = loadRunConfig(dir);
  const { model } = loadRunModel(dir, c);
  try {
    await assert.rejects(linearProbeForRun(dir, { config: c, model, step: 4, onEpoch: (e) => epochs.push(e.epoch) }), refused);
    // the kNN alike, of a checkpoint or of a live model: refused before its work
    await assert.rejects(knnForRun(dir), refused);
    await assert.rejects(knnForRun(dir, { config: c, model }), refused);
  } finally {
    model.dispose();
  }
  assert.deepEqual(epochs, []);
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), '{bad');
  assert.equal(readFileSync(join(dir, 'linear.json'), 'utf8'), linear);
  assert.deepEqual(readdirSync(dir).sort(), files);
});

test("an evaluation with other settings keeps the run's earlier result beside the new one (<kind>.old-<time>.json); the same result again is only rewritten", async () => {
  await trained;
  const dir = tempDir('moco3-probe-again-');
  cpSync(runDir, dir, { recursive: true });
  for (const f of ['linear.json', 'knn.json']) rmSync(join(dir, f), { force: true });
  const first = await linearProbeForRun(dir);
  assert.deepEqual(first.wrote, ['linear.json', 'summary.json']);
  const again = await linearProbeForRun(dir);
  assert.deepEqual(again.wrote, ['linear.json', 'summary.json'], 'the same settings: the same result, nothing kept');
  const other = await linearProbeForRun(dir, { augment: false });
  assert.equal(other.wrote?.length, 3, String(other.wrote));
  const kept = /^(linear\.old-\d{8}T\d{6}\.json) \(the earlier linear\.json, kept\)$/.exec(other.wrote![2]!);
  assert.ok(kept, other.wrote![2]);
  const earlier = JSON.parse(readFileSync(join(dir, kept[1]!), 'utf8'));
  assert.deepEqual([earlier.top1, earlier.augmented], [first.top1, true]);
  assert.equal(JSON.parse(readFileSync(join(dir, 'linear.json'), 'utf8')).augmented, false);
  // the kNN alike, with another k
  await knnForRun(dir, { k: 20 });
  const k2 = await knnForRun(dir, { k: 10 });
  assert.match(k2.wrote!.at(-1)!, /^knn\.old-\d{8}T\d{6}\.json \(the earlier knn\.json, kept\)$/);
});

test('a run folder given through a symbolic link: a checkpoint named by its real path is of that run, and the newest speaks for it', async () => {
  const dir = tempDir('moco3-probe-link-');
  await trainRun({ config: buildConfig({ preset: 'smoke', sets: [...SETS, 'train.checkpoint_every=2'] }), runDir: dir, backend });
  const link = join(tempDir('moco3-probe-link-'), 'run');
  symlinkSync(dir, link);
  const steps = readdirSync(join(dir, 'checkpoints')).filter((d) => d.startsWith('step-')).sort();
  assert.deepEqual((await knnForRun(link, { checkpoint: join(dir, 'checkpoints', steps[0]!) })).wrote, ['knn-step-0.json']);
  assert.deepEqual((await knnForRun(link, { checkpoint: join(dir, 'checkpoints', steps.at(-1)!) })).wrote, ['knn.json', 'summary.json']);
});

test('a run trained anew (--force) while its checkpoint is evaluated: the result of the run moved aside is not written into the new one', async () => {
  const dir = tempDir('moco3-probe-forced-');
  await trainRun({ config: buildConfig({ preset: 'smoke', sets: SETS }), runDir: dir, backend });
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  const linear = readFileSync(join(dir, 'linear.json'), 'utf8');
  const metaPath = join(dir, 'meta.json');
  const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
  let swapped = false;
  // as `train --force` leaves the folder: another run's meta.json, its first start now
  const force = () => {
    if (swapped) return;
    swapped = true;
    writeFileSync(metaPath, JSON.stringify({ ...meta, starts: [{ started: '2099-01-01T00:00:00.000Z', host: 'elsewhere' }] }));
  };
  await assert.rejects(linearProbeForRun(dir, { epochs: 1, check: force }), (e: Error) => e instanceof CheckpointError && /: the run was trained anew \(--force\) while its checkpoint step-\d+ was evaluated: the result is of the run moved aside, and is not written$/.test(e.message));
  assert.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summary);
  assert.equal(readFileSync(join(dir, 'linear.json'), 'utf8'), linear);
  // the run's own resumes keep its first start: their evaluations are written
  writeFileSync(metaPath, JSON.stringify({ ...meta, starts: [...meta.starts, { started: '2099-01-01T00:00:00.000Z', host: 'elsewhere' }] }));
  assert.deepEqual((await knnForRun(dir)).wrote, ['knn.json', 'summary.json']);
  // nor a resume that starts while the probe runs (its start is added after the first)
  const resumed = JSON.parse(readFileSync(metaPath, 'utf8'));
  let added = false;
  const resume = () => {
    if (added) return;
    added = true;
    writeFileSync(metaPath, JSON.stringify({ ...resumed, starts: [...resumed.starts, { started: '2099-02-01T00:00:00.000Z', host: 'later' }] }));
  };
  const during = await linearProbeForRun(dir, { epochs: 1, check: resume });
  assert.ok(added);
  assert.deepEqual(during.wrote?.slice(0, 2), ['linear.json', 'summary.json']);
  // a folder without a meta.json (copied by hand) has nothing to tell a new run by: a resume writing one meanwhile is no new run
  rmSync(metaPath);
  swapped = false;
  const late = await linearProbeForRun(dir, { epochs: 1, check: force });
  assert.ok(swapped);
  assert.deepEqual(late.wrote, ['linear.json', 'summary.json', ...late.wrote!.slice(2)]);
});

test("a probe that diverges (its lr too large): the training's run completes with no linear accuracy and says why; eval linear with a sound lr fills it in", async () => {
  // a folder with a blank: the command offered is quoted for the shell
  const dir = join(tempDir('moco3-probe-diverged-'), 'a run');
  const phases: string[] = [];
  const before = tf.memory().numTensors;
  const c = buildConfig({ preset: 'smoke', sets: [...SETS, 'eval.linear.base_lr=1e300'] });
  const s = await trainRun({ config: c, runDir: dir, backend, onEvent: (e) => e.type === 'phase' && phases.push(e.text) });
  assert.equal(tf.memory().numTensors, before, 'tensors leaked');
  assert.equal(s.status, 'completed');
  assert.equal(s.linear_top1, null, 'not 0%: its head would score every image a miss');
  assert.match(s.linear_error ?? '', /^the linear probe diverged: /, 'the summary the caller gets (and the end event) says why');
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(summary.status, 'completed');
  assert.equal(summary.linear_top1, null);
  assert.match(summary.linear_error, /^the linear probe diverged: loss (NaN|-?Infinity) in epoch 1 at lr 1\.25e\+299$/);
  assert.ok(phases.some((p) => /^the linear probe diverged: .*\(eval\.linear\.base_lr 1e\+300\): linear top-1 left empty; `moco3 eval linear '.*\/a run' --lr <smaller>` probes it again$/.test(p)), phases.join('\n'));
  assert.equal(JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')).status, 'completed');
  const r = await linearProbeForRun(dir, { baseLr: 3 });
  const after = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(after.linear_top1, r.top1);
  assert.equal('linear_error' in after, false, 'the error is gone with the accuracy it stood for');
  rmSync(dir, { recursive: true, force: true });
});
