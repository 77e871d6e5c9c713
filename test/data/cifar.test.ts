import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadDataset } from '../../src/data/index.ts';
import { CIFAR, cifarFound } from '../../src/data/cifar.ts';
import { DataError } from '../../src/data/types.ts';
import { cifarRecords as records, tar } from '../helpers/archives.ts';
import { tempDir } from '../helpers/tmp.ts';


const spec = (name: 'cifar10' | 'cifar100', path: string) => ({ name, path, trainSize: null, testSize: null, seed: 0 });

test('CIFAR-10 from the extracted folder: 3073-byte records, planar RGB to HWC, labels', async () => {
  const root = tempDir('moco3-cifar-');
  const dir = join(root, 'cifar-10-batches-bin');
  mkdirSync(dir);
  for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), records(3, 1, b));
  writeFileSync(join(dir, 'test_batch.bin'), records(4, 1, 9));
  const ds = await loadDataset(spec('cifar10', root));
  assert.equal(ds.train.n, 15);
  assert.equal(ds.test.n, 4);
  assert.equal(ds.numClasses, 10);
  assert.equal(ds.classNames[0], 'airplane');
  // the per-channel statistics of the training set the views are normalised by, as the CIFAR-10 recipes publish them
  assert.deepEqual([ds.mean, ds.std], [[0.4914, 0.4822, 0.4465], [0.247, 0.2435, 0.2616]]);
  // image 4 of train = record 1 of data_batch_2 (seed 2): label (1+2)%10, pixel p channel c = (c*1024+p)*7 + 1*13 + 2
  assert.equal(ds.train.labels[4], 3);
  for (const [p, c] of [[0, 0], [5, 1], [1023, 2], [500, 2]] as const) {
    assert.equal(ds.train.images[4 * 3072 + p * 3 + c], ((c * 1024 + p) * 7 + 13 + 2) % 256, `pixel ${p} channel ${c}`);
  }
  assert.deepEqual([...ds.test.labels], [9, 0, 1, 2]);
});

test('CIFAR planes are R, G, B in that order: each lands in its own HWC channel, from the folder and from the archive', async () => {
  // one record whose three planes differ everywhere: R = p mod 256, G = 255 - (p mod 256), B = (3 p + 1) mod 256
  const record = (labelBytes: number, label: number) => {
    const r = new Uint8Array(labelBytes + 3072);
    r[labelBytes - 1] = label;
    for (let p = 0; p < 1024; p++) {
      r[labelBytes + p] = p % 256;
      r[labelBytes + 1024 + p] = 255 - (p % 256);
      r[labelBytes + 2048 + p] = (3 * p + 1) % 256;
    }
    return r;
  };
  const expectPixels = (images: Uint8Array, at: number, what: string) => {
    for (const p of [0, 1, 37, 300, 1023]) {
      assert.deepEqual([...images.subarray(at * 3072 + p * 3, at * 3072 + p * 3 + 3)], [p % 256, 255 - (p % 256), (3 * p + 1) % 256], `${what}: pixel ${p}`);
    }
  };
  const root = tempDir('moco3-cifar-');
  const dir = join(root, 'cifar-10-batches-bin');
  mkdirSync(dir);
  for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), b === 2 ? Buffer.concat([records(1, 1, 2), record(1, 7)]) : records(1, 1, b));
  writeFileSync(join(dir, 'test_batch.bin'), record(1, 4));
  const ds = await loadDataset(spec('cifar10', root));
  // train image 2 is record 1 of data_batch_2
  assert.deepEqual([ds.train.labels[2], ds.test.labels[0]], [7, 4]);
  expectPixels(ds.train.images, 2, 'cifar10 folder, train');
  expectPixels(ds.test.images, 0, 'cifar10 folder, test');
  const archive = join(tempDir('moco3-cifar-'), 'cifar-100-binary.tar.gz');
  writeFileSync(archive, gzipSync(tar({ 'cifar-100-binary/train.bin': Buffer.concat([records(2, 2, 0), record(2, 42)]), 'cifar-100-binary/test.bin': record(2, 0) })));
  const hundred = await loadDataset(spec('cifar100', archive));
  assert.equal(hundred.train.labels[2], 42);
  expectPixels(hundred.train.images, 2, 'cifar100 archive, train');
  expectPixels(hundred.test.images, 0, 'cifar100 archive, test');
});

