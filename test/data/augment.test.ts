/**
 * The two-view pipeline: parameter draws, view recipes, determinism, evaluation view, and the native
 * kernel against the JS pipeline (which test/data/pil.test.ts checks against Pillow + torchvision).
 */
import { tf } from '../helpers/tf.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.ts';
import { nativeStatus } from '../../src/engine/native.ts';
import type { ImageBatch } from '../../src/data/types.ts';
import * as pil from '../../src/data/pil.ts';
import {
  MOCOV3_VIEWS,
  augmentConfigFor,
  augmentEngine,
  augmentPacked,
  augmentPackedAsync,
  augmentWithParams,
  evalBox,
  evalView,
  normalizeLut,
  packParams,
  plainParams,
  sampleBatchParams,
  sampleCropBox,
  sampleViewParams,
  twoViewArrays,
  twoViewArraysAsync,
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

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

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
  // the stream the title names, drawn here (not through sampleBatchParams, which twoViews uses too)
  const drawn = (view: 1 | 2) => {
    const rng = new Rng(11, 'aug', 5, view);
    return Array.from({ length: 6 }, () => sampleViewParams(rng, 9, 9, MOCOV3_VIEWS[view - 1]!, cfg));
  };
  const e1 = augmentWithParams(batch, cfg, drawn(1));
  const e2 = augmentWithParams(batch, cfg, drawn(2));
  assert.deepEqual(x1.dataSync(), e1.dataSync());
  assert.deepEqual(x2.dataSync(), e2.dataSync());
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

test("each view's draws span the recipe's whole ranges: ColorJitter's factors, the blur's sigma, the crop's area up to the whole image and its position up to either edge", () => {
  // 4000 uniform draws: the chance that none falls in a given 1% of a range is 0.99^4000 < 1e-17
  const [h, w] = [224, 224];
  const cfg = cfgFor(8);
  for (const view of [1, 2] as const) {
    const rng = new Rng(1, 'spread', view);
    const ps = Array.from({ length: 4000 }, () => sampleViewParams(rng, h, w, MOCOV3_VIEWS[view - 1]!, cfg));
    const span = (f: (p: ViewParams) => number): [number, number] => [Math.min(...ps.map(f)), Math.max(...ps.map(f))];
    const near = (what: string, got: [number, number], [lo, hi]: [number, number]) => {
      const tol = 0.01 * (hi - lo);
      assert.ok(got[0] >= lo && got[0] < lo + tol && got[1] <= hi && got[1] > hi - tol, `view ${view} ${what}: drawn in [${got}], the range is [${lo}, ${hi}]`);
    };
    near('brightness', span((p) => p.brightness), [0.6, 1.4]);
    near('contrast', span((p) => p.contrast), [0.6, 1.4]);
    near('saturation', span((p) => p.saturation), [0.8, 1.2]);
    near('hue', span((p) => p.hue), [-0.1, 0.1]);
    near('sigma', span((p) => p.sigma), [0.1, 2.0]);
    // the area fraction is uniform on [0.08, 1] before the sides are rounded and a box that does not fit is drawn
    // again: of 224 x 224, a side rounds by at most half a pixel, so the area by under 0.005 of the whole; a target
    // over 0.92 fits when the aspect lies in [t, 1/t], about one draw in 80
    const area = span((p) => (p.crop.height * p.crop.width) / (h * w));
    assert.ok(area[0] < 0.085 && area[1] > 0.92, `view ${view} crop area in [${area}]`);
    // the top-left corner is uniform over every place the box fits, its far edges included
    assert.ok(ps.some((p) => p.crop.top === h - p.crop.height && p.crop.height < h), `view ${view}: no crop touches the bottom edge`);
    assert.ok(ps.some((p) => p.crop.left === w - p.crop.width && p.crop.width < w), `view ${view}: no crop touches the right edge`);
    assert.ok(ps.some((p) => p.crop.top === 0 && p.crop.height < h) && ps.some((p) => p.crop.left === 0 && p.crop.width < w));
  }
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
  // every setting out of its range, each alone
  const bad: [Partial<AugmentConfig>, RegExp][] = [
    [{ imageSize: 4097 }, /imageSize must be an integer in \[1, 4096\]/],
    [{ cropMin: 1.5 }, /cropMin must be in \(0, 1\]/],
    [{ blurSigma: [2, 0.1] }, /blurSigma must be 0 < lo <= hi/],
    [{ mean: [0.5, 0.5] as unknown as AugmentConfig['mean'] }, /mean and std need 3 entries/],
  ];
  for (const [change, re] of bad) assert.throws(() => twoViewArrays(batch, { ...cfgFor(4), ...change }, 0, 0), (e: Error) => e instanceof RangeError && re.test(e.message), JSON.stringify(change));
  assert.throws(() => twoViewArrays({ ...batch, c: 2, data: new Uint8Array(2 * 4 * 4 * 2) }, cfgFor(4), 0, 0), /augment: bad batch n=2 h=4 w=4 c=2/);
  // pixels that are not n images of h x w x c: a bad reader's batch, not one to crop from
  assert.throws(() => twoViewArrays({ ...batch, data: new Uint8Array(2 * 4 * 4 * 3 + 1) }, cfgFor(4), 0, 0), /augment: bad batch n=2 h=4 w=4 c=3 with 97 bytes/);
  assert.throws(() => augmentWithParams(batch, cfgFor(4), [plainParams({ top: 0, left: 0, height: 4, width: 4 })]), /augment: 1 parameter sets for 2 images/);
  assert.throws(() => augmentWithParams(batch, cfgFor(4), Array.from({ length: 3 }, () => plainParams({ top: 0, left: 0, height: 4, width: 4 }))), /augment: 3 parameter sets for 2 images/);
  // a view of an image the batch lacks, or a crop past an edge (the native kernel would read past the pixels)
  const box = { top: 0, left: 0, height: 4, width: 4 };
  for (const [params, src] of [[[box, box], [0, 2]], [[box, { ...box, left: 1 }], [0, 1]], [[box, { ...box, top: 1 }], [0, 1]]] as const) {
    for (const engine of ['js', 'native'] as const) {
      assert.throws(() => augmentPacked(batch, packParams(params.map((b) => plainParams(b)), src), 4, null, engine), /augment: view 1 has a crop box outside its 4x4 image/);
    }
  }
});

test("augment defaults are MoCo v3's (crop from 8% of the area, blur sigma 0.1 to 2); MOCO3_AUGMENT=js computes the views in JS", () => {
  assert.deepEqual(augmentConfigFor({ mean: MEAN, std: STD }, 8), { preset: 'mocov3', imageSize: 8, cropMin: 0.08, mean: MEAN, std: STD, blurSigma: [0.1, 2.0] });
  const saved = process.env.MOCO3_AUGMENT;
  try {
    process.env.MOCO3_AUGMENT = 'js';
    assert.equal(augmentEngine(), 'js');
  } finally {
    if (saved === undefined) delete process.env.MOCO3_AUGMENT;
    else process.env.MOCO3_AUGMENT = saved;
  }
});

test('evalView: same size is the normalised image; other sizes are the PIL bilinear resize of the whole image', () => {
  const batch = randomBatch(3, 5, 5, 3, 10);
  const same = evalView(batch, cfgFor(5)).dataSync();
  const f = Math.fround;
  for (let i = 0; i < batch.data.length; i++) {
    const k = i % 3;
    assert.equal(same[i], f(f(f(batch.data[i]! / 255) - f(MEAN[k]!)) / f(STD[k]!)));
  }
  for (const S of [8, 5]) {
    const got = evalView(batch, cfgFor(S)).dataSync();
    const lut = normalizeLut(MEAN, STD);
    for (let i = 0; i < batch.n; i++) {
      const px = new Uint8Array(S * S * 3);
      pil.resizedCrop(batch.data, i * 75, 5, 3, 0, 0, 5, 5, S, px, new Uint8Array(S * 5 * 3));
      const want = Float32Array.from(px, (v, j) => lut[(j % 3) * 256 + v]!);
      assert.deepEqual(got.subarray(i * S * S * 3, (i + 1) * S * S * 3), want);
    }
  }
});

test('gray images come out as 3 equal channels, each normalised with its own mean and std', () => {
  const batch: ImageBatch = { data: new Uint8Array(2 * 4 * 4).fill(51), n: 2, h: 4, w: 4, c: 1 };
  const got = evalView(batch, cfgFor(4)).dataSync();
  for (let i = 0; i < got.length; i++) {
    const k = i % 3;
    assert.ok(Math.abs(got[i]! - (0.2 - MEAN[k]!) / STD[k]!) < 1e-6, `${got[i]}`);
  }
});

test('flip mirrors the view; a crop of the whole image at the same size is the image', () => {
  const batch = randomBatch(1, 6, 6, 3, 4);
  const box = { top: 0, left: 0, height: 6, width: 6 };
  const plain = augmentPacked(batch, packParams([plainParams(box)]), 6, null, 'js');
  assert.deepEqual(plain, Float32Array.from(batch.data));
  const flipped = augmentPacked(batch, packParams([plainParams(box, true)]), 6, null, 'js');
  for (let y = 0; y < 6; y++) for (let x = 0; x < 6; x++) for (let c = 0; c < 3; c++) {
    assert.equal(flipped[(y * 6 + x) * 3 + c], batch.data[(y * 6 + 5 - x) * 3 + c]);
  }
});

test('the native kernel computes the same bytes as the JS pipeline (RGB and gray, every op, odd sizes)', () => {
  assert.equal(augmentEngine(), 'native', `the native addon with the augment kernel is not built: ${nativeStatus().error ?? 'rebuild it with node scripts/build-native.mjs'}`);
  // sizes and blur strengths that take every branch of the resize and of the box blur (radius beyond half the image)
  const cases: Array<[ImageBatch, number, number]> = [
    [randomBatch(40, 13, 17, 3, 1), 11, 4],
    [randomBatch(40, 28, 28, 1, 2), 32, 4],
    [randomBatch(24, 30, 23, 3, 3), 7, 4],
    [randomBatch(8, 5, 7, 3, 4), 24, 4],
    [randomBatch(12, 40, 40, 3, 5), 4, 9],
    [randomBatch(6, 70, 60, 3, 6), 64, 12],
  ];
  for (const [batch, S, maxSigma] of cases) {
    const cfg = { ...cfgFor(S), blurSigma: [0.1, maxSigma] as [number, number] };
    const rng = new Rng(S, 'native-vs-js');
    const params: ViewParams[] = [];
    const src: number[] = [];
    for (let j = 0; j < 3 * batch.n; j++) {
      const p = sampleViewParams(rng, batch.h, batch.w, MOCOV3_VIEWS[j % 2]!, cfg);
      // every op taken often, and the extremes of the factors
      if (j % 3 === 0) Object.assign(p, { jitter: true, gray: j % 6 === 0, blur: true, solarize: j % 4 === 0, hue: j % 5 === 0 ? 0.5 : -0.5, brightness: 0, contrast: 2.5 });
      params.push(p);
      src.push(rng.int(batch.n));
    }
    const packed = packParams(params, src);
    for (const lut of [null, normalizeLut(MEAN, STD)]) {
      const js = augmentPacked(batch, packed, S, lut, 'js');
      const native = augmentPacked(batch, packed, S, lut, 'native');
      assert.equal(maxAbsDiff(js, native), 0, `${batch.h}x${batch.w}x${batch.c} -> ${S}`);
    }
  }
});

test('the native kernel refuses a blur sigma that is no number or past 1e6 (the box radius overflowed: a crash)', () => {
  const batch = randomBatch(2, 8, 8, 3, 9);
  const cfg = cfgFor(8);
  for (const sigma of [1e10, Number.NaN, Infinity, -1]) {
    const p = sampleViewParams(new Rng(1, 'sigma'), 8, 8, MOCOV3_VIEWS[0]!, cfg);
    Object.assign(p, { blur: true, sigma });
    assert.throws(() => augmentPacked(batch, packParams([p], [0]), 8, null, 'native'), /augment: a blur sigma that is not a number from 0 to 1e6/, String(sigma));
  }
  // the largest taken: a flat image, the same bytes as the JS pipeline
  const p = sampleViewParams(new Rng(1, 'sigma'), 8, 8, MOCOV3_VIEWS[0]!, cfg);
  Object.assign(p, { blur: true, sigma: 1e6 });
  const packed = packParams([p], [0]);
  assert.equal(maxAbsDiff(augmentPacked(batch, packed, 8, null, 'js'), augmentPacked(batch, packed, 8, null, 'native')), 0);
});

test('the native kernel off the main thread works on the parameters it was given: arrays the caller changes meanwhile do not reach it', async () => {
  const batch = randomBatch(16, 20, 20, 3, 10);
  const cfg = cfgFor(12);
  const rng = new Rng(3, 'async-copy');
  const params = Array.from({ length: 64 }, () => Object.assign(sampleViewParams(rng, 20, 20, MOCOV3_VIEWS[0]!, cfg), { blur: true }));
  const packed = packParams(params, params.map((_, j) => j % 16));
  const lut = normalizeLut(MEAN, STD);
  const want = augmentPacked(batch, packed, 12, lut, 'native');
  const pending = augmentPackedAsync(batch, packed, 12, lut);
  // checked, then changed: a crop box far outside its image, another table, another sigma
  for (let j = 0; j < 64; j++) {
    packed[j * 20 + 1] = 1e6;
    packed[j * 20 + 16] = 500;
  }
  lut.fill(7);
  assert.equal(maxAbsDiff(await pending, want), 0);
});

test('twoViewArrays: raw pixels are 0..255 integers; normalised ones are their table values', () => {
  const batch = randomBatch(5, 9, 9, 3, 8);
  const cfg = cfgFor(9);
  const raw = twoViewArrays(batch, cfg, 3, 1, true);
  const norm = twoViewArrays(batch, cfg, 3, 1);
  const lut = normalizeLut(MEAN, STD);
  for (const [r, n] of [[raw.v1, norm.v1], [raw.v2, norm.v2]] as const) {
    for (let i = 0; i < r.length; i++) {
      assert.ok(Number.isInteger(r[i]) && r[i]! >= 0 && r[i]! <= 255);
      assert.equal(n[i], lut[(i % 3) * 256 + r[i]!]);
    }
  }
});

test('evalView of images larger than S: the centre square Resize(S*256/224) + CenterCrop(S) keeps', () => {
  assert.deepEqual(evalBox(256, 256, 224), { top: 16, left: 16, height: 224, width: 224 });
  assert.deepEqual(evalBox(256, 300, 224), { top: 16, left: 38, height: 224, width: 224 });
  // an offset of x.5 rounds as torchvision's int(round(...)) does, half to even: 1.5 -> 2, 9.5 -> 10
  assert.deepEqual(evalBox(24, 40, 16), { top: 2, left: 10, height: 21, width: 21 });
  assert.deepEqual(evalBox(28, 28, 32), { top: 0, left: 0, height: 28, width: 28 });
  assert.deepEqual(evalBox(32, 32, 32), { top: 0, left: 0, height: 32, width: 32 });
  // the 256 px cache of an image folder at S = 224: the view is exactly the centre 224 x 224 pixels
  const batch = randomBatch(2, 37, 37, 3, 21);
  const S = 32; // 37 * 224/256 = 32.4 -> a 32 px centre crop, no resampling
  const got = evalView(batch, cfgFor(S)).dataSync();
  const lut = normalizeLut(MEAN, STD);
  for (let i = 0; i < 2; i++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++) {
    const v = batch.data[((i * 37 + y + 2) * 37 + x + 2) * 3 + c]!;
    assert.equal(got[((i * S + y) * S + x) * 3 + c], lut[c * 256 + v]);
  }
});

test('twoViewArraysAsync: the same arrays as twoViewArrays, several jobs in flight at once', async () => {
  const batch = randomBatch(24, 20, 18, 3, 30);
  const cfg = cfgFor(16);
  const jobs = [0, 1, 2, 3].map((step) => twoViewArraysAsync(batch, cfg, 5, step));
  const got = await Promise.all(jobs);
  got.forEach((g, step) => {
    const want = twoViewArrays(batch, cfg, 5, step);
    assert.deepEqual(g.v1, want.v1);
    assert.deepEqual(g.v2, want.v2);
  });
  await assert.rejects(twoViewArraysAsync({ ...batch, n: 25 }, cfg, 5, 0), RangeError);
});
