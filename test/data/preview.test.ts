import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { loadDataset } from '../../src/data/index.ts';
import { augmentConfigFor, augmentPacked, batchViewParams, evalBox, packParams, plainParams } from '../../src/data/augment.ts';
import { batchIndices, gatherBatch } from '../../src/data/sampler.ts';
import { describeView, previewSheet } from '../../src/data/preview.ts';

test('data preview: a PNG of the images and their two views, pixel for pixel the views training computes', async () => {
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 256, testSize: 64, seed: 0, syntheticImageSize: 16 });
  const aug = augmentConfigFor(ds, 16);
  const sheet = await previewSheet(ds, aug, { count: 8, pairs: 3, seed: 1, step: 5, batchSize: 64 });
  const { data, info } = await sharp(sheet.png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.format, 'raw');
  assert.deepEqual([info.width, info.height, info.channels], [sheet.width, sheet.height, 3]);
  assert.equal(sheet.cells.length, 8 * 7);
  // every view cell holds the view, nearest-neighbour scaled by cell / S
  const k = sheet.cell / 16;
  let checked = 0;
  for (const cell of sheet.cells.filter((c) => c.col > 0)) {
    const p = cell.params!;
    const want = augmentPacked(sheet.batch, packParams([p], [cell.row]), 16, null);
    for (let y = 0; y < sheet.cell; y += 3) {
      for (let x = 0; x < sheet.cell; x += 3) {
        for (let ch = 0; ch < 3; ch++) {
          const got = data[((cell.y + y) * info.width + cell.x + x) * 3 + ch];
          assert.equal(got, want[(Math.floor(y / k) * 16 + Math.floor(x / k)) * 3 + ch], `row ${cell.row} col ${cell.col} (${x},${y})`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked > 10000);
  // the source image cell shows the image
  const src = sheet.cells.find((c) => c.col === 0 && c.row === 2)!;
  const s = src.size / 16;
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    assert.equal(data[((src.y + y * s) * info.width + src.x + x * s) * 3], sheet.batch.data[((2 * 16 + y) * 16 + x) * 3]);
  }
  // the recipe's asymmetry is in the captions: every view 1 blurred, no view 1 solarized, some view 2 solarized
  const v1 = sheet.cells.filter((c) => c.col % 2 === 1);
  const v2 = sheet.cells.filter((c) => c.col > 0 && c.col % 2 === 0);
  assert.ok(v1.every((c) => c.caption.includes('blur') && !c.caption.includes('solarize')));
  assert.ok(v2.some((c) => c.caption.includes('solarize')));
  assert.ok(v2.filter((c) => c.caption.includes('blur')).length < v2.length / 2);
  // the first pair is the batch of step 5 as training draws it; a different step gives other images or views
  const other = await previewSheet(ds, aug, { count: 8, pairs: 1, seed: 1, step: 6, batchSize: 64 });
  assert.notDeepEqual(other.views.subarray(0, 100), sheet.views.subarray(0, 100));
});

test("data preview: the rows are the first images of the step's training batch (shuffled by default), captioned with their class; pair p is step + p's draws", async () => {
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 256, testSize: 64, seed: 0, syntheticImageSize: 16 });
  const aug = augmentConfigFor(ds, 16);
  const sheet = await previewSheet(ds, aug, { count: 6, pairs: 2, seed: 3, step: 9, batchSize: 32 });
  // the batch training draws at step 9: train.shuffle's default order, of which the sheet shows the first 6
  const full = gatherBatch(ds.train, batchIndices(9, { n: 256, batchSize: 32, seed: 3, shuffle: true }));
  assert.deepEqual(Array.from(sheet.batch.labels!), Array.from(full.labels!.subarray(0, 6)));
  assert.ok(Buffer.from(sheet.batch.data).equals(Buffer.from(full.data.subarray(0, 6 * 16 * 16 * 3))));
  // each row's source cell is captioned with its image's class name
  const names = sheet.cells.filter((c) => c.col === 0).map((c) => c.caption);
  assert.deepEqual(names, Array.from(full.labels!.subarray(0, 6), (y) => ds.classNames[y]!));
  assert.ok(new Set(names).size > 1, 'rows of more than one class');
  // pair 0 holds step 9's two views of the training batch, pair 1 step 10's
  for (const [pair, step] of [[0, 9], [1, 10]] as const) {
    for (const v of [1, 2] as const) {
      const want = batchViewParams(full, aug, 3, step, v).slice(0, 6);
      const got = sheet.cells.filter((c) => c.col === 1 + 2 * pair + (v - 1)).sort((a, b) => a.row - b.row).map((c) => c.params);
      assert.deepEqual(got, want, `pair ${pair} view ${v}`);
    }
  }
});

