import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { cacheSideFor, gatherBatch, loadDataset, loadImageFolder, sharpDecoder, type DataSpec, type Dataset, type ImageDecoder, type ImageFolderOptions } from '../../src/data/index.ts';
import { byName, pillowCmykToRgb, pillowGrey16ToRgb } from '../../src/data/imagefolder.ts';
import { FOREIGN_TEMP_STALE_MS } from '../../src/engine/files.ts';
import { resizeCenterCrop } from '../../src/data/pil.ts';
import { DataError } from '../../src/data/types.ts';
import { tempDir } from '../helpers/tmp.ts';

type RGB = [number, number, number];
const RED: RGB = [255, 0, 0];
const GREEN: RGB = [0, 255, 0];
const BLUE: RGB = [0, 0, 255];
const YELLOW: RGB = [255, 255, 0];
const GREY: RGB = [128, 128, 128];

/** w x h RGB pixels: `left` on columns x < split*w, `right` on the rest (or rows, when vertical). */
function twoTone(w: number, h: number, a: RGB, b: RGB, vertical = false): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const c = (vertical ? y < h / 2 : x < w / 2) ? a : b;
      px.set(c, (y * w + x) * 3);
    }
  }
  return px;
}

const raw = (px: Buffer, w: number, h: number, channels: 3 | 4 = 3) => sharp(px, { raw: { width: w, height: h, channels } });
const solid = (w: number, h: number, c: RGB) => raw(twoTone(w, h, c, c), w, h);

/** 3 classes x 4 train images (PNG, JPEG, WebP; landscape, portrait, alpha, EXIF-rotated), and a val split. */
async function makeFolder(): Promise<string> {
  const root = tempDir('moco3-imagefolder-');
  const put = async (rel: string, img: sharp.Sharp) => {
    const file = join(root, rel);
    mkdirSync(join(file, '..'), { recursive: true });
    const ext = rel.split('.').pop()!.toLowerCase();
    const out = ext === 'png' ? img.png() : ext === 'webp' ? img.webp({ lossless: true }) : img.jpeg({ quality: 95 });
    await out.toFile(file);
  };
  const rgba = Buffer.alloc(25 * 25 * 4);
  for (let p = 0; p < 25 * 25; p++) rgba.set([255, 0, 0, 128], p * 4);
  await Promise.all([
    // cat
    put('train/cat/a.png', raw(twoTone(40, 20, RED, BLUE), 40, 20)), // landscape: red left, blue right
    put('train/cat/b.jpg', solid(30, 30, GREEN)),
    put('train/cat/c.png', raw(rgba, 25, 25, 4)), // half-transparent red
    put('train/cat/d.webp', raw(twoTone(20, 50, RED, BLUE, true), 20, 50)), // portrait: red top, blue bottom
    // dog: stored 40x20 red left / blue right with EXIF orientation 6 (90 deg clockwise), which PIL, and so
    // torchvision's loader, does not apply: read red left, blue right
    put('train/dog/a.JPEG', raw(twoTone(40, 20, RED, BLUE), 40, 20).withMetadata({ orientation: 6 })),
    put('train/dog/b.png', solid(64, 48, YELLOW)),
    put('train/dog/c.jpeg', solid(21, 33, BLUE)),
    put('train/dog/d.png', solid(30, 30, GREY)),
    // zebra
    put('train/zebra/a.png', solid(24, 24, GREEN)),
    put('train/zebra/b.png', solid(36, 24, RED)),
    put('train/zebra/c.jpg', solid(24, 40, GREY)),
    put('train/zebra/d.png', solid(50, 50, BLUE)),
    // val: no zebra folder at all, two dogs
    put('val/cat/v1.png', solid(30, 20, RED)),
    put('val/dog/v1.png', solid(20, 30, GREEN)),
    put('val/dog/v2.png', solid(30, 30, BLUE)),
  ]);
  writeFileSync(join(root, 'train', 'cat', 'notes.txt'), 'not an image\n'); // ignored
  return root;
}

function counting(): ImageDecoder & { decodes: number; probes: number } {
  const d = {
    decodes: 0,
    probes: 0,
    probe: (f: string) => {
      d.probes++;
      return sharpDecoder.probe(f);
    },
    decode: (f: string, side: number) => {
      d.decodes++;
      return sharpDecoder.decode(f, side);
    },
  };
  return d;
}

const spec = (path: string | null, over: Partial<DataSpec> = {}): DataSpec => ({
  name: 'imagefolder',
  path,
  trainSize: null,
  testSize: null,
  seed: 0,
  imageSize: 16,
  ...over,
});

const quiet = (over: ImageFolderOptions = {}): ImageFolderOptions => ({ log: null, fallbackCacheRoot: join(tmpdir(), 'moco3-imagefolder-never-used'), ...over });

/** Pixel (x, y) of image i of a split. */
function pixel(ds: Dataset, split: 'train' | 'test', i: number, x: number, y: number): RGB {
  const s = ds[split];
  const b = gatherBatch(s, [i]).data;
  const o = (y * s.width + x) * 3;
  return [b[o]!, b[o + 1]!, b[o + 2]!];
}

function near(got: RGB, want: RGB, tol: number, what: string) {
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c]! - want[c]!) <= tol, `${what}: got [${got}], want [${want}] within ${tol}`);
}

/** Index in the stored (class-interleaved) order of train image k (0..3) of class `label`. */
const trainIndex = (label: number, k: number) => k * 3 + label;

async function rejectsData(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    return true;
  });
}

test('cacheSideFor: 256/224 of the training size, the folder median when smaller, never below S', () => {
  assert.equal(cacheSideFor(224, null), 256);
  assert.equal(cacheSideFor(224, 500), 256);
  assert.equal(cacheSideFor(32, 400), 37);
  assert.equal(cacheSideFor(16, null), 18);
  assert.equal(cacheSideFor(224, 240), 240);
  assert.equal(cacheSideFor(32, 32), 32); // a CIFAR-sized folder is not blown up
  assert.equal(cacheSideFor(224, 100), 224);
});

