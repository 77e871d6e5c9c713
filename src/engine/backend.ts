/**
 * Backend choice. `auto` prefers a GPU: TensorFlow's C library (tfjs-node-gpu, an optional peer package)
 * when it really sees one, then WebGPU (Dawn) on a hardware adapter; then tfjs-node, moco3's native CPU
 * kernels, wasm, and the pure JavaScript `cpu` backend. It says on stderr which one it took and why. A
 * software WebGPU adapter (lavapipe, SwiftShader) runs only when `webgpu` is asked for by name.
 *
 * On Linux, `auto` asks Dawn for an adapter only where a GPU has a device node (gpuDeviceNodes): asking
 * loads Dawn, the Vulkan loader, every installed Vulkan driver and, for lavapipe, LLVM into the process,
 * for the rest of a CPU run that never uses them.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import './gradients.ts';
import { setBackendSaying } from './set-backend.ts';
import { firstLine, SetupError } from '../config/errors.ts';
import { BACKEND_CHOICES, type BackendName } from '../config/schema.ts';

export type { BackendName } from '../config/schema.ts';

export interface BackendInfo {
  /** the tfjs backend name in use (`tensorflow`, `webgpu`, `native`, `wasm`, `cpu`) */
  name: string;
  /** what was asked for */
  requested: BackendName;
  /** human words: package, device, threads */
  device: string;
  /** why this one was taken */
  reason: string;
  /** true when a GPU executes the kernels */
  gpu: boolean;
  /** largest heap the backend can address, bytes (wasm: 4 GiB), or null when unbounded */
  heapLimit: number | null;
}

export class BackendError extends SetupError {
  override name = 'BackendError';
}

type Log = (line: string) => void;
const stderrLog: Log = (line) => process.stderr.write(`moco3: ${line}\n`);

async function tryImport(name: string): Promise<unknown | null> {
  try {
    return await import(name);
  } catch {
    return null;
  }
}

/**
 * `only: 'gpu'`: tfjs-node-gpu, and only when TensorFlow sees a GPU; `only: 'cpu'`: tfjs-node alone (what
 * `auto` tries after the GPUs).
 */
async function useTensorflow(requested: BackendName, log: Log, only?: 'gpu' | 'cpu'): Promise<BackendInfo | null> {
  const gpuOnly = only === 'gpu';
  const gpuPkg = only === 'cpu' ? null : await tryImport('@tensorflow/tfjs-node-gpu');
  const pkg = gpuPkg ?? (gpuOnly ? null : await tryImport('@tensorflow/tfjs-node'));
  if (!pkg) return null;
  await tf.setBackend('tensorflow');
  await tf.ready();
  const gpu = gpuPkg !== null && tensorflowSeesGpu();
  if (gpuOnly && !gpu) {
    log('@tensorflow/tfjs-node-gpu is installed but TensorFlow found no GPU (it needs CUDA 11.2 + cuDNN 8.1): not using it');
    return null;
  }
  if (gpuPkg !== null && !gpu) {
    log(
      'WARNING: @tensorflow/tfjs-node-gpu is installed but TensorFlow found no GPU: it is running on the CPU. ' +
        'It needs CUDA 11.2 and cuDNN 8.1 (libcudart.so.11.0, libcudnn.so.8) on LD_LIBRARY_PATH.',
    );
  }
  return {
    name: 'tensorflow',
    requested,
    device: gpuPkg ? (gpu ? 'TensorFlow C library, GPU' : 'TensorFlow C library, CPU (no GPU found)') : 'TensorFlow C library, CPU',
    reason: gpuPkg ? '@tensorflow/tfjs-node-gpu is installed' : '@tensorflow/tfjs-node is installed',
    gpu,
    heapLimit: null,
  };
}

/** tfjs-node-gpu falls back to the CPU silently; ask TensorFlow for its devices through the binding. */
function tensorflowSeesGpu(): boolean {
  try {
    const backend = tf.backend() as unknown as { binding?: { isUsingGpuDevice?: () => boolean } };
    const fn = backend.binding?.isUsingGpuDevice;
    if (typeof fn === 'function') return Boolean(fn.call(backend.binding));
  } catch {
    /* fall through */
  }
  return false;
}