for (const [side, S] of [[160, 140], [285, 249]] as const) test(`data preview: a source image larger than the cell (${side} px in a cell of ${S}, as an image folder cached at 256/224 of S) is scaled down into it`, async () => {
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 16, testSize: 8, seed: 0, syntheticImageSize: side });
  const aug = augmentConfigFor(ds, S);
  const sheet = await previewSheet(ds, aug, { count: 2, pairs: 1, seed: 0, step: 0, batchSize: 16 });
  const { data, info } = await sharp(sheet.png).raw().toBuffer({ resolveWithObject: true });
  assert.ok(sheet.cell < side, `cell ${sheet.cell}`);
  for (const src of sheet.cells.filter((c) => c.col === 0)) {
    assert.ok(src.size <= sheet.cell, `size ${src.size} in a cell of ${sheet.cell}`);
    // the margin left of the image and the gap before the first view stay white
    for (const x of [src.x - 1, src.x + src.size + 1]) {
      const o = ((src.y + 10) * info.width + x) * 3;
      assert.deepEqual([...data.subarray(o, o + 3)], [255, 255, 255], `x ${x}`);
    }
  }
});

test('data preview as the run trains: augment.preset none shows the plain resized image twice; train.shuffle false, the batch in order', async () => {
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 256, testSize: 64, seed: 0, syntheticImageSize: 20 });
  const aug = { ...augmentConfigFor(ds, 16), preset: 'none' as const };
  const sheet = await previewSheet(ds, aug, { count: 4, pairs: 2, seed: 1, step: 3, batchSize: 64, shuffle: false });
  // the batch of step 3 unshuffled: its images in order
  const idx = batchIndices(3, { n: 256, batchSize: 64, seed: 1, shuffle: false }).subarray(0, 4);
  assert.deepEqual([...idx], [192, 193, 194, 195]);
  const px = 20 * 20 * 3;
  for (let i = 0; i < 4; i++) assert.deepEqual(sheet.batch.data.subarray(i * px, (i + 1) * px), ds.train.images.subarray(idx[i]! * px, (idx[i]! + 1) * px), `image ${i}`);
  const plain = plainParams(evalBox(20, 20, 16));
  for (const c of sheet.cells.filter((x) => x.col > 0)) {
    assert.deepEqual(c.params, plain, `row ${c.row} col ${c.col}`);
    assert.match(c.caption, /^crop \d+%; no colour op$/);
  }
  // every view of an image is the same
  const S = 16 * 16 * 3;
  for (let j = 4; j < 16; j++) assert.deepEqual(sheet.views.subarray(j * S, (j + 1) * S), sheet.views.subarray((j % 4) * S, ((j % 4) + 1) * S), `view ${j}`);
});

test('data preview: more images asked for than the batch holds shows the batch, each row its own image\'s views', async () => {
  const ds = await loadDataset({ name: 'synthetic', path: null, trainSize: 64, testSize: 16, seed: 0, syntheticImageSize: 16 });
  const aug = augmentConfigFor(ds, 16);
  const sheet = await previewSheet(ds, aug, { count: 8, pairs: 1, seed: 2, step: 3, batchSize: 4 });
  assert.equal(sheet.batch.n, 4);
  assert.deepEqual([...new Set(sheet.cells.map((c) => c.row))], [0, 1, 2, 3]);
  const S = 16 * 16 * 3;
  for (const cell of sheet.cells.filter((c) => c.col > 0)) {
    const want = augmentPacked(sheet.batch, packParams([cell.params!], [cell.row]), 16, null);
    const j = (cell.col - 1) * 4 + cell.row;
    assert.deepEqual(sheet.views.subarray(j * S, (j + 1) * S), want, `row ${cell.row} col ${cell.col}`);
  }
});

test('view captions name the ops', () => {
  const p = { crop: { top: 0, left: 0, height: 8, width: 4 }, jitter: true, order: [0, 1, 2, 3], brightness: 1, contrast: 1, saturation: 1, hue: 0, gray: true, blur: true, sigma: 1.234, solarize: true, flip: true };
  assert.deepEqual(describeView(p, 8, 8), ['crop 50% · flip', 'jitter · gray · blur 1.2 · solarize']);
  assert.deepEqual(describeView({ ...p, sigma: 0.25 }, 8, 8, 1), ['crop 50% · flip', 'jitter · blur 0.25 · solarize']);
  assert.deepEqual(describeView({ ...p, jitter: false, gray: false, blur: false, solarize: false, flip: false }, 8, 8), ['crop 50%', 'no colour op']);
  // the crop's share of the image to the nearest percent: 7 x 5 of 8 x 8 is 54.7%
  assert.deepEqual(describeView({ ...p, crop: { top: 1, left: 2, height: 7, width: 5 }, flip: false }, 8, 8)[0], 'crop 55%');
});
