/**
 * MoCo v3's two-view augmentation (docs/MOCOV3.md "Optimization", augmentation), computed image by image on uint8 pixels exactly as the
 * official loader's torchvision transforms compute them on PIL images (src/data/pil.ts holds the Pillow
 * ports; tools/pil_reference.py checks them against Pillow and torchvision byte for byte).
 *
 * Per view: RandomResizedCrop (bilinear, antialiased when shrinking) -> RandomApply(ColorJitter, .8)
 * (brightness, contrast, saturation, hue in a random order, each rounded to uint8 as PIL does) ->
 * RandomGrayscale (.2) -> GaussianBlur (PIL's 3-pass box approximation; p = 1 in view 1, .1 in view 2)
 * -> Solarize (threshold 128; p = .2 in view 2 only) -> HorizontalFlip (.5) -> ToTensor -> Normalize.
 *
 * Random parameters are drawn in JS from `new Rng(seed, 'aug', step, view)`, image after image, so the
 * same (seed, step) gives bit-identical views. The pixels are computed by the native addon
 * (native/src/augment.cc, a port of this file's pipeline run on all cores) when it is built, else by the
 * same pipeline in JS; the two agree byte for byte (test/data/augment.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { nativeAddon } from '../engine/native.ts';
import { Rng } from '../engine/rng.ts';
import * as pil from './pil.ts';
import type { ImageBatch } from './types.ts';

export interface AugmentConfig {
  preset: 'mocov3' | 'none';
  /** output side S */
  imageSize: number;
  /** RandomResizedCrop's smallest area fraction (0.08) */
  cropMin: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** range of the blur's standard deviation in output pixels ([0.1, 2.0]) */
  blurSigma: [number, number];
}

/** Probabilities and strengths of one view. */
export interface ViewRecipe {
  jitterP: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  grayP: number;
  blurP: number;
  solarizeP: number;
  flipP: number;
}

const COMMON = { jitterP: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, grayP: 0.2, flipP: 0.5 };

/** The asymmetric pair of BYOL / MoCo v3: blur always in view 1, rarely in view 2; solarize only in view 2. */
export const MOCOV3_VIEWS: readonly [ViewRecipe, ViewRecipe] = [
  { ...COMMON, blurP: 1.0, solarizeP: 0 },
  { ...COMMON, blurP: 0.1, solarizeP: 0.2 },
];

/** RandomResizedCrop's aspect-ratio range. */
export const CROP_RATIO: [number, number] = [3 / 4, 4 / 3];

/** ColorJitter's four ops, in torchvision's numbering. */
export const BRIGHTNESS = 0;
export const CONTRAST = 1;
export const SATURATION = 2;
export const HUE = 3;

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** The random choices for one image of one view. */
export interface ViewParams {
  crop: CropBox;
  jitter: boolean;
  /** order of BRIGHTNESS, CONTRAST, SATURATION, HUE */
  order: number[];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  gray: boolean;
  blur: boolean;
  sigma: number;
  solarize: boolean;
  flip: boolean;
}

/** torchvision RandomResizedCrop.get_params: 10 tries of uniform area and log-uniform ratio, then a centre crop. */
export function sampleCropBox(rng: Rng, height: number, width: number, scale: [number, number], ratio: [number, number] = CROP_RATIO): CropBox {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const target = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(logLo, logHi));
    const w = pil.roundHalfEven(Math.sqrt(target * aspect));
    const h = pil.roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = pil.roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = pil.roundHalfEven(h * Math.max(...ratio));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Draw one image's parameters, in the order torchvision's pipeline draws them. */
export function sampleViewParams(rng: Rng, height: number, width: number, recipe: ViewRecipe, cfg: AugmentConfig): ViewParams {
  const crop = sampleCropBox(rng, height, width, [cfg.cropMin, 1]);
  const jitter = rng.bernoulli(recipe.jitterP);
  const order = Array.from(rng.permutation(4));
  const brightness = rng.range(Math.max(0, 1 - recipe.brightness), 1 + recipe.brightness);
  const contrast = rng.range(Math.max(0, 1 - recipe.contrast), 1 + recipe.contrast);
  const saturation = rng.range(Math.max(0, 1 - recipe.saturation), 1 + recipe.saturation);
  const hue = rng.range(-recipe.hue, recipe.hue);
  const gray = rng.bernoulli(recipe.grayP);
  const blur = rng.bernoulli(recipe.blurP);
  const sigma = rng.range(cfg.blurSigma[0], cfg.blurSigma[1]);
  const solarize = rng.bernoulli(recipe.solarizeP);
  const flip = rng.bernoulli(recipe.flipP);
  return { crop, jitter, order, brightness, contrast, saturation, hue, gray, blur, sigma, solarize, flip };
}


