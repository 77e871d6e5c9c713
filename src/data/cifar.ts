/**
 * CIFAR-10 and CIFAR-100, the official binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
 * CIFAR-10 records are 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major 32x32) in
 * data_batch_1..5.bin and test_batch.bin; CIFAR-100 records are a coarse and a fine label byte + 3072 pixel
 * bytes in train.bin and test.bin (the fine label is the class). Read from the extracted folder or straight
 * from the downloaded .tar.gz, a few MB at a time into each split's arrays, allocated once at their final
 * size: no copy of a file or of the archive is left to the garbage collector (docs/ENGINES.md).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileAbove, shellQuote } from '../engine/files.ts';
import { fileIsGzip } from './gunzip.ts';
import { walkTarGz, type TarFileSink } from './tar.ts';
import { DataError, type DataSpec, type Dataset, type ImageSplit } from './types.ts';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
/** CIFAR-100's fine labels 0-99, as the dataset's fine_label_names.txt names them (alphabetical). */
export const CIFAR100_CLASSES = [
  'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle', 'bicycle', 'bottle', 'bowl',
  'boy', 'bridge', 'bus', 'butterfly', 'camel', 'can', 'castle', 'caterpillar', 'cattle', 'chair',
  'chimpanzee', 'clock', 'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur', 'dolphin',
  'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster', 'house', 'kangaroo', 'keyboard', 'lamp',
  'lawn_mower', 'leopard', 'lion', 'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
  'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree', 'pear', 'pickup_truck',
  'pine_tree', 'plain', 'plate', 'poppy', 'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road',
  'rocket', 'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail', 'snake', 'spider',
  'squirrel', 'streetcar', 'sunflower', 'sweet_pepper', 'table', 'tank', 'telephone', 'television', 'tiger',
  'tractor', 'train', 'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf', 'woman',
  'worm',
];

interface CifarKind {
  name: 'cifar10' | 'cifar100';
  folder: string;
  archive: string;
  labelBytes: number;
  numClasses: number;
  train: string[];
  test: string[];
  mean: [number, number, number];
  std: [number, number, number];
}

export const CIFAR: Record<'cifar10' | 'cifar100', CifarKind> = {
  cifar10: {
    name: 'cifar10',
    folder: 'cifar-10-batches-bin',
    archive: 'cifar-10-binary.tar.gz',
    labelBytes: 1,
    numClasses: 10,
    train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    test: ['test_batch.bin'],
    mean: [0.4914, 0.4822, 0.4465],
    std: [0.247, 0.2435, 0.2616],
  },
  cifar100: {
    name: 'cifar100',
    folder: 'cifar-100-binary',
    archive: 'cifar-100-binary.tar.gz',
    labelBytes: 2,
    numClasses: 100,
    train: ['train.bin'],
    test: ['test.bin'],
    mean: [0.5071, 0.4865, 0.4409],
    std: [0.2673, 0.2564, 0.2762],
  },
};

/** Where moco3 keeps datasets when no path is given. */
/** The data directory: $MOCO3_DATA, or ~/.moco3/data when it is unset or blank. */
export const dataDirectory = (): string => (process.env.MOCO3_DATA?.trim() ? process.env.MOCO3_DATA : join(homedir(), '.moco3', 'data'));
export const DATA_DIR = dataDirectory();

/** A split's arrays (images HWC), or one file's. */
interface Records {
  images: Uint8Array;
  labels: Int32Array;
  n: number;
}

const recordBytes = (kind: CifarKind) => kind.labelBytes + 3072;

/** The number of records in a file of `size` bytes. */
function recordCount(size: number, kind: CifarKind, label: string, todo = ''): number {
  const rec = recordBytes(kind);
  if (!(size > 0) || size % rec !== 0) throw new DataError(`${label}: ${size} bytes is not a whole number of ${rec}-byte ${kind.name} records${todo}`);
  return size / rec;
}

