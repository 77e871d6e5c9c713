/**
 * The `webgpu` backend in Node: TensorFlow.js's WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) over
 * Dawn's Node bindings (the npm package `webgpu`, which ships `dawn.node` prebuilt). Both are optional
 * packages, imported only when asked for. Dawn runs on any GPU with a Vulkan (Linux), Metal (macOS) or
 * D3D12 (Windows) driver, so no CUDA version is involved.
 *
 * What Node lacks and this module supplies: a `navigator.gpu` (Dawn's `create()`), Dawn's globals
 * (`GPUBufferUsage`, `GPUMapMode`, ...) on `globalThis`, and a device asking for the adapter's own limits
 * (buffer and binding sizes, workgroup sizes): the default device allows 128-256 MiB bindings, less than one
 * activation of the `gpu` preset at batch 1024. Reading tensors back must use `await t.data()`: the
 * backend's `dataSync` needs a browser canvas. `closeWebGpu()` destroys the device, without which Dawn keeps
 * the process alive.
 */
import * as tf from '@tensorflow/tfjs-core';
import { setBackendSaying } from './set-backend.ts';
import { onShutdown } from './shutdown.ts';
import { packingDefault, registerWebGpuKernels, useMoco3Packing } from './webgpu-kernels.ts';
import { nativeAddon } from './native.ts';
import { firstLine } from '../config/errors.ts';

/** The adapter limits that decide which batches fit and which kernels compile; requested as they are. */
export const WEBGPU_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;
export type WebGpuLimit = (typeof WEBGPU_LIMITS)[number];

export interface WebGpuAdapter {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** a CPU implementing the API (Mesa lavapipe/llvmpipe, SwiftShader, WARP): correct, not fast */
  software: boolean;
  limits: Record<WebGpuLimit, number>;
  /** optional features of the adapter this backend uses (timestamp-query for profiling) */
  features: string[];
}