test('CIFAR-100 straight from the .tar.gz: the fine label is the class', async () => {
  const root = tempDir('moco3-cifar-');
  const archive = join(root, 'cifar-100-binary.tar.gz');
  writeFileSync(archive, gzipSync(tar({ 'cifar-100-binary/train.bin': records(6, 2, 95), 'cifar-100-binary/test.bin': records(2, 2, 0) })));
  const ds = await loadDataset(spec('cifar100', archive));
  assert.equal(ds.numClasses, 100);
  assert.deepEqual([ds.mean, ds.std], [[0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]]);
  assert.deepEqual([...ds.train.labels], [95, 96, 97, 98, 99, 0]);
  assert.equal(ds.train.images[3072 + 3 * 10 + 1], ((1024 + 10) * 7 + 13 + 95) % 256);
  // the fine labels' names, as the dataset's fine_label_names.txt lists them: alphabetical, one per label
  assert.equal(ds.classNames.length, 100);
  assert.deepEqual(ds.classNames, [...ds.classNames].sort());
  assert.equal(new Set(ds.classNames).size, 100);
  assert.deepEqual([ds.classNames[0], ds.classNames[39], ds.classNames[95], ds.classNames[99]], ['apple', 'keyboard', 'whale', 'worm']);
  // the folder that holds the archive works too
  const again = await loadDataset(spec('cifar100', root));
  assert.equal(again.train.n, 6);
  // a coarse label past the 20 superclasses: misaligned records, refused as a fine label would be
  const bad = records(2, 2, 0);
  bad[3074] = 20;
  const other = join(tempDir('moco3-cifar-'), 'cifar-100-binary.tar.gz');
  writeFileSync(other, gzipSync(tar({ 'cifar-100-binary/train.bin': records(6, 2, 95), 'cifar-100-binary/test.bin': bad })));
  await assert.rejects(loadDataset(spec('cifar100', other)), /test\.bin: record 1 has coarse label 20, outside 0\.\.19 \(not CIFAR-100's binary records\?\)$/);
});

test('a truncated batch, a label out of range and a missing folder give one-line errors naming the file', async () => {
  const root = tempDir('moco3-cifar-');
  for (let b = 1; b <= 5; b++) writeFileSync(join(root, `data_batch_${b}.bin`), records(2, 1, b));
  writeFileSync(join(root, 'test_batch.bin'), records(2, 1, 0).subarray(0, 3073 + 100));
  await assert.rejects(loadDataset(spec('cifar10', root)), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /test_batch\.bin: 3173 bytes is not a whole number of 3073-byte cifar10 records; copy it again from where it came$/);
    return true;
  });
  // in the folder `data fetch` unpacks: the command that unpacks it again
  const fetched = join(tempDir('moco3-cifar-'), 'cifar-10-batches-bin');
  cpSync(root, fetched, { recursive: true });
  await assert.rejects(
    loadDataset(spec('cifar10', dirname(fetched))),
    new RegExp(`test_batch\\.bin: 3173 bytes is not a whole number of 3073-byte cifar10 records; \`moco3 data fetch cifar10 --dir ${dirname(fetched)}\` unpacks it again$`),
  );
  // an empty batch: no whole number of records either (it read as a batch of none)
  writeFileSync(join(root, 'test_batch.bin'), records(2, 1, 0));
  writeFileSync(join(root, 'data_batch_3.bin'), new Uint8Array(0));
  await assert.rejects(loadDataset(spec('cifar10', root)), (e: Error) => e instanceof DataError && e.message === `${root}: data_batch_3.bin: 0 bytes is not a whole number of 3073-byte cifar10 records; copy it again from where it came`);
  const emptyInArchive = join(tempDir('moco3-cifar-'), 'cifar-10-binary.tar.gz');
  writeFileSync(emptyInArchive, gzipSync(tar({ ...Object.fromEntries([1, 2, 4, 5].map((b) => [`cifar-10-batches-bin/data_batch_${b}.bin`, records(2, 1, b)])), 'cifar-10-batches-bin/data_batch_3.bin': new Uint8Array(0), 'cifar-10-batches-bin/test_batch.bin': records(2, 1, 0) })));
  await assert.rejects(loadDataset(spec('cifar10', emptyInArchive)), (e: Error) => e instanceof DataError && e.message === `${emptyInArchive}: data_batch_3.bin: 0 bytes is not a whole number of 3073-byte cifar10 records`);
  writeFileSync(join(root, 'data_batch_3.bin'), records(2, 1, 3));
  const bad = records(2, 1, 0);
  bad[3073] = 10;
  writeFileSync(join(root, 'test_batch.bin'), bad);
  await assert.rejects(loadDataset(spec('cifar10', root)), /test_batch\.bin: record 1 has label 10, outside 0\.\.9/);
  // in a later file of the split, the record is counted from the start of that file, not of the split
  writeFileSync(join(root, 'test_batch.bin'), records(2, 1, 0));
  const bad4 = records(2, 1, 4);
  bad4[3073] = 11;
  writeFileSync(join(root, 'data_batch_4.bin'), bad4);
  await assert.rejects(loadDataset(spec('cifar10', root)), (e: Error) => e instanceof DataError && e.message === `${root}: data_batch_4.bin: record 1 has label 11, outside 0..9`);
  await assert.rejects(loadDataset(spec('cifar10', join(root, 'nowhere'))), /cifar10: no cifar-10-batches-bin\/ or cifar-10-binary\.tar\.gz under .*nowhere/);
});

