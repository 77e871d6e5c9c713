/**
 * The image operations of the official MoCo v3 augmentation, bit for bit as Pillow computes them on
 * uint8 images (torchvision's PIL path, which the official loader uses: Pillow 9.4, torchvision 0.14
 * checked by tools/pil_reference.py). Where Pillow computes in C `float`, the code rounds with
 * Math.fround at the same places, so every result byte equals Pillow's.
 *
 * Images are HWC uint8 with c = 1 (mode "L") or 3 (mode "RGB"). The C++ kernels in
 * native/src/augment.cc are a line-by-line port of this file and are tested equal to it.
 */

const f32 = Math.fround;

/** Pillow's fixed-point resampling precision for 8-bit images (Resample.c). */
const PRECISION_BITS = 22;

export interface ResampleCoeffs {
  /** per output pixel: first input pixel, number of taps */
  bounds: Int32Array;
  /** fixed-point weights, `ksize` per output pixel */
  kk: Int32Array;
  ksize: number;
}

const coeffCache = new Map<string, ResampleCoeffs>();

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter, resampling [0, inSize)
 * to outSize pixels. When shrinking, the filter widens by the scale factor (Pillow's antialiasing).
 */
export function resampleCoeffs(inSize: number, outSize: number): ResampleCoeffs {
  const key = `${inSize}:${outSize}`; // a number key of inSize x 65536 + outSize met another once outSize reached 65536
  const hit = coeffCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // bilinear support 1.0, times the scale
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const out = { bounds, kk, ksize };
  coeffCache.set(key, out);
  return out;
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * torchvision's resized_crop on a PIL image: `img.crop(box).resize((S, S), BILINEAR)`. Reads the box
 * (top, left, height, width) of the image at `src[base..]` (row stride `srcW * c`), writes S*S*c bytes
 * to `out`; `tmp` holds at least S*max(S, height)*c bytes. Horizontal pass first into a uint8 temporary, then vertical, as Pillow's ImagingResample.
 */
export function resizedCrop(
  src: Uint8Array, base: number, srcW: number, c: number,
  top: number, left: number, height: number, width: number,
  S: number, out: Uint8Array, tmp: Uint8Array,
): void {
  const stride = srcW * c;
  const needH = width !== S;
  const needV = height !== S;
  const half = 1 << (PRECISION_BITS - 1);
  if (!needH && !needV) {
    for (let y = 0; y < S; y++) {
      const from = base + (top + y) * stride + left * c;
      out.set(src.subarray(from, from + S * c), y * S * c);
    }
    return;
  }
  const cy = resampleCoeffs(height, S);
  // rows of the crop the vertical pass reads
  const yFirst = needV ? cy.bounds[0]! : 0;
  const yLast = needV ? cy.bounds[(S - 1) * 2]! + cy.bounds[(S - 1) * 2 + 1]! : S;
  let mid: Uint8Array; // rows yFirst..yLast of the crop, S (or width) pixels wide
  let midBase: number;
  let midStride: number;
  if (needH) {
    const cx = resampleCoeffs(width, S);
    const { bounds, kk, ksize } = cx;
    for (let y = yFirst; y < yLast; y++) {
      const row = base + (top + y) * stride + left * c;
      const o = (y - yFirst) * S * c;
      for (let xx = 0; xx < S; xx++) {
        const xmin = bounds[xx * 2]!;
        const xmax = bounds[xx * 2 + 1]!;
        const kb = xx * ksize;
        for (let ch = 0; ch < c; ch++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) ss += src[row + (x + xmin) * c + ch]! * kk[kb + x]!;
          tmp[o + xx * c + ch] = clip8(ss);
        }
      }
    }
    mid = tmp;
    midBase = -yFirst * S * c;
    midStride = S * c;
  } else {
    mid = src;
    midBase = base + top * stride + left * c;
    midStride = stride;
  }
  if (!needV) {
    for (let y = 0; y < S; y++) out.set(mid.subarray(midBase + y * midStride, midBase + y * midStride + S * c), y * S * c);
    return;
  }
  const { bounds, kk, ksize } = cy;
  const rowLen = S * c;
  for (let yy = 0; yy < S; yy++) {
    const ymin = bounds[yy * 2]!;
    const ymax = bounds[yy * 2 + 1]!;
    const kb = yy * ksize;
    const o = yy * rowLen;
    for (let xc = 0; xc < rowLen; xc++) {
      let ss = half;
      for (let y = 0; y < ymax; y++) ss += mid[midBase + (y + ymin) * midStride + xc]! * kk[kb + y]!;
      out[o + xc] = clip8(ss);
    }
  }
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's `Resize(size)` + `CenterCrop(size)` on a PIL image of w x h: the shorter side resized to
 * `size` and the longer to trunc(size * long / short) with Pillow's bilinear filter (antialiased when
 * shrinking; a side that keeps its length is not resampled, as Pillow skips that pass), then the centred
 * size x size square, its offsets rounded half to even as torchvision's center_crop. Only the kept pixels
 * are computed, each exactly as Pillow computes it: the horizontal pass over the input rows the kept rows
 * read, into uint8, then the vertical pass. Returns size*size*c bytes.
 */
export function resizeCenterCrop(src: Uint8Array, w: number, h: number, c: number, size: number): Uint8Array {
  const ow = w <= h ? size : Math.trunc((size * w) / h);
  const oh = w <= h ? Math.trunc((size * h) / w) : size;
  const top = roundHalfEven((oh - size) / 2);
  const left = roundHalfEven((ow - size) / 2);
  const out = new Uint8Array(size * size * c);
  const half = 1 << (PRECISION_BITS - 1);
  const cy = oh !== h ? resampleCoeffs(h, oh) : null;
  // input rows the kept output rows read (the filter's bounds grow with the output row)
  const yFirst = cy ? cy.bounds[top * 2]! : top;
  const last = top + size - 1;
  const yLast = cy ? cy.bounds[last * 2]! + cy.bounds[last * 2 + 1]! : top + size;
  const rowLen = size * c;
  let mid: Uint8Array; // rows yFirst..yLast of the width-resized image, the kept columns only
  if (ow !== w) {
    const { bounds, kk, ksize } = resampleCoeffs(w, ow);
    mid = new Uint8Array((yLast - yFirst) * rowLen);
    for (let y = yFirst; y < yLast; y++) {
      const row = y * w * c;
      const o = (y - yFirst) * rowLen;
      for (let xx = 0; xx < size; xx++) {
        const xmin = bounds[(left + xx) * 2]!;
        const xmax = bounds[(left + xx) * 2 + 1]!;
        const kb = (left + xx) * ksize;
        if (c === 3) {
          // the three channels in one pass over the taps (the same sums, in the same order)
          let s0 = half;
          let s1 = half;
          let s2 = half;
          for (let x = 0, p = row + xmin * 3; x < xmax; x++, p += 3) {
            const k = kk[kb + x]!;
            s0 += src[p]! * k;
            s1 += src[p + 1]! * k;
            s2 += src[p + 2]! * k;
          }
          mid[o + xx * 3] = clip8(s0);
          mid[o + xx * 3 + 1] = clip8(s1);
          mid[o + xx * 3 + 2] = clip8(s2);
          continue;
        }
        for (let ch = 0; ch < c; ch++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) ss += src[row + (x + xmin) * c + ch]! * kk[kb + x]!;
          mid[o + xx * c + ch] = clip8(ss);
        }
      }
    }
  } else {
    mid = new Uint8Array((yLast - yFirst) * rowLen);
    for (let y = yFirst; y < yLast; y++) mid.set(src.subarray((y * w + left) * c, (y * w + left + size) * c), (y - yFirst) * rowLen);
  }
  if (!cy) {
    out.set(mid.subarray((top - yFirst) * rowLen, (top - yFirst + size) * rowLen));
    return out;
  }
  const { bounds, kk, ksize } = cy;
  // row by row of taps, each a sequential pass over the row: the same integer sums, which stay below 2^31
  // (255 x the weights, which sum to 2^22), so int32 holds them exactly
  const acc = new Int32Array(rowLen);
  for (let yy = 0; yy < size; yy++) {
    const ymin = bounds[(top + yy) * 2]! - yFirst;
    const ymax = bounds[(top + yy) * 2 + 1]!;
    const kb = (top + yy) * ksize;
    const o = yy * rowLen;
    acc.fill(half);
    for (let y = 0; y < ymax; y++) {
      const k = kk[kb + y]!;
      const base = (y + ymin) * rowLen;
      for (let xc = 0; xc < rowLen; xc++) acc[xc] = (acc[xc]! + mid[base + xc]! * k) | 0;
    }
    for (let xc = 0; xc < rowLen; xc++) out[o + xc] = clip8(acc[xc]!);
  }
  return out;
}

