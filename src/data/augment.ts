/**
 * MoCo v3's two-view augmentation (RECIPE §3.4, torchvision semantics), batched in TensorFlow.js ops.
 * Random parameters are drawn in JS from `new Rng(seed, 'aug', step, view)`, image after image, so
 * the same (seed, step) gives bit-identical views.
 *
 * Per view: RandomResizedCrop -> ColorJitter (p=.8, random op order, clamp after each op) ->
 * RandomGrayscale (p=.2) -> GaussianBlur -> Solarize -> HorizontalFlip -> Normalize.
 * Equivalent reorderings used for speed: the flip is folded into the crop box (it commutes with every
 * later step: pointwise ops, an image-mean and a symmetric blur with mirror borders); grayscale is
 * folded into the final normalising matrix (a channel mix commutes with the spatial blur), except for
 * images about to be solarized.
 *
 * Layout while augmenting: planar [B, C, S*S] (C = 3, or 1 for grayscale data, which stays one plane:
 * saturation, hue and grayscale do not change a gray pixel). A colour op of one image is an affine
 * [C x C+1] matrix, so one op for the whole batch is one batched matMul; the blur is two. Images are
 * processed sorted by (blur, solarize, hue slot): an op that only some images take (hue in each jitter
 * slot, blur in view 2, solarize) then runs on contiguous slices, not on the whole batch. The output
 * is put back into batch order at the end.
 *
 * Known differences from torchvision: no antialiasing when a crop is larger than the output (the
 * crops here are almost always upsampled); bilinear samples at a crop's border may read up to half a
 * source pixel beyond the crop (torchvision clamps to the crop); the blur is an exact Gaussian with
 * mirror borders where the official code uses PIL's box-blur approximation.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../engine/rng.ts';
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

/** ITU-R 601 luma, as PIL's convert('L'). */
export const GRAY_WEIGHTS: readonly [number, number, number] = [0.299, 0.587, 0.114];

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

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision RandomResizedCrop.get_params: 10 tries of uniform area and log-uniform ratio, then a centre crop. */
export function sampleCropBox(rng: Rng, height: number, width: number, scale: [number, number], ratio: [number, number] = CROP_RATIO): CropBox {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const target = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
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

/**
 * Row-stochastic [size x size] matrix G of a 1-D Gaussian blur: out[o] = sum_k G[o,k] in[k]. Radius
 * ceil(3 sigma), clipped to the image; mirror ("reflect") borders are folded into the matrix.
 */
export function gaussianBlurMatrix(sigma: number, size: number, out = new Float32Array(size * size), offset = 0): Float32Array {
  const r = Math.min(Math.ceil(3 * sigma), size - 1);
  const w = new Float64Array(2 * r + 1);
  let total = 0;
  for (let d = -r; d <= r; d++) total += w[d + r] = Math.exp((-d * d) / (2 * sigma * sigma));
  const row = new Float64Array(size);
  for (let o = 0; o < size; o++) {
    row.fill(0);
    for (let d = -r; d <= r; d++) {
      let k = o + d;
      if (k < 0) k = -k;
      else if (k >= size) k = 2 * (size - 1) - k;
      row[k]! += w[d + r]! / total;
    }
    for (let k = 0; k < size; k++) out[offset + o * size + k] = row[k]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Colour ops are affine maps of a pixel: out = M * (channels..., 1), M of shape [rows, C+1] stored
// row-major; RGB images use [3 x 4], grayscale ones [1 x 2] (saturation, hue and grayscale leave a
// gray pixel unchanged, so gray images stay one plane and only brightness and contrast act on them).

/** torchvision adjust_brightness: blend with black. */
export function brightnessMatrix(f: number, channels: 1 | 3 = 3): Float32Array {
  return channels === 1 ? Float32Array.from([f, 0]) : Float32Array.from([f, 0, 0, 0, 0, f, 0, 0, 0, 0, f, 0]);
}

/** The scaling part of adjust_contrast; its (1-f)*mean(gray) offset comes from the data (`contrastCoef`). */
export function contrastMatrix(f: number, channels: 1 | 3 = 3): Float32Array {
  return brightnessMatrix(f, channels);
}

/** torchvision adjust_saturation: blend with the image's grayscale (RGB only). */
export function saturationMatrix(f: number): Float32Array {
  const m = new Float32Array(12);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) m[i * 4 + j] = (i === j ? f : 0) + (1 - f) * GRAY_WEIGHTS[j]!;
  return m;
}

/** rgb_to_grayscale, 3 output channels. */
export function grayscaleMatrix(): Float32Array {
  return saturationMatrix(0);
}

export function identityMatrix(channels: 1 | 3 = 3): Float32Array {
  return brightnessMatrix(1, channels);
}

/** x [n, C, P] -> [n, C+1, P] with a plane of ones, for affine maps. */
function withOnes(x: tf.Tensor3D): tf.Tensor3D {
  const [n, , P] = x.shape;
  return tf.concat([x, tf.ones([n, 1, P])], 1);
}

/**
 * Apply per-image affine colour maps to planar x [n, C, P] and clamp to [0,1]. `mats`: n matrices of
 * [rows, C+1] (rows = 3, or 1 for gray images). `contrastCoef[i]` (when given) adds
 * coef * mean(gray(x_i)) to every output channel: torchvision's contrast blends with that mean.
 */
export function applyColorMatrices(x: tf.Tensor3D, mats: Float32Array, contrastCoef: Float32Array | null): tf.Tensor3D {
  return tf.tidy(() => {
    const [n, C, P] = x.shape;
    const rows = mats.length / (n * (C + 1));
    let m: tf.Tensor3D = tf.tensor3d(mats, [n, rows, C + 1]);
    if (contrastCoef) {
      const sums = tf.reshape(tf.sum(tf.reshape(x, [n * C, P]), 1), [n, C]);
      const gray = C === 3 ? tf.matMul(sums, tf.tensor2d([...GRAY_WEIGHTS], [3, 1])) : sums;
      const off = tf.mul(gray, tf.tensor2d(contrastCoef.map((c) => c / P), [n, 1]));
      // the offset multiplies the ones plane: last column
      const col = tf.matMul(off, tf.ones([1, rows]));
      m = tf.add(m, tf.pad(tf.reshape(col, [n, rows, 1]), [[0, 0], [0, 0], [C, 0]]));
    }
    return tf.clipByValue(tf.matMul(m, withOnes(x)), 0, 1) as tf.Tensor3D;
  });
}

/**
 * torchvision adjust_hue on planar RGB x [n, 3, P]: to HSV, h <- (h + shift) mod 1, back to RGB.
 * `shifts[i]` is image i's hue factor in [-0.5, 0.5].
 */
export function adjustHue(x: tf.Tensor3D, shifts: ArrayLike<number>): tf.Tensor3D {
  return tf.tidy(() => {
    const [n, , P] = x.shape;
    // contiguous [n, P] planes (a slice along axis 1 is slow on the cpu backend)
    const plane = (c: number) => tf.reshape(tf.matMul(tf.tensor3d([0, 1, 2].map((k) => +(k === c)), [1, 1, 3]), x), [n, P]);
    const r = plane(0);
    const g = plane(1);
    const b = plane(2);
    const v = tf.maximum(tf.maximum(r, g), b);
    const mn = tf.minimum(tf.minimum(r, g), b);
    const c = tf.sub(v, mn);
    // hue in sixths; the first channel holding the max picks the sector, as in torchvision's _rgb2hsv
    const c2 = tf.add(c, c);
    const num = tf.where(
      tf.equal(v, r),
      tf.sub(g, b),
      tf.where(tf.equal(v, g), tf.add(tf.sub(b, r), c2), tf.add(tf.sub(r, g), tf.add(c2, c2))),
    );
    const h6 = tf.div(num, tf.maximum(c, 1e-30));
    const shift = new Float32Array(n * P);
    for (let i = 0; i < n; i++) shift.fill(6 * shifts[i]! + 6, i * P, (i + 1) * P);
    const hs = tf.add(h6, tf.tensor2d(shift, [n, P]));
    const h = tf.sub(hs, tf.mul(tf.floor(tf.div(hs, 6)), 6));
    // HSV -> RGB: channel = min + chroma * a triangle wave of the hue
    const tri = (t: tf.Tensor) => tf.add(mn, tf.mul(c, tf.clipByValue(t, 0, 1)));
    const red = tri(tf.sub(tf.abs(tf.sub(h, 3)), 1));
    const green = tri(tf.sub(2, tf.abs(tf.sub(h, 2))));
    const blue = tri(tf.sub(2, tf.abs(tf.sub(h, 4))));
    return tf.stack([red, green, blue], 1) as tf.Tensor3D;
  });
}

/** PIL's solarize (threshold 128 of 255) on [0,1] values: x >= 0.5 -> 1 - x. */
export function solarize(x: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => tf.where(tf.greaterEqual(x, 0.5), tf.sub(1, x), x) as tf.Tensor3D);
}

/** Separable Gaussian blur of planar x [n, C, S*S] with one sigma per image: two batched matMuls. */
export function gaussianBlur(x: tf.Tensor3D, size: number, sigmas: ArrayLike<number>): tf.Tensor3D {
  return tf.tidy(() => {
    const [n, C] = x.shape;
    const S = size;
    const g = new Float32Array(n * S * S);
    for (let i = 0; i < n; i++) gaussianBlurMatrix(sigmas[i]!, S, g, i * S * S);
    // along the width: [C*S(h), S(w)] x G^T, per image
    const alongW = tf.matMul(tf.reshape(x, [n, C * S, S]), tf.tensor3d(g, [n, S, S]), false, true);
    if (C === 1) return tf.reshape(tf.matMul(tf.tensor3d(g, [n, S, S]), alongW), [n, 1, S * S]);
    // along the height: G x [S(h), S(w)], per plane. G is repeated per plane: tfjs-cpu's matMul
    // broadcasts only leading batch dims correctly ([n,1,..] x [n,C,..] comes out wrong in 4.22)
    const gc = new Float32Array(C * g.length);
    for (let i = 0; i < n; i++) for (let c = 0; c < C; c++) gc.set(g.subarray(i * S * S, (i + 1) * S * S), (i * C + c) * S * S);
    const alongH = tf.matMul(tf.tensor3d(gc, [n * C, S, S]), tf.reshape(alongW, [n * C, S, S]));
    return tf.reshape(alongH, [n, C, S * S]);
  });
}

// ---------------------------------------------------------------------------------------------

function checkConfig(cfg: AugmentConfig): void {
  const S = cfg.imageSize;
  if (!Number.isInteger(S) || S < 1) throw new RangeError(`augment: imageSize must be a positive integer, got ${S}`);
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
  if (!(n >= 1 && h >= 1 && w >= 1 && (c === 1 || c === 3)) || batch.data.length !== n * h * w * c) {
    throw new RangeError(`augment: bad batch n=${n} h=${h} w=${w} c=${c} with ${batch.data.length} bytes`);
  }
}

/**
 * The batch as float planes [n*c, h+2*pad, w+2*pad, 1] on [0,1], borders replicated `pad` pixels so
 * that bilinear samples up to half a pixel outside the image read the edge, as torchvision's clamp.
 */
function sourcePlanes(batch: ImageBatch, pad: number): tf.Tensor4D {
  const { n, h, w, c, data } = batch;
  const hp = h + 2 * pad;
  const wp = w + 2 * pad;
  const out = new Float32Array(n * c * hp * wp);
  let o = 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      for (let y = -pad; y < h + pad; y++) {
        const row = i * h * w * c + Math.min(Math.max(y, 0), h - 1) * w * c + k;
        for (let x = -pad; x < w + pad; x++) out[o++] = data[row + Math.min(Math.max(x, 0), w - 1) * c]! / 255;
      }
    }
  }
  return tf.tensor4d(out, [n * c, hp, wp, 1]);
}