test('the archive and the extracted folder give the same splits: files in any order, records across read and inflate pieces, subsets', async () => {
  const root = tempDir('moco3-cifar-');
  const dir = join(root, 'cifar-10-batches-bin');
  mkdirSync(dir);
  // data_batch_1 spans two folder reads (1024 records each); every file spans several 64 KiB inflated pieces
  const batches: Record<string, Uint8Array> = {};
  for (let b = 1; b <= 5; b++) batches[`data_batch_${b}.bin`] = records(b === 1 ? 1030 : 21 + b, 1, b);
  batches['test_batch.bin'] = records(40, 1, 9);
  for (const [f, bytes] of Object.entries(batches)) writeFileSync(join(dir, f), bytes);
  // the official archive lists its files out of order, with a readme and the folder itself
  const order = ['readme.html', 'data_batch_4.bin', 'test_batch.bin', 'data_batch_1.bin', 'batches.meta.txt', 'data_batch_3.bin', 'data_batch_5.bin', 'data_batch_2.bin'];
  const entries = Object.fromEntries(order.map((f) => [`cifar-10-batches-bin/${f}`, batches[f] ?? Uint8Array.from(Buffer.from(`${f}\n`))]));
  const archive = join(root, 'cifar-10-binary.tar.gz');
  writeFileSync(archive, gzipSync(tar(entries)));
  const fromFolder = await loadDataset(spec('cifar10', dir));
  const fromArchive = await loadDataset(spec('cifar10', archive));
  assert.equal(fromFolder.train.n, 1030 + 23 + 24 + 25 + 26);
  for (const k of ['train', 'test'] as const) {
    assert.ok(Buffer.from(fromArchive[k].images).equals(Buffer.from(fromFolder[k].images)), `${k} images`);
    assert.deepEqual([...fromArchive[k].labels], [...fromFolder[k].labels], `${k} labels`);
  }
  // against the records themselves: train image 1031 is record 1 of data_batch_2, pixel p channel c
  assert.equal(fromFolder.train.labels[1031], (1 + 2) % 10);
  assert.equal(fromFolder.train.images[1031 * 3072 + 100 * 3 + 2], ((2 * 1024 + 100) * 7 + 13 + 2) % 256);
  assert.equal(fromFolder.train.images[1029 * 3072 + 1023 * 3 + 1], ((1024 + 1023) * 7 + 1029 * 13 + 1) % 256);
  // a subset holds its own images only
  for (const source of [dir, archive]) {
    const sub = await loadDataset({ ...spec('cifar10', source), trainSize: 1040, testSize: 7 });
    assert.deepEqual([sub.train.n, sub.train.images.buffer.byteLength, sub.test.images.buffer.byteLength], [1040, 1040 * 3072, 7 * 3072], source);
    assert.ok(Buffer.from(sub.train.images).equals(Buffer.from(fromFolder.train.images.subarray(0, 1040 * 3072))), source);
    // more than the split holds: the config key that asked is named
    await assert.rejects(loadDataset({ ...spec('cifar10', source), testSize: 1000 }), (e: Error) => e instanceof DataError && / test split has \d+ images, 1000 asked for \(data\.test_size\)$/.test(e.message));
    // one more than it holds is refused too; all of it is not
    await assert.rejects(loadDataset({ ...spec('cifar10', source), trainSize: 1129 }), (e: Error) => e instanceof DataError && e.message === `${source}: train split has 1128 images, 1129 asked for (data.train_size)`);
    assert.equal((await loadDataset({ ...spec('cifar10', source), trainSize: 1128 })).train.n, 1128);
  }
});

