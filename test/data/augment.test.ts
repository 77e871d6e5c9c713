import { tf } from '../helpers/tf.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.ts';
import type { ImageBatch } from '../../src/data/types.ts';
import {
  BRIGHTNESS,
  CONTRAST,
  HUE,
  MOCOV3_VIEWS,
  SATURATION,
  adjustHue,
  applyColorMatrices,
  augmentConfigFor,
  augmentWithParams,
  brightnessMatrix,
  contrastMatrix,
  evalView,
  gaussianBlur,
  gaussianBlurMatrix,
  grayscaleMatrix,
  sampleBatchParams,
  sampleCropBox,
  saturationMatrix,
  solarize,
  twoViews,
  type AugmentConfig,
  type ViewParams,
} from '../../src/data/augment.ts';

const MEAN: [number, number, number] = [0.4, 0.5, 0.6];
const STD: [number, number, number] = [0.2, 0.25, 0.3];
const cfgFor = (S: number, preset: 'mocov3' | 'none' = 'mocov3'): AugmentConfig => augmentConfigFor({ mean: MEAN, std: STD }, S, preset);

function randomBatch(n: number, h: number, w: number, c: number, seed: number): ImageBatch {
  const rng = new Rng(seed, 'test-batch');
  const data = new Uint8Array(n * h * w * c);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return { data, n, h, w, c };
}

// --- plain-JS reference of the torchvision pipeline, in its original order (crop, jitter, gray, blur,
// solarize, flip, normalise), on one image in double precision -----------------------------------------

type Img = Float64Array; // S*S*3, HWC
const GW = [0.299, 0.587, 0.114];

function refRgbToHsv(r: number, g: number, b: number): [number, number, number] {
  // torchvision _rgb2hsv
  const maxc = Math.max(r, g, b);
  const minc = Math.min(r, g, b);
  const eqc = maxc === minc;
  const cr = maxc - minc;
  const s = cr / (eqc ? 1 : maxc);
  const div = eqc ? 1 : cr;
  const rc = (maxc - r) / div;
  const gc = (maxc - g) / div;
  const bc = (maxc - b) / div;
  let h: number;
  if (maxc === r) h = bc - gc;
  else if (maxc === g) h = 2 + rc - bc;
  else h = 4 + gc - rc;
  h = (((h / 6 + 1) % 1) + 1) % 1;
  return [h, s, maxc];
}

function refHsvToRgb(h: number, s: number, v: number): [number, number, number] {
  // torchvision _hsv2rgb
  const i0 = Math.floor(h * 6);
  const f = h * 6 - i0;
  const i = ((i0 % 6) + 6) % 6;
  const c01 = (x: number) => Math.min(Math.max(x, 0), 1);
  const p = c01(v * (1 - s));
  const q = c01(v * (1 - s * f));
  const t = c01(v * (1 - s * (1 - f)));
  return ([[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]] as const)[i] as [number, number, number];
}

