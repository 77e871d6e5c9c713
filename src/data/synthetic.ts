/**
 * A built-in procedural dataset: each class is a shape or texture (stripes at four orientations,
 * checkerboard, rings, blob, gradient, dot lattice, cross) drawn with random phase, position, scale,
 * pixel noise, and a bright foreground on a dark background, each of a random hue and saturation: the
 * colour says nothing about the class; the spatial structure does. Image i of a split is a pure function of (seed, split, i).
 */
import { Rng } from '../engine/rng.ts';
import { DataError, type DataSpec, type Dataset, type ImageSplit } from './types.ts';

export const SYNTHETIC_CLASSES = [
  'horizontal stripes',
  'vertical stripes',
  'diagonal stripes',
  'anti-diagonal stripes',
  'checkerboard',
  'rings',
  'blob',
  'gradient',
  'dots',
  'cross',
];

export const SYNTHETIC_DEFAULTS = { trainSize: 5000, testSize: 1000, imageSize: 16, numClasses: 10 } as const;

type Pattern = (u: number, v: number) => number;

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);
const TAU = 2 * Math.PI;
const DEG = Math.PI / 180;

/** Soft step: 1 inside (d < 0), 0 outside, about one pixel of ramp at `size` pixels per unit. */
function soft(d: number, size: number): number {
  return clamp01(0.5 - d * size);
}

function stripes(rng: Rng, angleDeg: number): Pattern {
  // direction in which the intensity varies; periods 18-32% of the image
  const a = (angleDeg + rng.range(-12, 12)) * DEG;
  const ca = Math.cos(a);
  const sa = Math.sin(a);
  const k = TAU / rng.range(0.18, 0.32);
  const phase = rng.range(0, TAU);
  return (u, v) => 0.5 + 0.5 * Math.sin(k * (u * ca + v * sa) + phase);
}

function makePattern(cls: number, rng: Rng, size: number): Pattern {
  switch (cls) {
    case 0:
      return stripes(rng, 90);
    case 1:
      return stripes(rng, 0);
    case 2:
      return stripes(rng, 45);
    case 3:
      return stripes(rng, 135);
    case 4: {
      const a = rng.range(-10, 10) * DEG;
      const ca = Math.cos(a);
      const sa = Math.sin(a);
      const k = TAU / rng.range(0.28, 0.42);
      const p1 = rng.range(0, TAU);
      const p2 = rng.range(0, TAU);
      return (u, v) => clamp01(0.5 + 2 * Math.sin(k * (u * ca + v * sa) + p1) * Math.sin(k * (v * ca - u * sa) + p2));
    }
    case 5: {
      const cx = rng.range(0.3, 0.7);
      const cy = rng.range(0.3, 0.7);
      const k = TAU / rng.range(0.18, 0.28);
      const phase = rng.range(0, TAU);
      return (u, v) => 0.5 + 0.5 * Math.cos(k * Math.hypot(u - cx, v - cy) + phase);
    }
    case 6: {
      const cx = rng.range(0.25, 0.75);
      const cy = rng.range(0.25, 0.75);
      const r = rng.range(0.14, 0.3);
      return (u, v) => soft(Math.hypot(u - cx, v - cy) - r, size);
    }
    case 7: {
      const a = rng.range(0, TAU);
      const ca = Math.cos(a) * rng.range(0.9, 1.3);
      const sa = Math.sin(a) * rng.range(0.9, 1.3);
      return (u, v) => clamp01(0.5 + (u - 0.5) * ca + (v - 0.5) * sa);
    }
    case 8: {
      const period = rng.range(0.26, 0.36);
      const ox = rng.range(0, period);
      const oy = rng.range(0, period);
      const r = period * rng.range(0.22, 0.3);
      return (u, v) => {
        const dx = ((((u - ox) / period) % 1) + 1) % 1 - 0.5;
        const dy = ((((v - oy) / period) % 1) + 1) % 1 - 0.5;
        return soft(Math.hypot(dx, dy) * period - r, size);
      };
    }
    default: {
      const cx = rng.range(0.3, 0.7);
      const cy = rng.range(0.3, 0.7);
      const hw = rng.range(0.07, 0.12);
      return (u, v) => Math.max(soft(Math.abs(u - cx) - hw, size), soft(Math.abs(v - cy) - hw, size));
    }
  }
}

/** A dark background and a bright foreground of random hues: the pattern, not the colour, tells the class. */
function twoColours(rng: Rng): [number[], number[]] {
  const hsv = (h: number, sat: number, v: number) => {
    const f = (n: number) => {
      const k = (n + h * 6) % 6;
      return v - v * sat * Math.max(0, Math.min(k, 4 - k, 1));
    };
    return [f(5), f(3), f(1)];
  };
  const bg = hsv(rng.uniform(), rng.range(0, 0.6), rng.range(0, 0.3));
  const fg = hsv(rng.uniform(), rng.range(0, 0.6), rng.range(0.75, 1));
  return [bg, fg];
}

