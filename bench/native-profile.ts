/**
 * Speed of the MoCo v3 training step (model.step + AdamW) per backend, and where the time goes.
 *
 *   node --import tsx bench/native-profile.ts [--backends native,cpu,wasm] [--batch 64,256] [--steps 5]
 *        [--warmup 2] [--threads N] [--profile] [--arch vit-micro] [--top 25]
 *
 * Default config is the "micro" size of docs/ENGINES.md: vit-micro (dim 64, depth 4, 4 heads, MLP 2x, 32x32, patch 4),
 * heads 256 -> 64, frozen patch projection, AdamW. Times are medians; the machine is shared, so
 * compare ratios measured in one run. --profile ranks kernels of one step by summed time (tf.profile).
 */
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { nativeAddon, nativeStatus, registerNativeBackend, setNativeThreads } from '../src/engine/native.ts';
import { MoCoViT } from '../src/model/moco.ts';
import { modelConfig } from '../src/model/archs.ts';
import { AdamW } from '../src/optim/adamw.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : def;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const backends = arg('backends', 'native').split(',');
const batches = arg('batch', '64').split(',').map(Number);
const steps = Number(arg('steps', '5'));
const warmup = Number(arg('warmup', '2'));
const arch = arg('arch', 'vit-micro');
const top = Number(arg('top', '25'));
const threads = process.argv.includes('--threads') ? Number(arg('threads', '2')) : null;

// garbage collection time: the cpu backend frees tensor memory through the GC
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ['gc'] });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function useBackend(name: string): Promise<boolean> {
  if (name === 'native') {
    if (!registerNativeBackend()) {
      console.log(`native: not available (${nativeStatus().error})`);
      return false;
    }
    if (threads !== null) setNativeThreads(threads);
  }
  if (name === 'wasm') {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
    } catch {
      console.log('wasm: @tensorflow/tfjs-backend-wasm not importable');
      return false;
    }
  }
  const ok = await tf.setBackend(name);
  await tf.ready();
  return ok;
}

function randomImages(B: number, S: number, seed: number): tf.Tensor4D {
  return tf.tidy(() => tf.randomNormal([B, S, S, 3], 0, 1, 'float32', seed) as tf.Tensor4D);
}

async function run(backend: string, B: number): Promise<void> {
  if (!(await useBackend(backend))) return;
  const cfg = modelConfig(arch, { projHidden: 256, projDim: 64, predHidden: 256 });
  const model = new MoCoViT(cfg, 0);
  const opt = new AdamW({ weightDecay: 0.1, betas: [0.9, 0.95], eps: 1e-8 });
  const trainable = model.trainableNames();
  const x1 = randomImages(B, cfg.imageSize, 1);
  const x2 = randomImages(B, cfg.imageSize, 2);
  const step = () => {
    const { loss, grads } = model.step(x1, x2, 0.99);
    opt.step(model.vars, new Map(trainable.map((n) => [n, grads.get(n)!] as const)), 1e-4);
    for (const g of grads.values()) g.dispose();
    return loss;
  };
  const times: number[] = [];
  const cpuTimes: number[] = [];
  const gcTimes: number[] = [];
  const nWarm = backend === 'cpu' ? Math.min(warmup, 1) : warmup;
  const nSteps = backend === 'cpu' ? Math.min(steps, 1) : steps;
  for (let s = 0; s < nWarm + nSteps; s++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const g0 = gcMs;
    const loss = step();
    await loss.data();
    loss.dispose();
    const c1 = process.cpuUsage(c0);
    if (s >= nWarm) {
      times.push(performance.now() - t0);
      cpuTimes.push((c1.user + c1.system) / 1000);
      await new Promise((r) => setImmediate(r)); // let the GC observer report
      gcTimes.push(gcMs - g0);
    }
  }
  const ms = median(times);
  let extra = '';
  if (backend === 'native') {
    const i = nativeAddon()!.info();
    const guarded = i.guardedJobs / Math.max(1, i.guardedJobs + i.parallelJobs);
    extra = ` (${i.threads} threads${i.threads > 1 ? `, ${(100 * guarded).toFixed(0)}% of parallel kernels run alone: busy machine` : ''})`;
  }
  console.log(
    `${backend.padEnd(7)}${extra} ${arch} batch ${B}: ${ms.toFixed(0)} ms/step, ${((B * 1000) / ms).toFixed(1)} img/s ` +
      `[min ${Math.min(...times).toFixed(0)} ms, process CPU ${median(cpuTimes).toFixed(0)} ms/step, GC ${median(gcTimes).toFixed(0)} ms/step, ${times.length} steps, load ${loadavg()[0]!.toFixed(1)}]`,
  );
  if (flag('profile')) {
    const prof = await tf.profile(() => {
      const loss = step();
      loss.dispose();
    });
    const byName = new Map<string, { ms: number; calls: number }>();
    let total = 0;
    for (const k of prof.kernels) {
      // customGrad scopes show up as pseudo-kernels whose time includes the kernels inside
      if (!tf.getKernel(k.name, backend)) continue;
      const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
      e.ms += ms;
      e.calls++;
      byName.set(k.name, e);
      total += ms;
    }
    const rows = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms);
    const calls = rows.reduce((a, r) => a + r[1].calls, 0);
    console.log(`  kernel time ${total.toFixed(0)} ms in ${calls} kernel calls (profiled step)`);
    for (const [name, e] of rows.slice(0, top)) {
      console.log(`  ${name.padEnd(22)} ${e.ms.toFixed(1).padStart(9)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  ${String(e.calls).padStart(5)} calls`);
    }
    if (flag('shapes')) {
      // the costliest input-shape combinations of the top kernels
      const byShape = new Map<string, { ms: number; calls: number }>();
      for (const k of prof.kernels) {
        if (!tf.getKernel(k.name, backend) || typeof k.kernelTimeMs !== 'number') continue;
        const key = `${k.name} ${k.inputShapes.map((sh) => JSON.stringify(sh)).join(' ')} ${JSON.stringify(k.extraInfo ?? '')}`;
        const e = byShape.get(key) ?? { ms: 0, calls: 0 };
        e.ms += k.kernelTimeMs;
        e.calls++;
        byShape.set(key, e);
      }
      for (const [key, e] of [...byShape.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, top * 2)) {
        console.log(`    ${e.ms.toFixed(1).padStart(8)} ms ${String(e.calls).padStart(4)}x  ${key}`);
      }
    }
  }
  tf.dispose([x1, x2]);
  opt.dispose();
  model.dispose();
}

for (const B of batches) {
  for (const b of backends) await run(b, B);
}
