/**
 * The `native` tfjs backend: the stock `cpu` backend (tensors in plain typed arrays) with its hot kernels
 * (matmul, elementwise, softmax, reductions, transpose) replaced by moco3's C++ addon (BLAS + vectorised
 * loops, see native/). Kernels it does not handle fall back to the stock ones, and gradients are looked
 * up by kernel name, so every op and gradient of `cpu` keeps working. The `cpu` backend is left as is.
 */
import { existsSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { backend_util } from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { nativeKernelConfigs, nativeMoco3KernelConfigs, type NativeAddon } from './native-kernels.ts';
import { GELU_BWD, GELU_FWD, LAYERNORM_BWD, LAYERNORM_FWD } from './webgpu-kernels.ts';
import { firstLine } from '../config/errors.ts';

export const NATIVE_BACKEND = 'native';
const ADDON_FILE = 'moco3_native.node';

export interface NativeStatus {
  built: boolean;
  path?: string;
  error?: string;
  blas?: string;
  threads?: number;
  isa?: string;
}

/** Where the built addon may be, most specific first (repo layout works from src/ and dist/). */
function candidatePaths(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = resolve(here, '..', '..');
  // only the file scripts/build-native.mjs manages (node-gyp's own output under native/ may be stale)
  // the GPU check's bundle (scripts/bundle-gpu.mjs) has no addon: one beside it, in a checkout it was built in,
  // is not its own (a trial of the bundle there would time the native augmentation the GPU machine lacks)
  const list = process.env.MOCO3_GPU_BUNDLE === '1' ? [] : [resolve(root, 'build', 'Release', ADDON_FILE)];
  const override = process.env.MOCO3_NATIVE_PATH;
  return override ? [resolve(override), ...list] : list;
}

let loaded: { addon: NativeAddon | null; status: NativeStatus } | null = null;

function loadAddon(): { addon: NativeAddon | null; status: NativeStatus } {
  if (loaded) return loaded;
  if (process.env.MOCO3_NATIVE === '0') {
    loaded = { addon: null, status: { built: false, error: 'disabled by MOCO3_NATIVE=0' } };
    return loaded;
  }
  const override = process.env.MOCO3_NATIVE_PATH;
  if (override && !existsSync(resolve(override))) {
    // the file asked for, not the default build in its place
    loaded = { addon: null, status: { built: false, error: `MOCO3_NATIVE_PATH=${override}: no such file` } };
    return loaded;
  }
  if (override && !statSync(resolve(override)).isFile()) {
    loaded = { addon: null, status: { built: false, error: `MOCO3_NATIVE_PATH=${override}: not a file (expected the addon, ${ADDON_FILE})` } };
    return loaded;
  }
  const path = candidatePaths().find((p) => existsSync(p));
  if (!path) {
    loaded = {
      addon: null,
      status: { built: false, error: `${ADDON_FILE} not found (build it with: node scripts/build-native.mjs)` },
    };
    return loaded;
  }
  try {
    // loaded as a native addon whatever its name (require() would run a .js file, or parse another as JavaScript)
    const mod = { exports: {} as NativeAddon };
    process.dlopen(mod, path);
    const addon = mod.exports;
    if (typeof addon.info !== 'function') throw new Error(`not moco3's addon (it has no info())`);
    const info = addon.info();
    loaded = { addon, status: { built: true, path, blas: info.blas, threads: info.threads, isa: info.isa } };
  } catch (err) {
    // the loader's first line (the reason): the rest is Node's require stack
    const message = firstLine(err);
    loaded = { addon: null, status: { built: false, path, error: message } };
  }
  return loaded;
}

/** What `moco3 doctor` reports about the native kernels; never throws. */
export function nativeStatus(): NativeStatus {
  const { addon, status } = loadAddon();
  if (addon) {
    try {
      const info = addon.info();
      return { ...status, threads: info.threads };
    } catch {
      /* keep the load-time status */
    }
  }
  return { ...status };
}

/**
 * Asks the system to kill this process when its parent ends, even while it is stopped (native addon, Linux);
 * false where that cannot be asked.
 */
export function dieWithParent(): boolean {
  const addon = loadAddon().addon;
  return addon?.dieWithParent?.(process.ppid) ?? false;
}

/** The loaded addon, or null (for benchmarks and tests). */
export function nativeAddon(): NativeAddon | null {
  return loadAddon().addon;
}

/** Threads used by the native kernels (1 disables the pool); returns the number in effect. */
export function setNativeThreads(n: number): number {
  const addon = loadAddon().addon;
  return addon ? addon.setThreads(Math.max(1, Math.floor(n))) : 0;
}

/** Free-list cap: MOCO3_NATIVE_POOL_MB, else a quarter of RAM up to 4 GiB. */
export function defaultFreeListBytes(): number {
  // unset or empty: the default (src/cli/env.ts)
  const raw = process.env.MOCO3_NATIVE_POOL_MB?.trim();
  const mb = raw ? Number(raw) : NaN;
  if (Number.isFinite(mb) && mb >= 0) return mb * 2 ** 20;
  return Math.min(4 * 2 ** 30, Math.floor(totalmem() / 4));
}

/**
 * The cpu backend plus a free list of float32 buffers. The cpu backend frees tensor memory only through
 * the garbage collector, and a training step allocates gigabytes of short-lived arrays, so V8 spends
 * much of the step in GCs forced by "external memory pressure". Arrays this backend hands out to the
 * native kernels are instead recycled once no stored tensor uses them any more (views made by stock
 * kernels, such as contiguous slices, count as uses), unless they were read out (dataSync, data, array):
 * the caller may keep those. Recycled arrays are not zeroed: every native kernel overwrites its output.
 */
export class NativeBackend extends MathBackendCPU {
  private readonly free = new Map<number, Float32Array[]>();
  private freeBytes = 0;
  private readonly maxFreeBytes: number;
  /** buffer of an array this backend handed out -> how many stored tensors use it */
  private readonly ours = new WeakMap<ArrayBufferLike, { arr: Float32Array; refs: number; tainted: boolean }>();

  constructor(maxFreeBytes = defaultFreeListBytes()) {
    super();
    (this as unknown as { firstUse: boolean }).firstUse = false; // its "install tfjs-node" banner misleads here
    this.maxFreeBytes = maxFreeBytes;
  }

  /** An uninitialised float32 array of length n (recycled when possible). */
  takeF32(n: number): Float32Array {
    const a = this.free.get(n)?.pop();
    if (a) {
      this.freeBytes -= a.byteLength;
      return a;
    }
    const b = new Float32Array(n);
    if (n >= 1024) this.ours.set(b.buffer, { arr: b, refs: 0, tainted: false });
    return b;
  }

  /** Bytes held in the free list (tests, diagnostics). */
  freeListBytes(): number {
    return this.freeBytes;
  }

  /** Drop the free list (the GC reclaims it). */
  releaseFreeList(): void {
    this.free.clear();
    this.freeBytes = 0;
  }

  override write(values: backend_util.BackendValues, shape: number[], dtype: tf.DataType): object {
    if (ArrayBuffer.isView(values)) {
      const rec = this.ours.get(values.buffer);
      if (rec) rec.refs++;
    }
    return super.write(values, shape, dtype);
  }

  override move(dataId: object, values: backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    if (ArrayBuffer.isView(values)) {
      const rec = this.ours.get(values.buffer);
      if (rec) rec.tainted = true;
    }
    super.move(dataId, values, shape, dtype, refCount);
  }

  override readSync(dataId: object): backend_util.BackendValues {
    this.taint(dataId);
    return super.readSync(dataId);
  }

  override read(dataId: object): Promise<backend_util.BackendValues> {
    this.taint(dataId);
    return super.read(dataId);
  }

  override disposeData(dataId: object, force = false): boolean {
    const entry = this.data.has(dataId) ? this.data.get(dataId) : undefined;
    const freed = super.disposeData(dataId, force);
    if (entry && freed && !this.data.has(dataId) && ArrayBuffer.isView(entry.values)) {
      const rec = this.ours.get(entry.values.buffer);
      if (rec && --rec.refs === 0 && !rec.tainted && this.freeBytes + rec.arr.byteLength <= this.maxFreeBytes) {
        let list = this.free.get(rec.arr.length);
        if (!list) this.free.set(rec.arr.length, (list = []));
        list.push(rec.arr);
        this.freeBytes += rec.arr.byteLength;
      }
    }
    return freed;
  }

  override dispose(): void {
    this.releaseFreeList();
    super.dispose();
  }

  private taint(dataId: object): void {
    if (!this.data.has(dataId)) return;
    const v = this.data.get(dataId).values;
    if (ArrayBuffer.isView(v)) {
      const rec = this.ours.get(v.buffer);
      if (rec) rec.tainted = true;
    }
  }
}

/**
 * Hands the native backend's recycled buffers back to the garbage collector (e.g. between training and
 * evaluation, whose tensor sizes differ). Returns the bytes released; 0 when `native` is not in use.
 */
export function releaseNativeFreeList(): number {
  const b = tf.findBackend(NATIVE_BACKEND);
  if (!(b instanceof NativeBackend)) return 0;
  const bytes = b.freeListBytes();
  b.releaseFreeList();
  return bytes;
}

let registered: { threads: number; blas: string } | null = null;

/**
 * Registers the `native` backend (does not select it). Returns null, without throwing, when the addon is
 * not built or cannot load. Safe to call more than once.
 */
export function registerNativeBackend(): { threads: number; blas: string } | null {
  if (registered) return registered;
  const { addon } = loadAddon();
  if (!addon) return null;
  try {
    const cpuKernels = tf.getKernelsForBackend('cpu');
    if (cpuKernels.length === 0) return null;  // tfjs-backend-cpu not loaded: nothing to build on
    if (!tf.findBackendFactory(NATIVE_BACKEND)) {
      // priority below cpu's, so code that never calls setBackend keeps the stock backend
      tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 0);
    }
    const stock = new Map<string, tf.KernelFunc>();
    for (const config of cpuKernels) {
      stock.set(config.kernelName, config.kernelFunc);
      if (!tf.getKernel(config.kernelName, NATIVE_BACKEND)) tf.registerKernel({ ...config, backendName: NATIVE_BACKEND });
    }
    const missing: tf.KernelFunc = () => {
      throw new Error('moco3 native: no stock kernel to fall back on');
    };
    const stockOf = (name: string): tf.KernelFunc => stock.get(name) ?? missing;
    for (const config of nativeKernelConfigs(addon, NATIVE_BACKEND, stockOf)) {
      if (!stock.has(config.kernelName)) continue;  // only override what cpu has
      if (tf.getKernel(config.kernelName, NATIVE_BACKEND)) tf.unregisterKernel(config.kernelName, NATIVE_BACKEND);
      tf.registerKernel(config);
    }
    // and moco3's own, which the model uses where the backend has them
    for (const config of nativeMoco3KernelConfigs(addon, NATIVE_BACKEND, { geluFwd: GELU_FWD, geluBwd: GELU_BWD, layerNormFwd: LAYERNORM_FWD, layerNormBwd: LAYERNORM_BWD })) {
      if (!tf.getKernel(config.kernelName, NATIVE_BACKEND)) tf.registerKernel(config);
    }
    const info = addon.info();
    registered = { threads: info.threads, blas: info.blas };
    return registered;
  } catch {
    return null;
  }
}
