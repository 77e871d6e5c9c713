/**
 * The tensors of a checkpoint folder `checkpoints/step-<N>/` (its layout, temporary name and last.json
 * pointer: src/runfolder/checkpoints.ts):
 *   model.safetensors      every tensor of the official MoCo_ViT state dict (no `module.` prefix), PyTorch layouts
 *   optimizer.safetensors  optimizer slots named `<param>.<slot>` (PyTorch slot names and layouts)
 *   state.json             step, loop state, optimizer scalars, the two files' sizes and SHA-256; written last: a folder
 *                          without it is incomplete
 * A crash at any moment leaves the previous checkpoint intact.
 */
import * as tf from '@tensorflow/tfjs-core';
import { removeQuietly, writeFileAtomic } from '../engine/files.ts';
import { dirname, join } from 'node:path';
import { checkWebGpuErrors, readBack } from '../engine/webgpu.ts';
import { createHash } from 'node:crypto';
import { encodeSafetensors, readSafetensors, type StTensor } from '../engine/safetensors.ts';
import { checkpointStep, checkpointTempDir, checkNoStrayTensors, commitCheckpoint, CheckpointError, writeCheckpointState } from '../runfolder/checkpoints.ts';
import { CHECKPOINT_FILES, checkCheckpoint, type CheckpointState, type FileDigest } from '../runfolder/resume.ts';
import { OptimizerStateError } from '../optim/optimizer.ts';
import { firstLine } from '../config/errors.ts';

/** The training loop's state at a checkpoint: what state.json holds (src/runfolder/resume.ts). */
export type LoopState = CheckpointState;

export interface CheckpointModel {
  vars: Map<string, tf.Variable>;
  toTorch(name: string, t: tf.Tensor): tf.Tensor;
  fromTorch(name: string, t: tf.Tensor): tf.Tensor;
  torchShape(name: string): number[];
}

export interface CheckpointOptimizer {
  stateTensors(): Map<string, tf.Tensor>;
  stateJson(): Record<string, unknown>;
  loadState(tensors: Map<string, tf.Tensor>, json: Record<string, unknown>, params?: Map<string, tf.Variable>): void;
}

function slotParam(key: string): string {
  const i = key.lastIndexOf('.');
  return key.slice(0, i);
}

function toSt(t: tf.Tensor, values: tf.TypedArray, int64: boolean): StTensor {
  if (int64) return { dtype: 'I64', shape: t.shape, data: BigInt64Array.from(values, (v) => BigInt(Math.round(v))) };
  return { dtype: 'F32', shape: t.shape, data: values instanceof Float32Array ? values : Float32Array.from(values) };
}

/** Reads tensors back with `await data()` (GPU backends have no synchronous read), then disposes them. */
async function readAll(ts: tf.Tensor[]): Promise<tf.TypedArray[]> {
  try {
    const values = await readBack(Promise.all(ts.map((t) => t.data())), 'the read-back of a checkpoint');
    checkWebGpuErrors('the read-back of a checkpoint');
    return values;
  } finally {
    tf.dispose(ts);
  }
}

/** A stored tensor as float32, once its dtype is the one moco3 writes for it (`want`). */
function fromSt(t: StTensor, file: string, name: string, want: 'F32' | 'I64' = 'F32'): tf.Tensor {
  if (t.dtype !== want) throw new CheckpointError(`${file}: ${name} is stored as ${t.dtype}, expected ${want}`);
  const data = t.dtype === 'I64' ? Float32Array.from(t.data as BigInt64Array, (v) => Number(v)) : Float32Array.from(t.data as Float32Array | Int32Array);
  return tf.tensor(data, t.shape, 'float32');
}

/** f of each item, a tensor each; a kernel that fails on the way (out of memory) frees those made before it. */
function tensorsOf<I>(items: I[], f: (item: I) => tf.Tensor): tf.Tensor[] {
  const ts: tf.Tensor[] = [];
  try {
    for (const item of items) ts.push(f(item));
    return ts;
  } catch (e) {
    tf.dispose(ts);
    throw e;
  }
}

/** The model's state dict in PyTorch layout, ready for safetensors. */
export async function modelStateDict(model: CheckpointModel): Promise<Map<string, StTensor>> {
  const names = [...model.vars.keys()];
  const ts = tensorsOf(names, (name) => tf.tidy(() => model.toTorch(name, model.vars.get(name)!)));
  const values = await readAll(ts);
  return new Map(names.map((name, i) => [name, toSt(ts[i]!, values[i]!, name.endsWith('num_batches_tracked'))] as const));
}

/** A checkpoint that could not be written (a full disk, no write access, a failing disk): the previous one is intact. */
export class CheckpointWriteError extends Error {
  override name = 'CheckpointWriteError';
}

const WRITE_REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the disk',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
};

/**
 * Writes the checkpoint of `state.step` (a temporary folder renamed into place, then last.json); every
 * value is read back from the backend before anything is written. When a write fails, the temporary
 * folder is removed, last.json keeps naming the previous checkpoint, and a CheckpointWriteError says so
 * in one line.
 */