// ---------------------------------------------------------------------------------------------
// Packed parameters: one row of PARAM_STRIDE numbers per output image, the layout the native kernel reads.

export const PARAM_STRIDE = 20;
const P_SRC = 0;
const P_TOP = 1;
const P_LEFT = 2;
const P_HEIGHT = 3;
const P_WIDTH = 4;
const P_JITTER = 5;
const P_ORDER = 6; // 4 entries
const P_BRIGHTNESS = 10;
const P_CONTRAST = 11;
const P_SATURATION = 12;
const P_HUE = 13;
const P_GRAY = 14;
const P_BLUR = 15;
const P_SIGMA = 16;
const P_SOLARIZE = 17;
const P_FLIP = 18;

/** Rows for `params[j]` applied to source image `srcIndex[j]` (default j). */
export function packParams(params: ViewParams[], srcIndex?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(params.length * PARAM_STRIDE);
  params.forEach((p, j) => {
    const o = j * PARAM_STRIDE;
    out[o + P_SRC] = srcIndex ? srcIndex[j]! : j;
    out[o + P_TOP] = p.crop.top;
    out[o + P_LEFT] = p.crop.left;
    out[o + P_HEIGHT] = p.crop.height;
    out[o + P_WIDTH] = p.crop.width;
    out[o + P_JITTER] = +p.jitter;
    for (let k = 0; k < 4; k++) out[o + P_ORDER + k] = p.order[k]!;
    out[o + P_BRIGHTNESS] = p.brightness;
    out[o + P_CONTRAST] = p.contrast;
    out[o + P_SATURATION] = p.saturation;
    out[o + P_HUE] = p.hue;
    out[o + P_GRAY] = +p.gray;
    out[o + P_BLUR] = +p.blur;
    out[o + P_SIGMA] = p.sigma;
    out[o + P_SOLARIZE] = +p.solarize;
    out[o + P_FLIP] = +p.flip;
  });
  return out;
}

/** Parameters that only resize: the whole image (or a given box), no colour op, no flip. */
export function plainParams(box: CropBox, flip = false): ViewParams {
  return {
    crop: box, jitter: false, order: [0, 1, 2, 3], brightness: 1, contrast: 1, saturation: 1, hue: 0,
    gray: false, blur: false, sigma: 1, solarize: false, flip,
  };
}

/**
 * ToTensor + Normalize as a table: lut[ch * 256 + v] = (float32(v / 255) - mean[ch]) / std[ch] in float32,
 * the operations torchvision performs on the float32 tensor.
 */
export function normalizeLut(mean: readonly number[], std: readonly number[]): Float32Array {
  const lut = new Float32Array(3 * 256);
  const f = Math.fround;
  for (let ch = 0; ch < 3; ch++) {
    for (let v = 0; v < 256; v++) lut[ch * 256 + v] = f(f(f(v / 255) - f(mean[ch]!)) / f(std[ch]!));
  }
  return lut;
}

/** Per-worker buffers of the JS pipeline. */
interface Scratch {
  img: Uint8Array;
  tmp: Uint8Array;
  blur: pil.BlurScratch;
}

function scratchFor(S: number, c: number): Scratch {
  const n = S * S * c;
  return { img: new Uint8Array(n), tmp: new Uint8Array(n), blur: { a: new Uint8Array(n), b: new Uint8Array(n), acc: new Uint32Array(S * c) } };
}

/**
 * One view of one image, the JS pipeline: crop+resize, jitter, grayscale, blur, solarize into
 * `scratch.img` (uint8, S*S*c), then flip + ToTensor + Normalize into out[outOffset..] (S*S*3 floats;
 * a gray image is replicated to the 3 channels). `lut` null: write the uint8 pixels as they are.
 */