/**
 * For each j: box j of source image srcIndex[j], resized to S x S (bilinear, half-pixel centres like
 * torchvision's resize), mirrored left-right when flips[j]: planar [B, c, S*S].
 */
function cropPlanes(src: tf.Tensor4D, batch: ImageBatch, pad: number, boxes: CropBox[], flips: boolean[], srcIndex: ArrayLike<number>, S: number): tf.Tensor3D {
  const B = boxes.length;
  const C = batch.c;
  const hp1 = batch.h + 2 * pad - 1;
  const wp1 = batch.w + 2 * pad - 1;
  const nb = new Float32Array(B * C * 4);
  const ind = new Int32Array(B * C);
  for (let j = 0; j < B; j++) {
    const { top, left, height, width } = boxes[j]!;
    // first and last sample positions, in padded pixel coordinates
    const y1 = top + (0.5 * height) / S - 0.5 + pad;
    const y2 = top + height - (0.5 * height) / S - 0.5 + pad;
    let x1 = left + (0.5 * width) / S - 0.5 + pad;
    let x2 = left + width - (0.5 * width) / S - 0.5 + pad;
    if (flips[j]) [x1, x2] = [x2, x1];
    for (let k = 0; k < C; k++) {
      nb.set([y1 / hp1, x1 / wp1, y2 / hp1, x2 / wp1], (j * C + k) * 4);
      ind[j * C + k] = srcIndex[j]! * C + k;
    }
  }
  return tf.tidy(() => {
    const crops = tf.image.cropAndResize(src, tf.tensor2d(nb, [B * C, 4]), tf.tensor1d(ind, 'int32'), [S, S]);
    return tf.reshape(crops, [B, C, S * S]) as tf.Tensor3D;
  });
}