export async function saveCheckpoint(
  ckptRoot: string,
  model: CheckpointModel,
  optimizer: CheckpointOptimizer,
  state: LoopState,
  metadata: Record<string, string>,
): Promise<string> {
  const modelDict = await modelStateDict(model);
  const slotTensors = [...optimizer.stateTensors()];
  const keys = slotTensors.map(([key]) => key);
  const ts = tensorsOf(slotTensors, ([key, t]) => {
    const param = slotParam(key);
    return model.vars.has(param) ? tf.tidy(() => model.toTorch(param, t)) : tf.clone(t);
  });
  const values = await readAll(ts);
  const slots = new Map<string, StTensor>(keys.map((key, i) => [key, toSt(ts[i]!, values[i]!, false)] as const));
  let tmp: string | null = null;
  try {
    tmp = checkpointTempDir(ckptRoot, state.step);
    // each file's size and SHA-256 in state.json: a file damaged later is found before it is loaded (resume.ts)
    const files: Record<string, FileDigest> = {};
    const write = (name: (typeof CHECKPOINT_FILES)[number], bytes: Uint8Array) => {
      writeFileAtomic(join(tmp!, name), bytes);
      files[name] = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    };
    write('model.safetensors', encodeSafetensors(modelDict, { format: 'pt', step: String(state.step), ...metadata }));
    write('optimizer.safetensors', encodeSafetensors(slots, { format: 'pt', step: String(state.step) }));
    writeCheckpointState(tmp, { ...state, files });
    return commitCheckpoint(ckptRoot, tmp, state.step);
  } catch (e) {
    if (tmp) removeQuietly(tmp);
    const code = (e as NodeJS.ErrnoException).code;
    const why = code && WRITE_REASONS[code] ? `${code}: ${WRITE_REASONS[code]}` : firstLine(e);
    const prev = checkpointStep(dirname(ckptRoot));
    throw new CheckpointWriteError(
      `${ckptRoot}: could not write the checkpoint of step ${state.step} (${why}); ` +
        `${prev !== null ? `the checkpoint of step ${prev} is intact` : 'there is no earlier checkpoint'}: once the cause is gone, resume with --resume (a sweep: run it again)`,
    );
  }
}

/**
 * Loads a checkpoint into the model and optimizer. The files' digests and state.json are checked before any
 * weight is assigned; the model's tensors are then checked and assigned one by one, so a load that fails
 * part-way (a tensor missing near the end) leaves the model partly loaded: its caller discards the model.
 */
export function loadCheckpoint(dir: string, model: CheckpointModel, optimizer: CheckpointOptimizer): LoopState {
  // the files' digests are this checkpoint's, not the loop's state (its next checkpoint records its own)
  const { files: _files, ...state } = checkCheckpoint(dir, false) as unknown as LoopState;
  const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
  checkNoStrayTensors(dir, tensors.keys(), (name) => model.vars.has(name));
  for (const [name, v] of model.vars) {
    const t = tensors.get(name);
    if (!t) throw new CheckpointError(`${dir}/model.safetensors: missing tensor ${name}`);
    const want = model.torchShape(name);
    if (t.shape.join(',') !== want.join(',')) {
      throw new CheckpointError(`${dir}/model.safetensors: ${name} has shape [${t.shape}], the model expects [${want}]`);
    }
    const st = fromSt(t, `${dir}/model.safetensors`, name, name.endsWith('num_batches_tracked') ? 'I64' : 'F32');
    try {
      tf.tidy(() => v.assign(tf.cast(model.fromTorch(name, st), v.dtype)));
    } finally {
      st.dispose();
    }
  }
  const slots = readSafetensors(join(dir, 'optimizer.safetensors')).tensors;
  const loaded = new Map<string, tf.Tensor>();
  for (const [key, t] of slots) {
    const param = slotParam(key);
    let st: tf.Tensor | null = null;
    try {
      // a parameter's slot has the parameter's shape
      const want = model.vars.has(param) ? model.torchShape(param) : null;
      if (want && t.shape.join(',') !== want.join(',')) {
        throw new CheckpointError(`${dir}/optimizer.safetensors: ${key} has shape [${t.shape}], the model expects [${want}]`);
      }
      const s = fromSt(t, `${dir}/optimizer.safetensors`, key);
      st = s;
      loaded.set(key, tf.tidy(() => (model.vars.has(param) ? model.fromTorch(param, s) : tf.clone(s))));
    } catch (e) {
      // a kernel failing (out of memory) frees the slots read so far, as a damaged file does
      for (const x of loaded.values()) x.dispose();
      throw e;
    } finally {
      st?.dispose();
    }
  }
  try {
    optimizer.loadState(loaded, state.optimizer, model.vars);
  } catch (e) {
    // the state's own words, with the files it came from: a damaged checkpoint is bad input (exit 2)
    if (e instanceof OptimizerStateError) throw new CheckpointError(`${dir}/{state.json,optimizer.safetensors}: ${e.message}`);
    throw e;
  } finally {
    for (const t of loaded.values()) t.dispose();
  }
  return state;
}

