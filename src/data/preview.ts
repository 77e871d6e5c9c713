/**
 * `moco3 data preview`: a PNG contact sheet of training images and their two augmented views as the
 * training step sees them. Row i is image i of the batch of step `step`; the first pair of columns is
 * exactly the (view 1, view 2) that step feeds the network, further pairs are the draws of the following
 * steps applied to the same images (what later epochs may show). Each view is captioned with the ops it
 * took, so the asymmetry of the recipe is visible: view 1 is always blurred, view 2 rarely blurred and
 * sometimes solarized.
 */
import sharp from 'sharp';
import { augmentPacked, batchViewParams, packParams, type AugmentConfig, type ViewParams } from './augment.ts';
import { batchIndices, gatherBatch } from './sampler.ts';
import type { Dataset, ImageBatch } from './types.ts';

export interface PreviewOptions {
  /** images (rows) */
  count: number;
  /** (view 1, view 2) pairs per image */
  pairs: number;
  seed: number;
  /** training step whose batch and draws are shown first */
  step: number;
  /** batch size of the run (the step's batch is drawn from it) */
  batchSize: number;
  /** the run's train.shuffle: whether a step's batch is drawn from a shuffled order (default true) */
  shuffle?: boolean;
}

export interface PreviewCell {
  row: number;
  /** 0: the source image; 1, 2: view 1 and 2 of pair 0; 3, 4: of pair 1 ... */
  col: number;
  x: number;
  y: number;
  size: number;
  caption: string;
  params?: ViewParams;
}

export interface PreviewSheet {
  png: Buffer;
  width: number;
  height: number;
  cell: number;
  cells: PreviewCell[];
  /** the raw views (0..255 floats, NHWC), view-major: pair p view v image i at ((p*2 + v) * count + i) */
  views: Float32Array;
  batch: ImageBatch;
}

const MARGIN = 10;
const GAP = 8;
const HEADER = 40;
const CAPTION = 28;
const MIN_CELL = 112;

