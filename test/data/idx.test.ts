import { tf } from '../helpers/tf.ts';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DataError, loadDataset, type DataSpec } from '../../src/data/index.ts';
import { FASHION_MNIST_DIR, fashionMnistFound, loadFashionMnist } from '../../src/data/fashion_mnist.ts';
import { encodeIdx, parseIdx, readIdxFile } from '../../src/data/idx.ts';

void tf; // the data loaders use no tensors; the helper import keeps the test setup uniform

const root = await mkdtemp(join(tmpdir(), 'moco3-idx-'));
after(() => rm(root, { recursive: true, force: true }));

/** An IDX file written byte by byte: magic 0x00000803 / 0x00000801, big-endian sizes, data. */
function idxBytes(magic: number, dims: number[], data: number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length + data.length);
  b.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  Buffer.from(data).copy(b, 4 + 4 * dims.length);
  return b;
}

const spec = (path: string, extra: Partial<DataSpec> = {}): DataSpec => ({ name: 'fashion-mnist', path, trainSize: null, testSize: null, seed: 0, ...extra });

/** A tiny Fashion-MNIST directory: 3 train / 2 test images of 2x2; train gzipped, test raw. */
async function writeTinySet(dir: string, over: Partial<Record<'trainImages' | 'trainLabels' | 'testImages' | 'testLabels', Buffer>> = {}) {
  await mkdir(dir, { recursive: true });
  const files = {
    trainImages: idxBytes(0x803, [3, 2, 2], [0, 1, 2, 3, 10, 11, 12, 13, 250, 251, 252, 255]),
    trainLabels: idxBytes(0x801, [3], [9, 0, 4]),
    testImages: idxBytes(0x803, [2, 2, 2], [5, 6, 7, 8, 100, 101, 102, 103]),
    testLabels: idxBytes(0x801, [2], [1, 2]),
    ...over,
  };
  await writeFile(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(files.trainImages));
  await writeFile(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(files.trainLabels));
  await writeFile(join(dir, 't10k-images-idx3-ubyte'), files.testImages);
  await writeFile(join(dir, 't10k-labels-idx1-ubyte'), files.testLabels);
}

test('parseIdx reads dims (big-endian) and data', () => {
  const a = parseIdx(idxBytes(0x803, [2, 1, 3], [1, 2, 3, 4, 5, 6]), 'x', 0x803);
  assert.deepEqual(a.dims, [2, 1, 3]);
  assert.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5, 6]);
  const big = parseIdx(idxBytes(0x801, [258], new Array(258).fill(7)), 'y', 0x801);
  assert.deepEqual(big.dims, [258]); // 0x00000102: a little-endian reader would see 0x02010000
  // encodeIdx writes the same bytes as the hand-made header
  assert.deepEqual(Buffer.from(encodeIdx([2, 1, 3], Uint8Array.from([1, 2, 3, 4, 5, 6]))), idxBytes(0x803, [2, 1, 3], [1, 2, 3, 4, 5, 6]));
});