// the few WebGPU shapes used here (the full IDL types would be a dependency for four calls)
interface GpuAdapterLike {
  info: Record<string, unknown>;
  limits: Record<string, number>;
  features: Set<string>;
  requestDevice(desc: { requiredLimits?: Record<string, number>; requiredFeatures?: string[] }): Promise<GpuDeviceLike>;
}
export interface GpuDeviceLike {
  destroy(): void;
  limits: Record<string, number>;
  features: Set<string>;
  addEventListener?(type: string, f: (ev: { error?: { message?: string } }) => void): void;
  lost?: Promise<{ reason?: string; message?: string }>;
}
interface GpuLike {
  requestAdapter(opts?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render|warp/i;

/** Where Dawn finds a GPU's Vulkan driver: said when it finds none, or only a software one on a machine with a GPU. */
export const VULKAN_HINT =
  "on Linux: the GPU vendor's Vulkan ICD, e.g. VK_DRIVER_FILES=/usr/share/vulkan/icd.d/nvidia_icd.json, and libvulkan.so.1; " +
  'in a container, NVIDIA_DRIVER_CAPABILITIES must include graphics';

let gpu: GpuLike | null = null;
let device: GpuDeviceLike | null = null;
let registered = false;
/** The first error the device reported since the last checkWebGpuErrors (null: none). */
let deviceError: string | null = null;
/** Why the device was lost: every later check fails (a lost device runs nothing more). */
let deviceLost: string | null = null;
let adapterCache: Promise<{ adapter: GpuAdapterLike; summary: WebGpuAdapter } | string> | null = null;

/** Dawn's `navigator.gpu`, created once; a string says why there is none. */
async function dawn(): Promise<GpuLike | string> {
  if (gpu) return gpu;
  let mod: DawnModule;
  try {
    mod = (await import('webgpu')) as unknown as DawnModule;
  } catch (e) {
    return `the optional package 'webgpu' (Dawn) is not installed or does not load here (${firstLine(e)})`;
  }
  Object.assign(globalThis, mod.globals);
  // Dawn's own flags, e.g. MOCO3_DAWN_FLAGS=backend=vulkan,adapter=NVIDIA
  // (unset or blank: none, as src/cli/env.ts reads it)
  const given = process.env.MOCO3_DAWN_FLAGS ?? '';
  const flags = given.trim() ? given.split(',').filter(Boolean) : [];
  try {
    gpu = mod.create(flags);
  } catch (e) {
    return `Dawn refused MOCO3_DAWN_FLAGS=${process.env.MOCO3_DAWN_FLAGS} (${firstLine(e)})`;
  }
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator === undefined) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  else if (g.navigator.gpu === undefined) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  return gpu;
}

export function summarizeAdapter(info: Record<string, unknown>, limits: Record<string, number>, features: Iterable<string>): WebGpuAdapter {
  const str = (k: string) => (typeof info[k] === 'string' ? (info[k] as string) : '');
  const vendor = str('vendor');
  const architecture = str('architecture');
  const dev = str('device');
  const description = str('description');
  const software = info.isFallbackAdapter === true || architecture === 'software' || SOFTWARE.test(`${vendor} ${dev} ${description}`);
  const lim = {} as Record<WebGpuLimit, number>;
  for (const k of WEBGPU_LIMITS) lim[k] = Number(limits[k] ?? 0);
  const feats = [...features].filter((f) => f === 'timestamp-query' || f === 'subgroups' || f === 'shader-f16');
  return { vendor, architecture, device: dev, description, software, limits: lim, features: feats.sort() };
}

/**
 * Dawn warns on stderr when a driver reports limits beyond what Dawn itself supports (lavapipe reports a
 * million dynamic buffers: "maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to
 * 16 ..."). The adapter works as reported by `moco3 doctor`, and there is nothing for the user to do, so
 * those lines are dropped; anything else written to stderr meanwhile is passed on. The text comes from
 * Dawn's C++ code, past Node's process.stderr, so fd 2 is redirected by the native addon; without the addon
 * the lines show. `fn` must do its work synchronously (Dawn enumerates adapters inside requestAdapter's
 * call, before the promise it returns); what is written while fd 2 is held comes out when it returns.
 * MOCO3_DEBUG=1 leaves stderr alone (a driver that crashes inside the probe then says why on the terminal).
 */
const DAWN_NOISE = /^Warning: \w+ artificially reduced from \d+ to \d+/;

export function withoutDawnNoise<T>(fn: () => T): T {
  const addon = process.env.MOCO3_DEBUG === '1' ? null : nativeAddon();
  const held = addon?.holdStderr?.() === true;
  try {
    return fn();
  } finally {
    if (held) {
      const kept = addon!.releaseStderr!().split('\n').filter((l) => l !== '' && !DAWN_NOISE.test(l));
      if (kept.length) process.stderr.write(`${kept.join('\n')}\n`);
    }
  }
}

/** The adapter Dawn offers (high-performance preference), or why there is none. Creates no device. */
export async function webgpuAdapter(): Promise<WebGpuAdapter | string> {
  const r = await adapterAndSummary();
  return typeof r === 'string' ? r : r.summary;
}

async function adapterAndSummary(): Promise<{ adapter: GpuAdapterLike; summary: WebGpuAdapter } | string> {
  adapterCache ??= (async () => {
    const g = await dawn();
    if (typeof g === 'string') return g;
    let adapter: GpuAdapterLike | null = null;
    const flags = process.env.MOCO3_DAWN_FLAGS?.trim() ? process.env.MOCO3_DAWN_FLAGS : null;
    try {
      // Dawn enumerates the Vulkan devices inside this call, synchronously, and may warn on stderr then
      adapter = await withoutDawnNoise(() => g.requestAdapter({ powerPreference: 'high-performance' }));
    } catch (e) {
      // Dawn's reason may run over lines (a backend it does not know, then those it does); the flags given are said
      return `Dawn found no adapter${flags === null ? '' : ` with MOCO3_DAWN_FLAGS=${flags}`} (${(e as Error).message.split('\n').map((l) => l.trim()).filter(Boolean).join('; ')})`;
    }
    if (!adapter) {
      // flags that chose another backend (opengl, metal): the Vulkan driver is not what is missing
      const vulkan = flags === null || !/(^|,)\s*backend=/i.test(flags) || /(^|,)\s*backend=vulkan\s*(,|$)/i.test(flags);
      return `Dawn found no WebGPU adapter${flags === null ? '' : ` with MOCO3_DAWN_FLAGS=${flags}`}${vulkan ? `: no Vulkan driver it accepts (${VULKAN_HINT})` : ': unset MOCO3_DAWN_FLAGS or give backend=vulkan'}`;
    }
    const summary = summarizeAdapter(adapter.info, adapter.limits, adapter.features);
    // Dawn's null backend (backend=null) takes work and runs none of it: every value read back is garbage
    if (summary.device === 'null-backend' && !summary.vendor && !summary.architecture) {
      return `Dawn's null backend${flags === null ? '' : ` (MOCO3_DAWN_FLAGS=${flags})`} runs no work: it is no adapter to train on`;
    }
    return { adapter, summary };
  })();
  return adapterCache;
}

/** One line naming the adapter: vendor, architecture, device, driver, hardware or software. */
export function describeAdapter(a: WebGpuAdapter): string {
  const parts = [`vendor ${a.vendor || '?'}`, `architecture ${a.architecture || '?'}`];
  if (a.device) parts.push(`device ${a.device}`);
  if (a.description) parts.push(`driver ${a.description}`);
  return `${parts.join(', ')}: ${a.software ? 'software (a CPU emulating a GPU)' : 'hardware'}`;
}

export function describeLimits(a: WebGpuAdapter): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const l = a.limits;
  return (
    `buffer ${mib(l.maxBufferSize)}, storage binding ${mib(l.maxStorageBufferBindingSize)}, workgroup ${l.maxComputeInvocationsPerWorkgroup} invocations ` +
    `(x ${l.maxComputeWorkgroupSizeX}), ${(l.maxComputeWorkgroupStorageSize / 1024).toFixed(0)} KiB shared, ${l.maxComputeWorkgroupsPerDimension} groups/dim` +
    `${a.features.length ? `; features ${a.features.join(', ')}` : ''}`
  );
}

