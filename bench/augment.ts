/**
 * Throughput of the two-view augmentation alone, at the sizes of the presets: 28 px gray -> 32 (cpu),
 * 32 px RGB -> 32 (gpu), a 256 px image-folder cache -> 224 (paper). `npm run bench:augment`;
 * MOCO3_AUGMENT=js measures the JS pipeline, MOCO3_THREADS=N the native kernel on N threads.
 */
import { augmentConfigFor, augmentEngine, twoViewArrays } from '../src/data/augment.ts';
for (const [src, S, B, c] of [[28, 32, 256, 1], [32, 32, 1024, 3], [256, 224, 64, 3]] as const) {
  const data = new Uint8Array(B * src * src * c);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24; // noise: the hardest case for the hue branches
  const batch = { data, n: B, h: src, w: src, c };
  const cfg = { ...augmentConfigFor({ mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, S), blurSigma: [0.1 * S / 224, 2 * S / 224] as [number, number] };
  for (let w = 0; w < 3; w++) twoViewArrays(batch, cfg, 0, -1 - w);
  const t0 = performance.now();
  const reps = 5;
  for (let r = 0; r < reps; r++) twoViewArrays(batch, cfg, 0, r + 1);
  const ms = (performance.now() - t0) / reps;
  console.log(`${augmentEngine()} ${src}x${src}x${c} -> ${S}, batch ${B}: ${ms.toFixed(1)} ms for ${2 * B} views, ${((2 * B) / ms * 1000).toFixed(0)} views/s`);
}