function renderInto(out: Uint8Array, offset: number, cls: number, size: number, rng: Rng): void {
  const [bg, fg] = twoColours(rng);
  const pattern = makePattern(cls, rng, size);
  const noise = rng.range(0, 0.08) * 255 * 2;
  const base = [bg[0]! * 255, bg[1]! * 255, bg[2]! * 255];
  const span = [(fg[0]! - bg[0]!) * 255, (fg[1]! - bg[1]!) * 255, (fg[2]! - bg[2]!) * 255];
  let o = offset;
  for (let y = 0; y < size; y++) {
    const v = (y + 0.5) / size;
    for (let x = 0; x < size; x++) {
      const p = pattern((x + 0.5) / size, v);
      for (let c = 0; c < 3; c++) {
        const val = base[c]! + span[c]! * p + noise * (rng.nextU32() / 4294967296 - 0.5);
        out[o++] = val <= 0 ? 0 : val >= 255 ? 255 : Math.round(val);
      }
    }
  }
}

/** Images 0..n-1 of one split; labels cycle through the classes, so every class gets n/k (+1) images. */
export function makeSyntheticSplit(seed: number, split: 'train' | 'test', n: number, size: number, numClasses: number): ImageSplit {
  const images = new Uint8Array(n * size * size * 3);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const cls = i % numClasses;
    labels[i] = cls;
    renderInto(images, i * size * size * 3, cls, size, new Rng(seed, 'synthetic', split, i));
  }
  return { images, labels, n, height: size, width: size, channels: 3 };
}

/** Per-channel mean and standard deviation on the [0,1] scale. */
export function channelStats(split: ImageSplit): { mean: [number, number, number]; std: [number, number, number] } {
  const c = split.channels;
  const sum = [0, 0, 0];
  const sq = [0, 0, 0];
  const img = split.images;
  for (let i = 0; i < img.length; i += c) {
    for (let k = 0; k < c; k++) {
      const v = img[i + k]!;
      sum[k]! += v;
      sq[k]! += v * v;
    }
  }
  const count = img.length / c;
  const mean = [0, 1, 2].map((k) => sum[k % c]! / count / 255) as [number, number, number];
  const std = [0, 1, 2].map((k) => Math.sqrt(Math.max(sq[k % c]! / count / 65025 - mean[k]! ** 2, 0))) as [number, number, number];
  return { mean, std };
}

/** The largest split the synthetic dataset makes (bytes of images): 4 GiB, the most one array holds here. */
const MAX_SPLIT_BYTES = 2 ** 32 - 1;

export function makeSyntheticDataset(spec: DataSpec): Dataset {
  const size = spec.syntheticImageSize ?? SYNTHETIC_DEFAULTS.imageSize;
  const k = spec.numClasses ?? SYNTHETIC_DEFAULTS.numClasses;
  const nTrain = spec.trainSize ?? SYNTHETIC_DEFAULTS.trainSize;
  const nTest = spec.testSize ?? SYNTHETIC_DEFAULTS.testSize;
  if (!Number.isInteger(size) || size < 4) throw new DataError(`synthetic: image size must be an integer >= 4, got ${size}`);
  if (!Number.isInteger(k) || k < 2 || k > SYNTHETIC_CLASSES.length) {
    throw new DataError(`data.num_classes: the synthetic dataset has 2..${SYNTHETIC_CLASSES.length} classes, got ${k}`);
  }
  for (const [what, n] of [['train', nTrain], ['test', nTest]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new DataError(`data.${what}_size: the synthetic ${what} split must hold a positive whole number of images, got ${n}`);
    // the images are made in memory, in one array: say so before an allocation fails
    const most = Math.floor(MAX_SPLIT_BYTES / (size * size * 3));
    if (n > most) {
      throw new DataError(`data.${what}_size: at most ${most} synthetic images of ${size} px fit in memory at once (${(MAX_SPLIT_BYTES / 2 ** 30).toFixed(0)} GiB), got ${n}`);
    }
  }
  const train = makeSyntheticSplit(spec.seed, 'train', nTrain, size, k);
  const test = makeSyntheticSplit(spec.seed, 'test', nTest, size, k);
  const { mean, std } = channelStats(train);
  return { name: 'synthetic', numClasses: k, classNames: SYNTHETIC_CLASSES.slice(0, k), train, test, mean, std, source: 'built-in' };
}