/**
 * Registers and selects the `webgpu` tfjs backend on Dawn's adapter, with a device holding the adapter's
 * own limits. `allowSoftware: false` declines a software adapter (what `auto` wants). Returns the adapter,
 * or a string saying why not.
 */
export async function registerWebGpuBackend(opts: { allowSoftware: boolean }): Promise<WebGpuAdapter | string> {
  const r = await adapterAndSummary();
  if (typeof r === 'string') return r;
  const { adapter, summary } = r;
  if (summary.software && !opts.allowSoftware) return `the only WebGPU adapter is a software one (${describeAdapter(summary)})`;
  let pkg: { WebGPUBackend: new (device: unknown, info?: unknown) => tf.KernelBackend; webgpu_util: Parameters<typeof registerWebGpuKernels>[0] };
  try {
    // the package registers its kernels (and its own backend factory, replaced below) on import
    pkg = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as typeof pkg;
  } catch (e) {
    return `the optional package '@tensorflow/tfjs-backend-webgpu' is not installed (${firstLine(e)})`;
  }
  if (!device) {
    const requiredLimits: Record<string, number> = {};
    for (const k of WEBGPU_LIMITS) if (typeof adapter.limits[k] === 'number') requiredLimits[k] = adapter.limits[k]!;
    const requiredFeatures = summary.features.filter((f) => f === 'timestamp-query');
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    onShutdown(closeWebGpu);
    // work the device rejects (a binding over its limits, memory it has not got) runs as nothing and reads
    // back as zeros, which look like numbers: the error is said now and kept for the next checkWebGpuErrors
    device.addEventListener?.('uncapturederror', (ev) => {
      const msg = ev.error?.message?.split('\n')[0] ?? 'device error';
      deviceError ??= msg;
      process.stderr.write(`moco3: webgpu: ${msg}\n`);
    });
    const mine = device;
    void mine.lost?.then((info) => {
      // closeWebGpu destroys it on purpose
      if (device === mine && info.reason !== 'destroyed') deviceLost ??= `the device was lost (${info.message || info.reason || 'no reason given'})`;
    });
  }
  if (!registered) {
    const dev = device;
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', () => new pkg.WebGPUBackend(dev, adapter.info), 3);
    registered = true;
  }
  if (process.env.MOCO3_WEBGPU_KERNELS !== '0') registerWebGpuKernels(pkg.webgpu_util, pkg.WebGPUBackend.prototype);
  useMoco3Packing(packingDefault(summary.software));
  const failed = await setBackendSaying('webgpu');
  if (failed !== null) return `the webgpu backend failed to initialise (${failed})`;
  await tf.ready();
  return summary;
}