/**
 * Planar [B, C, S*S] -> normalised NHWC [B, S, S, 3] (gray planes are replicated); gray[j] turns
 * image j to grayscale first. One matMul: out_pixel = (channels..., 1) * F_j.
 */
function toOutput(x: tf.Tensor3D, S: number, cfg: AugmentConfig, gray: boolean[] | null): tf.Tensor4D {
  const [B, C] = x.shape;
  const k = (C + 1) * 3;
  const f = new Float32Array(B * k);
  for (let j = 0; j < B; j++) {
    for (let o = 0; o < 3; o++) {
      const inv = 1 / cfg.std[o];
      for (let i = 0; i < C; i++) f[j * k + i * 3 + o] = (C === 1 ? 1 : gray?.[j] ? GRAY_WEIGHTS[i]! : +(i === o)) * inv;
      f[j * k + C * 3 + o] = -cfg.mean[o] * inv;
    }
  }
  return tf.tidy(() => tf.reshape(tf.matMul(withOnes(x), tf.tensor3d(f, [B, C + 1, 3]), true, false), [B, S, S, 3]));
}

/** Maximal runs [start, end) of positions where `pred` holds. */
function runsOf(B: number, pred: (j: number) => boolean): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let j = 0; j < B; j++) {
    if (!pred(j)) continue;
    if (runs.length > 0 && runs[runs.length - 1]![1] === j) runs[runs.length - 1]![1] = j + 1;
    else runs.push([j, j + 1]);
  }
  return runs;
}

