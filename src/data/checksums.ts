/**
 * Where `moco3 data fetch` gets each dataset, and the published size and SHA-256 of every file, so a
 * download (and a copy found on disk) can be checked byte for byte. Nothing here is computed by moco3:
 * each value is quoted from the source named beside it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { fileIsGzip } from './gunzip.ts';

export interface KnownFile {
  /** the published file name; the URL is the base URL + this name, and the file keeps it on disk */
  name: string;
  /** bytes */
  size: number;
  /** lowercase hex */
  sha256: string;
  /**
   * For gzipped files: the size and SHA-256 of the decompressed file. A copy gzipped again by someone else
   * (Debian's dataset-fashion-mnist drops the file name from the gzip header, so its .gz files are 23-24
   * bytes shorter than the download) then still checks, and so does an uncompressed copy.
   */
  content?: { size: number; sha256: string };
}

export interface DatasetSource {
  name: 'fashion-mnist' | 'cifar10' | 'cifar100';
  /** the files' home; a mirror replaces it (the file name is appended to either) */
  baseUrl: string;
  /** folder under the data directory the files go to ('' = the data directory itself) */
  subdir: string;
  files: KnownFile[];
  /** an archive to unpack: the top folder it holds, which ends up beside the archive */
  extract?: { archive: string; folder: string };
}

export const FETCHABLE = ['fashion-mnist', 'cifar10', 'cifar100'] as const;
export type FetchableName = (typeof FETCHABLE)[number];

export const SOURCES: Record<FetchableName, DatasetSource> = {
  'fashion-mnist': {
    name: 'fashion-mnist',
    baseUrl: 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    // the reader's default is Debian's /usr/share/datasets/fashion-mnist/; a fetched copy gets its own folder
    subdir: 'fashion-mnist',
    // .gz size and sha256: tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt
    //   (the same files torchvision checks by MD5: 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...).
    // content: SHA-256 of the decompressed IDX files as listed by independent public loaders (e.g. a Rust
    //   `dataset_ml` FashionMnist partition table and a Makefile's SHA256F_* list); their MD5s
    //   (f4a8712d..., 9018921c..., 8181f547..., 15d48437...) are the raw-file MD5s third-party torchvision
    //   wrappers check; the sizes follow from the IDX headers (16 + n*28*28, 8 + n). Debian's copies
    //   decompress to exactly these bytes.
    files: [
      {
        name: 'train-images-idx3-ubyte.gz',
        size: 26421880,
        sha256: '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
        content: { size: 47040016, sha256: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888' },
      },
      {
        name: 'train-labels-idx1-ubyte.gz',
        size: 29515,
        sha256: 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
        content: { size: 60008, sha256: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9' },
      },
      {
        name: 't10k-images-idx3-ubyte.gz',
        size: 4422102,
        sha256: '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
        content: { size: 7840016, sha256: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b' },
      },
      {
        name: 't10k-labels-idx1-ubyte.gz',
        size: 5148,
        sha256: '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
        content: { size: 10008, sha256: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34' },
      },
    ],
  },
  cifar10: {
    name: 'cifar10',
    baseUrl: 'https://www.cs.toronto.edu/~kriz/',
    subdir: '',
    // tensorflow/datasets, tensorflow_datasets/url_checksums/cifar10.txt (torchvision's MD5: c32a1d4a...)
    files: [{ name: 'cifar-10-binary.tar.gz', size: 170052171, sha256: 'c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd' }],
    extract: { archive: 'cifar-10-binary.tar.gz', folder: 'cifar-10-batches-bin' },
  },
  cifar100: {
    name: 'cifar100',
    baseUrl: 'https://www.cs.toronto.edu/~kriz/',
    subdir: '',
    // tensorflow/datasets, tensorflow_datasets/url_checksums/cifar100.txt (torchvision's MD5: 03b5dce0...)
    files: [{ name: 'cifar-100-binary.tar.gz', size: 168513733, sha256: '58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec' }],
    extract: { archive: 'cifar-100-binary.tar.gz', folder: 'cifar-100-binary' },
  },
};

export function isFetchable(name: string): name is FetchableName {
  return (FETCHABLE as readonly string[]).includes(name);
}

/** SHA-256 (hex) and byte count of a file, streamed. */
export async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: h.digest('hex') };
}

/** SHA-256 and size of the decompressed bytes of a gzip file, streamed. */
export async function hashGunzipped(path: string): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  let size = 0;
  await pipeline(
    createReadStream(path, { highWaterMark: 1 << 20 }),
    createGunzip(),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        size += chunk.length;
        cb();
      },
    }),
  );
  return { size, sha256: h.digest('hex') };
}

export type ChecksumStatus = 'ok' | 'mismatch' | 'missing' | 'not checked';

export interface FileCheck {
  /** the file on disk */
  path: string;
  /** the table entry it was checked against */
  known: string | null;
  status: ChecksumStatus;
  /** 'file': the bytes are the published file; 'content': a different gzip wrapper (or none) around the published content */
  how?: 'file' | 'content';
  expected?: { size: number; sha256: string };
  got?: { size: number; sha256: string };
  note?: string;
}

/**
 * Check one file on disk against its table entry: the published bytes, or else (for entries with a
 * `content`) the published content, gzipped some other way or not at all.
 */
export async function checkFile(path: string, known: KnownFile): Promise<FileCheck> {
  const base = { path, known: known.name };
  const expected = { size: known.size, sha256: known.sha256 };
  if (!existsSync(path)) return { ...base, status: 'missing', expected };
  const got = await hashFile(path);
  if (got.size === known.size && got.sha256 === known.sha256) return { ...base, status: 'ok', how: 'file', got };
  if (known.content) {
    const gz = fileIsGzip(path);
    let inner = got;
    if (gz) {
      try {
        inner = await hashGunzipped(path);
      } catch (e) {
        return { ...base, status: 'mismatch', expected, got, note: `corrupt gzip data (${(e as Error).message})` };
      }
    }
    if (inner.size === known.content.size && inner.sha256 === known.content.sha256) {
      return { ...base, status: 'ok', how: 'content', got, note: gz ? 'the published content, gzipped differently' : 'the published file, decompressed' };
    }
    if (!gz) return { ...base, status: 'mismatch', expected: known.content, got };
  }
  return { ...base, status: 'mismatch', expected, got };
}