/** Work of the webgpu device that failed: what was read back since the previous check is not valid. */
export class WebGpuDeviceError extends Error {
  override name = 'WebGpuDeviceError';
}

/**
 * A read-back from the GPU (`tensor.data()`), with what failed said: a read that fails on a device in use
 * (lost: a driver reset, a GPU fault) rejects with an AbortError of no message; it becomes a
 * WebGpuDeviceError naming the device's loss when Dawn has told it, else the read's own error and what it
 * may mean. Other backends' errors pass as they are.
 */
export async function readBack<T>(read: Promise<T>, during: string): Promise<T> {
  try {
    return await read;
  } catch (e) {
    if (device === null || tf.getBackend() !== 'webgpu') throw e;
    checkWebGpuErrors(during);
    // what is not the device's (a disposed tensor, the host out of memory for the copy) is said as it is
    const aborted = e instanceof Error && (e.name === 'AbortError' || e.name === 'OperationError' || e.message === '');
    if (!aborted) throw e;
    const err = e instanceof Error ? `${e.name}${e.message ? `: ${e.message.split('\n')[0]}` : ''}` : String(e);
    throw new WebGpuDeviceError(`webgpu: a read from the GPU failed during ${during} (${err}): the device may have been lost`);
  }
}

/**
 * Throws a WebGpuDeviceError when the device reported an error since the last check (none on other
 * backends): called after each read-back of results, so that zeros of rejected work never count as a step's
 * gradients, a checkpoint's weights or an accuracy. `during`: what the values read back were.
 */
export function checkWebGpuErrors(during: string): void {
  if (deviceError === null && deviceLost === null) return;
  const msg = deviceLost ?? deviceError!;
  deviceError = null;
  const big = /larger than the maximum|out of memory|OutOfMemory|allocation/i.test(msg);
  throw new WebGpuDeviceError(
    `webgpu: the GPU rejected work during ${during} (${msg}), so its results are not valid` +
      (big ? ': a tensor does not fit the device (`moco3 doctor` shows its limits); a smaller train.micro_batch or optim.batch_size makes it smaller' : ''),
  );
}

/**
 * Forgets an error the device reported after the last check: called as a run starts, so that an error of
 * the previous run in this process (a sweep's), after its last read-back, is not taken for this one's. A
 * lost device stays lost.
 */
export function clearWebGpuErrors(): void {
  deviceError = null;
}

/** The part of tfjs-backend-webgpu's BufferManager (buffer_manager.ts) that releaseFreeGpuBuffers uses. */
interface BufferPool {
  freeBuffers: Map<string, { size: number; destroy(): void }[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
}

/**
 * Destroys the GPU buffers TensorFlow.js keeps for reuse (it never gives one back): called as a run starts,
 * so that the runs of a sweep, which share a process and each leave buffers of their own sizes (another
 * batch, the kNN monitor's, the probe's), do not add up on the card. The pool's keys stay (an empty pool is
 * the backend's sign that it was disposed, and a buffer released to it would then be neither kept nor
 * destroyed). Returns the bytes given back; 0 off webgpu.
 */
export function releaseFreeGpuBuffers(): number {
  if (!registered || tf.getBackend() !== 'webgpu') return 0;
  const pool = (tf.backend() as unknown as { bufferManager?: BufferPool }).bufferManager;
  if (!pool || !(pool.freeBuffers instanceof Map)) return 0;
  let bytes = 0;
  for (const buffers of pool.freeBuffers.values()) {
    for (const b of buffers) {
      bytes += b.size;
      b.destroy();
    }
    buffers.length = 0;
  }
  pool.numFreeBuffers = 0;
  pool.numBytesAllocated -= bytes;
  return bytes;
}

/** Destroys the device (Dawn keeps the event loop alive while one exists); the backend is removed. */
export function closeWebGpu(): void {
  if (!device) return;
  try {
    if (registered && tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  } catch {
    /* the device goes below in any case */
  }
  registered = false;
  device.destroy();
  device = null;
  // an adapter makes one device: a later registration asks Dawn for the adapter again
  adapterCache = null;
  deviceError = null;
  deviceLost = null;
}

/** True while a device exists: from its creation until closeWebGpu (which runShutdown calls at exit). */
export function webgpuInUse(): boolean {
  return device !== null;
}