/** Pillow's ImagingBlend(in1, in2, alpha) into in2's place: in1 + alpha * (in2 - in1), C float. */
function blendValue(in1: number, in2: number, alpha: number): number {
  const t = f32(in1 + f32(alpha * (in2 - in1)));
  return t <= 0 ? 0 : t >= 255 ? 255 : Math.trunc(t);
}

/** ITU-R 601-2 luma as Pillow's convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
}

/** A blend with a constant image is a function of the byte: one table. */
function blendConst(img: Uint8Array, len: number, in1: number, a: number): void {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = blendValue(in1, v, a);
  for (let i = 0; i < len; i++) img[i] = lut[img[i]!]!;
}

/** ImageEnhance.Brightness(img).enhance(f): blend with black. */
export function adjustBrightness(img: Uint8Array, len: number, factor: number): void {
  const a = f32(factor);
  if (a === 1) return;
  blendConst(img, len, 0, a);
}

/** ImageEnhance.Contrast(img).enhance(f): blend with the rounded mean of the image's luma. */
export function adjustContrast(img: Uint8Array, len: number, c: number, factor: number): void {
  const a = f32(factor);
  let sum = 0;
  if (c === 3) for (let i = 0; i < len; i += 3) sum += luma(img[i]!, img[i + 1]!, img[i + 2]!);
  else for (let i = 0; i < len; i++) sum += img[i]!;
  const mean = Math.trunc(sum / (len / c) + 0.5);
  if (a === 1) return;
  blendConst(img, len, mean, a);
}