/** Apply `fn` to the images in `runs` (concatenated, in order) and keep the others as they are. */
function applyToRuns(x: tf.Tensor3D, runs: Array<[number, number]>, fn: (sub: tf.Tensor3D, positions: number[]) => tf.Tensor3D): tf.Tensor3D {
  if (runs.length === 0) return x;
  const B = x.shape[0];
  const positions = runs.flatMap(([s, e]) => Array.from({ length: e - s }, (_, i) => s + i));
  if (positions.length === B) return fn(x, positions);
  return tf.tidy(() => {
    const cut = (s: number, e: number) => tf.slice(x, [s, 0, 0], [e - s, -1, -1]);
    const parts = runs.map(([s, e]) => cut(s, e));
    const out = fn(parts.length === 1 ? parts[0]! : tf.concat(parts, 0), positions);
    const outs = runs.length === 1 ? [out] : (tf.split(out, runs.map(([s, e]) => e - s), 0) as tf.Tensor3D[]);
    const pieces: tf.Tensor3D[] = [];
    let at = 0;
    runs.forEach(([s, e], r) => {
      if (s > at) pieces.push(cut(at, s));
      pieces.push(outs[r]!);
      at = e;
    });
    if (at < B) pieces.push(cut(at, B));
    return tf.concat(pieces, 0);
  });
}

