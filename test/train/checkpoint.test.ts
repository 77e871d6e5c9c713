/**
 * The checkpoint files themselves: model.safetensors is the official MoCo_ViT state dict (PyTorch names,
 * shapes and layouts, num_batches_tracked as int64, metadata format "pt"), optimizer.safetensors the slots in
 * the layout of their parameter; a load gives back every tensor exactly and refuses a file that lacks a tensor
 * or holds one of another shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tf } from '../helpers/tf.ts';
import { readSafetensors, type StTensor } from '../../src/engine/safetensors.ts';
import { modelConfigOf, optimizerOf } from '../../src/components/index.ts';
import { MoCoViT } from '../../src/model/moco.ts';
import { loadCheckpoint, saveCheckpoint, type LoopState } from '../../src/train/checkpoint.ts';
import { tempDir } from '../helpers/tmp.ts';
import { tinyConfig } from '../helpers/tiny.ts';
import { writeCheckpointFile } from '../helpers/checkpoint.ts';

const c = tinyConfig(['optim.name=adamw', 'model.patch_proj=learned']);

/** A model and AdamW after one update with random gradients (so that every slot exists and differs from zero). */
function trained(seed: number) {
  const model = new MoCoViT(modelConfigOf(c), seed);
  const opt = optimizerOf(c, model);
  const grads = new Map(model.trainableNames().map((n, i) => [n, tf.randomNormal(model.vars.get(n)!.shape, 0, 1, 'float32', seed * 1000 + i)] as const));
  opt.step(model.vars, grads, 0.01);
  tf.dispose([...grads.values()]);
  return { model, opt };
}

const state = (opt: { stateJson(): Record<string, unknown> }): LoopState => ({
  step: 3,
  epoch: 0,
  wall_s: 1,
  train_s: 1,
  images_seen: 48,
  best_knn_top1: null,
  last_knn_top1: null,
  config_hash: 'h',
  optimizer: opt.stateJson(),
});

const values = (t: StTensor) => Array.from(t.data as ArrayLike<number | bigint>, Number);

test('a checkpoint holds the official state dict (PyTorch layouts, int64 BatchNorm counts, format pt) and AdamW slots in their parameter\'s layout; loaded back exactly, with no tensor left', async () => {
  const a = trained(1);
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const dir = await saveCheckpoint(root, a.model, a.opt, state(a.opt), { arch: 'vit-test' });
  const { tensors, metadata } = readSafetensors(join(dir, 'model.safetensors'));
  assert.deepEqual([metadata.format, metadata.step, metadata.arch], ['pt', '3', 'vit-test']);
  assert.deepEqual([...tensors.keys()].sort(), [...a.model.vars.keys()].sort());
  // a Linear: torch [out, in], moco3 [in, out]
  const lin = 'base_encoder.blocks.0.mlp.fc1.weight';
  const W = a.model.vars.get(lin)!.arraySync() as number[][]; // [8, 16]
  const st = tensors.get(lin)!;
  assert.deepEqual([st.dtype, st.shape], ['F32', [16, 8]]);
  assert.equal(values(st)[5 * 8 + 2], W[2]![5]);
  // the patch projection: torch [D, C, p, p], moco3 [(py, px, c), D]
  const P = a.model.vars.get('base_encoder.patch_embed.proj.weight')!.arraySync() as number[][]; // [48, 8]
  const sp = tensors.get('base_encoder.patch_embed.proj.weight')!;
  assert.deepEqual(sp.shape, [8, 3, 4, 4]);
  // element [d=5, c=2, py=1, px=3] = internal row (1·4 + 3)·3 + 2
  assert.equal(values(sp)[((5 * 3 + 2) * 4 + 1) * 4 + 3], P[(1 * 4 + 3) * 3 + 2]![5]);
  const nbt = tensors.get('predictor.1.num_batches_tracked')!;
  assert.deepEqual([nbt.dtype, nbt.shape], ['I64', []]);
  // optimizer slots: `<param>.exp_avg` / `.exp_avg_sq`, each in its parameter's PyTorch layout
  const slots = readSafetensors(join(dir, 'optimizer.safetensors')).tensors;
  assert.deepEqual([...slots.keys()].sort(), a.model.trainableNames().flatMap((n) => [`${n}.exp_avg`, `${n}.exp_avg_sq`]).sort());
  const m = a.opt.stateTensors().get(`${lin}.exp_avg`)!.arraySync() as number[][];
  assert.deepEqual(slots.get(`${lin}.exp_avg`)!.shape, [16, 8]);
  assert.equal(values(slots.get(`${lin}.exp_avg`)!)[5 * 8 + 2], m[2]![5]);

  // into another model and optimizer: every tensor as saved
  const b = trained(2);
  loadCheckpoint(dir, b.model, b.opt);
  const before = tf.memory().numTensors;
  const got = loadCheckpoint(dir, b.model, b.opt);
  assert.equal(tf.memory().numTensors, before);
  assert.equal(got.step, 3);
  for (const [n, v] of a.model.vars) assert.deepEqual(b.model.vars.get(n)!.dataSync(), v.dataSync(), n);
  const sa = a.opt.stateTensors();
  const sb = b.opt.stateTensors();
  assert.deepEqual([...sb.keys()].sort(), [...sa.keys()].sort());
  for (const [k, t] of sa) assert.deepEqual(sb.get(k)!.dataSync(), t.dataSync(), k);
  for (const x of [a, b]) {
    x.opt.dispose();
    x.model.dispose();
  }
});

test('a checkpoint lacking a tensor of the model, or holding a slot of another shape than its parameter, is refused', async () => {
  const a = trained(3);
  const root = join(tempDir('moco3-ckpt-'), 'checkpoints');
  const dir = await saveCheckpoint(root, a.model, a.opt, state(a.opt), {});
  const modelFile = join(dir, 'model.safetensors');
  const optFile = join(dir, 'optimizer.safetensors');
  const model = readSafetensors(modelFile);
  const opt = readSafetensors(optFile);
  const b = trained(4);
  const start = tf.memory().numTensors;
  // the last tensor of the state dict gone (a file of a model with one tensor less)
  const gone = [...model.tensors.keys()].at(-1)!;
  writeCheckpointFile(modelFile, new Map([...model.tensors].filter(([n]) => n !== gone)), model.metadata);
  assert.throws(() => loadCheckpoint(dir, b.model, b.opt), new RegExp(`model\\.safetensors: missing tensor ${gone.replace(/\./g, '\\.')}$`));
  writeCheckpointFile(modelFile, model.tensors, model.metadata);
  // a Linear's slot as [in, out] (moco3's internal layout), not [out, in]
  const key = 'base_encoder.blocks.0.mlp.fc1.weight.exp_avg';
  const s = opt.tensors.get(key)!;
  writeCheckpointFile(optFile, new Map([...opt.tensors].map(([k, t]) => [k, k === key ? { ...s, shape: [8, 16] } : t] as const)), opt.metadata);
  assert.throws(() => loadCheckpoint(dir, b.model, b.opt), /optimizer\.safetensors:? base_encoder\.blocks\.0\.mlp\.fc1\.weight\.exp_avg has (shape )?\[8, ?16\]/);
  assert.equal(tf.memory().numTensors, start);
  for (const x of [a, b]) {
    x.opt.dispose();
    x.model.dispose();
  }
});