test('gzipped and raw files read the same', async () => {
  const raw = idxBytes(0x803, [2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
  await writeFile(join(root, 'a.idx'), raw);
  await writeFile(join(root, 'a.idx.gz'), gzipSync(raw));
  const x = await readIdxFile(join(root, 'a.idx'), 0x803);
  const y = await readIdxFile(join(root, 'a.idx.gz'), 0x803);
  assert.deepEqual(x.dims, [2, 2, 2]);
  assert.deepEqual(Array.from(y.data), Array.from(x.data));
  // a file inflated in many pieces (the reader takes 64 KiB at a time) arrives whole, in one array of its length
  const dims = [5, 210, 199];
  const pixels = Array.from({ length: 5 * 210 * 199 }, (_, i) => (i * 7919 + (i >> 9)) % 251);
  const big = idxBytes(0x803, dims, pixels);
  await writeFile(join(root, 'big.idx.gz'), gzipSync(big));
  const z = await readIdxFile(join(root, 'big.idx.gz'), 0x803);
  assert.deepEqual(z.dims, dims);
  assert.equal(z.data.length, pixels.length);
  assert.ok(Buffer.from(z.data).equals(big.subarray(16)), 'the same bytes as the raw file');
  assert.equal(z.data.buffer.byteLength, big.length, 'no array larger than the file');
  // gzipped files whose data is not the length their header gives
  const lengthOf = async (name: string, bytes: Buffer) => {
    await writeFile(join(root, name), gzipSync(bytes));
    return readIdxFile(join(root, name), 0x803).then(
      () => 'read',
      (e: Error) => (e instanceof DataError ? e.message : `not a DataError: ${e}`),
    );
  };
  assert.match(await lengthOf('long.gz', Buffer.concat([big, Buffer.alloc(70000)])), /long\.gz: wrong length \(too long\): header says 5x210x199 = 208950 bytes of data, file has 278950$/);
  assert.match(await lengthOf('short.gz', big.subarray(0, 100016)), /short\.gz: wrong length \(truncated\): header says 5x210x199 = 208950 bytes of data, file has 100000$/);
  assert.match(await lengthOf('header.gz', big.subarray(0, 10)), /header\.gz: truncated IDX header \(10 of 16 bytes\)$/);
  assert.match(await lengthOf('empty.gz', Buffer.alloc(0)), /empty\.gz: truncated IDX file \(0 bytes, no header\)$/);
  assert.match(await lengthOf('magic.gz', idxBytes(0x801, [3], [1, 2, 3])), /magic\.gz: bad magic 0x00000801/);
  // a header asking for more than the file could inflate to (deflate's 1032:1 at most) is answered without allocating it
  assert.match(await lengthOf('huge.gz', idxBytes(0x803, [65536, 65536, 2], [1, 2])), /wrong length \(truncated\): header says 65536x65536x2 = 8589934592 bytes of data, file has 2$/);
  const before = process.memoryUsage().arrayBuffers;
  assert.match(await lengthOf('large.gz', idxBytes(0x803, [1000, 1000, 200], [1, 2])), /wrong length \(truncated\): header says 1000x1000x200 = 200000000 bytes of data, file has 2$/);
  assert.ok(process.memoryUsage().arrayBuffers - before < 50e6, 'no 200 MB array for a 50-byte file');
  // within that ratio of a 4.5 MB file (random bytes: they do not compress) but past the largest array Node
  // makes (2^32 bytes): the same line, not a RangeError naming no file
  const noise = randomBytes(4_500_000);
  const wide = Buffer.concat([idxBytes(0x803, [1, 65536, 65537], []), noise]);
  assert.match(await lengthOf('wide.gz', wide), /wide\.gz: wrong length \(truncated\): header says 1x65536x65537 = 4295032832 bytes of data, file has 4500000$/);
});

test('a tiny Fashion-MNIST directory loads into splits, with names, mean/std and subsets', async () => {
  const dir = join(root, 'tiny');
  await writeTinySet(dir);
  const ds = await loadDataset(spec(dir));
  assert.equal(ds.name, 'fashion-mnist');
  assert.equal(ds.numClasses, 10);
  assert.equal(ds.classNames[9], 'Ankle boot');
  assert.equal(ds.classNames[0], 'T-shirt/top');
  assert.equal(ds.source, dir);
  assert.deepEqual(ds.mean, [0.286, 0.286, 0.286]);
  assert.deepEqual(ds.std, [0.353, 0.353, 0.353]);
  assert.deepEqual([ds.train.n, ds.train.height, ds.train.width, ds.train.channels], [3, 2, 2, 1]);
  assert.deepEqual(Array.from(ds.train.images), [0, 1, 2, 3, 10, 11, 12, 13, 250, 251, 252, 255]);
  assert.deepEqual(Array.from(ds.train.labels), [9, 0, 4]);
  assert.deepEqual(Array.from(ds.test.images), [5, 6, 7, 8, 100, 101, 102, 103]);
  assert.deepEqual(Array.from(ds.test.labels), [1, 2]);
  const sub = await loadDataset(spec(dir, { trainSize: 2, testSize: 1 }));
  assert.deepEqual(Array.from(sub.train.images), [0, 1, 2, 3, 10, 11, 12, 13]);
  // a subset holds its own images only, not the whole file (gzipped train, raw test)
  assert.deepEqual([sub.train.images.buffer.byteLength, sub.test.images.buffer.byteLength], [8, 4]);
  assert.deepEqual(Array.from(sub.train.labels), [9, 0]);
  assert.equal(sub.test.n, 1);
  await assert.rejects(loadDataset(spec(dir, { trainSize: 4 })), (e: Error) => e instanceof DataError && /asked for 4 train images \(data\.train_size\), the file has 3$/.test(e.message));
});

async function expectDataError(over: Parameters<typeof writeTinySet>[1], name: string, file: string, pattern: RegExp) {
  const dir = join(root, name);
  await writeTinySet(dir, over);
  await assert.rejects(loadFashionMnist(spec(dir)), (e: Error) => {
    assert.ok(e instanceof DataError, `not a DataError: ${e}`);
    assert.ok(e.message.includes(join(dir, file)), `message does not name ${file}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

test('bad files give a one-line DataError naming the file', async () => {
  await expectDataError({ trainImages: idxBytes(0x801, [3, 2, 2], new Array(12).fill(0)) }, 'magic', 'train-images-idx3-ubyte.gz', /bad magic 0x00000801/);
  await expectDataError({ testLabels: idxBytes(0x803, [2], [1, 2]) }, 'magic2', 't10k-labels-idx1-ubyte', /bad magic 0x00000803/);
  await expectDataError({ testImages: idxBytes(0x803, [2, 2, 2], [5, 6, 7, 8, 100, 101, 102]) }, 'short', 't10k-images-idx3-ubyte', /wrong length \(truncated\)/);
  await expectDataError({ testImages: idxBytes(0x803, [2, 2], []).subarray(0, 10) }, 'header', 't10k-images-idx3-ubyte', /truncated IDX header/);
  await expectDataError({ trainLabels: idxBytes(0x801, [3], [9, 10, 4]) }, 'range', 'train-labels-idx1-ubyte.gz', /label 10 at index 1 is out of range 0\.\.9/);
  await expectDataError({ testLabels: idxBytes(0x801, [3], [1, 2, 3]) }, 'count', 't10k-images-idx3-ubyte', /2 images but .* has 3 labels/);
  // images of no pixels: the file holds nothing to train on (a run folder was made, then the augmentation failed)
  await expectDataError({ trainImages: idxBytes(0x803, [3, 0, 2], []) }, 'zero', 'train-images-idx3-ubyte.gz', /: images of 0x2 pixels: expected at least 1x1$/);
  // a test split of another image size (as many bytes): read as scrambled images of the train split's size
  await expectDataError({ testImages: idxBytes(0x803, [2, 1, 4], [5, 6, 7, 8, 100, 101, 102, 103]) }, 'shape', 't10k-images-idx3-ubyte', /: images of 1x4 pixels, the train split's \(.*train-images-idx3-ubyte\.gz\) are 2x2: expected the same size$/);
  // images of no columns, and a test split as tall as the train split's but wider
  await expectDataError({ trainImages: idxBytes(0x803, [3, 2, 0], []) }, 'zero-w', 'train-images-idx3-ubyte.gz', /: images of 2x0 pixels: expected at least 1x1$/);
  await expectDataError({ testImages: idxBytes(0x803, [2, 2, 4], new Array(16).fill(3)) }, 'wider', 't10k-images-idx3-ubyte', /: images of 2x4 pixels, the train split's \(.*train-images-idx3-ubyte\.gz\) are 2x2: expected the same size$/);
  // a label out of range past the subset asked for: the file is damaged all the same
  const dir = join(root, 'range-past');
  await writeTinySet(dir, { trainLabels: idxBytes(0x801, [3], [9, 0, 12]) });
  await assert.rejects(loadFashionMnist(spec(dir, { trainSize: 2 })), (e: Error) => e instanceof DataError && e.message === `${join(dir, 'train-labels-idx1-ubyte.gz')}: label 12 at index 2 is out of range 0..9`);
  // a split of no images (its labels none too): every command failed later, naming no file
  await expectDataError({ testImages: idxBytes(0x803, [0, 2, 2], []), testLabels: idxBytes(0x801, [0], []) }, 'empty', 't10k-images-idx3-ubyte', /: holds no images: expected at least 1$/);
});

test('raw (not gzipped) files: a byte too many or too few, a header cut short, a magic of no dimensions, a first byte that is half a gzip signature', async () => {
  const raw = idxBytes(0x803, [2, 1, 3], [1, 2, 3, 4, 5, 6]);
  const read = async (name: string, bytes: Uint8Array, magic?: number) => {
    await writeFile(join(root, name), bytes);
    return readIdxFile(join(root, name), magic).then(
      (a) => `read ${a.dims.join('x')}`,
      (e: Error) => (e instanceof DataError ? e.message : `not a DataError: ${e}`),
    );
  };
  assert.equal(await read('raw-long', Buffer.concat([raw, Buffer.from([9])]), 0x803), `${join(root, 'raw-long')}: wrong length (too long): header says 2x1x3 = 6 bytes of data, file has 7`);
  assert.equal(await read('raw-short', raw.subarray(0, raw.length - 1), 0x803), `${join(root, 'raw-short')}: wrong length (truncated): header says 2x1x3 = 6 bytes of data, file has 5`);
  assert.equal(await read('raw-head', raw.subarray(0, 15), 0x803), `${join(root, 'raw-head')}: truncated IDX header (15 of 16 bytes)`);
  assert.equal(await read('raw-3', raw.subarray(0, 3), 0x803), `${join(root, 'raw-3')}: truncated IDX file (3 bytes, no header)`);
  // any magic 0x000008NN is taken when none is asked for, but not NN = 0: an array of no dimensions
  assert.equal(await read('raw-any', raw), 'read 2x1x3');
  assert.equal(await read('raw-0d', idxBytes(0x800, [], [7])), `${join(root, 'raw-0d')}: bad magic 0x00000800 (expected 0x000008NN (unsigned bytes)); not an IDX file of this kind`);
  // 0x1f then no 0x8b: no gzip data, so read as the file it is (here of a bad magic)
  assert.equal(await read('raw-1f', Buffer.from([0x1f, 0x00, 0x08, 0x03, 0, 0, 0, 0]), 0x803), `${join(root, 'raw-1f')}: bad magic 0x1f000803 (expected 0x00000803); not an IDX file of this kind`);
});

test('the class names are Fashion-MNIST\'s, in the order of its labels 0..9', async () => {
  const dir = join(root, 'names');
  await writeTinySet(dir);
  const ds = await loadFashionMnist(spec(dir));
  assert.deepEqual(ds.classNames, ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
});

test('a truncated gzip file and missing files are DataErrors with the paths', async () => {
  const dir = join(root, 'gz');
  await writeTinySet(dir);
  const gz = gzipSync(idxBytes(0x803, [3, 2, 2], new Array(12).fill(1)));
  await writeFile(join(dir, 'train-images-idx3-ubyte.gz'), gz.subarray(0, gz.length - 9));
  await assert.rejects(loadFashionMnist(spec(dir)), (e: Error) => e instanceof DataError && e.message === `${join(dir, 'train-images-idx3-ubyte.gz')}: corrupt or truncated gzip data (unexpected end of file)`);

  const missing = join(root, 'missing');
  await writeTinySet(missing);
  await rm(join(missing, 't10k-labels-idx1-ubyte'));
  await assert.rejects(loadFashionMnist(spec(missing)), (e: Error) =>
    e instanceof DataError && e.message.includes(join(missing, 't10k-labels-idx1-ubyte.gz')) && e.message.includes(join(missing, 't10k-labels-idx1-ubyte')));
  const nowhere = join(root, 'does-not-exist');
  await assert.rejects(
    loadFashionMnist(spec(nowhere)),
    (e: Error) => e instanceof DataError && e.message === `fashion-mnist: directory ${nowhere} not found (give the folder of the four *-ubyte(.gz) files, or run: moco3 data fetch fashion-mnist)`,
  );
  await assert.rejects(loadDataset({ ...spec(missing), name: 'cifar10' as 'synthetic' }), DataError);
});

test('the installed Fashion-MNIST: 60000/10000 images of 28x28, labels 0..9, pixel mean/std as declared', async () => {
  // the suite needs it (.ci/run installs it): a machine without it fails here, not skips
  assert.ok(existsSync(FASHION_MNIST_DIR), `${FASHION_MNIST_DIR}: not installed (apt-get install dataset-fashion-mnist)`);
  const ds = await loadDataset({ name: 'fashion-mnist', path: null, trainSize: null, testSize: null, seed: 0 });
  assert.equal(ds.source, FASHION_MNIST_DIR);
  assert.deepEqual([ds.train.n, ds.train.height, ds.train.width, ds.train.channels], [60000, 28, 28, 1]);
  assert.deepEqual([ds.test.n, ds.test.height, ds.test.width], [10000, 28, 28]);
  assert.equal(ds.train.images.length, 60000 * 784);
  const counts = new Array(10).fill(0);
  for (const y of ds.train.labels) counts[y]++;
  assert.deepEqual(counts, new Array(10).fill(6000)); // the training set is balanced
  assert.equal(ds.train.labels[0], 9); // the first training image is an ankle boot
  let s = 0;
  let s2 = 0;
  const px = ds.train.images;
  const n = px.length;
  for (let i = 0; i < n; i++) {
    s += px[i]!;
    s2 += px[i]! * px[i]!;
  }
  const mean = s / n / 255;
  const std = Math.sqrt(s2 / n / 65025 - mean * mean);
  assert.ok(Math.abs(mean - ds.mean[0]) < 5e-4, `mean ${mean}`);
  assert.ok(Math.abs(std - ds.std[0]) < 5e-4, `std ${std}`);
});

test('fashionMnistFound: a folder holding all four files (any spelling the reader takes), not a partial download', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moco3-fm-found-'));
  try {
    await writeFile(join(dir, 'train-images-idx3-ubyte.gz.part'), 'partial');
    assert.equal(fashionMnistFound(dir), null);
    for (const f of ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte', 't10k-images.idx3-ubyte.gz']) await writeFile(join(dir, f), 'x');
    assert.equal(fashionMnistFound(dir), null, 'three of four');
    await writeFile(join(dir, 't10k-labels-idx1-ubyte.gz'), 'x');
    assert.equal(fashionMnistFound(dir), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a Fashion-MNIST path below a file names the file, not "directory not found" with a fetch that could not fill it', async () => {
  const file = join(root, 'a-file');
  await writeFile(file, 'x');
  const spec = { name: 'fashion-mnist', path: join(file, 'fm'), trainSize: null, testSize: null, seed: 0 } as DataSpec;
  await assert.rejects(loadFashionMnist(spec), (e: Error) => e instanceof DataError && e.message === `fashion-mnist: ${join(file, 'fm')}: ${file} is a file, not a folder: give the folder of the four *-ubyte(.gz) files`);
});