test('a bad label past the first 1,024 records (a folder file is read 1,024 at a time) is named by its record number in the file', async () => {
  const root = tempDir('moco3-cifar-');
  // CIFAR-10: data_batch_1 of 1,031 records, the last with label 10
  const ten = join(root, 'ten');
  mkdirSync(ten);
  const batch1 = records(1031, 1, 1);
  batch1[1030 * 3073] = 10;
  const tenFiles: Record<string, Uint8Array> = { 'data_batch_1.bin': batch1, 'test_batch.bin': records(2, 1, 0) };
  for (let b = 2; b <= 5; b++) tenFiles[`data_batch_${b}.bin`] = records(2, 1, b);
  for (const [f, bytes] of Object.entries(tenFiles)) writeFileSync(join(ten, f), bytes);
  await assert.rejects(loadDataset(spec('cifar10', ten)), (e: Error) => e instanceof DataError && e.message === `${ten}: data_batch_1.bin: record 1030 has label 10, outside 0..9`);
  const tenArchive = join(root, 'cifar-10-binary.tar.gz');
  writeFileSync(tenArchive, gzipSync(tar(Object.fromEntries(Object.entries(tenFiles).map(([f, b]) => [`cifar-10-batches-bin/${f}`, b])))));
  await assert.rejects(loadDataset(spec('cifar10', tenArchive)), (e: Error) => e instanceof DataError && e.message === `${tenArchive}: data_batch_1.bin: record 1030 has label 10, outside 0..9`);
  // CIFAR-100: train.bin of 1,031 records, the last with coarse label 20
  const hundred = join(root, 'hundred');
  mkdirSync(hundred);
  const train = records(1031, 2, 0);
  train[1030 * 3074] = 20;
  writeFileSync(join(hundred, 'train.bin'), train);
  writeFileSync(join(hundred, 'test.bin'), records(2, 2, 0));
  await assert.rejects(loadDataset(spec('cifar100', hundred)), (e: Error) => e instanceof DataError && e.message === `${hundred}: train.bin: record 1030 has coarse label 20, outside 0..19 (not CIFAR-100's binary records?)`);
  const hundredArchive = join(root, 'cifar-100-binary.tar.gz');
  writeFileSync(hundredArchive, gzipSync(tar({ 'cifar-100-binary/train.bin': train, 'cifar-100-binary/test.bin': records(2, 2, 0) })));
  await assert.rejects(loadDataset(spec('cifar100', hundredArchive)), (e: Error) => e instanceof DataError && e.message === `${hundredArchive}: train.bin: record 1030 has coarse label 20, outside 0..19 (not CIFAR-100's binary records?)`);
});