/**
 * The device nodes through which a Linux process reaches a GPU: DRM render nodes (/dev/dri/renderD*: AMD,
 * Intel, and what a container is given of them) and NVIDIA's /dev/nvidia0, 1, ... None: no hardware
 * WebGPU adapter can exist here. Other systems (Metal, D3D12) have no such test: null.
 */
export function gpuDeviceNodes(dev = '/dev', platform: NodeJS.Platform = process.platform): string[] | null {
  if (platform !== 'linux') return null;
  const list = (d: string) => {
    try {
      return readdirSync(d);
    } catch {
      return []; // no such folder (no DRM) or not readable
    }
  };
  return [
    ...list(join(dev, 'dri')).filter((n) => /^renderD\d+$/.test(n)).map((n) => join(dev, 'dri', n)),
    ...list(dev).filter((n) => /^nvidia\d+$/.test(n)).map((n) => join(dev, n)),
  ].sort();
}

async function useWebGpu(requested: BackendName, allowSoftware: boolean): Promise<BackendInfo | string> {
  const mod = await import('./webgpu.ts');
  let a: Awaited<ReturnType<typeof mod.registerWebGpuBackend>>;
  try {
    a = await mod.registerWebGpuBackend({ allowSoftware });
  } catch (e) {
    return `the WebGPU device failed (${firstLine(e)})`;
  }
  if (typeof a === 'string') return a;
  return {
    name: 'webgpu',
    requested,
    device: `WebGPU (Dawn): ${mod.describeAdapter(a)}`,
    reason: requested === 'webgpu' ? 'asked for' : 'a hardware WebGPU adapter is present',
    gpu: !a.software,
    heapLimit: null,
  };
}

async function useNative(requested: BackendName): Promise<BackendInfo | null> {
  let reg: { threads: number; blas: string } | null = null;
  try {
    const mod = await import('./native.ts');
    reg = mod.registerNativeBackend();
  } catch {
    return null;
  }
  if (!reg) return null;
  await tf.setBackend('native');
  await tf.ready();
  return {
    name: 'native',
    requested,
    device: `CPU, moco3 native kernels (${reg.blas}, ${reg.threads} thread${reg.threads === 1 ? '' : 's'})`,
    reason: 'moco3 native kernels are built',
    gpu: false,
    heapLimit: null,
  };
}

/** Why the native kernels do not run here, in words that go after "but" or "and": not built, disabled, or failing to load (with the loader's error). */
async function nativeMissing(): Promise<string> {
  let st;
  try {
    st = (await import('./native.ts')).nativeStatus();
  } catch (e) {
    return `moco3's native kernels are not available (${firstLine(e)})`;
  }
  const err = st.error ?? 'no reason given';
  const why = st.path ? `do not load (${err.includes(st.path) ? err : `${st.path}: ${err}`})` : `are not available (${err})`;
  return `moco3's native kernels ${why}`;
}

/** The wasm backend, or why not (not installed, or its start failed: a Node without WebAssembly). */
async function useWasm(requested: BackendName): Promise<BackendInfo | string> {
  const wasm = await tryImport('@tensorflow/tfjs-backend-wasm');
  if (!wasm) return '@tensorflow/tfjs-backend-wasm is not installed (npm install @tensorflow/tfjs-backend-wasm@4.22.0)';
  const failed = await setBackendSaying('wasm');
  if (failed !== null) return `it failed to start (${failed})`;
  await tf.ready();
  return {
    name: 'wasm',
    requested,
    device: 'CPU, WebAssembly (XNNPACK, SIMD, 1 thread)',
    reason: 'asked for',
    gpu: false,
    heapLimit: 4 * 1024 ** 3,
  };
}

async function useCpu(requested: BackendName): Promise<BackendInfo> {
  await tf.setBackend('cpu');
  await tf.ready();
  return {
    name: 'cpu',
    requested,
    device: 'CPU, pure JavaScript',
    reason: requested === 'cpu' ? 'asked for' : 'no faster backend is available',
    gpu: false,
    heapLimit: null,
  };
}