/** Whole records (planar RGB) into `dst` from record `at` on (HWC); `first` is the index of the first one in its file, for errors. */
function decodeRecords(bytes: Uint8Array, kind: CifarKind, label: string, first: number, dst: Records, at: number): void {
  const rec = recordBytes(kind);
  const n = bytes.length / rec;
  for (let i = 0; i < n; i++) {
    const r = bytes.subarray(i * rec, (i + 1) * rec);
    const y = r[kind.labelBytes - 1]!; // CIFAR-100: the fine label
    if (y >= kind.numClasses) throw new DataError(`${label}: record ${first + i} has label ${y}, outside 0..${kind.numClasses - 1}`);
    // CIFAR-100's coarse label is not used, but one past its 20 superclasses says the records are misaligned
    // (or the file is another's) as surely as a fine label would
    if (kind.labelBytes === 2 && r[0]! >= 20) throw new DataError(`${label}: record ${first + i} has coarse label ${r[0]}, outside 0..19 (not CIFAR-100's binary records?)`);
    dst.labels[at + i] = y;
    const px = r.subarray(kind.labelBytes);
    const out = dst.images.subarray((at + i) * 3072, (at + i + 1) * 3072);
    for (let p = 0; p < 1024; p++) {
      out[p * 3] = px[p]!;
      out[p * 3 + 1] = px[1024 + p]!;
      out[p * 3 + 2] = px[2048 + p]!;
    }
  }
}

/**
 * A split of files holding `counts` records, one after the other, cut to its first `limit` images: its
 * arrays, allocated once at their final size, and where each file's records go (`take` of them from
 * record `at` on; take 0 for a file past the limit).
 */
function planSplit(counts: number[], limit: number | null, what: string, label: string): { dst: Records; places: { at: number; take: number }[] } {
  const total = counts.reduce((a, c) => a + c, 0);
  if (limit !== null && limit > total) throw new DataError(`${label}: ${what} split has ${total} images, ${limit} asked for (data.${what}_size)`);
  const n = limit ?? total;
  let at = 0;
  const places = counts.map((c) => {
    const place = { at, take: Math.min(c, n - at) };
    at += place.take;
    return place;
  });
  return { dst: { images: new Uint8Array(n * 3072), labels: new Int32Array(n), n }, places };
}

const asSplit = (r: Records): ImageSplit => ({ ...r, height: 32, width: 32, channels: 3 });

/** Records read per call from an extracted file: the reads go through one buffer of this many. */
const RECORDS_PER_READ = 1024;

/**
 * A split from the extracted folder: its arrays are allocated once, at their final size, and each file is
 * read a few MB at a time into them, so loading leaves no file-sized garbage behind (docs/ENGINES.md).
 */
function readFolderSplit(dir: string, names: string[], kind: CifarKind, limit: number | null, what: string): ImageSplit {
  // a damaged unpacked file: `data fetch` unpacks it again from the archive it keeps
  const base = dirname(resolve(dir));
  const todo =
    basename(resolve(dir)) === kind.folder
      ? `; \`moco3 data fetch ${kind.name}${base === resolve(DATA_DIR) ? '' : ` --dir ${shellQuote(base)}`}\` unpacks it again`
      : '; copy it again from where it came';
  const files = names.map((f) => {
    const path = join(dir, f);
    if (!existsSync(path)) throw new DataError(`${path}: file not found`);
    return { path, label: `${dir}: ${f}`, n: recordCount(statSync(path).size, kind, `${dir}: ${f}`, todo) };
  });
  const { dst, places } = planSplit(
    files.map((f) => f.n),
    limit,
    what,
    dir,
  );
  const rec = recordBytes(kind);
  const buf = new Uint8Array(RECORDS_PER_READ * rec);
  for (const [j, f] of files.entries()) {
    const { at, take } = places[j]!;
    if (take === 0) break;
    const fd = openSync(f.path, 'r');
    try {
      for (let i = 0; i < take; i += RECORDS_PER_READ) {
        const len = Math.min(RECORDS_PER_READ, take - i) * rec;
        for (let got = 0; got < len; ) {
          const r = readSync(fd, buf, got, len - got, i * rec + got);
          if (r === 0) throw new DataError(`${f.label}: the file became shorter while it was read`);
          got += r;
        }
        decodeRecords(buf.subarray(0, len), kind, f.label, i, dst, at + i);
      }
    } finally {
      closeSync(fd);
    }
  }
  return asSplit(dst);
}

/** Where a file's records go: its first `take` records into `dst` from record `at` on. */
interface Sink {
  dst: Records;
  at: number;
  take: number;
  label: string;
  /** records decoded so far, and the start of the next one when it spans two inflated pieces */
  done: number;
  carry: Uint8Array;
  carryLen: number;
}

