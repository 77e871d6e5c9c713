/**
 * src/data/pil.ts and the view pipeline against Pillow 9.4 + torchvision 0.14, byte for byte: the
 * fixture is written by tools/pil_reference.py (random images, each op alone and whole views in the
 * official order, ToTensor + Normalize).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import * as pil from '../../src/data/pil.ts';
import { augmentPacked, normalizeLut, packParams, sampleCropBox, type ViewParams } from '../../src/data/augment.ts';
import { Rng } from '../../src/engine/rng.ts';

interface Fixture {
  versions: Record<string, string>;
  images: Array<{ h: number; w: number; c: number; data: string }>;
  ops: Array<{ image: number; op: string; factor?: number; box?: number[]; size?: number; out: string }>;
  views: Array<{ image: number; size: number; params: Omit<ViewParams, 'crop'> & { top: number; left: number; height: number; width: number }; out: string }>;
  normalize: { mean: number[]; std: number[]; table: string };
  crops: Array<{ h: number; w: number; n: number; pairs: Record<string, number>; mean_top: number; mean_left: number }>;
  eval_crops: Array<{ h: number; w: number; c: number; data: string; size: number; out: string }>;
}

const fx = JSON.parse(gunzipSync(readFileSync(new URL('./fixture/pil-reference.json.gz', import.meta.url))).toString()) as Fixture;
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const images = fx.images.map((im) => ({ ...im, px: bytes(im.data) }));

/** Index and value of the first difference, for the failure message. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): string {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `at ${i}: ${a[i]} vs ${b[i]}`;
  return 'equal';
}

function runOp(op: Fixture['ops'][number]): Uint8Array {
  const im = images[op.image]!;
  const len = im.h * im.w * im.c;
  const x = im.px.slice();
  const f = op.factor ?? 0;
  switch (op.op) {
    case 'brightness': pil.adjustBrightness(x, len, f); return x;
    case 'contrast': pil.adjustContrast(x, len, im.c, f); return x;
    case 'saturation': pil.adjustSaturation(x, len, im.c, f); return x;
    case 'hue': pil.adjustHue(x, len, im.c, f); return x;
    case 'gray': pil.toGrayscale(x, len, im.c); return x;
    case 'solarize': pil.solarize(x, len); return x;
    case 'hflip': {
      const out = new Uint8Array(len);
      for (let y = 0; y < im.h; y++) for (let xx = 0; xx < im.w; xx++) for (let c = 0; c < im.c; c++) {
        out[(y * im.w + xx) * im.c + c] = x[(y * im.w + im.w - 1 - xx) * im.c + c]!;
      }
      return out;
    }
    case 'blur': {
      pil.gaussianBlur(x, im.h, im.w, im.c, f);
      return x;
    }
    case 'resized_crop': {
      const [top, left, h, w] = op.box!;
      const S = op.size!;
      const out = new Uint8Array(S * S * im.c);
      pil.resizedCrop(x, 0, im.w, im.c, top!, left!, h!, w!, S, out, new Uint8Array(S * Math.max(S, h!) * im.c));
      return out;
    }
    default: throw new Error(`unknown op ${op.op}`);
  }
}

test(`every single op equals Pillow ${fx.versions.pillow} / torchvision ${fx.versions.torchvision} byte for byte`, () => {
  const bad: string[] = [];
  const counts = new Map<string, number>();
  for (const op of fx.ops) {
    counts.set(op.op, (counts.get(op.op) ?? 0) + 1);
    const got = runOp(op);
    const want = bytes(op.out);
    const d = firstDiff(got, want);
    if (d !== 'equal') bad.push(`${op.op}(image ${op.image}, ${op.factor ?? op.box?.join(',') ?? ''} -> ${op.size ?? ''}): ${d}`);
  }
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${fx.ops.length} ops differ`);
  for (const name of ['brightness', 'contrast', 'saturation', 'hue', 'blur', 'resized_crop', 'gray', 'solarize', 'hflip']) {
    assert.ok((counts.get(name) ?? 0) >= 20, `fixture covers ${name}`);
  }
});

test('whole views in the official order (crop, jitter in random order, gray, blur, solarize, flip) equal torchvision', () => {
  const bad: string[] = [];
  for (const [k, v] of fx.views.entries()) {
    const im = images[v.image]!;
    const { top, left, height, width, ...rest } = v.params;
    const params: ViewParams = { ...rest, crop: { top, left, height, width } };
    const batch = { data: im.px, n: 1, h: im.h, w: im.w, c: im.c };
    const got = augmentPacked(batch, packParams([params]), v.size, null, 'js');
    const want = bytes(v.out);
    // the pipeline writes 3 channels; a gray image's are copies
    const got1 = im.c === 3 ? got : got.filter((_, i) => i % 3 === 0);
    const d = firstDiff(got1, want);
    if (d !== 'equal') bad.push(`view ${k} (image ${v.image}): ${d}`);
  }
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${fx.views.length} views differ`);
  assert.ok(fx.views.some((v) => v.params.jitter && v.params.blur && v.params.solarize && v.params.flip), 'fixture has views with every op');
});

test('Resize(size) + CenterCrop(size), the image-folder cache, equals torchvision byte for byte', () => {
  assert.ok(fx.eval_crops.length >= 24);
  const kinds = new Set<string>();
  for (const e of fx.eval_crops) {
    const got = pil.resizeCenterCrop(bytes(e.data), e.w, e.h, e.c, e.size);
    const want = bytes(e.out);
    assert.equal(firstDiff(got, want), 'equal', `${e.w}x${e.h}x${e.c} -> ${e.size}`);
    kinds.add(e.size < Math.min(e.w, e.h) ? 'shrink' : e.size > Math.min(e.w, e.h) ? 'enlarge' : 'keep');
  }
  assert.deepEqual([...kinds].sort(), ['enlarge', 'keep', 'shrink']);
});

test('Resize + CenterCrop by hand: halving averages 1-3-3-1; odd margins round half to even', () => {
  // 8x4 grey, columns 0..7 = 0, 16, ..., 112, rows equal: Resize(2) -> 4x2, each output column the
  // (1, 3, 3, 1)/8 average of four inputs (two at the edges, renormalised), then the centre 2 columns
  const w = 8;
  const h = 4;
  const src = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) src[y * w + x] = 16 * x;
  // output columns of the 4-wide resize: 0: (0*3 + 16*3 + 32*1)/7 (input -1 is cut), 1: (16 + 3*32 + 3*48 + 64)/8, ...
  const col = (xx: number) => Math.round((16 * (2 * xx - 1) * 1 + 16 * 2 * xx * 3 + 16 * (2 * xx + 1) * 3 + 16 * (2 * xx + 2) * 1) / 8);
  assert.deepEqual(Array.from(pil.resizeCenterCrop(src, w, h, 1, 2)), [col(1), col(2), col(1), col(2)]);
  // no resize (the shorter side is already the size): the centre crop alone, left = round(5 / 2) = 2 (half to even)
  const wide = new Uint8Array(7 * 2).map((_, i) => i);
  assert.deepEqual(Array.from(pil.resizeCenterCrop(wide, 7, 2, 1, 2)), [2, 3, 9, 10]);
  const wider = new Uint8Array(9 * 2).map((_, i) => i); // round(7 / 2) = 4
  assert.deepEqual(Array.from(pil.resizeCenterCrop(wider, 9, 2, 1, 2)), [4, 5, 13, 14]);
});

test('ToTensor + Normalize table equals torchvision float32 for every byte value', () => {
  const want = new Float32Array(Buffer.from(fx.normalize.table, 'base64').buffer.slice(0));
  const got = normalizeLut(fx.normalize.mean, fx.normalize.std);
  assert.equal(firstDiff(got, want), 'equal');
});

test('hue shift is numpy uint8 arithmetic: truncate toward zero, wrap', () => {
  assert.equal(pil.hueShift(-0.05), 244); // np.uint8(-12.75)
  assert.equal(pil.hueShift(-0.1), 231); // np.uint8(-25.5)
  assert.equal(pil.hueShift(0.1), 25);
  assert.equal(pil.hueShift(0), 0);
});

test("Pillow's box radius for a Gaussian of std sigma (3 passes): hand-computed values", () => {
  // sigma 2: sigma2 = 4/3, L = sqrt(17) = 4.1231, l = 1, a = 3 * (2 - 4) / (6 * (4/3 - 4)) = 0.375
  assert.ok(Math.abs(pil.boxRadiusFor(2) - 1.375) < 1e-6);
  // sigma 0.1: l = 0, a = (0 - 0.01) / (6 * (0.01/3 - 1)) = 0.0016722
  assert.ok(Math.abs(pil.boxRadiusFor(0.1) - 0.01 / (6 * (1 - 0.01 / 3))) < 1e-7);
});

/** Total variation distance between two histograms given as counts. */
function tv(a: Map<string, number>, na: number, b: Map<string, number>, nb: number): number {
  let d = 0;
  for (const k of new Set([...a.keys(), ...b.keys()])) d += Math.abs((a.get(k) ?? 0) / na - (b.get(k) ?? 0) / nb);
  return d / 2;
}