/**
 * Select and initialise a backend; logs the choice on stderr unless `quiet`. `gpuNodes`: the GPU device
 * nodes `auto` goes by (default: gpuDeviceNodes() of this machine).
 */
export async function initBackend(
  requested: BackendName = 'auto',
  opts: { quiet?: boolean; log?: Log; gpuNodes?: string[] | null } = {},
): Promise<BackendInfo> {
  // production mode: no debug checks, and no tfjs banner advertising tfjs-node (moco3 says what it runs on)
  tf.env().set('PROD', true);
  const log = opts.log ?? stderrLog;
  let info: BackendInfo | null = null;
  switch (requested) {
    case 'tensorflow':
      info = await useTensorflow(requested, log);
      if (!info) {
        throw new BackendError(
          "backend 'tensorflow' asked for, but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed " +
            '(npm install @tensorflow/tfjs-node-gpu@4.22.0, which needs CUDA 11.2 + cuDNN 8.1)',
        );
      }
      break;
    case 'webgpu': {
      const r = await useWebGpu(requested, true);
      if (typeof r === 'string') throw new BackendError(`backend 'webgpu' asked for, but ${r} (run \`moco3 doctor\`)`);
      info = r;
      break;
    }
    case 'native':
      info = await useNative(requested);
      if (!info) throw new BackendError(`backend 'native' asked for, but ${await nativeMissing()} (run \`moco3 doctor\`)`);
      break;
    case 'wasm': {
      const r = await useWasm(requested);
      if (typeof r === 'string') throw new BackendError(`backend 'wasm' asked for, but ${r}`);
      info = r;
      break;
    }
    case 'cpu':
      info = await useCpu(requested);
      break;
    case 'auto': {
      info = await useTensorflow(requested, log, 'gpu');
      const nodes = opts.gpuNodes === undefined ? gpuDeviceNodes() : opts.gpuNodes;
      let declined: string | null = null;
      if (!info && nodes?.length !== 0) {
        const w = await useWebGpu(requested, false);
        if (typeof w !== 'string') info = w;
        else if (nodes?.length) declined = w;
      }
      info ??= (await useTensorflow(requested, log, 'cpu')) ?? (await useNative(requested));
      if (!info) {
        // why the native kernels are not used: not built, or built and failing to load (a build for another
        // machine, a damaged file), which the user has to hear of rather than train 1-thread WebAssembly unawares
        const w = await useWasm(requested);
        const fallback = typeof w === 'string' ? await useCpu(requested) : w;
        const wasm = typeof w !== 'string' ? '' : w.startsWith('it ') ? `, and the wasm backend ${w.slice(3)}` : `, and ${w}`;
        info = { ...fallback, reason: `tfjs-node is not installed, ${await nativeMissing()}${wasm}` };
      }
      // a machine with a GPU that trains on its CPU says why, where the backend line is read
      // (a software adapter alone, beside a GPU: Dawn did not find the GPU's own driver)
      if (declined !== null) {
        const hint = /software/.test(declined) ? `; for the GPU itself Dawn needs its Vulkan driver (${(await import('./webgpu.ts')).VULKAN_HINT})` : '';
        info = { ...info, reason: `${info.reason}; this machine has a GPU device (${nodes![0]}), but webgpu declined: ${declined}${hint}` };
      }
      break;
    }
    default:
      throw new BackendError(`unknown backend '${String(requested)}' (expected one of ${BACKEND_CHOICES.join(', ')})`);
  }
  if (!opts.quiet) log(backendLine(info));
  active = info;
  return info;
}

let active: BackendInfo | null = null;

/** The backend initBackend last started in this process; null before any (TensorFlow.js's own default then runs). */
export const activeBackend = (): BackendInfo | null => active;

/** The line that says which backend runs, and why: `backend native: CPU, ... (moco3 native kernels are built)`. */
export const backendLine = (info: BackendInfo): string => `backend ${info.name}: ${info.device} (${info.reason})`;
