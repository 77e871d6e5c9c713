/**
 * CIFAR-10 and CIFAR-100, the official binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
 * CIFAR-10 records are 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major 32x32) in
 * data_batch_1..5.bin and test_batch.bin; CIFAR-100 records are a coarse and a fine label byte + 3072 pixel
 * bytes in train.bin and test.bin (the fine label is the class). Read from the extracted folder or straight
 * from the downloaded .tar.gz.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError, type DataSpec, type Dataset, type ImageSplit } from './types.ts';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

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
export const DATA_DIR = process.env.MOCO3_DATA ?? join(homedir(), '.moco3', 'data');

/** The regular files of a tar archive (ustar; long names are not needed for CIFAR). */
export function untar(buf: Uint8Array, label: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  let off = 0;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, b: number) => Buffer.from(h.subarray(a, b)).toString('latin1').replace(/\0.*$/s, '');
    const name = (str(345, 500) ? `${str(345, 500)}/` : '') + str(0, 100);
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    if (!Number.isFinite(size) || off + 512 + size > buf.length) throw new DataError(`${label}: truncated tar archive at ${name}`);
    if (type === '0' || type === '\0') files.set(name, buf.subarray(off + 512, off + 512 + size));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/** Records of one file -> images (HWC) and labels. */
export function parseCifarRecords(bytes: Uint8Array, kind: CifarKind, label: string): { images: Uint8Array; labels: Int32Array; n: number } {
  const rec = kind.labelBytes + 3072;
  if (bytes.length === 0 || bytes.length % rec !== 0) {
    throw new DataError(`${label}: ${bytes.length} bytes is not a whole number of ${rec}-byte ${kind.name} records`);
  }
  const n = bytes.length / rec;
  const images = new Uint8Array(n * 3072);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const r = bytes.subarray(i * rec, (i + 1) * rec);
    const y = r[kind.labelBytes - 1]!; // CIFAR-100: the fine label
    if (y >= kind.numClasses) throw new DataError(`${label}: record ${i} has label ${y}, outside 0..${kind.numClasses - 1}`);
    labels[i] = y;
    const px = r.subarray(kind.labelBytes);
    const out = images.subarray(i * 3072, (i + 1) * 3072);
    for (let p = 0; p < 1024; p++) {
      out[p * 3] = px[p]!;
      out[p * 3 + 1] = px[1024 + p]!;
      out[p * 3 + 2] = px[2048 + p]!;
    }
  }
  return { images, labels, n };
}

function split(parts: Array<{ images: Uint8Array; labels: Int32Array; n: number }>, limit: number | null, what: string, label: string): ImageSplit {
  const total = parts.reduce((a, p) => a + p.n, 0);
  if (limit !== null && limit > total) throw new DataError(`${label}: ${what} split has ${total} images, ${limit} asked for`);
  const n = limit ?? total;
  const images = new Uint8Array(n * 3072);
  const labels = new Int32Array(n);
  let k = 0;
  for (const p of parts) {
    const take = Math.min(p.n, n - k);
    if (take <= 0) break;
    images.set(p.images.subarray(0, take * 3072), k * 3072);
    labels.set(p.labels.subarray(0, take), k);
    k += take;
  }
  return { images, labels, n, height: 32, width: 32, channels: 3 };
}

/** The places the reader tries, in order: the .tar.gz given, or under PATH (default DATA_DIR) the extracted folder, PATH itself, the archive. */
export function cifarCandidates(kind: CifarKind, path: string | null): string[] {
  const base = path ?? DATA_DIR;
  return path && path.endsWith('.tar.gz') ? [path] : [join(base, kind.folder), base, join(base, kind.archive)];
}

/** The candidate the reader would read (an archive, or a folder holding the batches), or null. */
export function cifarFound(kind: CifarKind, path: string | null): string | null {
  return cifarCandidates(kind, path).find((c) => existsSync(c) && (statSync(c).isFile() || existsSync(join(c, kind.test[0]!)))) ?? null;
}

/** Find the files: a .tar.gz, a folder holding the batches, or a folder holding the extracted folder or archive. */
function locate(kind: CifarKind, path: string | null): { read: (f: string) => Uint8Array; source: string; names?: string[] } {
  const base = path ?? DATA_DIR;
  for (const c of cifarCandidates(kind, path)) {
    if (!existsSync(c)) continue;
    if (statSync(c).isFile()) {
      let files: Map<string, Uint8Array>;
      try {
        files = untar(gunzipSync(readFileSync(c)), c);
      } catch (e) {
        if (e instanceof DataError) throw e;
        throw new DataError(`${c}: not a gzipped tar archive (${(e as Error).message})`);
      }
      const byBase = new Map([...files].map(([n, b]) => [basename(n), b] as const));
      return {
        read: (f) => {
          const b = byBase.get(f);
          if (!b) throw new DataError(`${c}: ${f} is missing from the archive`);
          return b;
        },
        source: c,
      };
    }
    if (existsSync(join(c, kind.test[0]!))) {
      return {
        read: (f) => {
          const p = join(c, f);
          if (!existsSync(p)) throw new DataError(`${p}: file not found`);
          return readFileSync(p);
        },
        source: c,
      };
    }
  }
  throw new DataError(
    `${kind.name}: no ${kind.folder}/ or ${kind.archive} under ${base} (run: moco3 data fetch ${kind.name}${base === DATA_DIR ? '' : ` --dir ${base}`}; ` +
      `or download https://www.cs.toronto.edu/~kriz/${kind.archive} into ${base}, or give --data ${kind.name}:PATH with the archive or its folder)`,
  );
}

export async function loadCifar(spec: DataSpec): Promise<Dataset> {
  const kind = CIFAR[spec.name as 'cifar10' | 'cifar100'];
  if (spec.numClasses !== undefined && spec.numClasses !== kind.numClasses) {
    throw new DataError(`${kind.name}: has ${kind.numClasses} classes, ${spec.numClasses} asked for (data.num_classes)`);
  }
  const src = locate(kind, spec.path);
  const parse = (f: string) => parseCifarRecords(src.read(f), kind, `${src.source}: ${f}`);
  const train = split(kind.train.map(parse), spec.trainSize, 'train', src.source);
  const test = split(kind.test.map(parse), spec.testSize, 'test', src.source);
  const classNames = kind.name === 'cifar10' ? [...CIFAR10_CLASSES] : Array.from({ length: 100 }, (_, i) => `class ${i}`);
  return { name: kind.name, numClasses: kind.numClasses, classNames, train, test, mean: kind.mean, std: kind.std, source: src.source };
}