/** ImageEnhance.Color(img).enhance(f): blend with the image's luma (a no-op on mode L). */
export function adjustSaturation(img: Uint8Array, len: number, c: number, factor: number): void {
  const a = f32(factor);
  if (c !== 3 || a === 1) return;
  for (let i = 0; i < len; i += 3) {
    const l = luma(img[i]!, img[i + 1]!, img[i + 2]!);
    img[i] = blendValue(l, img[i]!, a);
    img[i + 1] = blendValue(l, img[i + 1]!, a);
    img[i + 2] = blendValue(l, img[i + 2]!, a);
  }
}

/** numpy's np.uint8(hue_factor * 255): truncate toward zero, wrap mod 256. */
export function hueShift(factor: number): number {
  return ((Math.trunc(factor * 255) % 256) + 256) % 256;
}

/**
 * torchvision adjust_hue on PIL: convert("HSV") (Pillow's rgb2hsv, H/S/V each a byte), add
 * np.uint8(f*255) to H with uint8 wrap-around, convert back (hsv2rgb). A no-op on mode L.
 */
export function adjustHue(img: Uint8Array, len: number, c: number, factor: number): void {
  if (c !== 3) return;
  const shift = hueShift(factor);
  for (let i = 0; i < len; i += 3) {
    const r = img[i]!;
    const g = img[i + 1]!;
    const b = img[i + 2]!;
    const maxc = Math.max(r, g, b);
    const minc = Math.min(r, g, b);
    // rgb2hsv_row
    let uh = 0;
    let us = 0;
    const v = maxc;
    if (minc !== maxc) {
      const cr = f32(maxc - minc);
      const s = f32(cr / maxc);
      const rc = f32((maxc - r) / cr);
      const gc = f32((maxc - g) / cr);
      const bc = f32((maxc - b) / cr);
      let h: number;
      if (r === maxc) h = f32(bc - gc);
      else if (g === maxc) h = f32(2.0 + rc - bc);
      else h = f32(4.0 + gc - rc);
      // fmod(h / 6 + 1, 1): the value is in [0, 2), so subtracting 1 is the same, exactly
      const x = h / 6.0 + 1.0;
      h = f32(x >= 1.0 ? x - 1.0 : x);
      uh = Math.min(255, Math.max(0, Math.trunc(h * 255.0)));
      us = Math.min(255, Math.max(0, Math.trunc(s * 255.0)));
    }
    uh = (uh + shift) & 255;
    // hsv2rgb
    if (us === 0) {
      img[i] = img[i + 1] = img[i + 2] = v;
      continue;
    }
    const hi = Math.floor((uh * 6.0) / 255.0);
    const f = f32((uh * 6.0) / 255.0 - hi);
    const fs = f32(us / 255.0);
    const p = Math.min(255, Math.max(0, Math.round(v * (1.0 - fs))));
    const q = Math.min(255, Math.max(0, Math.round(v * (1.0 - f32(fs * f)))));
    const t = Math.min(255, Math.max(0, Math.round(v * (1.0 - fs * (1.0 - f)))));
    switch (hi % 6) {
      case 0: img[i] = v; img[i + 1] = t; img[i + 2] = p; break;
      case 1: img[i] = q; img[i + 1] = v; img[i + 2] = p; break;
      case 2: img[i] = p; img[i + 1] = v; img[i + 2] = t; break;
      case 3: img[i] = p; img[i + 1] = q; img[i + 2] = v; break;
      case 4: img[i] = t; img[i + 1] = p; img[i + 2] = v; break;
      default: img[i] = v; img[i + 1] = p; img[i + 2] = q; break;
    }
  }
}