function refView(img: Uint8Array, h: number, w: number, c: number, p: ViewParams, S: number): Img {
  const at = (y: number, x: number, k: number) => {
    const yy = Math.min(Math.max(y, 0), h - 1);
    const xx = Math.min(Math.max(x, 0), w - 1);
    return img[(yy * w + xx) * c + (c === 1 ? 0 : k)]! / 255;
  };
  const bil = (sy: number, sx: number, k: number) => {
    const y0 = Math.floor(sy);
    const x0 = Math.floor(sx);
    const fy = sy - y0;
    const fx = sx - x0;
    const top = at(y0, x0, k) * (1 - fx) + at(y0, x0 + 1, k) * fx;
    const bot = at(y0 + 1, x0, k) * (1 - fx) + at(y0 + 1, x0 + 1, k) * fx;
    return top * (1 - fy) + bot * fy;
  };
  let x: Img = new Float64Array(S * S * 3);
  const { top, left, height, width } = p.crop;
  for (let oy = 0; oy < S; oy++) {
    for (let ox = 0; ox < S; ox++) {
      const sy = top + ((oy + 0.5) * height) / S - 0.5;
      const sx = left + ((ox + 0.5) * width) / S - 0.5;
      for (let k = 0; k < 3; k++) x[(oy * S + ox) * 3 + k] = bil(sy, sx, k);
    }
  }
  const clamp = (v: number) => Math.min(Math.max(v, 0), 1);
  const gray = (a: Img, i: number) => GW[0]! * a[i]! + GW[1]! * a[i + 1]! + GW[2]! * a[i + 2]!;
  if (p.jitter) {
    for (const op of p.order) {
      const y = new Float64Array(x.length);
      let mean = 0;
      for (let i = 0; i < x.length; i += 3) mean += gray(x, i) / (S * S);
      for (let i = 0; i < x.length; i += 3) {
        if (op === HUE) {
          const [hh, ss, vv] = refRgbToHsv(x[i]!, x[i + 1]!, x[i + 2]!);
          const rgb = refHsvToRgb((((hh + p.hue) % 1) + 1) % 1, ss, vv);
          for (let k = 0; k < 3; k++) y[i + k] = rgb[k]!;
          continue;
        }
        const gi = gray(x, i);
        for (let k = 0; k < 3; k++) {
          const v = x[i + k]!;
          if (op === BRIGHTNESS) y[i + k] = clamp(p.brightness * v);
          else if (op === CONTRAST) y[i + k] = clamp(p.contrast * v + (1 - p.contrast) * mean);
          else y[i + k] = clamp(p.saturation * v + (1 - p.saturation) * gi);
        }
      }
      x = y;
    }
  }
  if (p.gray) for (let i = 0; i < x.length; i += 3) x[i] = x[i + 1] = x[i + 2] = gray(x, i);
  if (p.blur) {
    const r = Math.min(Math.ceil(3 * p.sigma), S - 1);
    const wts: number[] = [];
    for (let d = -r; d <= r; d++) wts.push(Math.exp((-d * d) / (2 * p.sigma * p.sigma)));
    const tot = wts.reduce((a, b) => a + b, 0);
    const refl = (i: number) => (i < 0 ? -i : i >= S ? 2 * (S - 1) - i : i);
    for (const axis of [0, 1]) {
      const y = new Float64Array(x.length);
      for (let oy = 0; oy < S; oy++) {
        for (let ox = 0; ox < S; ox++) {
          for (let k = 0; k < 3; k++) {
            let s = 0;
            for (let d = -r; d <= r; d++) {
              const yy = axis === 0 ? refl(oy + d) : oy;
              const xx = axis === 1 ? refl(ox + d) : ox;
              s += (wts[d + r]! / tot) * x[(yy * S + xx) * 3 + k]!;
            }
            y[(oy * S + ox) * 3 + k] = s;
          }
        }
      }
      x = y;
    }
  }
  if (p.solarize) for (let i = 0; i < x.length; i++) if (x[i]! >= 0.5) x[i] = 1 - x[i]!;
  const out = new Float64Array(x.length);
  for (let oy = 0; oy < S; oy++) {
    for (let ox = 0; ox < S; ox++) {
      const sx = p.flip ? S - 1 - ox : ox;
      for (let k = 0; k < 3; k++) out[(oy * S + ox) * 3 + k] = (x[(oy * S + sx) * 3 + k]! - MEAN[k]!) / STD[k]!;
    }
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Parameters that exercise every branch: hue in each slot, blur and solarize runs, flips, gray, no jitter. */
function mixedParams(n: number, h: number, w: number, seed: number): ViewParams[] {
  const rng = new Rng(seed, 'mixed');
  return Array.from({ length: n }, (_, i) => {
    const p: ViewParams = {
      crop: sampleCropBox(rng, h, w, [0.08, 1]),
      jitter: i % 5 !== 4,
      order: Array.from(rng.permutation(4)),
      brightness: rng.range(0.6, 1.4),
      contrast: rng.range(0.6, 1.4),
      saturation: rng.range(0.8, 1.2),
      hue: rng.range(-0.1, 0.1),
      gray: i % 4 === 1,
      blur: i % 3 === 0,
      sigma: rng.range(0.1, 2.0),
      solarize: i % 7 === 2 || i % 7 === 5,
      flip: i % 2 === 0,
    };
    return p;
  });
}

test('one view with given parameters matches a plain-JS torchvision-order reference, image by image (RGB)', () => {
  const n = 14;
  const [h, w, S] = [6, 7, 8];
  const batch = randomBatch(n, h, w, 3, 1);
  const params = mixedParams(n, h, w, 2);
  params[3]!.crop = { top: 0, left: 0, height: h, width: w }; // whole image, with edge samples
  const got = augmentWithParams(batch, cfgFor(S), params);
  const vals = got.dataSync();
  for (let i = 0; i < n; i++) {
    const ref = refView(batch.data.subarray(i * h * w * 3, (i + 1) * h * w * 3), h, w, 3, params[i]!, S);
    const d = maxAbsDiff(vals.subarray(i * S * S * 3, (i + 1) * S * S * 3), ref);
    assert.ok(d < 2e-4, `image ${i}: max difference ${d}`);
  }
  got.dispose();
});

test('grayscale input: one plane inside, same result as replicating it to RGB first', () => {
  const n = 10;
  const [h, w, S] = [7, 5, 6];
  const batch = randomBatch(n, h, w, 1, 3);
  const params = mixedParams(n, h, w, 4);
  const got = augmentWithParams(batch, cfgFor(S), params);
  assert.deepEqual(got.shape, [n, S, S, 3]);
  const vals = got.dataSync();
  for (let i = 0; i < n; i++) {
    const ref = refView(batch.data.subarray(i * h * w, (i + 1) * h * w), h, w, 1, params[i]!, S);
    const d = maxAbsDiff(vals.subarray(i * S * S * 3, (i + 1) * S * S * 3), ref);
    assert.ok(d < 2e-4, `image ${i}: max difference ${d}`);
  }
  got.dispose();
});

test('twoViews: shapes, dtype, and bit-identical for the same (seed, step)', () => {
  const batch = randomBatch(8, 10, 10, 3, 5);
  const cfg = cfgFor(12);
  const a = twoViews(batch, cfg, 7, 3);
  const b = twoViews(batch, cfg, 7, 3);
  for (const t of [a.x1, a.x2]) {
    assert.deepEqual(t.shape, [8, 12, 12, 3]);
    assert.equal(t.dtype, 'float32');
  }
  assert.deepEqual(a.x1.dataSync(), b.x1.dataSync());
  assert.deepEqual(a.x2.dataSync(), b.x2.dataSync());
  // the two views differ, and another step or seed gives other views
  assert.ok(maxAbsDiff(a.x1.dataSync(), a.x2.dataSync()) > 0.5);
  const c = twoViews(batch, cfg, 7, 4);
  const d = twoViews(batch, cfg, 8, 3);
  assert.ok(maxAbsDiff(a.x1.dataSync(), c.x1.dataSync()) > 0.5);
  assert.ok(maxAbsDiff(a.x1.dataSync(), d.x1.dataSync()) > 0.5);
  tf.dispose([a.x1, a.x2, b.x1, b.x2, c.x1, c.x2, d.x1, d.x2]);
});

test("twoViews draws view v's parameters from Rng(seed, 'aug', step, v) and applies them", () => {
  const batch = randomBatch(6, 9, 9, 3, 6);
  const cfg = cfgFor(9);
  const { x1, x2 } = twoViews(batch, cfg, 11, 5);
  const e1 = augmentWithParams(batch, cfg, sampleBatchParams(batch, cfg, 11, 5, 1));
  const e2 = augmentWithParams(batch, cfg, sampleBatchParams(batch, cfg, 11, 5, 2));
  assert.deepEqual(x1.dataSync(), e1.dataSync());
  assert.deepEqual(x2.dataSync(), e2.dataSync());
  // and the views are the reference pipeline (view 1 blurs every image: the whole-batch path)
  for (const [view, x] of [[1, x1], [2, x2]] as const) {
    const ps = sampleBatchParams(batch, cfg, 11, 5, view);
    const vals = x.dataSync();
    for (let i = 0; i < batch.n; i++) {
      const ref = refView(batch.data.subarray(i * 243, (i + 1) * 243), 9, 9, 3, ps[i]!, 9);
      assert.ok(maxAbsDiff(vals.subarray(i * 243, (i + 1) * 243), ref) < 2e-4, `view ${view} image ${i}`);
    }
  }
  tf.dispose([x1, x2, e1, e2]);
});

test('view recipes: blur always in view 1 and at p=.1 in view 2, solarize only in view 2, other rates as in the recipe', () => {
  const batch = randomBatch(2000, 8, 8, 3, 0);
  const cfg = cfgFor(8);
  const rate = (ps: ViewParams[], f: (p: ViewParams) => boolean) => ps.filter(f).length / ps.length;
  const v1 = sampleBatchParams(batch, cfg, 0, 0, 1);
  const v2 = sampleBatchParams(batch, cfg, 0, 0, 2);
  assert.equal(rate(v1, (p) => p.blur), 1);
  assert.equal(rate(v1, (p) => p.solarize), 0);
  assert.ok(Math.abs(rate(v2, (p) => p.blur) - 0.1) < 0.025);
  assert.ok(Math.abs(rate(v2, (p) => p.solarize) - 0.2) < 0.03);
  for (const ps of [v1, v2]) {
    assert.ok(Math.abs(rate(ps, (p) => p.jitter) - 0.8) < 0.03);
    assert.ok(Math.abs(rate(ps, (p) => p.gray) - 0.2) < 0.03);
    assert.ok(Math.abs(rate(ps, (p) => p.flip) - 0.5) < 0.035);
    for (const p of ps) {
      assert.ok(p.brightness >= 0.6 && p.brightness <= 1.4 && p.contrast >= 0.6 && p.contrast <= 1.4);
      assert.ok(p.saturation >= 0.8 && p.saturation <= 1.2 && Math.abs(p.hue) <= 0.1);
      assert.ok(p.sigma >= 0.1 && p.sigma <= 2.0);
      assert.deepEqual([...p.order].sort(), [0, 1, 2, 3]);
    }
  }
  assert.equal(MOCOV3_VIEWS[0].blurP, 1.0);
  assert.equal(MOCOV3_VIEWS[1].solarizeP, 0.2);
});

test("preset 'none': both views equal evalView", () => {
  const batch = randomBatch(4, 6, 6, 1, 9);
  const cfg = cfgFor(10, 'none');
  const { x1, x2 } = twoViews(batch, cfg, 0, 0);
  const e = evalView(batch, cfg);
  assert.deepEqual(x1.dataSync(), e.dataSync());
  assert.deepEqual(x2.dataSync(), e.dataSync());
  tf.dispose([x1, x2, e]);
});

test('evalView: same size is the normalised image; other sizes are a half-pixel bilinear resize', () => {
  const batch = randomBatch(3, 5, 5, 3, 10);
  const same = evalView(batch, cfgFor(5)).dataSync();
  for (let i = 0; i < batch.data.length; i++) {
    const k = i % 3;
    assert.ok(Math.abs(same[i]! - (batch.data[i]! / 255 - MEAN[k]!) / STD[k]!) < 1e-6);
  }
  // resize 5 -> 8 and 5 -> 3: the reference with a whole-image crop and no other op
  const none: Omit<ViewParams, 'crop'> = {
    jitter: false, order: [0, 1, 2, 3], brightness: 1, contrast: 1, saturation: 1, hue: 0,
    gray: false, blur: false, sigma: 1, solarize: false, flip: false,
  };
  for (const S of [8, 3]) {
    const got = evalView(batch, cfgFor(S)).dataSync();
    for (let i = 0; i < batch.n; i++) {
      const ref = refView(batch.data.subarray(i * 75, (i + 1) * 75), 5, 5, 3, { ...none, crop: { top: 0, left: 0, height: 5, width: 5 } }, S);
      assert.ok(maxAbsDiff(got.subarray(i * S * S * 3, (i + 1) * S * S * 3), ref) < 1e-5);
    }
  }
});

test('normalisation of a constant image is exact', () => {
  const batch: ImageBatch = { data: new Uint8Array(2 * 4 * 4).fill(51), n: 2, h: 4, w: 4, c: 1 };
  const got = evalView(batch, cfgFor(4)).dataSync();
  for (let i = 0; i < got.length; i++) {
    const k = i % 3;
    assert.ok(Math.abs(got[i]! - (0.2 - MEAN[k]!) / STD[k]!) < 1e-6, `${got[i]}`);
  }
});

test('grayscale is exact on hand-made pixels (ITU-R 601 weights)', () => {
  const f = Math.fround;
  const x = tf.tensor3d([1, 0, 0.2, 0, 1, 0.4, 0, 0, 0.6], [1, 3, 3]); // pixels (1,0,0), (0,1,0), (.2,.4,.6)
  const y = applyColorMatrices(x, grayscaleMatrix(), null).dataSync();
  const third = f(f(0.299) * f(0.2) + f(0.587) * f(0.4) + f(0.114) * f(0.6));
  for (let ch = 0; ch < 3; ch++) assert.deepEqual(Array.from(y.subarray(ch * 3, ch * 3 + 3)), [f(0.299), f(0.587), third]);
  assert.ok(Math.abs(third - 0.3630) < 1e-7); // 0.0598 + 0.2348 + 0.0684
  x.dispose();
});

test('brightness, contrast, saturation match torchvision formulas, clamped to [0,1]', () => {
  const rng = new Rng(1, 'jit');
  const P = 20;
  const px = Array.from({ length: 3 * P }, () => rng.uniform());
  const x = tf.tensor3d(px, [1, 3, P]);
  const r = (c: number, i: number) => px[c * P + i]!;
  const gray = (i: number) => 0.299 * r(0, i) + 0.587 * r(1, i) + 0.114 * r(2, i);
  const mean = Array.from({ length: P }, (_, i) => gray(i)).reduce((a, b) => a + b) / P;
  const clamp = (v: number) => Math.min(Math.max(v, 0), 1);
  const cases: Array<[Float32Array, Float32Array | null, (c: number, i: number) => number]> = [
    [brightnessMatrix(1.3), null, (c, i) => clamp(1.3 * r(c, i))],
    [contrastMatrix(0.7), Float32Array.of(1 - 0.7), (c, i) => clamp(0.7 * r(c, i) + 0.3 * mean)],
    [contrastMatrix(1.4), Float32Array.of(1 - 1.4), (c, i) => clamp(1.4 * r(c, i) - 0.4 * mean)],
    [saturationMatrix(1.2), null, (c, i) => clamp(1.2 * r(c, i) - 0.2 * gray(i))],
    [saturationMatrix(0.8), null, (c, i) => clamp(0.8 * r(c, i) + 0.2 * gray(i))],
  ];
  for (const [m, coef, ref] of cases) {
    const y = applyColorMatrices(x, m, coef).dataSync();
    for (let c = 0; c < 3; c++) for (let i = 0; i < P; i++) assert.ok(Math.abs(y[c * P + i]! - ref(c, i)) < 1e-6);
  }
  x.dispose();
});

test('hue: shift 0 is the identity; a hand-computed shift of one pixel; agrees with torchvision HSV', () => {
  // (0.2, 0.4, 0.6): h = 3.5/6, s = 2/3, v = 0.6; +0.1 -> h6 = 4.1, sector 4, f = 0.1:
  // (r, g, b) = (t, p, v) with p = v(1-s) = 0.2, t = v(1 - s(1-f)) = 0.6 - 0.4*0.9 = 0.24
  const one = tf.tensor3d([0.2, 0.4, 0.6], [1, 3, 1]);
  const shifted = adjustHue(one, [0.1]).dataSync();
  assert.ok(maxAbsDiff(shifted, [0.24, 0.2, 0.6]) < 1e-6, `${shifted}`);
  // red shifted by -1/6 is magenta (h = 5/6)
  const red = tf.tensor3d([1, 0, 0], [1, 3, 1]);
  assert.ok(maxAbsDiff(adjustHue(red, [-1 / 6]).dataSync(), [1, 0, 1]) < 1e-6);

  const rng = new Rng(2, 'hue');
  const n = 4;
  const P = 64;
  const px = Array.from({ length: n * 3 * P }, () => (rng.bernoulli(0.2) ? rng.int(3) / 2 : rng.uniform()));
  for (let i = 0; i < 8; i++) px[i * 3] = px[i * 3 + P] = px[i * 3 + 2 * P] = rng.uniform(); // some gray pixels
  const x = tf.tensor3d(px, [n, 3, P]);
  assert.ok(maxAbsDiff(adjustHue(x, [0, 0, 0, 0]).dataSync(), px) < 1e-6);
  const shifts = [0.1, -0.1, 0.5, -0.37];
  const y = adjustHue(x, shifts).dataSync();
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < P; i++) {
      const at = (c: number) => px[(b * 3 + c) * P + i]!;
      const [h, s, v] = refRgbToHsv(at(0), at(1), at(2));
      const want = refHsvToRgb((((h + shifts[b]!) % 1) + 1) % 1, s, v);
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(y[(b * 3 + c) * P + i]! - want[c]!) < 2e-6);
    }
  }
  tf.dispose([one, red, x]);
});