test('imagefolder: classes, labels, cover-resize, EXIF orientation not applied, alpha, mean/std; the cache is reused without decoding', async () => {
  const root = await makeFolder();
  try {
    const dec = counting();
    const ds = await loadImageFolder(spec(root), quiet({ decoder: dec }));
    assert.equal(ds.name, 'imagefolder');
    assert.equal(ds.source, root);
    assert.deepEqual(ds.classNames, ['cat', 'dog', 'zebra']);
    assert.equal(ds.numClasses, 3);
    assert.equal(dec.decodes, 15);
    assert.ok(dec.probes > 0 && dec.probes <= 12);
    const side = 18; // round(16 * 256 / 224); every image's shorter side is >= 20
    for (const [s, n] of [['train', 12], ['test', 3]] as const) {
      assert.equal(ds[s].n, n);
      assert.deepEqual([ds[s].height, ds[s].width, ds[s].channels], [side, side, 3]);
      assert.equal(ds[s].images.length, n * side * side * 3);
      assert.equal(ds[s].read, undefined);
    }
    // class-interleaved: cat, dog, zebra, cat, dog, zebra, ...
    assert.deepEqual(Array.from(ds.train.labels), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    assert.deepEqual(Array.from(ds.test.labels), [0, 1, 1]);

    // landscape red|blue: the centre crop keeps red on the left, blue on the right
    near(pixel(ds, 'train', trainIndex(0, 0), 1, 9), RED, 2, 'cat/a left');
    near(pixel(ds, 'train', trainIndex(0, 0), 16, 9), BLUE, 2, 'cat/a right');
    near(pixel(ds, 'train', trainIndex(0, 1), 9, 9), GREEN, 8, 'cat/b jpeg green');
    near(pixel(ds, 'train', trainIndex(0, 2), 5, 5), RED, 1, 'cat/c alpha dropped as PIL convert(RGB)');
    // portrait red over blue
    near(pixel(ds, 'train', trainIndex(0, 3), 9, 1), RED, 2, 'cat/d top');
    near(pixel(ds, 'train', trainIndex(0, 3), 9, 16), BLUE, 2, 'cat/d bottom');
    // EXIF orientation 6 is not applied (PIL does not): red left, blue right, as stored
    near(pixel(ds, 'train', trainIndex(1, 0), 1, 9), RED, 30, 'dog/a as stored, left');
    near(pixel(ds, 'train', trainIndex(1, 0), 16, 9), BLUE, 30, 'dog/a as stored, right');
    near(pixel(ds, 'train', trainIndex(1, 1), 0, 0), YELLOW, 1, 'dog/b');
    near(pixel(ds, 'train', trainIndex(2, 3), 17, 17), BLUE, 1, 'zebra/d');
    near(pixel(ds, 'test', 2, 9, 9), BLUE, 1, 'val dog/v2');

    // mean/std: of every train pixel, [0,1] scale
    const px = ds.train.images;
    for (let c = 0; c < 3; c++) {
      let s = 0;
      let q = 0;
      for (let p = c; p < px.length; p += 3) {
        s += px[p]! / 255;
        q += (px[p]! / 255) ** 2;
      }
      const m = s / (px.length / 3);
      assert.ok(Math.abs(ds.mean[c]! - m) < 1e-9, `mean ${c}`);
      assert.ok(Math.abs(ds.std[c]! - Math.sqrt(q / (px.length / 3) - m * m)) < 1e-9, `std ${c}`);
    }

    const cache = join(root, '.moco3-cache');
    assert.deepEqual(readdirSync(cache).sort(), ['train-18.bin', 'val-18.bin']);
    const bytes = readFileSync(join(cache, 'train-18.bin'));
    assert.equal(bytes.toString('latin1', 0, 8), 'MOCO3IMG');

    // second load: read from the cache, nothing decoded or probed
    const again = counting();
    const ds2 = await loadImageFolder(spec(root), quiet({ decoder: again }));
    assert.equal(again.decodes, 0);
    assert.equal(again.probes, 0);
    assert.deepEqual(ds2.train.images, ds.train.images);
    assert.deepEqual(ds2.test.images, ds.test.images);
    assert.deepEqual(ds2.mean, ds.mean);
    assert.deepEqual(ds2.std, ds.std);

    // first N, class-balanced
    const sub = await loadImageFolder(spec(root, { trainSize: 5, testSize: 2 }), quiet({ decoder: again }));
    assert.equal(again.decodes, 0);
    assert.deepEqual(Array.from(sub.train.labels), [0, 1, 2, 0, 1]);
    assert.deepEqual(sub.train.images, ds.train.images.subarray(0, 5 * side * side * 3));
    assert.equal(sub.test.n, 2);
    assert.deepEqual(sub.mean, ds.mean); // the statistics of the whole train split
    await rejectsData(loadImageFolder(spec(root, { trainSize: 13 }), quiet()), /train: has 12 images, 13 asked for \(data\.train_size\)/);

    // a streamed split gives exactly the bytes of the in-memory one
    const streamed = await loadImageFolder(spec(root), quiet({ decoder: again, streamBytes: 100 }));
    assert.equal(again.decodes, 0);
    assert.equal(typeof streamed.train.read, 'function');
    assert.throws(() => streamed.train.images, /streamed from its cache file/);
    assert.deepEqual(streamed.train.labels, ds.train.labels);
    const idx = Int32Array.of(11, 0, 5, 5, 3, 7, 1);
    const a = gatherBatch(ds.train, idx);
    const b = gatherBatch(streamed.train, idx);
    assert.deepEqual(b, a);
    assert.deepEqual(gatherBatch(streamed.test, [2, 0]), gatherBatch(ds.test, [2, 0]));
    assert.throws(() => gatherBatch(streamed.train, [12]), RangeError);
    process.env.MOCO3_STREAM_BYTES = String(ds.test.images.length); // test split fits, train does not
    try {
      const viaEnv = await loadImageFolder(spec(root), quiet({ decoder: again }));
      assert.equal(typeof viaEnv.train.read, 'function');
      assert.equal(viaEnv.test.read, undefined);
    } finally {
      delete process.env.MOCO3_STREAM_BYTES;
    }

    // through loadDataset, with the training size the train loop passes today
    const viaIndex = await loadDataset({ name: 'imagefolder', path: root, trainSize: null, testSize: null, numClasses: 3, seed: 0, syntheticImageSize: 16 });
    assert.deepEqual(viaIndex.train.images, ds.train.images);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("imagefolder: the cache holds torchvision's Resize + CenterCrop of the image; transparent pixels keep their colour", async () => {
  const root = tempDir('moco3-imagefolder-');
  try {
    // 64x40 RGBA: a colour pattern, every other column fully transparent; and a 30x50 palette-free RGB
    const w = 64;
    const h = 40;
    const rgba = Buffer.alloc(w * h * 4);
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const px = [(x * 7 + y * 3) & 255, (x * x + y) & 255, 255 - ((y * 5) & 255)];
        rgb.set(px, (y * w + x) * 3);
        rgba.set([...px, x % 2 ? 0 : 255], (y * w + x) * 4);
      }
    }
    const tall = Buffer.from(new Uint8Array(30 * 50 * 3).map((_, i) => (i * 37) & 255));
    for (const split of ['train', 'val']) {
      mkdirSync(join(root, split, 'a'), { recursive: true });
      mkdirSync(join(root, split, 'b'), { recursive: true });
      await raw(rgba, w, h, 4).png().toFile(join(root, split, 'a', 'x.png'));
      await raw(tall, 30, 50).png().toFile(join(root, split, 'b', 'y.png'));
    }
    const ds = await loadImageFolder(spec(root), quiet());
    const side = 18;
    const cached = (i: number) => gatherBatch(ds.train, [i]).data;
    assert.deepEqual(cached(0), resizeCenterCrop(new Uint8Array(rgb), w, h, 3, side));
    assert.deepEqual(cached(1), resizeCenterCrop(new Uint8Array(tall), 30, 50, 3, side));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imagefolder: a changed folder or a corrupt cache is rebuilt', async () => {
  const root = await makeFolder();
  try {
    await loadImageFolder(spec(root), quiet());
    const trainCache = join(root, '.moco3-cache', 'train-18.bin');
    const before = statSync(trainCache).mtimeMs;

    // touching one train image changes the fingerprint: train is decoded again, val is not
    const f = join(root, 'train', 'dog', 'b.png');
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    const lines: string[] = [];
    const d1 = counting();
    await loadImageFolder(spec(root), quiet({ decoder: d1, log: (l) => lines.push(l) }));
    assert.equal(d1.decodes, 12);
    assert.ok(lines.some((l) => /rebuilding the cache .*train-18\.bin: made from other files/.test(l)), lines.join('\n'));

    // a new image
    await solid(30, 30, RED).png().toFile(join(root, 'train', 'zebra', 'e.png'));
    const d2 = counting();
    const ds = await loadImageFolder(spec(root), quiet({ decoder: d2 }));
    assert.equal(d2.decodes, 13);
    assert.equal(ds.train.n, 13);
    assert.notEqual(statSync(trainCache).mtimeMs, before);

    // truncated: rebuilt, same pixels
    truncateSync(trainCache, statSync(trainCache).size - 100);
    const d3 = counting();
    const ds3 = await loadImageFolder(spec(root), quiet({ decoder: d3 }));
    assert.equal(d3.decodes, 13);
    assert.deepEqual(ds3.train.images, ds.train.images);

    // garbage over the header: rebuilt
    const bytes = readFileSync(trainCache);
    bytes.fill(7, 0, 64);
    writeFileSync(trainCache, bytes);
    const d4 = counting();
    const ds4 = await loadImageFolder(spec(root), quiet({ decoder: d4 }));
    assert.equal(d4.decodes, 13);
    assert.deepEqual(ds4.train.images, ds.train.images);

    // bytes past the images (a padded copy): rebuilt
    writeFileSync(trainCache, Buffer.concat([readFileSync(trainCache), Buffer.alloc(64)]));
    const d5 = counting();
    const ds5 = await loadImageFolder(spec(root), quiet({ decoder: d5 }));
    assert.equal(d5.decodes, 13);
    assert.deepEqual(ds5.train.images, ds.train.images);

    // one byte of the header's channel means changed (the checksum no longer agrees): rebuilt, the means as they were
    const flipped = readFileSync(trainCache);
    flipped[72 + 7] ^= 0x10;
    writeFileSync(trainCache, flipped);
    const d6 = counting();
    const ds6 = await loadImageFolder(spec(root), quiet({ decoder: d6 }));
    assert.equal(d6.decodes, 13);
    assert.deepEqual(ds6.mean, ds.mean);
    assert.deepEqual(readdirSync(join(root, '.moco3-cache')).sort(), ['train-18.bin', 'val-18.bin']); // no temp files left
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imagefolder: the cache side comes from the lower median of 64 shorter sides spread over the whole folder; val/ is read before test/', async () => {
  const root = tempDir('moco3-imagefolder-probe-');
  try {
    // 2 classes x 40 train files, stored class-interleaved (file i: class i % 2, its (i / 2)th); a decoder of our
    // own gives their sizes, so the files hold nothing
    for (const cls of ['a', 'b']) {
      for (const split of ['train', 'val', 'test']) mkdirSync(join(root, split, cls), { recursive: true });
      for (let k = 0; k < 40; k++) writeFileSync(join(root, 'train', cls, `${String(k).padStart(2, '0')}.png`), '');
      writeFileSync(join(root, 'val', cls, 'v.png'), '');
    }
    writeFileSync(join(root, 'test', 'a', 't.png'), '');
    // shorter side 33 for files 64..79 and for 20 of files 0..63, 100 for the rest. 64 samples spread over the
    // 80 files (every 1.25th) take 12 of files 64..79 and leave out files 4, 9, ..., 59: 32 of side 33, whose
    // lower median is 33 (the first 64 files would give 20 of side 33, median 100; the upper median, 100)
    const small = new Set([0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 20, 21, 22, 23]);
    const indexOf = (f: string) => {
      const m = /train\/([ab])\/(\d+)\.png$/.exec(f);
      return m ? 2 * Number(m[2]) + (m[1] === 'b' ? 1 : 0) : -1;
    };
    const decoder: ImageDecoder = {
      probe: async (f) => {
        const i = indexOf(f);
        const side = i >= 64 || small.has(i) ? 33 : 100;
        return { width: side + 7, height: side };
      },
      decode: async (_f, side) => Uint8Array.from({ length: side * side * 3 }, (_, j) => j % 251),
    };
    // training size 32: 256/224 of it is 37, the median 33 is below that and above 32
    const ds = await loadImageFolder(spec(root, { imageSize: 32 }), quiet({ decoder }));
    assert.deepEqual([ds.train.n, ds.train.height, ds.train.width], [80, 33, 33]);
    // val/ and test/ both there: val/ is the eval split (2 images, test/ has 1)
    assert.equal(ds.test.n, 2);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imagefolder: a folder changed since its cache measures its image sizes again; a symlink loop in a class folder is walked once; too large a test_size names that key', async () => {
  const root = tempDir('moco3-imagefolder-changed-');
  try {
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, 'train', cls), { recursive: true });
      mkdirSync(join(root, 'val', cls), { recursive: true });
      for (let k = 0; k < 3; k++) writeFileSync(join(root, 'train', cls, `${k}.png`), '');
      writeFileSync(join(root, 'val', cls, 'v.png'), '');
    }
    // every image's shorter side is `shorter`, by a decoder of our own
    let shorter = 33;
    let probes = 0;
    const decoder: ImageDecoder = {
      probe: async () => {
        probes++;
        return { width: shorter + 5, height: shorter };
      },
      decode: async (_f, side) => Uint8Array.from({ length: side * side * 3 }, (_, j) => (j * 7) % 256),
    };
    // training size 32: the median 33 is below 256/224 of it (37), so the cache is 33 wide
    const first = await loadImageFolder(spec(root, { imageSize: 32 }), quiet({ decoder }));
    assert.deepEqual([first.train.n, first.train.height], [6, 33]);
    // the folder gets a new image and its images are now larger: measured again, the cache side is 37
    writeFileSync(join(root, 'train', 'a', '3.png'), '');
    shorter = 100;
    probes = 0;
    const second = await loadImageFolder(spec(root, { imageSize: 32 }), quiet({ decoder }));
    assert.ok(probes > 0, 'the sizes were measured again');
    assert.deepEqual([second.train.n, second.train.height], [7, 37]);
    // a link in class a to class a itself: its images once, the load not lost in the loop
    symlinkSync(join(root, 'train', 'a'), join(root, 'train', 'a', 'again'));
    const third = await loadImageFolder(spec(root, { imageSize: 32 }), quiet({ decoder }));
    assert.equal(third.train.n, 7);
    await rejectsData(loadImageFolder(spec(root, { imageSize: 32, testSize: 3 }), quiet({ decoder })), new RegExp(`^${join(root, 'val')}: has 2 images, 3 asked for \\(data\\.test_size\\)$`));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imagefolder: labels edited in the cache (its header checksum does not cover them) rebuild it; a copy of the folder keeps its cache', async () => {
  const root = await makeFolder();
  try {
    const ds = await loadImageFolder(spec(root), quiet());
    const trainCache = join(root, '.moco3-cache', 'train-18.bin');
    const bytes = readFileSync(trainCache);
    const H = bytes.readUInt32LE(12);
    const first = bytes.readInt32LE(H);
    bytes.writeInt32LE((first + 1) % 3, H);
    writeFileSync(trainCache, bytes);
    const lines: string[] = [];
    const d1 = counting();
    const ds1 = await loadImageFolder(spec(root), quiet({ decoder: d1, log: (l) => lines.push(l) }));
    assert.equal(d1.decodes, ds.train.n);
    assert.ok(lines.some((l) => /rebuilding the cache .*train-18\.bin: its labels are not those of /.test(l)), lines.join('\n'));
    assert.deepEqual(ds1.train.labels, ds.train.labels);
    assert.equal(ds1.train.labels[0], first);
    // a copy with its dates (cp -a, rsync -a to a node's own disk): other inodes and ctimes, the same cache
    const copy = `${root}-copy`;
    assert.equal(spawnSync('cp', ['-a', root, copy]).status, 0);
    try {
      const d2 = counting();
      const ds2 = await loadImageFolder(spec(copy), quiet({ decoder: d2 }));
      assert.equal(d2.decodes, 0, 'the copy decoded again');
      assert.deepEqual(ds2.train.images, ds.train.images);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("imagefolder: a build removes dead processes' temporary caches of this machine, and another machine's only once it has stopped writing", async () => {
  const root = await makeFolder();
  try {
    const cache = join(root, '.moco3-cache');
    mkdirSync(cache);
    const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    const dead = 2 ** 22 + 12345; // above Linux's pid_max: no such process
    const temps = {
      mineDead: `.val-40.bin.${host}.${dead}.tmp`, // another split and side than this build's
      mineAlive: `.train-18.bin.${host}.${process.ppid}.tmp`,
      otherFresh: `.train-18.bin.node-7.cluster.${process.pid}.tmp`, // a pid that lives here means nothing there
      otherOld: `.train-18.bin.node-8.${dead}.tmp`,
      legacyOld: `.test-18.bin.${dead}.tmp`,
      notOurs: '.train-18.bin.x.tmp.keep',
    };
    for (const name of Object.values(temps)) writeFileSync(join(cache, name), 'partial');
    const old = new Date(Date.now() - FOREIGN_TEMP_STALE_MS - 60_000);
    utimesSync(join(cache, temps.otherOld), old, old);
    utimesSync(join(cache, temps.legacyOld), old, old);
    await loadImageFolder(spec(root), quiet());
    assert.deepEqual(
      readdirSync(cache).sort(),
      [temps.mineAlive, temps.notOurs, temps.otherFresh, 'train-18.bin', 'val-18.bin'].sort(),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imagefolder: the cache goes under the data directory when PATH cannot take it; test/ works as the eval split', async () => {
  const root = await makeFolder();
  const data = tempDir('moco3-data-');
  try {
    // the eval split as test/, its class folder a symlink; an image in a nested folder of a class counts
    mkdirSync(join(data, 'elsewhere'));
    writeFileSync(join(data, 'elsewhere', 'v1.png'), readFileSync(join(root, 'val', 'cat', 'v1.png')));
    mkdirSync(join(root, 'test'));
    symlinkSync(join(data, 'elsewhere'), join(root, 'test', 'cat'));
    rmSync(join(root, 'val'), { recursive: true });
    mkdirSync(join(root, 'train', 'cat', 'more'));
    await solid(30, 30, GREEN).png().toFile(join(root, 'train', 'cat', 'more', 'e.png'));
    writeFileSync(join(root, '.moco3-cache'), 'a file where the cache folder would go'); // not writable as a folder
    const ds = await loadImageFolder(spec(root, { imageSize: 24 }), quiet({ fallbackCacheRoot: join(data, 'cache') }));
    assert.equal(ds.test.n, 1);
    assert.deepEqual(Array.from(ds.train.labels), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
    // round(24 * 256 / 224) = 27, but the median shorter side of the train images is 24: not blown up
    assert.equal(ds.train.height, 24);
    const [hashDir] = readdirSync(join(data, 'cache'));
    assert.match(hashDir!, /^[0-9a-f]{16}$/);
    assert.deepEqual(readdirSync(join(data, 'cache', hashDir!)).sort(), ['test-24.bin', 'train-24.bin']);
    const dec = counting();
    await loadImageFolder(spec(root, { imageSize: 24 }), quiet({ decoder: dec, fallbackCacheRoot: join(data, 'cache') }));
    assert.equal(dec.decodes + dec.probes, 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  }
});

test('a channel that is the same in every train image (std 0) is named before any run starts (the data is still described)', async () => {
  const root = tempDir('moco3-imagefolder-');
  try {
    for (const split of ['train', 'val']) {
      for (const [cls, c] of [['a', [200, 10, 0]], ['b', [30, 120, 0]]] as const) {
        mkdirSync(join(root, split, cls), { recursive: true });
        await solid(20, 20, [...c]).png().toFile(join(root, split, cls, 'x.png'));
      }
    }
    const ds = await loadImageFolder(spec(root), quiet());
    assert.equal(ds.std[2], 0);
    const { checkRunData } = await import('../../src/train/loop.ts');
    assert.throws(
      () => checkRunData(ds, 2),
      (e: unknown) => e instanceof DataError && e.message === `${root}: the blue channel is the same value in every train image (std 0), and the views are divided by that std; use images whose every channel varies`,
    );
    checkRunData({ ...ds, std: [0.1, 0.2, 0.3] }, 2);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("imagefolder: classes are in Python's sorted order (code points), as torchvision's", () => {
  // UTF-16 code units would put U+1F600 (a surrogate pair) before U+FF5A
  const names = ['\u{ff5a}', 'a', '\u{1f600}', 'B', '\u{e9}', 'ab', '\u{ffff}', '\u{10000}'];
  const python = ['B', 'a', 'ab', '\u{e9}', '\u{ff5a}', '\u{ffff}', '\u{10000}', '\u{1f600}']; // sorted() in Python 3
  assert.deepEqual([...names].sort(byName), python);
  assert.equal(byName('x', 'x'), 0);
  // a name is before its own extensions, whatever order they are listed in
  assert.deepEqual(['dog2', 'dogs', 'dog'].sort(byName), ['dog', 'dog2', 'dogs']);
  assert.ok(byName('cat', 'cats') < 0 && byName('cats', 'cat') > 0);
});

test('imagefolder: errors are one-line DataErrors naming the file', async () => {
  const root = await makeFolder();
  try {
    const missing = join(root, 'nowhere');
    await rejectsData(loadImageFolder(spec(missing), quiet()), new RegExp(`${missing}: image folder not found`));
    await rejectsData(loadDataset(spec(missing)), /image folder not found/);
    // no PATH: $MOCO3_DATA/imagenet, as the README's dataset table says
    const saved = process.env.MOCO3_DATA;
    process.env.MOCO3_DATA = join(root, 'data-dir');
    try {
      await rejectsData(loadImageFolder(spec(null), quiet()), new RegExp(`^${join(root, 'data-dir', 'imagenet')}: image folder not found \\(--data imagefolder:PATH, `));
    } finally {
      if (saved === undefined) delete process.env.MOCO3_DATA;
      else process.env.MOCO3_DATA = saved;
    }
    // a relative data.path (as a run's config.yaml records it) read from another folder: where to run from,
    // not a --data flag (moco3 eval takes none)
    const cwd = process.cwd();
    process.chdir(root);
    try {
      await rejectsData(
        loadImageFolder(spec('imgs'), quiet()),
        new RegExp(`^${join(root, 'imgs')}: image folder not found \\(data\\.path imgs is relative, so read from the current folder ${root}: run moco3 eval and --resume from the folder the run was trained from \\(its config\\.yaml records data\\.path as given\\); for a new run, give an absolute path; expected train/`),
      );
      await assert.rejects(loadImageFolder(spec('imgs'), quiet()), (e: Error) => !e.message.includes('--data'));
    } finally {
      process.chdir(cwd);
    }
    await rejectsData(loadImageFolder(spec(join(root, 'train')), quiet()), /train: no train\/ folder/);

    const noVal = tempDir('moco3-imagefolder-');
    mkdirSync(join(noVal, 'train', 'a'), { recursive: true });
    await rejectsData(loadImageFolder(spec(noVal), quiet()), /no val\/ or test\/ folder/);
    mkdirSync(join(noVal, 'val'));
    await rejectsData(loadImageFolder(spec(noVal), quiet()), /train\/a: no images \(\.jpg, \.jpeg, \.png, \.webp, \.tif, \.tiff\) in this class folder/);
    rmSync(join(noVal, 'train', 'a'), { recursive: true });
    await rejectsData(loadImageFolder(spec(noVal), quiet()), /train: no class folders/);
    rmSync(noVal, { recursive: true, force: true });

    await rejectsData(loadImageFolder(spec(root, { numClasses: 1000 }), quiet()), /has 3 class folders, data\.num_classes is 1000 \(set data\.num_classes: 3\)/);

    // one class: refused before any image is decoded or cached (the linear probe cannot tell one class apart)
    const one = tempDir('moco3-imagefolder-');
    for (const [s, n] of [['train', 4], ['val', 2]] as const) {
      mkdirSync(join(one, s, 'cat'), { recursive: true });
      for (let i = 0; i < n; i++) await solid(20, 20, [i * 40, 100, 200 - i * 30]).png().toFile(join(one, s, 'cat', `${i}.png`));
    }
    const oneDecoder = counting();
    await rejectsData(loadImageFolder(spec(one), quiet({ decoder: oneDecoder })), new RegExp(`${join(one, 'train')}: holds one class folder \\(cat\\); at least 2 classes are needed`));
    await rejectsData(loadImageFolder(spec(one, { numClasses: 1 }), quiet()), /holds one class folder \(cat\); at least 2 classes are needed/);
    assert.equal(oneDecoder.decodes + oneDecoder.probes, 0);
    assert.deepEqual(readdirSync(one).sort(), ['train', 'val'], 'no cache folder made');
    rmSync(one, { recursive: true, force: true });

    // a named pipe with an image's name: said, where the decoder's read would wait for a writer for good
    const pipe = join(root, 'train', 'zebra', 'zz.png');
    assert.equal(spawnSync('mkfifo', [pipe]).status, 0);
    await rejectsData(loadImageFolder(spec(root), quiet()), new RegExp(`^${pipe}: a named pipe, not an image file: move it out of the image folder$`));
    rmSync(pipe);

    mkdirSync(join(root, 'val', 'unicorn'));
    await rejectsData(loadImageFolder(spec(root), quiet()), /val\/unicorn: class 'unicorn' is not a class of train\//);
    rmSync(join(root, 'val', 'unicorn'), { recursive: true });

    // garbage bytes with a .jpg name: named, and no cache or temp file is left behind
    const bad = join(root, 'train', 'zebra', 'broken.jpg');
    writeFileSync(bad, Buffer.from('this is not a jpeg at all, just some bytes'));
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18 })), new RegExp(`${bad}: could not be decoded as an image \\(`));
    await rejectsData(loadImageFolder(spec(root), quiet()), new RegExp(`${bad}: could not be decoded`)); // found by the side probe or the decode
    rmSync(bad);
    // formats libvips reads and PIL does not, under an image's name: SVG, AVIF (HEIF)
    const svg = join(root, 'train', 'zebra', 'drawn.png');
    writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="20" height="20" fill="red"/></svg>');
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18 })), new RegExp(`^${svg}: could not be decoded as an image \\(SVG content, which PIL \\(torchvision's loader\\) does not read: it reads JPEG, PNG, WebP, TIFF, GIF, JPEG 2000, PPM\\)$`));
    rmSync(svg);
    const avif = join(root, 'train', 'zebra', 'modern.jpg');
    writeFileSync(avif, await sharp({ create: { width: 20, height: 20, channels: 3, background: 'red' } }).avif().toBuffer());
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18 })), new RegExp(`^${avif}: could not be decoded as an image \\(HEIF content, which PIL`));
    rmSync(avif);
    writeFileSync(bad, Buffer.from('this is not a jpeg at all, just some bytes'));
    // nor the cache folder the failed build made (src/data/imagefolder.ts, openOrBuild)
    const cache = join(root, '.moco3-cache');
    assert.equal(existsSync(cache), false, 'the empty cache folder is removed');
    // under the data directory, the folders the build made; a cache folder that was there stays
    const data = tempDir('moco3-imagefolder-data-');
    writeFileSync(cache, 'a file where the cache folder would go'); // the fallback is used
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18, fallbackCacheRoot: join(data, 'cache') })), new RegExp(`${bad}: could not be decoded`));
    assert.deepEqual(readdirSync(data), []);
    rmSync(cache);
    mkdirSync(cache);
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18 })), new RegExp(`${bad}: could not be decoded`));
    assert.deepEqual(readdirSync(cache), []);
    rmSync(cache, { recursive: true });
    rmSync(data, { recursive: true });
    rmSync(bad);

    // one in val/: found before any train image is decoded (the eval split is cached first), and when the
    // train split is the one that fails, the val cache this load built goes with it
    const badVal = join(root, 'val', 'dog', 'broken.png');
    writeFileSync(badVal, Buffer.from('not a png'));
    const trainDecodes = { n: 0 };
    const watching: ImageDecoder = {
      probe: (f) => sharpDecoder.probe(f),
      decode: (f, side) => {
        if (f.startsWith(join(root, 'train'))) trainDecodes.n++;
        return sharpDecoder.decode(f, side);
      },
    };
    await rejectsData(loadImageFolder(spec(root), quiet({ decoder: watching, side: 18 })), new RegExp(`${badVal}: could not be decoded`));
    assert.equal(trainDecodes.n, 0, 'no train image decoded');
    rmSync(badVal);
    writeFileSync(bad, Buffer.from('this is not a jpeg either'));
    await rejectsData(loadImageFolder(spec(root), quiet({ side: 18 })), new RegExp(`${bad}: could not be decoded`));
    assert.equal(existsSync(cache), false, 'the val cache built before the train split failed is gone, and its folder');
    rmSync(bad);

    // a file that is gone (or unreadable) by the time it is decoded is said to be unreadable, not corrupt
    const gone = join(root, 'train', 'zebra', 'b.png');
    const vanishing: ImageDecoder = {
      probe: (f) => sharpDecoder.probe(f),
      decode: (f, side) => {
        if (f === gone) rmSync(gone);
        return sharpDecoder.decode(f, side);
      },
    };
    await rejectsData(loadImageFolder(spec(root), quiet({ decoder: vanishing, side: 18 })), new RegExp(`${gone}: cannot read the file \\(ENOENT`));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('decoded as PIL reads a file: no EXIF orientation, no colour profile, CMYK (8, 16 bits, an extra sample) and 16-bit grey (with tRNS too) as Pillow converts them', async () => {
  // files sharp wrote (an Adobe CMYK JPEG, a Display P3 PNG with its profile, a 16-bit grey PNG, a JPEG with
  // EXIF orientation 6), and what Pillow 9.4 gives for each: Image.open(f).convert('RGB'), then torchvision's
  // Resize(side) + CenterCrop(side) (test/data/fixture/decode/README.md)
  const dir = join(import.meta.dirname, 'fixture', 'decode');
  const want = JSON.parse(readFileSync(join(dir, 'pil-decoded.json'), 'utf8')) as Record<string, { side: number; rgb: number[] }>;
  // grey16trns.png: 16-bit grey with a transparent grey (tRNS), which libvips reads as grey and alpha
  for (const name of ['cmyk.jpg', 'p3.png', 'grey16.png', 'grey16trns.png', 'exif6.jpg', 'cmyk8.tif', 'cmyk16.tif', 'cmykx8.tif']) {
    const { side, rgb } = want[name]!;
    const got = await sharpDecoder.decode(join(dir, name), side);
    let worst = 0;
    for (let i = 0; i < rgb.length; i++) worst = Math.max(worst, Math.abs(got[i]! - rgb[i]!));
    // libjpeg builds may round an IDCT differently by one level; PNGs are exact
    assert.ok(worst <= (name.endsWith('.jpg') ? 1 : 0), `${name}: largest difference from Pillow ${worst}`);
  }
  // the stored size, not the EXIF-oriented one
  assert.deepEqual(await sharpDecoder.probe(join(dir, 'exif6.jpg')), { width: 40, height: 20 });
  // Pillow's formulas by hand: 194 - 0, 194 - 152, 194 - 171 for CMYK (0, 200, 225, 61); 16 bits clipped
  assert.deepEqual([...pillowCmykToRgb(new Uint8Array([0, 200, 225, 61]), 1)], [194, 42, 23]);
  assert.deepEqual([...pillowGrey16ToRgb(new Uint16Array([0, 200, 255, 256, 65535]), 5)], [0, 0, 0, 200, 200, 200, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
});

test('TIFF is read as torchvision reads it; files torchvision would read and moco3 cannot (BMP, PPM, hidden) are said, not dropped silently', async () => {
  const root = tempDir('moco3-imagefolder-kinds-');
  try {
    for (const split of ['train', 'val']) {
      for (const cls of ['a', 'b']) {
        mkdirSync(join(root, split, cls), { recursive: true });
        await solid(12, 12, cls === 'a' ? RED : BLUE).png().toFile(join(root, split, cls, '1.png'));
      }
    }
    await solid(12, 12, GREEN).tiff().toFile(join(root, 'train', 'a', '2.TIF'));
    writeFileSync(join(root, 'train', 'a', '3.bmp'), 'BM');
    writeFileSync(join(root, 'train', 'b', '4.BMP'), 'BM');
    writeFileSync(join(root, 'train', 'b', '2.ppm'), 'P6\n1 1\n255\n\0\0\0');
    await solid(12, 12, GREEN).png().toFile(join(root, 'val', 'b', '._2.png'));
    writeFileSync(join(root, 'train', 'b', 'notes.txt'), 'not an image, not torchvision\'s either');
    // a hidden class folder (a class to torchvision) and a hidden folder in a class (walked by torchvision)
    mkdirSync(join(root, 'train', '.ipynb_checkpoints', 'deep'), { recursive: true });
    await solid(12, 12, GREEN).png().toFile(join(root, 'train', '.ipynb_checkpoints', 'deep', '1.png'));
    writeFileSync(join(root, 'train', '.ipynb_checkpoints', 'x.ipynb'), '{}');
    mkdirSync(join(root, 'val', 'a', '.thumbs'));
    await solid(12, 12, GREEN).png().toFile(join(root, 'val', 'a', '.thumbs', '1.png'));
    writeFileSync(join(root, 'val', 'a', '.thumbs', '2.bmp'), 'BM');
    const lines: string[] = [];
    const ds = await loadImageFolder(spec(root, { imageSize: 8 }), quiet({ log: (l) => lines.push(l) }));
    assert.equal(ds.train.n, 3, 'the TIFF counts');
    near(pixel(ds, 'train', 2, 4, 4), GREEN, 1, 'the TIFF decoded');
    const said = lines.filter((l) => l.includes('left out'));
    assert.deepEqual(said, [
      `${root}: 7 files that torchvision's ImageFolder would read are left out (in hidden folders: 3, .bmp: 2, .ppm: 1, hidden: 1): moco3 reads .jpg .jpeg .png .webp .tif .tiff and skips hidden files and folders; to include them, convert them (to PNG, say) or rename a hidden one`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('content that libvips reads as PPM or JPEG 2000 (formats PIL reads too) is taken under an image\'s name', async () => {
  // this machine's libvips (sharp's prebuilt one) has no PPM or JPEG 2000 loader: a build that has them is
  // stood in for by reporting those formats for two PNG files, whose pixels libvips then decodes as usual
  const root = tempDir('moco3-imagefolder-formats-');
  const proto = (sharp as unknown as { prototype: { metadata: (this: { options: { input: { file?: string } } }) => Promise<sharp.Metadata> } }).prototype;
  const metadata = proto.metadata;
  const reported: Record<string, string> = { [join(root, 'train', 'a', 'p.png')]: 'ppm', [join(root, 'train', 'b', 'j.png')]: 'jp2k' };
  proto.metadata = async function (this: { options: { input: { file?: string } } }) {
    const m = await metadata.call(this);
    const format = reported[this.options.input.file ?? ''];
    return format ? { ...m, format: format as keyof sharp.FormatEnum } : m;
  };
  try {
    for (const split of ['train', 'val']) {
      for (const cls of ['a', 'b']) {
        mkdirSync(join(root, split, cls), { recursive: true });
        await solid(12, 12, cls === 'a' ? RED : BLUE).png().toFile(join(root, split, cls, '1.png'));
      }
    }
    await solid(12, 12, GREEN).png().toFile(join(root, 'train', 'a', 'p.png'));
    await solid(12, 12, YELLOW).png().toFile(join(root, 'train', 'b', 'j.png'));
    assert.deepEqual(await sharpDecoder.probe(join(root, 'train', 'a', 'p.png')), { width: 12, height: 12 });
    assert.deepEqual(await sharpDecoder.probe(join(root, 'train', 'b', 'j.png')), { width: 12, height: 12 });
    const ds = await loadImageFolder(spec(root, { imageSize: 8 }), quiet());
    assert.equal(ds.train.n, 4);
    const colours = Array.from({ length: 4 }, (_, i) => pixel(ds, 'train', i, 4, 4));
    for (const want of [GREEN, YELLOW]) assert.ok(colours.some((c) => c.every((v, k) => Math.abs(v - want[k]!) <= 1)), `${want} among [${colours.join('], [')}]`);
  } finally {
    proto.metadata = metadata;
    rmSync(root, { recursive: true, force: true });
  }
});

test('a symlink loop in a hidden folder: its files are counted once, and the folder loads', async () => {
  const root = tempDir('moco3-imagefolder-loop-');
  try {
    for (const split of ['train', 'val']) {
      for (const cls of ['a', 'b']) {
        mkdirSync(join(root, split, cls), { recursive: true });
        await solid(12, 12, cls === 'a' ? RED : BLUE).png().toFile(join(root, split, cls, '1.png'));
      }
    }
    // a hidden folder that links to itself (torchvision's walk follows links)
    mkdirSync(join(root, 'train', 'a', '.thumbs'));
    await solid(12, 12, GREEN).png().toFile(join(root, 'train', 'a', '.thumbs', '1.png'));
    symlinkSync('.', join(root, 'train', 'a', '.thumbs', 'loop'));
    const lines: string[] = [];
    const ds = await loadImageFolder(spec(root, { imageSize: 8 }), quiet({ log: (l) => lines.push(l) }));
    assert.equal(ds.train.n, 2);
    assert.deepEqual(
      lines.filter((l) => l.includes('left out')),
      [`${root}: 1 file that torchvision's ImageFolder would read is left out (in hidden folders: 1): moco3 reads .jpg .jpeg .png .webp .tif .tiff and skips hidden files and folders; to include it, convert it (to PNG, say) or rename a hidden one`],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

for (const [sig, code] of [['SIGINT', 130], ['SIGHUP', 129]] as const) test(`${sig} while a cache is built by a command without handlers of its own (data info): exit ${code}, no partial cache, no folder made (a real process)`, { timeout: 30000 }, async () => {
  const root = tempDir('moco3-imagefolder-sigint-');
  try {
    for (const split of ['train', 'val']) {
      for (const cls of ['a', 'b']) {
        mkdirSync(join(root, split, cls), { recursive: true });
        for (let i = 0; i < 4; i++) await solid(12, 12, cls === 'a' ? RED : BLUE).png().toFile(join(root, split, cls, `${i}.png`));
      }
    }
    const marker = join(root, 'decoding');
    // the real loader, with a decoder that takes its time in the train split (cached after val/, the smaller)
    // and says when it has begun: the val cache, complete by then, goes too
    const script = `
      import { writeFileSync } from 'node:fs';
      const { loadImageFolder, sharpDecoder } = await import(${JSON.stringify(join(import.meta.dirname, '..', '..', 'src', 'data', 'imagefolder.ts'))});
      const trainDir = ${JSON.stringify(join(root, 'train'))};
      const decoder = { probe: sharpDecoder.probe, decode: async (f, s) => { if (f.startsWith(trainDir)) { writeFileSync(${JSON.stringify(marker)}, f); await new Promise((r) => setTimeout(r, 300)); } return sharpDecoder.decode(f, s); } };
      await loadImageFolder({ name: 'imagefolder', path: ${JSON.stringify(root)}, trainSize: null, testSize: null, seed: 0, imageSize: 8 }, { decoder, concurrency: 1, log: null });
      console.log('done');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += String(d)));
    const t0 = performance.now();
    while (!existsSync(marker) && performance.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
    child.kill(sig);
    const got = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(got, code, err);
    assert.match(err, new RegExp(`moco3: ${sig}: stopped while caching \\S+train; no partial cache is kept`));
    assert.equal(existsSync(join(root, '.moco3-cache')), false, 'neither the temporary file nor the folder made for it');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