/** RandomGrayscale on RGB: convert("L"), replicated to 3 channels (torchvision's to_grayscale). */
export function toGrayscale(img: Uint8Array, len: number, c: number): void {
  if (c !== 3) return;
  for (let i = 0; i < len; i += 3) img[i] = img[i + 1] = img[i + 2] = luma(img[i]!, img[i + 1]!, img[i + 2]!);
}

/** ImageOps.solarize(threshold=128): values >= 128 become 255 - value. */
export function solarize(img: Uint8Array, len: number): void {
  for (let i = 0; i < len; i++) if (img[i]! >= 128) img[i] = 255 - img[i]!;
}

/** Pillow's _gaussian_blur_radius: the extended box radius whose 3 passes approximate a Gaussian of std `radius`. */
export function boxRadiusFor(radius: number, passes = 3): number {
  const sigma2 = f32(f32(f32(radius) * f32(radius)) / passes);
  const L = f32(Math.sqrt(12.0 * sigma2 + 1.0));
  const l = f32(Math.floor((L - 1.0) / 2.0));
  let a = f32(f32(2 * l + 1) * f32(f32(l * f32(l + 1)) - f32(3 * sigma2)));
  a = f32(a / f32(6 * f32(sigma2 - f32(f32(l + 1) * f32(l + 1)))));
  return f32(l + a);
}

/**
 * The four indices of Pillow's ImagingLineBoxBlur for output x of a line of `len` samples: the sample
 * leaving and the sample entering the running box sum, and the box's two fractional ends. Pillow spells
 * out three phases for each order of edgeA and edgeB; in all of them the box's left end stays at pixel 0
 * while x < edgeA and its right end at the last pixel once x >= edgeB (the line's ends repeat).
 */
function boxIndices(x: number, radius: number, lastx: number, edgeA: number, edgeB: number, out: Int32Array): void {
  const left = x < edgeA ? 0 : x - radius - 1;
  const atEnd = x >= edgeB;
  out[0] = left;
  out[1] = atEnd ? lastx : x + radius;
  out[2] = left;
  out[3] = atEnd ? lastx : x + radius + 1;
}