test('solarize is exact: x >= 0.5 becomes 1 - x', () => {
  const x = tf.tensor3d([0, 0.25, 0.49, 0.5, 0.75, 1], [1, 1, 6]);
  assert.deepEqual(Array.from(solarize(x).dataSync()), [0, 0.25, Math.fround(0.49), 0.5, 0.25, 0]);
  x.dispose();
});

test('crop boxes stay inside the image with area and aspect ratio in range; fallback is the centre crop', () => {
  const rng = new Rng(3, 'crop');
  const [h, w] = [28, 20];
  let fullArea = 0;
  for (let t = 0; t < 3000; t++) {
    const b = sampleCropBox(rng, h, w, [0.08, 1]);
    assert.ok(b.top >= 0 && b.left >= 0 && b.top + b.height <= h && b.left + b.width <= w);
    assert.ok(b.height >= 1 && b.width >= 1);
    const area = (b.height * b.width) / (h * w);
    // integer rounding of the sides moves area and ratio a little
    assert.ok(area > 0.08 * 0.75 && area <= 1, `area ${area}`);
    const ratio = b.width / b.height;
    if (!(b.height === h && b.width === w)) assert.ok(ratio > (3 / 4) * 0.8 && ratio < (4 / 3) * 1.25, `ratio ${ratio}`);
    if (area > 0.9) fullArea++;
  }
  assert.ok(fullArea > 0 && fullArea < 3000 * 0.2);
  // a 1 x 100 strip: no try fits, so the centre crop with the ratio clamped: h = 1, w = round(4/3) = 1
  assert.deepEqual(sampleCropBox(rng, 1, 100, [0.08, 1]), { top: 0, left: 49, height: 1, width: 1 });
  assert.deepEqual(sampleCropBox(rng, 100, 1, [0.08, 1]), { top: 49, left: 0, height: 1, width: 1 });
});