export function augmentImage(
  batch: ImageBatch, p: Float64Array, po: number, S: number, lut: Float32Array | null,
  out: Float32Array, outOffset: number, scratch: Scratch,
): void {
  const { h, w, c, data } = batch;
  const img = scratch.img;
  const len = S * S * c;
  const base = p[po + P_SRC]! * h * w * c;
  const height = p[po + P_HEIGHT]!;
  // the horizontal pass keeps every crop row the vertical pass reads: up to the crop's height
  if (scratch.tmp.length < S * height * c) scratch.tmp = new Uint8Array(S * height * c);
  pil.resizedCrop(data, base, w, c, p[po + P_TOP]!, p[po + P_LEFT]!, height, p[po + P_WIDTH]!, S, img, scratch.tmp);
  if (p[po + P_JITTER]) {
    for (let k = 0; k < 4; k++) {
      const op = p[po + P_ORDER + k];
      if (op === BRIGHTNESS) pil.adjustBrightness(img, len, p[po + P_BRIGHTNESS]!);
      else if (op === CONTRAST) pil.adjustContrast(img, len, c, p[po + P_CONTRAST]!);
      else if (op === SATURATION) pil.adjustSaturation(img, len, c, p[po + P_SATURATION]!);
      else pil.adjustHue(img, len, c, p[po + P_HUE]!);
    }
  }
  if (p[po + P_GRAY]) pil.toGrayscale(img, len, c);
  if (p[po + P_BLUR]) pil.gaussianBlur(img, S, S, c, p[po + P_SIGMA]!, scratch.blur);
  if (p[po + P_SOLARIZE]) pil.solarize(img, len);
  const flip = p[po + P_FLIP] !== 0;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const i = (y * S + (flip ? S - 1 - x : x)) * c;
      const o = outOffset + (y * S + x) * 3;
      if (c === 3) {
        out[o] = lut ? lut[img[i]!]! : img[i]!;
        out[o + 1] = lut ? lut[256 + img[i + 1]!]! : img[i + 1]!;
        out[o + 2] = lut ? lut[512 + img[i + 2]!]! : img[i + 2]!;
      } else {
        const v = img[i]!;
        out[o] = lut ? lut[v]! : v;
        out[o + 1] = lut ? lut[256 + v]! : v;
        out[o + 2] = lut ? lut[512 + v]! : v;
      }
    }
  }
}

/** Which implementation computes the pixels: the native addon when it has the kernel, else JS. */
export type AugmentEngine = 'native' | 'js';

export function augmentEngine(): AugmentEngine {
  if (process.env.MOCO3_AUGMENT === 'js') return 'js';
  const addon = nativeAddon() as { augment?: unknown } | null;
  return typeof addon?.augment === 'function' ? 'native' : 'js';
}

type AugmentArgs = [src: Uint8Array, n: number, h: number, w: number, c: number, params: Float64Array, count: number, S: number, lut: Float32Array | null, out: Float32Array];

interface AugmentAddon {
  augment(...args: AugmentArgs): void;
  augmentAsync?: (...args: AugmentArgs) => Promise<void>;
}

/** Whether views can be computed off the main thread (`twoViewArraysAsync`): the native kernel's async entry. */
export function canAugmentAsync(): boolean {
  return augmentEngine() === 'native' && typeof (nativeAddon() as unknown as AugmentAddon).augmentAsync === 'function';
}

/**
 * The views described by `packed` (rows of PARAM_STRIDE) of `batch`, as float32 NHWC [count, S, S, 3]:
 * normalised by `lut`, or the raw 0..255 pixels when `lut` is null.
 */
export function augmentPacked(batch: ImageBatch, packed: Float64Array, S: number, lut: Float32Array | null, engine: AugmentEngine = augmentEngine()): Float32Array {
  const { count, out } = prepare(batch, packed, S);
  if (engine === 'native') {
    (nativeAddon() as unknown as AugmentAddon).augment(batch.data, batch.n, batch.h, batch.w, batch.c, packed, count, S, lut, out);
    return out;
  }
  const scratch = scratchFor(S, batch.c);
  for (let j = 0; j < count; j++) augmentImage(batch, packed, j * PARAM_STRIDE, S, lut, out, j * S * S * 3, scratch);
  return out;
}