/** The sink that decodes a file's bytes, as they come, into its records' place. */
function recordSink(sink: Sink, kind: CifarKind): TarFileSink {
  const rec = recordBytes(kind);
  return {
    data(bytes) {
      let b = bytes.subarray(0, Math.max(0, (sink.take - sink.done) * rec - sink.carryLen));
      if (sink.carryLen > 0) {
        const fill = Math.min(rec - sink.carryLen, b.length);
        sink.carry.set(b.subarray(0, fill), sink.carryLen);
        sink.carryLen += fill;
        b = b.subarray(fill);
        if (sink.carryLen < rec) return;
        decodeRecords(sink.carry, kind, sink.label, sink.done, sink.dst, sink.at + sink.done);
        sink.done++;
        sink.carryLen = 0;
      }
      const whole = Math.floor(b.length / rec);
      decodeRecords(b.subarray(0, whole * rec), kind, sink.label, sink.done, sink.dst, sink.at + sink.done);
      sink.done += whole;
      sink.carry.set(b.subarray(whole * rec));
      sink.carryLen = b.length - whole * rec;
    },
  };
}

/** An archive entry's path without a leading `./`, and which copy at that path it is (1, 2, ...), entry by entry in archive order. */
function entryCounter(): (entryName: string) => { name: string; nth: number } {
  const seen = new Map<string, number>();
  return (entryName) => {
    const name = entryName.replace(/^(\.\/)+/, '');
    const nth = (seen.get(name) ?? 0) + 1;
    seen.set(name, nth);
    return { name, nth };
  };
}

/**
 * The splits from the .tar.gz. Its files come in any order, so a first pass reads their sizes and a
 * second decodes each file's records straight into the split's arrays, allocated once at their final
 * size: loading leaves neither the archive nor a file-sized copy behind (docs/ENGINES.md).
 */
async function readArchiveSplits(path: string, kind: CifarKind, limits: { train: number | null; test: number | null }): Promise<{ train: ImageSplit; test: ImageSplit }> {
  // the first pass reads the whole index: which entry holds each file. Of entries named alike, the one in
  // the dataset's own folder (kind.folder/FILE, else FILE at the top); of several at one path (`tar -r` added a
  // newer copy), the last, as tar extracts it; two of that name elsewhere (a backup beside the batches) and
  // none in the dataset's folder are refused: one could not tell which the batches are
  const wanted = new Set([...kind.train, ...kind.test]);
  const found = new Map<string, { name: string; size: number; nth: number }[]>();
  let entry = entryCounter();
  await walkTarGz(path, (entryName, size) => {
    const { name, nth } = entry(entryName);
    const f = basename(name);
    if (wanted.has(f)) found.set(f, [...(found.get(f) ?? []), { name, size, nth }]);
    return null;
  });
  const chosen = new Map<string, { name: string; size: number; nth: number }>();
  for (const [f, all] of found) {
    const inFolder = all.filter((e) => e.name === `${kind.folder}/${f}`);
    const atTop = all.filter((e) => e.name === f);
    const pick = inFolder.length ? inFolder : atTop.length ? atTop : all;
    const names = [...new Set(pick.map((e) => e.name))];
    if (names.length > 1) {
      throw new DataError(`${path}: ${names.length} entries named ${f} (${names.join(', ')}) and none at ${kind.folder}/${f}: which holds the batches is not clear; give the extracted folder instead (--data ${kind.name}:FOLDER)`);
    }
    chosen.set(f, pick.at(-1)!);
  }
  const sizes = new Map([...chosen].map(([f, e]) => [f, e.size]));
  const routes = new Map<string, Sink>();
  const plan = (names: string[], limit: number | null, what: string): ImageSplit => {
    const counts = names.map((f) => {
      const size = sizes.get(f);
      if (size === undefined) throw new DataError(`${path}: ${f} is missing from the archive`);
      return recordCount(size, kind, `${path}: ${f}`);
    });
    const { dst, places } = planSplit(counts, limit, what, path);
    names.forEach((f, i) => {
      const { at, take } = places[i]!;
      if (take > 0) routes.set(f, { dst, at, take, label: `${path}: ${f}`, done: 0, carry: new Uint8Array(recordBytes(kind)), carryLen: 0 });
    });
    return asSplit(dst);
  };
  const train = plan(kind.train, limits.train, 'train');
  const test = plan(kind.test, limits.test, 'test');
  const sinks = [...routes.values()];
  entry = entryCounter();
  await walkTarGz(
    path,
    (entryName) => {
      const { name, nth } = entry(entryName);
      const f = basename(name);
      const e = chosen.get(f);
      const sink = e && e.name === name && e.nth === nth ? routes.get(f) : undefined;
      return sink ? recordSink(sink, kind) : null;
    },
    () => sinks.every((r) => r.done === r.take),
  );
  for (const [f, r] of routes) if (r.done !== r.take) throw new DataError(`${path}: ${f} changed while it was read`);
  return { train, test };
}

