/**
 * Backend choice. `auto` prefers TensorFlow's C library (tfjs-node-gpu, then tfjs-node: optional peer
 * packages, imported only when present), then moco3's native CPU kernels, then wasm, then the pure
 * JavaScript `cpu` backend, and says on stderr which one it took and why.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import './gradients.ts';
import { SetupError } from '../config/errors.ts';
import { BACKEND_CHOICES, type BackendName } from '../config/schema.ts';

export type { BackendName } from '../config/schema.ts';

export interface BackendInfo {
  /** the tfjs backend name in use (`tensorflow`, `native`, `wasm`, `cpu`) */
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

async function useTensorflow(requested: BackendName, log: Log): Promise<BackendInfo | null> {
  const gpuPkg = await tryImport('@tensorflow/tfjs-node-gpu');
  const pkg = gpuPkg ?? (await tryImport('@tensorflow/tfjs-node'));
  if (!pkg) return null;
  await tf.setBackend('tensorflow');
  await tf.ready();
  const gpu = gpuPkg !== null && tensorflowSeesGpu();
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
    device: `CPU, moco3 native kernels (${reg.blas}, ${reg.threads} threads)`,
    reason: 'moco3 native kernels are built',
    gpu: false,
    heapLimit: null,
  };
}

async function useWasm(requested: BackendName): Promise<BackendInfo | null> {
  const wasm = await tryImport('@tensorflow/tfjs-backend-wasm');
  if (!wasm) return null;
  const ok = await tf.setBackend('wasm');
  if (!ok) return null;
  await tf.ready();
  return {
    name: 'wasm',
    requested,
    device: 'CPU, WebAssembly (XNNPACK, SIMD, 1 thread)',
    reason: 'tfjs-node and native kernels are absent',
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

/** Select and initialise a backend; logs the choice on stderr unless `quiet`. */
export async function initBackend(requested: BackendName = 'auto', opts: { quiet?: boolean; log?: Log } = {}): Promise<BackendInfo> {
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
    case 'native':
      info = await useNative(requested);
      if (!info) {
        throw new BackendError("backend 'native' asked for, but moco3's native kernels are not built (run `moco3 doctor`)");
      }
      break;
    case 'wasm':
      info = await useWasm(requested);
      if (!info) throw new BackendError("backend 'wasm' could not be initialised");
      break;
    case 'cpu':
      info = await useCpu(requested);
      break;
    case 'auto':
      info = (await useTensorflow(requested, log)) ?? (await useNative(requested)) ?? (await useWasm(requested)) ?? (await useCpu(requested));
      break;
    default:
      throw new BackendError(`unknown backend '${String(requested)}' (expected one of ${BACKEND_CHOICES.join(', ')})`);
  }
  if (!opts.quiet) log(`backend ${info.name}: ${info.device} (${info.reason})`);
  return info;
}