/** `augmentPacked` by the native kernel on a libuv thread: the main thread is free meanwhile (see canAugmentAsync). */
export async function augmentPackedAsync(batch: ImageBatch, packed: Float64Array, S: number, lut: Float32Array | null): Promise<Float32Array> {
  const { count, out } = prepare(batch, packed, S);
  await (nativeAddon() as unknown as Required<AugmentAddon>).augmentAsync(batch.data, batch.n, batch.h, batch.w, batch.c, packed, count, S, lut, out);
  return out;
}

/** Check every crop box against its image; the output array. */
function prepare(batch: ImageBatch, packed: Float64Array, S: number): { count: number; out: Float32Array } {
  const count = packed.length / PARAM_STRIDE;
  const out = new Float32Array(count * S * S * 3);
  for (let j = 0; j < count; j++) {
    const o = j * PARAM_STRIDE;
    const src = packed[o + P_SRC]!;
    const top = packed[o + P_TOP]!;
    const left = packed[o + P_LEFT]!;
    const hh = packed[o + P_HEIGHT]!;
    const ww = packed[o + P_WIDTH]!;
    if (!(Number.isInteger(src) && src >= 0 && src < batch.n && hh >= 1 && ww >= 1 && top >= 0 && left >= 0 && top + hh <= batch.h && left + ww <= batch.w)) {
      throw new RangeError(`augment: view ${j} has a crop box outside its ${batch.h}x${batch.w} image`);
    }
  }
  return { count, out };
}

function checkConfig(cfg: AugmentConfig): void {
  const S = cfg.imageSize;
  if (!Number.isInteger(S) || S < 1 || S > 4096) throw new RangeError(`augment: imageSize must be an integer in [1, 4096], got ${S}`);
  if (!(cfg.cropMin > 0 && cfg.cropMin <= 1)) throw new RangeError(`augment: cropMin must be in (0, 1], got ${cfg.cropMin}`);
  if (!(cfg.blurSigma[0] > 0 && cfg.blurSigma[0] <= cfg.blurSigma[1])) {
    throw new RangeError(`augment: blurSigma must be 0 < lo <= hi, got [${cfg.blurSigma.join(', ')}]`);
  }
  if (cfg.mean.length !== 3 || cfg.std.length !== 3 || cfg.std.some((s) => !(s > 0))) {
    throw new RangeError('augment: mean and std need 3 entries, std > 0');
  }
}

function checkBatch(batch: ImageBatch): void {
  const { n, h, w, c } = batch;
  if (!(n >= 1 && h >= 1 && w >= 1 && h < 65536 && w < 65536 && (c === 1 || c === 3)) || batch.data.length !== n * h * w * c) {
    throw new RangeError(`augment: bad batch n=${n} h=${h} w=${w} c=${c} with ${batch.data.length} bytes`);
  }
}

function toTensor(data: Float32Array, count: number, S: number): tf.Tensor4D {
  return tf.tensor4d(data, [count, S, S, 3]);
}

/** One view of the batch with the given per-image parameters (`params[i]` for image i). */
export function augmentWithParams(batch: ImageBatch, cfg: AugmentConfig, params: ViewParams[]): tf.Tensor4D {
  checkConfig(cfg);
  checkBatch(batch);
  if (params.length !== batch.n) throw new RangeError(`augment: ${params.length} parameter sets for ${batch.n} images`);
  const S = cfg.imageSize;
  return toTensor(augmentPacked(batch, packParams(params), S, normalizeLut(cfg.mean, cfg.std)), batch.n, S);
}

/** Draw the parameters of every image of one view from `new Rng(seed, 'aug', step, view)`, view 1 or 2. */
export function sampleBatchParams(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, view: 1 | 2): ViewParams[] {
  const rng = new Rng(seed, 'aug', step, view);
  const recipe = MOCOV3_VIEWS[view - 1];
  return Array.from({ length: batch.n }, () => sampleViewParams(rng, batch.h, batch.w, recipe, cfg));
}

/**
 * The two views of a batch as float32 arrays, NHWC [B, S, S, 3] each, normalised (or raw 0..255
 * pixels with `raw`). Both views are computed in one call, so the native kernel spreads 2B images
 * over its threads.
 */
export function twoViewArrays(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, raw = false): { v1: Float32Array; v2: Float32Array } {
  const { packed, lut } = twoViewJob(batch, cfg, seed, step, raw);
  return splitViews(augmentPacked(batch, packed, cfg.imageSize, lut));
}