test('blur matrix: rows sum to 1, tiny sigma is the identity, mirror symmetric, Gaussian weights inside', () => {
  for (const [sigma, S] of [[0.7, 9], [2.0, 16], [2.0, 4], [1.3, 1]] as const) {
    const g = gaussianBlurMatrix(sigma, S);
    for (let o = 0; o < S; o++) {
      let s = 0;
      for (let k = 0; k < S; k++) s += g[o * S + k]!;
      assert.ok(Math.abs(s - 1) < 1e-6);
      // flipping both axes gives the same matrix, so the blur commutes with a horizontal flip
      for (let k = 0; k < S; k++) assert.ok(Math.abs(g[o * S + k]! - g[(S - 1 - o) * S + (S - 1 - k)]!) < 1e-7);
    }
  }
  const id = gaussianBlurMatrix(0.1, 8);
  for (let o = 0; o < 8; o++) for (let k = 0; k < 8; k++) assert.ok(Math.abs(id[o * 8 + k]! - +(o === k)) < 1e-6);
  // sigma 1, radius 3, row 5 of 12 (no border): normalised exp(-d^2/2)
  const g = gaussianBlurMatrix(1, 12);
  const wts = [-3, -2, -1, 0, 1, 2, 3].map((d) => Math.exp(-d * d / 2));
  const tot = wts.reduce((a, b) => a + b);
  for (let d = -3; d <= 3; d++) assert.ok(Math.abs(g[5 * 12 + 5 + d]! - wts[d + 3]! / tot) < 1e-7);
  assert.equal(g[5 * 12 + 1], 0);
  // row 0: mirror border folds d = -1 onto k = 1
  assert.ok(Math.abs(g[1]! - (2 * wts[4]!) / tot) < 1e-7);
});