/** The ops a view took, in two short lines (grayscale is not named on gray images: it changes nothing there). */
export function describeView(p: ViewParams, h: number, w: number, c: 1 | 3 = 3): [string, string] {
  const area = Math.round((100 * p.crop.height * p.crop.width) / (h * w));
  const first = `crop ${area}%${p.flip ? ' · flip' : ''}`;
  const ops: string[] = [];
  if (p.jitter) ops.push('jitter');
  if (p.gray && c === 3) ops.push('gray');
  if (p.blur) ops.push(`blur ${p.sigma < 1 ? p.sigma.toFixed(2) : p.sigma.toFixed(1)}`);
  if (p.solarize) ops.push('solarize');
  return [first, ops.length ? ops.join(' · ') : 'no colour op'];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function previewSheet(ds: Dataset, aug: AugmentConfig, opts: PreviewOptions): Promise<PreviewSheet> {
  const { count, pairs } = opts;
  const S = aug.imageSize;
  const split = ds.train;
  const idx = batchIndices(opts.step, { n: split.n, batchSize: Math.min(opts.batchSize, split.n), seed: opts.seed, shuffle: opts.shuffle ?? true }).subarray(0, count);
  const batch = gatherBatch(split, idx);
  const n = batch.n;
  // as training draws them (augment.preset none: the plain resized image, twice)
  const plain = aug.preset === 'none';
  const params: ViewParams[] = [];
  for (let p = 0; p < pairs; p++) {
    for (const view of [1, 2] as const) params.push(...batchViewParams(batch, aug, opts.seed, opts.step + p, view));
  }
  const src = Int32Array.from(params, (_, j) => j % n);
  const views = augmentPacked(batch, packParams(params, src), S, null);

  const k = Math.max(1, Math.ceil(MIN_CELL / S));
  const cell = S * k;
  const cols = 1 + 2 * pairs;
  const width = 2 * MARGIN + cols * cell + (cols - 1) * GAP;
  const height = MARGIN + HEADER + n * (cell + CAPTION) + (n - 1) * GAP + MARGIN;
  const canvas = Buffer.alloc(width * height * 3, 255);
  const cells: PreviewCell[] = [];
  const text: string[] = [];
  const put = (x0: number, y0: number, px: (x: number, y: number, ch: number) => number, w: number, h: number, scale: number) => {
    for (let y = 0; y < h * scale; y++) {
      for (let x = 0; x < w * scale; x++) {
        const o = ((y0 + y) * width + x0 + x) * 3;
        for (let ch = 0; ch < 3; ch++) canvas[o + ch] = px(Math.floor(x / scale), Math.floor(y / scale), ch);
      }
    }
  };
  const colX = (col: number) => MARGIN + col * (cell + GAP);
  const rowY = (row: number) => MARGIN + HEADER + row * (cell + CAPTION + GAP);

  // column titles
  text.push(`<text x="${colX(0) + cell / 2}" y="${MARGIN + 16}" text-anchor="middle" font-size="13" font-weight="bold">image</text>`);
  text.push(`<text x="${colX(0) + cell / 2}" y="${MARGIN + 32}" text-anchor="middle" font-size="11">${esc(`${batch.h}x${batch.w}${batch.c === 1 ? ' gray' : ''}`)}</text>`);
  for (let p = 0; p < pairs; p++) {
    for (const v of [1, 2]) {
      const col = 1 + 2 * p + (v - 1);
      const title = `view ${v}${pairs > 1 ? `, step ${opts.step + p}` : ''}`;
      const sub = plain ? 'augment.preset none' : v === 1 ? 'blur p=1' : 'blur p=.1, solarize p=.2';
      text.push(`<text x="${colX(col) + cell / 2}" y="${MARGIN + 16}" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`);
      text.push(`<text x="${colX(col) + cell / 2}" y="${MARGIN + 32}" text-anchor="middle" font-size="11">${esc(sub)}</text>`);
    }
  }

  const { h, w, c, data } = batch;
  for (let i = 0; i < n; i++) {
    const y0 = rowY(i);
    // the source image, nearest-neighbour scaled into the cell: up by a whole factor, or down to fit (an
    // image folder's cached square is larger than the training size)
    const long = Math.max(h, w);
    const sk = long <= cell ? Math.floor(cell / long) : cell / long;
    // drawn sizes at most the cell (cell / long * long may round above it), source indices inside the image
    const dw = Math.min(cell, Math.round(w * sk));
    const dh = Math.min(cell, Math.round(h * sk));
    const ox = colX(0) + Math.floor((cell - dw) / 2);
    const oy = y0 + Math.floor((cell - dh) / 2);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        const sx = Math.min(w - 1, Math.floor(x / sk));
        const sy = Math.min(h - 1, Math.floor(y / sk));
        const o = ((oy + y) * width + ox + x) * 3;
        for (let ch = 0; ch < 3; ch++) canvas[o + ch] = data[((i * h + sy) * w + sx) * c + (c === 3 ? ch : 0)]!;
      }
    }
    const label = ds.classNames[batch.labels?.[i] ?? -1] ?? '';
    cells.push({ row: i, col: 0, x: ox, y: oy, size: dw, caption: label });
    text.push(`<text x="${colX(0) + cell / 2}" y="${y0 + cell + 13}" text-anchor="middle" font-size="11">${esc(label)}</text>`);
    for (let p = 0; p < pairs; p++) {
      for (let v = 0; v < 2; v++) {
        const j = (p * 2 + v) * n + i;
        const col = 1 + 2 * p + v;
        const base = j * S * S * 3;
        put(colX(col), y0, (x, y, ch) => views[base + (y * S + x) * 3 + ch]!, S, S, k);
        const [l1, l2] = describeView(params[j]!, h, w, c as 1 | 3);
        cells.push({ row: i, col, x: colX(col), y: y0, size: cell, caption: `${l1}; ${l2}`, params: params[j] });
        text.push(`<text x="${colX(col) + cell / 2}" y="${y0 + cell + 12}" text-anchor="middle" font-size="10">${esc(l1)}</text>`);
        text.push(`<text x="${colX(col) + cell / 2}" y="${y0 + cell + 24}" text-anchor="middle" font-size="10">${esc(l2)}</text>`);
      }
    }
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans, Helvetica, Arial, sans-serif" fill="#222">${text.join('')}</g></svg>`;
  const png = await sharp(canvas, { raw: { width, height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .removeAlpha()
    .png()
    .toBuffer();
  return { png, width, height, cell, cells, views, batch };
}