test("files of the same name in the archive: the dataset folder's are read, the last copy at one path (as tar extracts), two elsewhere refused", async () => {
  const root = tempDir('moco3-cifar-');
  const dir = join(root, 'cifar-10-batches-bin');
  mkdirSync(dir);
  const batches: Record<string, Uint8Array> = {};
  for (let b = 1; b <= 5; b++) batches[`data_batch_${b}.bin`] = records(3 + b, 1, b);
  batches['test_batch.bin'] = records(4, 1, 9);
  for (const [f, bytes] of Object.entries(batches)) writeFileSync(join(dir, f), bytes);
  const fromFolder = await loadDataset(spec('cifar10', dir));
  const zeros = new Uint8Array(3073 * 6);
  const real = (prefix: string): [string, Uint8Array, string][] => Object.entries(batches).map(([f, b]) => [`${prefix}cifar-10-batches-bin/${f}`, b, '0']);
  const same = async (entries: [string, Uint8Array, string][], what: string) => {
    const archive = join(root, `${what}.tar.gz`);
    writeFileSync(archive, gzipSync(tar(entries)));
    const ds = await loadDataset(spec('cifar10', archive));
    for (const k of ['train', 'test'] as const) {
      assert.ok(Buffer.from(ds[k].images).equals(Buffer.from(fromFolder[k].images)), `${what}: ${k} images`);
      assert.deepEqual([...ds[k].labels], [...fromFolder[k].labels], `${what}: ${k} labels`);
    }
  };
  // a backup beside the batches, before and after them
  await same([['backup/data_batch_1.bin', zeros, '0'], ...real('')], 'backup-first');
  await same([...real(''), ['old/test_batch.bin', zeros, '0']], 'backup-last');
  // names written with ./, as `tar -C dir .` writes them
  await same([['./backup/data_batch_1.bin', zeros, '0'], ...real('./')], 'dot-slash');
  // a copy at the top beside the dataset's folder: the folder's
  await same([['data_batch_1.bin', zeros, '0'], ...real('')], 'top-and-folder');
  // `tar -r` added a newer copy at the same path: the last is the file
  await same([['cifar-10-batches-bin/data_batch_2.bin', zeros, '0'], ...real('')], 'appended');
  // the batches at the top, a backup of one in a folder: the top's
  await same([['backup/data_batch_3.bin', zeros, '0'], ...Object.entries(batches).map(([f, b]): [string, Uint8Array, string] => [f, b, '0'])], 'top-and-backup');
  // the batches in a folder of another name: read, when there is one of each
  await same(Object.entries(batches).map(([f, b]): [string, Uint8Array, string] => [`mine/${f}`, b, '0']), 'renamed');
  // two of another folder each, none in the dataset's: refused, naming both
  const two = join(root, 'two.tar.gz');
  writeFileSync(two, gzipSync(tar([['a/data_batch_1.bin', zeros, '0'], ...Object.entries(batches).map(([f, b]): [string, Uint8Array, string] => [`b/${f}`, b, '0'])])));
  await assert.rejects(
    loadDataset(spec('cifar10', two)),
    (e: unknown) => e instanceof DataError && e.message.startsWith(`${two}: 2 entries named data_batch_1.bin (a/data_batch_1.bin, b/data_batch_1.bin) and none at cifar-10-batches-bin/data_batch_1.bin`),
  );
});

