/** `moco3 doctor`: which backend will run, how, and what is missing. */
import { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { versionOf } from '../train/meta.ts';
import { jsonLine } from '../runfolder/metrics.ts';

/** The WebGPU adapter Dawn offers: vendor, architecture, driver, hardware or software, and its limits. */
async function webgpuLine(): Promise<string> {
  const pkg = versionOf('@tensorflow/tfjs-backend-webgpu');
  const dawn = versionOf('webgpu');
  if (!pkg || !dawn) {
    return `webgpu: not installed (optional packages @tensorflow/tfjs-backend-webgpu ${pkg ?? 'missing'}, webgpu ${dawn ?? 'missing'}) — npm install @tensorflow/tfjs-backend-webgpu@4.22.0 webgpu@0.6.2`;
  }
  const { webgpuAdapter, describeAdapter, describeLimits } = await import('../engine/webgpu.ts');
  const { packingDefault } = await import('../engine/webgpu-kernels.ts');
  const { gpuDeviceNodes } = await import('../engine/backend.ts');
  const nodes = gpuDeviceNodes();
  const noNode = nodes?.length === 0 ? '\n  no GPU device node (/dev/dri/renderD*, /dev/nvidia*): --backend auto does not load Dawn here' : '';
  const a = await webgpuAdapter();
  if (typeof a === 'string') return `webgpu: @tensorflow/tfjs-backend-webgpu ${pkg} + Dawn (webgpu ${dawn}): no adapter — ${a}${noNode}`;
  return (
    `webgpu: @tensorflow/tfjs-backend-webgpu ${pkg} + Dawn (webgpu ${dawn}): adapter ${describeAdapter(a)}\n` +
    `  limits: ${describeLimits(a)}\n` +
    `  optimizer updates: ${packingDefault(a.software) ? 'one dispatch per parameter group (packed)' : 'one dispatch per parameter'}` +
    (process.env.MOCO3_WEBGPU_PACK === '0' || process.env.MOCO3_WEBGPU_PACK === '1' ? ' (MOCO3_WEBGPU_PACK)' : a.software ? ' (software adapter; MOCO3_WEBGPU_PACK=1 packs)' : '') +
    (a.software ? '\n  a software adapter is used only with --backend webgpu (correct, not fast)' : '') +
    noNode
  );
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('backends, native kernels, datasets: what will run, and where (npm run bench says how fast)')
    .option('--replay', 'instead of the report: make two training steps of a tiny model on webgpu and on the CPU and print their largest differences as JSON (exit 1 when beyond float32 noise)')
    .action(async (f: { replay?: boolean }) => {
    if (f.replay) return replay();
    const lines: string[] = [];
    const say = (s: string) => lines.push(s);
    // the cores this process may use (its CPU affinity), and the machine's where they are fewer
    const allowed = availableParallelism();
    const cores = allowed < cpus().length ? `${allowed} of ${cpus().length} cores` : `${allowed} cores`;
    say(`node ${process.version} on ${process.platform}-${process.arch}, ${cores} (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB`);
    // the GPU check's bundle (scripts/bundle-gpu.mjs) has neither the native kernels nor wasm, nor npm to add them
    const bundle = process.env.MOCO3_GPU_BUNDLE === '1';
    const notInBundle = 'not part of the GPU check bundle (it trains on webgpu)';
    const gpu = versionOf('@tensorflow/tfjs-node-gpu');
    const node = versionOf('@tensorflow/tfjs-node');
    say(`tensorflow (GPU): ${gpu ? `@tensorflow/tfjs-node-gpu ${gpu}` : 'not installed — for a GPU: npm install @tensorflow/tfjs-node-gpu@4.22.0 (needs CUDA 11.2 + cuDNN 8.1)'}`);
    say(`tensorflow (CPU): ${node ? `@tensorflow/tfjs-node ${node}` : 'not installed — npm install @tensorflow/tfjs-node@4.22.0 (downloads libtensorflow at install)'}`);
    let nativeLine = 'native: unknown';
    try {
      const mod = (await import('../engine/native.ts')) as { nativeStatus?: () => { built: boolean; path?: string; error?: string; blas?: string; threads?: number } };
      const st = mod.nativeStatus?.();
      if (st?.built) nativeLine = `native: built (${st.blas ?? 'BLAS'}, ${st.threads ?? '?'} thread${st.threads === 1 ? '' : 's'}) at ${st.path}`;
      else if (process.env.MOCO3_NATIVE === '0' || process.env.MOCO3_NATIVE_PATH) nativeLine = `native: not loaded (${st?.error ?? 'no reason given'})`;
      else if (bundle) nativeLine = `native: ${notInBundle}`;
      else if (st?.path) nativeLine = `native: built at ${st.path}, but it does not load (${st.error ?? 'no reason given'}) — rebuild it: npm run build:native`;
      else {
        nativeLine =
          `native: NOT built${st?.error ? ` (${st.error})` : ''} — install a C++ compiler and OpenBLAS, then rebuild: ` +
          (process.platform === 'darwin' ? 'xcode-select --install && npm rebuild moco3' : 'sudo apt-get install g++ libopenblas-dev && npm run build:native');
      }
    } catch (e) {
      nativeLine = `native: unavailable (${(e as Error).message})`;
    }
    say(nativeLine);
    say(await webgpuLine());
    const wasm = versionOf('@tensorflow/tfjs-backend-wasm');
    say(`wasm: ${wasm ? `@tensorflow/tfjs-backend-wasm ${wasm} (1 thread, 4 GiB heap)` : bundle ? notInBundle : '@tensorflow/tfjs-backend-wasm missing'}`);
    say(`cpu: @tensorflow/tfjs-backend-cpu ${versionOf('@tensorflow/tfjs-backend-cpu') ?? 'missing'} (pure JavaScript, slowest)`);
    const { initBackend } = await import('../engine/backend.ts');
    const info = await initBackend('auto', { quiet: true });
    say(`--backend auto takes: ${info.name} — ${info.device} (${info.reason})`);
    const { augmentEngine } = await import('../data/augment.ts');
    say(
      augmentEngine() === 'native'
        ? "augmentation: native kernel, on the native kernels' threads"
        : 'augmentation: JavaScript pipeline (several times slower; the native addon above computes the same bytes)',
    );
    const { DATA_DIR, CIFAR, cifarFound } = await import('../data/cifar.ts');
    const { fashionMnistFound } = await import('../data/fashion_mnist.ts');
    // found when all four files are there: a folder with a partial download is not. Their contents are not
    // read here (seconds per dataset): `moco3 data info` checks them against the published checksums
    const found = (name: string, at: string) => `${at} (files present; moco3 data info ${name} checks their contents)`;
    // a data directory that is a file: no fetch can go there (it refuses), so none is offered as it is
    const fetch = (name: string) =>
      existsSync(DATA_DIR) && !statSync(DATA_DIR).isDirectory() ? `${DATA_DIR} is a file, not a folder: set $MOCO3_DATA to a folder, then moco3 data fetch ${name}` : `moco3 data fetch ${name}`;
    const fm = fashionMnistFound();
    say(`fashion-mnist: ${fm ? found('fashion-mnist', fm) : `not found — ${fetch('fashion-mnist')}, or apt-get install dataset-fashion-mnist`}`);
    for (const kind of Object.values(CIFAR)) {
      const at = cifarFound(kind, null);
      say(`${kind.name}: ${at ? found(kind.name, at) : `not found in ${DATA_DIR} — ${fetch(kind.name)}`}`);
    }
    say('synthetic: built in; imagefolder: --data imagefolder:PATH');
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

async function replay(): Promise<void> {
  const { initBackend } = await import('../engine/backend.ts');
  const info = await initBackend('webgpu', { quiet: true });
  const { replayCheck } = await import('../train/webgpu-check.ts');
  const whole = await replayCheck('cpu', null);
  const micro = await replayCheck('cpu', 4);
  const ok = whole.ok && micro.ok;
  process.stdout.write(`${jsonLine({ device: info.device, whole_batch: whole, micro_batch_4: micro, ok })}\n`);
  if (!ok) process.exitCode = 1;
}