/**
 * One pass of Pillow's line box blur down `input` (len rows of `lanes` bytes), every column at once:
 * acc is the column's running sum of the box (radius + the repeated end pixels at the start), and each
 * output is (acc * ww + (far ends) * fw + 2^23) >> 24 in 32-bit unsigned arithmetic, as Pillow's.
 */
function boxBlurLanes(input: Uint8Array, out: Uint8Array, len: number, lanes: number, radius: number, ww: number, fw: number, acc: Uint32Array): void {
  const lastx = len - 1;
  const edgeA = Math.min(radius + 1, len);
  const edgeB = Math.max(len - radius - 1, 0);
  const last = lastx * lanes;
  for (let j = 0; j < lanes; j++) acc[j] = input[j]! * (radius + 1) + input[last + j]! * (radius - edgeA + 1);
  for (let x = 0; x < edgeA - 1; x++) for (let j = 0; j < lanes; j++) acc[j]! += input[x * lanes + j]!;
  const ix = new Int32Array(4);
  for (let x = 0; x < len; x++) {
    boxIndices(x, radius, lastx, edgeA, edgeB, ix);
    const rs = ix[0]! * lanes;
    const ra = ix[1]! * lanes;
    const rl = ix[2]! * lanes;
    const rr = ix[3]! * lanes;
    const o = x * lanes;
    for (let j = 0; j < lanes; j++) {
      const v = acc[j]! + input[ra + j]! - input[rs + j]!;
      acc[j] = v;
      // v * ww + ... < 2^32 (Pillow's UINT32 never wraps here), exact in doubles
      out[o + j] = (v * ww + (input[rl + j]! + input[rr + j]!) * fw + 8388608) / 16777216;
    }
  }
}

export interface BlurScratch {
  a: Uint8Array;
  b: Uint8Array;
  acc: Uint32Array;
}

/**
 * ImageFilter.GaussianBlur(radius=sigma) on an h x w image (Pillow's ImagingGaussianBlur /
 * ImagingBoxBlur): the extended box radius for 3 passes, 3 passes along the rows, then 3 along the
 * columns. Both run as passes over whole rows of bytes: the row passes on the transposed image.
 */
export function gaussianBlur(img: Uint8Array, h: number, w: number, c: number, sigma: number, scratch?: BlurScratch): void {
  const fr = boxRadiusFor(sigma);
  if (fr === 0) return;
  const radius = Math.trunc(fr);
  const ww = Math.trunc(f32(16777216 / f32(f32(fr * 2) + 1)));
  const fw = Math.trunc((16777216 - (radius * 2 + 1) * ww) / 2);
  const n = h * w * c;
  const a = scratch && scratch.a.length >= n ? scratch.a : new Uint8Array(n);
  const b = scratch && scratch.b.length >= n ? scratch.b : new Uint8Array(n);
  const acc = scratch && scratch.acc.length >= Math.max(h, w) * c ? scratch.acc : new Uint32Array(Math.max(h, w) * c);
  if (scratch) Object.assign(scratch, { a, b, acc });
  // img (h x w x c) -> a (w x h x c): rows become columns
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) a[(x * h + y) * c + ch] = img[(y * w + x) * c + ch]!;
  boxBlurLanes(a, b, w, h * c, radius, ww, fw, acc);
  boxBlurLanes(b, a, w, h * c, radius, ww, fw, acc);
  boxBlurLanes(a, b, w, h * c, radius, ww, fw, acc);
  for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) for (let ch = 0; ch < c; ch++) a[(y * w + x) * c + ch] = b[(x * h + y) * c + ch]!;
  boxBlurLanes(a, b, h, w * c, radius, ww, fw, acc);
  boxBlurLanes(b, a, h, w * c, radius, ww, fw, acc);
  boxBlurLanes(a, img, h, w * c, radius, ww, fw, acc);
}