/** `twoViewArrays` computed off the main thread (when canAugmentAsync()): the same arrays. */
export async function twoViewArraysAsync(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, raw = false): Promise<{ v1: Float32Array; v2: Float32Array }> {
  const { packed, lut } = twoViewJob(batch, cfg, seed, step, raw);
  return splitViews(await augmentPackedAsync(batch, packed, cfg.imageSize, lut));
}

/** View 1 of every image, then view 2: two halves. */
function splitViews(all: Float32Array): { v1: Float32Array; v2: Float32Array } {
  const half = all.length / 2;
  return { v1: all.subarray(0, half), v2: all.subarray(half) };
}

/**
 * The parameters of one view (1 or 2) of every image of a batch at a step, as training draws them: the
 * recipe's random views, or with augment.preset none the plain resized image.
 */
export function batchViewParams(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, view: 1 | 2): ViewParams[] {
  if (cfg.preset === 'none') {
    const plain = plainParams(evalBox(batch.h, batch.w, cfg.imageSize));
    return Array.from({ length: batch.n }, () => plain);
  }
  return sampleBatchParams(batch, cfg, seed, step, view);
}

/** The packed parameters of both views of a batch (view 1 then view 2) and the normalisation table. */
function twoViewJob(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, raw: boolean): { packed: Float64Array; lut: Float32Array | null } {
  checkConfig(cfg);
  checkBatch(batch);
  const B = batch.n;
  const lut = raw ? null : normalizeLut(cfg.mean, cfg.std);
  const params = [...batchViewParams(batch, cfg, seed, step, 1), ...batchViewParams(batch, cfg, seed, step, 2)];
  const src = Int32Array.from({ length: 2 * B }, (_, j) => j % B);
  return { packed: packParams(params, src), lut };
}

/** The two augmented views of a batch: [B, S, S, 3] float32, normalised, NHWC. */
export function twoViews(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number): { x1: tf.Tensor4D; x2: tf.Tensor4D } {
  return viewTensors(twoViewArrays(batch, cfg, seed, step), cfg.imageSize);
}

/** The arrays of `twoViewArrays(Async)` as the tensors `twoViews` gives. */
export function viewTensors({ v1, v2 }: { v1: Float32Array; v2: Float32Array }, S: number): { x1: tf.Tensor4D; x2: tf.Tensor4D } {
  const n = v1.length / (S * S * 3);
  return { x1: toTensor(v1, n, S), x2: toTensor(v2, n, S) };
}

/**
 * The evaluation view's box, after main_lincls.py's val transform (Resize(S*256/224) + CenterCrop(S)): for an
 * image larger than S, the centred square that transform keeps (side = shorter side * 224/256, offset
 * rounded as torchvision's center_crop), which evalView then resizes to S: cropping before resizing, not
 * after, so the pixels differ from torchvision's by the resampling, not the region. An image folder's cached
 * square at 256/224 of S gives a box of exactly S (no resize): the official transform to the byte. An image
 * of S or smaller is used whole.
 */
export function evalBox(h: number, w: number, S: number): CropBox {
  if (Math.min(h, w) <= S) return { top: 0, left: 0, height: h, width: w };
  const side = Math.max(1, Math.round((Math.min(h, w) * 224) / 256));
  return { top: pil.roundHalfEven((h - side) / 2), left: pil.roundHalfEven((w - side) / 2), height: side, width: side };
}

/** The un-augmented view: the evaluation box (`evalBox`) resized to S as PIL does, gray -> 3 channels, normalised. */
export function evalView(batch: ImageBatch, cfg: AugmentConfig): tf.Tensor4D {
  checkConfig(cfg);
  checkBatch(batch);
  const S = cfg.imageSize;
  const view = plainParams(evalBox(batch.h, batch.w, S));
  return toTensor(augmentPacked(batch, packParams(Array.from({ length: batch.n }, () => view)), S, normalizeLut(cfg.mean, cfg.std)), batch.n, S);
}

/** The augmentation settings for a dataset (its mean/std) at output size S. */
export function augmentConfigFor(
  data: { mean: [number, number, number]; std: [number, number, number] },
  imageSize: number,
  preset: 'mocov3' | 'none' = 'mocov3',
  cropMin = 0.08,
  blurSigma: [number, number] = [0.1, 2.0],
): AugmentConfig {
  return { preset, imageSize, cropMin, mean: [...data.mean], std: [...data.std], blurSigma: [...blurSigma] };
}