/** One augmented view of the batch (inside the caller's tidy). */
function augmentView(src: tf.Tensor4D, batch: ImageBatch, cfg: AugmentConfig, params: ViewParams[]): tf.Tensor4D {
  const B = params.length;
  const S = cfg.imageSize;
  const C = batch.c as 1 | 3;
  const hueSlot = (p: ViewParams) => (p.jitter && C === 3 ? 1 + p.order.indexOf(HUE) : 0);
  const key = (p: ViewParams) => ((p.blur ? 2 : 0) + (p.solarize ? 1 : 0)) * 5 + hueSlot(p);
  const order = Array.from({ length: B }, (_, i) => i).sort((a, b) => key(params[a]!) - key(params[b]!) || a - b);
  const q = order.map((i) => params[i]!); // parameters in processing order

  let x = cropPlanes(src, batch, 1, q.map((p) => p.crop), q.map((p) => p.flip), order, S);
  // free each stage's input once the next exists: at large batches the stages would not fit together
  const next = (y: tf.Tensor3D) => {
    if (y !== x) x.dispose();
    x = y;
  };

  // ColorJitter: in slot k each image takes its k-th op; brightness/contrast/saturation as one batched
  // affine map (identity for the others), hue on the contiguous runs of images whose k-th op it is
  const width = C === 1 ? 2 : 12;
  for (let slot = 0; slot < 4; slot++) {
    const mats = new Float32Array(B * width);
    const coef = new Float32Array(B);
    let linear = false;
    let contrast = false;
    q.forEach((p, j) => {
      const op = p.jitter ? p.order[slot] : -1;
      let m = identityMatrix(C);
      if (op === BRIGHTNESS) m = brightnessMatrix(p.brightness, C);
      else if (op === SATURATION && C === 3) m = saturationMatrix(p.saturation);
      else if (op === CONTRAST) {
        m = contrastMatrix(p.contrast, C);
        coef[j] = 1 - p.contrast;
        contrast = true;
      }
      linear ||= op === BRIGHTNESS || op === CONTRAST || (op === SATURATION && C === 3);
      mats.set(m, j * width);
    });
    if (linear) next(applyColorMatrices(x, mats, contrast ? coef : null));
    const runs = runsOf(B, (j) => hueSlot(q[j]!) === slot + 1);
    next(applyToRuns(x, runs, (sub, pos) => adjustHue(sub, pos.map((j) => q[j]!.hue))));
  }

  next(applyToRuns(x, runsOf(B, (j) => q[j]!.blur), (sub, pos) => gaussianBlur(sub, S, pos.map((j) => q[j]!.sigma))));

  next(applyToRuns(x, runsOf(B, (j) => q[j]!.solarize), (sub, pos) => {
    // grayscale comes before solarize; for the other images it is folded into toOutput
    if (C === 3 && pos.some((j) => q[j]!.gray)) {
      const mats = new Float32Array(pos.length * 12);
      pos.forEach((j, i) => mats.set(q[j]!.gray ? grayscaleMatrix() : identityMatrix(3), i * 12));
      sub = applyColorMatrices(sub, mats, null);
    }
    return solarize(sub);
  }));

  const y = toOutput(x, S, cfg, q.map((p) => p.gray && !p.solarize));
  x.dispose();
  if (order.every((i, j) => i === j)) return y;
  // back to batch order: crop-and-resize with whole-image boxes and nearest sampling is an exact
  // gather of whole images, several times faster than tf.gather on the cpu backend
  const back = new Int32Array(B);
  order.forEach((i, j) => (back[i] = j));
  const whole = new Float32Array(B * 4);
  for (let i = 0; i < B; i++) whole.set([0, 0, 1, 1], i * 4);
  const out = tf.image.cropAndResize(y, tf.tensor2d(whole, [B, 4]), tf.tensor1d(back, 'int32'), [S, S], 'nearest');
  y.dispose();
  return out;
}