/** The places the reader tries, in order: the .tar.gz given, or under PATH (default DATA_DIR) the extracted folder, PATH itself, the archive. */
export function cifarCandidates(kind: CifarKind, path: string | null): string[] {
  const base = path ?? DATA_DIR;
  return path && path.endsWith('.tar.gz') ? [path] : [join(base, kind.folder), base, join(base, kind.archive)];
}

/** A file the reader takes for the archive: a .tar.gz, or a gzip file (any other, e.g. $MOCO3_DATA set to one, is not). */
function isArchive(p: string): boolean {
  if (!statSync(p).isFile()) return false;
  return p.endsWith('.tar.gz') || fileIsGzip(p); // named as one: read, and its errors said
}

/** The candidate the reader would read (an archive, or a folder holding the batches), or null. */
export function cifarFound(kind: CifarKind, path: string | null): string | null {
  return cifarCandidates(kind, path).find((c) => existsSync(c) && (isArchive(c) || existsSync(join(c, kind.test[0]!)))) ?? null;
}

/** Find the files: a .tar.gz, a folder holding the batches, or a folder holding the extracted folder or archive. */
function locate(kind: CifarKind, path: string | null): { archive: boolean; source: string } {
  const base = path ?? DATA_DIR;
  const found = cifarFound(kind, path);
  if (found) return { archive: isArchive(found), source: found };
  // a path below a file: no fetch can fill it
  const above = fileAbove(base);
  if (above) throw new DataError(`${kind.name}: ${base}: ${above} is a file, not a folder: give the archive, its folder, or a folder to fetch it into`);
  // the data directory a file ($MOCO3_DATA set to one): a fetch beside it would not be where the reader looks
  if (path === null && existsSync(base) && !statSync(base).isDirectory()) {
    throw new DataError(`${kind.name}: $MOCO3_DATA ${base}: is a file, not a folder: set it to a data folder (or unset it for ~/.moco3/data)`);
  }
  // a file that is no archive (one of the batches, named for its folder): fetch fills the folder it is in
  const file = existsSync(base) && !statSync(base).isDirectory();
  const into = file ? dirname(base) : base;
  throw new DataError(
    `${kind.name}: ${file ? `${base} is a file, not ${kind.archive} or a folder holding it` : `no ${kind.folder}/ or ${kind.archive} under ${base}`} ` +
      `(run: moco3 data fetch ${kind.name}${into === DATA_DIR ? '' : ` --dir ${shellQuote(into)}`}; ` +
      `or download https://www.cs.toronto.edu/~kriz/${kind.archive} into ${into}, or give --data ${kind.name}:PATH with the archive or its folder)`,
  );
}

export async function loadCifar(spec: DataSpec): Promise<Dataset> {
  const kind = CIFAR[spec.name as 'cifar10' | 'cifar100'];
  if (spec.numClasses !== undefined && spec.numClasses !== kind.numClasses) {
    throw new DataError(`data.num_classes: ${kind.name} has ${kind.numClasses} classes, got ${spec.numClasses}`);
  }
  const src = locate(kind, spec.path);
  let train: ImageSplit;
  let test: ImageSplit;
  if (src.archive) {
    ({ train, test } = await readArchiveSplits(src.source, kind, { train: spec.trainSize, test: spec.testSize }));
  } else {
    train = readFolderSplit(src.source, kind.train, kind, spec.trainSize, 'train');
    test = readFolderSplit(src.source, kind.test, kind, spec.testSize, 'test');
  }
  const classNames = kind.name === 'cifar10' ? [...CIFAR10_CLASSES] : [...CIFAR100_CLASSES];
  return { name: kind.name, numClasses: kind.numClasses, classNames, train, test, mean: kind.mean, std: kind.std, source: src.source };
}