test('RandomResizedCrop boxes follow torchvision get_params in distribution (square, wide, and fallback-heavy images)', () => {
  assert.equal(fx.crops.length, 4);
  for (const ref of fx.crops) {
    const rng = new Rng(7, 'crop-distribution', ref.h, ref.w);
    const n = 20000;
    const pairs = new Map<string, number>();
    const hs = new Map<string, number>();
    const ws = new Map<string, number>();
    let top = 0;
    let left = 0;
    for (let i = 0; i < n; i++) {
      const b = sampleCropBox(rng, ref.h, ref.w, [0.08, 1]);
      pairs.set(`${b.height},${b.width}`, (pairs.get(`${b.height},${b.width}`) ?? 0) + 1);
      hs.set(`${b.height}`, (hs.get(`${b.height}`) ?? 0) + 1);
      ws.set(`${b.width}`, (ws.get(`${b.width}`) ?? 0) + 1);
      top += b.top;
      left += b.left;
    }
    const refPairs = new Map(Object.entries(ref.pairs));
    const refH = new Map<string, number>();
    const refW = new Map<string, number>();
    for (const [k, v] of refPairs) {
      const [h, w] = k.split(',');
      refH.set(h!, (refH.get(h!) ?? 0) + v);
      refW.set(w!, (refW.get(w!) ?? 0) + v);
    }
    const what = `${ref.h}x${ref.w}`;
    // two samples of 20000 from the same law differ by about 0.02 on these marginals
    assert.ok(tv(hs, n, refH, ref.n) < 0.045, `${what}: heights, TV ${tv(hs, n, refH, ref.n)}`);
    assert.ok(tv(ws, n, refW, ref.n) < 0.045, `${what}: widths, TV ${tv(ws, n, refW, ref.n)}`);
    assert.ok(tv(pairs, n, refPairs, ref.n) < 0.12, `${what}: (height, width), TV ${tv(pairs, n, refPairs, ref.n)}`);
    // the fallback (the whole image, or its centre at the clamped ratio) as often as torchvision takes it
    const full = (m: Map<string, number>, N: number) => ([...m].filter(([k]) => k === `${ref.h},${ref.w}`).reduce((a, [, v]) => a + v, 0)) / N;
    assert.ok(Math.abs(full(pairs, n) - full(refPairs, ref.n)) < 0.015, `${what}: whole-image crops ${full(pairs, n)} vs ${full(refPairs, ref.n)}`);
    assert.ok(Math.abs(top / n - ref.mean_top) < 0.05 * ref.h + 0.1 && Math.abs(left / n - ref.mean_left) < 0.05 * ref.w + 0.1, `${what}: offsets`);
  }
});

test('resampleCoeffs: no two (inSize, outSize) pairs share a cache entry (1 -> 65537 and 2 -> 1 once met as one number)', () => {
  const wide = pil.resampleCoeffs(1, 65537);
  assert.equal(wide.bounds.length / 2, 65537);
  assert.equal(pil.resampleCoeffs(2, 1).bounds.length / 2, 1, 'one output pixel, not the 65537 of the pair cached first');
});