/** One view of the batch with the given per-image parameters (`params[i]` for image i). */
export function augmentWithParams(batch: ImageBatch, cfg: AugmentConfig, params: ViewParams[]): tf.Tensor4D {
  checkConfig(cfg);
  checkBatch(batch);
  if (params.length !== batch.n) throw new RangeError(`augment: ${params.length} parameter sets for ${batch.n} images`);
  return tf.tidy(() => augmentView(sourcePlanes(batch, 1), batch, cfg, params));
}

/** Draw the parameters of every image of one view from `new Rng(seed, 'aug', step, view)`, view 1 or 2. */
export function sampleBatchParams(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number, view: 1 | 2): ViewParams[] {
  const rng = new Rng(seed, 'aug', step, view);
  const recipe = MOCOV3_VIEWS[view - 1];
  return Array.from({ length: batch.n }, () => sampleViewParams(rng, batch.h, batch.w, recipe, cfg));
}

/** The two augmented views of a batch: [B, S, S, 3] float32, normalised, NHWC. */
export function twoViews(batch: ImageBatch, cfg: AugmentConfig, seed: number, step: number): { x1: tf.Tensor4D; x2: tf.Tensor4D } {
  checkConfig(cfg);
  checkBatch(batch);
  if (cfg.preset === 'none') {
    const x1 = evalView(batch, cfg);
    return { x1, x2: tf.clone(x1) };
  }
  const p1 = sampleBatchParams(batch, cfg, seed, step, 1);
  const p2 = sampleBatchParams(batch, cfg, seed, step, 2);
  return tf.tidy(() => {
    const src = sourcePlanes(batch, 1);
    return { x1: augmentView(src, batch, cfg, p1), x2: augmentView(src, batch, cfg, p2) };
  });
}

/** The un-augmented view: bilinear resize to S (half-pixel centres), grayscale -> 3 channels, normalise. */
export function evalView(batch: ImageBatch, cfg: AugmentConfig): tf.Tensor4D {
  checkConfig(cfg);
  checkBatch(batch);
  const S = cfg.imageSize;
  const { n, h, w, c } = batch;
  return tf.tidy(() => {
    let x: tf.Tensor3D;
    if (h === S && w === S) {
      x = tf.reshape(sourcePlanes(batch, 0), [n, c, S * S]);
    } else {
      const idx = Array.from({ length: n }, (_, i) => i);
      const whole = idx.map(() => ({ top: 0, left: 0, height: h, width: w }));
      x = cropPlanes(sourcePlanes(batch, 1), batch, 1, whole, idx.map(() => false), idx, S);
    }
    return toOutput(x, S, cfg, null);
  });
}

/** The augmentation settings for a dataset (its mean/std) at output size S. */
export function augmentConfigFor(
  data: { mean: [number, number, number]; std: [number, number, number] },
  imageSize: number,
  preset: 'mocov3' | 'none' = 'mocov3',
  cropMin = 0.08,
): AugmentConfig {
  return { preset, imageSize, cropMin, mean: [...data.mean], std: [...data.std], blurSigma: [0.1, 2.0] };
}