test('gaussianBlur of planar images equals separable blurs with the matrix, per image sigma', () => {
  const rng = new Rng(4, 'blur');
  const [n, C, S] = [3, 3, 7];
  const px = Array.from({ length: n * C * S * S }, () => rng.uniform());
  const sig = [0.5, 1.5, 0.1];
  const y = gaussianBlur(tf.tensor3d(px, [n, C, S * S]), S, sig).dataSync();
  for (let b = 0; b < n; b++) {
    const g = gaussianBlurMatrix(sig[b]!, S);
    for (let c = 0; c < C; c++) {
      for (let oy = 0; oy < S; oy++) {
        for (let ox = 0; ox < S; ox++) {
          let s = 0;
          for (let ky = 0; ky < S; ky++) for (let kx = 0; kx < S; kx++) s += g[oy * S + ky]! * g[ox * S + kx]! * px[((b * C + c) * S + ky) * S + kx]!;
          assert.ok(Math.abs(y[((b * C + c) * S + oy) * S + ox]! - s) < 1e-5);
        }
      }
    }
  }
});

test('no tensors leak over repeated calls', () => {
  const batch = randomBatch(6, 8, 8, 3, 12);
  const gray = randomBatch(6, 8, 8, 1, 13);
  const cfg = cfgFor(8);
  const run = (step: number) => {
    const { x1, x2 } = twoViews(step % 2 ? batch : gray, cfg, 0, step);
    const e = evalView(batch, cfgFor(10));
    tf.dispose([x1, x2, e]);
  };
  run(0);
  const before = tf.memory().numTensors;
  for (let s = 1; s < 6; s++) run(s);
  assert.equal(tf.memory().numTensors, before);
});