test('a truncated or corrupt archive and a file missing from it give one-line errors naming the archive', async () => {
  const root = tempDir('moco3-cifar-');
  const archive = join(root, 'cifar-100-binary.tar.gz');
  const whole = tar({ 'cifar-100-binary/train.bin': records(30, 2, 1), 'cifar-100-binary/test.bin': records(3, 2, 0) });
  writeFileSync(archive, gzipSync(whole.subarray(0, 512 + 20 * 3074)));
  await assert.rejects(loadDataset(spec('cifar100', archive)), (e: unknown) => e instanceof DataError && e.message === `${archive}: truncated tar archive at cifar-100-binary/train.bin`);
  const gz = gzipSync(whole);
  writeFileSync(archive, gz.subarray(0, gz.length - 100));
  await assert.rejects(loadDataset(spec('cifar100', archive)), (e: unknown) => e instanceof DataError && e.message === `${archive}: truncated: the gzip data ends early (unexpected end of file); download it again`);
  writeFileSync(archive, gzipSync(tar({ 'cifar-100-binary/train.bin': records(3, 2, 1) })));
  await assert.rejects(loadDataset(spec('cifar100', archive)), (e: unknown) => e instanceof DataError && e.message === `${archive}: test.bin is missing from the archive`);
  writeFileSync(archive, gzipSync(tar({ 'cifar-100-binary/train.bin': records(3, 2, 1).subarray(0, 5000), 'cifar-100-binary/test.bin': records(3, 2, 0) })));
  await assert.rejects(loadDataset(spec('cifar100', archive)), /train\.bin: 5000 bytes is not a whole number of 3074-byte cifar100 records/);
});

test('a folder holding both the extracted folder and loose batches of its own: the extracted folder is read', async () => {
  const root = tempDir('moco3-cifar-');
  const dir = join(root, 'cifar-10-batches-bin');
  mkdirSync(dir);
  // the extracted folder's test batch has labels 3, 4; the loose one beside it 7, 8
  for (let b = 1; b <= 5; b++) {
    writeFileSync(join(dir, `data_batch_${b}.bin`), records(1, 1, b));
    writeFileSync(join(root, `data_batch_${b}.bin`), records(1, 1, b + 5));
  }
  writeFileSync(join(dir, 'test_batch.bin'), records(2, 1, 3));
  writeFileSync(join(root, 'test_batch.bin'), records(2, 1, 7));
  const ds = await loadDataset(spec('cifar10', root));
  assert.deepEqual([...ds.test.labels], [3, 4]);
  assert.deepEqual([...ds.train.labels], [1, 2, 3, 4, 5]);
  assert.equal(ds.source, dir);
});

test('a data folder that is a file (MOCO3_DATA set to one) is not taken for the archive; a gzip of another name is', async () => {
  const root = tempDir('moco3-cifar-');
  const notes = join(root, 'notes.txt');
  writeFileSync(notes, 'x');
  assert.equal(cifarFound(CIFAR.cifar10, notes), null);
  await assert.rejects(loadDataset(spec('cifar10', notes)), (e: Error) => e instanceof DataError && e.message.includes(`${notes} is a file, not cifar-10-binary.tar.gz or a folder holding it (run: moco3 data fetch cifar10 --dir ${root}; `));
  const tgz = join(root, 'cifar10.tgz');
  writeFileSync(tgz, gzipSync(tar({ 'cifar-10-batches-bin/test_batch.bin': records(2, 1, 0), ...Object.fromEntries([1, 2, 3, 4, 5].map((b) => [`cifar-10-batches-bin/data_batch_${b}.bin`, records(1, 1, b)])) })));
  assert.equal(cifarFound(CIFAR.cifar10, tgz), tgz);
  assert.equal((await loadDataset(spec('cifar10', tgz))).train.n, 5);
  // a path below that file: the file is named, and no fetch into it is offered (fetch refuses such a folder)
  const below = join(notes, 'data');
  await assert.rejects(loadDataset(spec('cifar10', below)), (e: Error) => e instanceof DataError && e.message === `cifar10: ${below}: ${notes} is a file, not a folder: give the archive, its folder, or a folder to fetch it into`);
});