test('bad input is rejected', () => {
  const batch = randomBatch(2, 4, 4, 3, 0);
  assert.throws(() => twoViews({ ...batch, n: 3 }, cfgFor(4), 0, 0), RangeError);
  assert.throws(() => twoViews(batch, { ...cfgFor(4), cropMin: 0 }, 0, 0), RangeError);
  assert.throws(() => evalView(batch, { ...cfgFor(4), std: [1, 0, 1] }), RangeError);
});

test('hue, saturation and grayscale leave gray pixels unchanged (why gray images stay one plane)', () => {
  const x = tf.tensor3d([0.3, 0.7, 0.3, 0.7, 0.3, 0.7], [1, 3, 2]);
  assert.ok(maxAbsDiff(adjustHue(x, [0.08]).dataSync(), [0.3, 0.7, 0.3, 0.7, 0.3, 0.7]) < 1e-7);
  assert.ok(maxAbsDiff(applyColorMatrices(x, saturationMatrix(1.2), null).dataSync(), [0.3, 0.7, 0.3, 0.7, 0.3, 0.7]) < 1e-6);
  assert.ok(maxAbsDiff(applyColorMatrices(x, grayscaleMatrix(), null).dataSync(), [0.3, 0.7, 0.3, 0.7, 0.3, 0.7]) < 1e-6);
  assert.equal(SATURATION, 2);
  x.dispose();
});
