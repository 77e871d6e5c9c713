/**
 * An ImageNet-style image folder: `PATH/train/<class>/*.{jpg,jpeg,png,webp,tif,tiff}` and `PATH/val/<class>/...`
 * (`test/` is accepted as the name of the eval split; extensions in any case; images in nested folders of a
 * class count, as in torchvision's ImageFolder; hidden files and other files are skipped). Classes are the
 * sorted sub-folder names of train/, a label is the index of its class in that list, and val/ must use the
 * same class set (it may lack some).
 *
 * Decoding. Every image is decoded once with sharp (libvips) at full resolution, as torchvision's loader
 * (PIL's `Image.open(f).convert('RGB')`) reads it: the pixels as stored (PIL applies neither the EXIF
 * orientation nor an embedded colour profile), alpha dropped as `convert('RGB')` does (the colour under a
 * transparent pixel is kept, not composited on a background), grey to RGB, CMYK by Pillow's formula and
 * 16-bit grey clipped to 8 bits as Pillow does. It is then resized and cropped as
 * torchvision's `Resize(side)` + `CenterCrop(side)` on a PIL image (shorter side to `side` with Pillow's
 * antialiased bilinear filter, the centred square kept; src/data/pil.ts `resizeCenterCrop`, byte-equal to
 * Pillow) and stored as uint8 HWC. The side is round(S * 256 / 224) for a training size S
 * (`data.image_size`): the ImageNet 256/224 convention, 256 px for S = 224. If the folder's images are
 * already smaller (the median shorter side of up to 64 train images sampled evenly), the side is that median,
 * but never below S: small images are not blown up beyond what the training size needs.
 * This differs from torchvision, which decodes the full-resolution JPEG at every epoch and crops from it:
 * here RandomResizedCrop crops from the cached side x side centre square, so the largest crop sees a
 * 256-px image rather than the full-resolution one, and the strip outside the centre square of a
 * non-square image is never seen. That is what makes training from a cache possible at all.
 *
 * Order. Images are stored class-interleaved (the first image of every class, then the second of every
 * class, ...; files sorted by name within a class), so `train_size`/`test_size` (first N) and the kNN bank
 * (first N of train) are class-balanced subsets rather than the first classes.
 *
 * Cache. One file per split and side, `PATH/.moco3-cache/<split>-<side>.bin`, or, when PATH is not
 * writable, `$MOCO3_DATA/cache/<16 hex digits of sha256(absolute PATH)>/` (default data directory
 * ~/.moco3/data). Little-endian:
 *
 *   0   8  magic "MOCO3IMG"                     40  32 fingerprint: sha256 of the class list and of every
 *   8   4  format version (4)                          file's relative path, size and mtime, in stored order
 *   12  4  header length H (multiple of 64)     72  24 per-channel mean, 3 x float64, [0,1] scale
 *   16  4  n images                              96  24 per-channel std, 3 x float64
 *   20  4  side                                  120  8 first 8 bytes of sha256 of the rest of the header
 *   24  4  channels (3)                          128  J  JSON {split, classes, source}
 *   28  4  number of classes                     H      n x int32 labels
 *   32  4  probe: median shorter side the side   D = H + align64(4n): n x side x side x 3 pixel bytes,
 *          was chosen from (0: side was given)           file size exactly D + n * side * side * 3
 *   36  4  JSON length J
 *
 * A cache whose fingerprint differs (files added, removed or touched) or that is corrupt or truncated is
 * rebuilt. It is written to a temporary name and renamed. Decoding runs `2 x cpus` images in flight, with a
 * line on stderr every 10% for splits of 1000 images or more.
 *
 * Mean and std: measured on the train split's cached pixels (every pixel of every train image, [0,1] scale)
 * and stored in the header. The official code normalises ImageNet with [.485,.456,.406]/[.229,.224,.225];
 * on ImageNet the measured values come out close to those, and for any other folder the measured values
 * are the right ones, so the measured values are what the Dataset returns.
 *
 * Memory. A split whose pixels (of the first train_size/test_size images) exceed the in-memory limit (25% of
 * the machine's memory, `$MOCO3_STREAM_BYTES`, or the `streamBytes` option; and at most 4 GiB, the largest
 * typed array) is not read into memory: its images are read per batch from the cache file (`split.read`,
 * used by `gatherBatch`), and its `images` property throws.
 */
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants as fsConstants, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, renameSync, rmSync, statSync, writeSync, type Dirent, type Stats } from 'node:fs';
import { availableParallelism, constants as osConstants, totalmem } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileAbove, isStaleTemp, missingAncestors, removeEmptyFolders, tempName, withPath } from '../engine/files.ts';
import { dataDirectory } from './cifar.ts';
import { resizeCenterCrop } from './pil.ts';
import { ChannelStats } from './stats.ts';
import { DataError, type DataSpec, type Dataset, type ImageSplit } from './types.ts';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff'] as const;
/** torchvision's IMG_EXTENSIONS that moco3 cannot decode (libvips, as sharp builds it, reads none of them) */
const TORCHVISION_ONLY = ['.ppm', '.pgm', '.bmp'] as const;
export const CACHE_MAGIC = 'MOCO3IMG';
// 4: 16-bit grey PNGs with a transparent grey (tRNS) as grey, clipped as Pillow does (3 took their high byte);
// 3: pixels as stored, as PIL reads them (no EXIF orientation, no colour profile, Pillow's CMYK and 16-bit grey);
// 2: Pillow's bilinear Resize + CenterCrop (1: libvips' Lanczos cover-resize)
export const CACHE_VERSION = 4;
const FIXED_HEADER = 128;
const MAX_IN_MEMORY = 2 ** 32 - 1; // the largest Uint8Array in Node 20
const PROBE_SAMPLES = 64;

/** Decodes image files; injectable so tests can count decodes. */
export interface ImageDecoder {
  /** width and height with EXIF orientation applied, from the header only */
  probe(file: string): Promise<{ width: number; height: number }>;
  /** oriented, RGB, Resize(side) + CenterCrop(side) as torchvision: side*side*3 bytes, HWC */
  decode(file: string, side: number): Promise<Uint8Array>;
}

type Sharp = typeof import('sharp');
let sharpModule: Promise<Sharp> | null = null;
// loaded on first use, so that only image folders pay for libvips
const loadSharp = (): Promise<Sharp> => (sharpModule ??= import('sharp').then((m) => ((m as { default?: Sharp }).default ?? m) as Sharp));

/**
 * Pillow's `convert('RGB')` of a CMYK image (libImaging/Convert.c cmyk2rgb): each channel (255 - k) minus
 * the ink times (255 - k) / 255, in its integer rounding; no colour profile. In place of 4 channels, 3.
 */
export function pillowCmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  const muldiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - cmyk[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.max(0, nk - muldiv255(cmyk[p * 4 + c]!, nk));
  }
  return out;
}

/** Pillow's `convert('RGB')` of a 16-bit grey image (mode I;16 / I): each value clipped to 255, then grey to RGB. */
export function pillowGrey16ToRgb(grey: Uint16Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) out.fill(Math.min(255, grey[p]!), p * 3, p * 3 + 3);
  return out;
}

/** PNG's colour type 0: grey (4 is grey with alpha). */
const PNG_GREY = 0;

/** The colour type in a PNG's IHDR (byte 25 of the file), or null when the file is shorter. */
function pngColourType(file: string): number | null {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(1);
    return readSync(fd, b, 0, 1, 25) === 1 ? b[0]! : null;
  } finally {
    closeSync(fd);
  }
}

/**
 * The formats, as libvips names them, that PIL reads too (JPEG 2000 and PPM/PGM where a libvips build reads
 * them): libvips also reads SVG, HEIF/AVIF, PDF, FITS and more under an image's name, which torchvision's loader
 * would refuse. Judged by content, not name: a PNG named .jpg is read by both.
 */
const PIL_FORMATS = new Set(['jpeg', 'png', 'webp', 'tiff', 'gif', 'jp2k', 'ppm']);

function checkFormat(format: string | undefined): void {
  if (format === undefined || !PIL_FORMATS.has(format)) {
    throw new Error(`${format === undefined ? 'no known format' : `${format.toUpperCase()} content`}, which PIL (torchvision's loader) does not read: it reads JPEG, PNG, WebP, TIFF, GIF, JPEG 2000, PPM`);
  }
}

export const sharpDecoder: ImageDecoder = {
  async probe(file) {
    const sharp = await loadSharp();
    // the stored size: PIL does not apply EXIF orientation
    const m = await sharp(file, { failOn: 'error' }).metadata();
    checkFormat(m.format);
    if (!m.width || !m.height) throw new Error('no image size in the header');
    return { width: m.width, height: m.height };
  },
  async decode(file, side) {
    const sharp = await loadSharp();
    // as torchvision's loader (PIL's Image.open(f).convert('RGB')) reads a file: the pixels as stored, no EXIF
    // orientation, no embedded colour profile; full resolution, alpha dropped before any resampling (a
    // resize in libvips would premultiply by alpha and blacken fully transparent pixels); the resize and crop
    // are Pillow's (src/data/pil.ts)
    // one instance: the header read for the metadata is not read again for the pixels
    const image = sharp(file, { failOn: 'error', sequentialRead: true, ignoreIcc: true });
    const m = await image.metadata();
    checkFormat(m.format);
    if (m.space === 'cmyk') {
      // Pillow's own formula, where libvips would convert through a CMYK profile (a CMYK pipeline: the ink
      // values as stored, as PIL reads them; sharp's sRGB pipeline would convert them through a profile and
      // back); 16-bit inks by their high byte and extra samples dropped, as Pillow reads CMYK;16 and CMYKX TIFFs
      const wide = m.depth === 'ushort';
      const { data, info } = await image.pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: wide ? 'ushort' : 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels < 4) throw new Error(`decoded CMYK to ${info.channels} channels, expected 4`);
      const pixels = info.width * info.height;
      const src = wide ? new Uint16Array(data.buffer, data.byteOffset, pixels * info.channels) : data;
      const inks = new Uint8Array(pixels * 4);
      for (let p = 0; p < pixels; p++) for (let c = 0; c < 4; c++) inks[p * 4 + c] = wide ? src[p * info.channels + c]! >> 8 : src[p * info.channels + c]!;
      return resizeCenterCrop(pillowCmykToRgb(inks, pixels), info.width, info.height, 3, side);
    }
    // a 16-bit grey PNG with a transparent grey (tRNS) reads as grey and alpha in libvips; PIL keeps it grey
    const greyTrns = m.channels === 2 && m.depth === 'ushort' && m.format === 'png' && pngColourType(file) === PNG_GREY;
    if ((m.channels === 1 || greyTrns) && m.depth === 'ushort') {
      // PIL reads 16-bit grey as mode I;16 and clips it to 8 bits, where libvips would scale it
      const { data, info } = await image.removeAlpha().toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
      if (info.channels !== 1) throw new Error(`decoded 16-bit grey to ${info.channels} channels, expected 1`);
      const grey = new Uint16Array(data.buffer, data.byteOffset, info.width * info.height);
      return resizeCenterCrop(pillowGrey16ToRgb(grey, info.width * info.height), info.width, info.height, 3, side);
    }
    const { data, info } = await image.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return resizeCenterCrop(data, info.width, info.height, 3, side);
  },
};

export interface ImageFolderOptions {
  decoder?: ImageDecoder;
  /** splits with more pixel bytes than this are streamed from the cache (default: $MOCO3_STREAM_BYTES, else 25% of memory) */
  streamBytes?: number;
  /** cache side instead of the one chosen from the training size */
  side?: number;
  /** images decoded at once (default 2 x cpus) */
  concurrency?: number;
  /** where caches go when PATH is not writable (default $MOCO3_DATA/cache, else ~/.moco3/data/cache) */
  fallbackCacheRoot?: string;
  /** receives progress lines (default: stderr); null: silent */
  log?: ((line: string) => void) | null;
  /** splits of fewer images build their cache without progress lines (default 1000) */
  progressMin?: number;
}

interface FileEntry {
  rel: string; // <class>/<file>, relative to the split folder
  abs: string;
  label: number;
  size: number;
  mtimeMs: number;
}

interface SplitListing {
  name: string; // 'train' | 'val' | 'test'
  dir: string;
  files: FileEntry[]; // stored order (class-interleaved)
  fingerprint: Buffer;
}

interface CacheHeader {
  n: number;
  side: number;
  channels: number;
  classes: number;
  probe: number;
  fingerprint: Buffer;
  mean: [number, number, number];
  std: [number, number, number];
  headerLength: number;
  dataOffset: number;
  meta: { split: string; classes: string[]; source: string };
}

/** The image folder read when no path is given: this folder of the data directory. */
export const IMAGEFOLDER_SUBDIR = 'imagenet';

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();
const align64 = (x: number) => Math.ceil(x / 64) * 64;
const isImage = (name: string) => IMAGE_EXTENSIONS.some((e) => name.toLowerCase().endsWith(e));
/**
 * Python's string order (torchvision sorts class and file names with `sorted`): by code point. JavaScript's
 * `<` compares UTF-16 code units, which puts a character beyond U+FFFF (a surrogate pair) before U+E000-U+FFFF;
 * mapping surrogates above that range restores the code-point order.
 */
export function byName(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}
const codePointRank = (u: number) => (u >= 0xd800 && u <= 0xdfff ? u + 0x2000 : u >= 0xe000 ? u - 0x800 : u);

/** The cache side for training size S: round(S*256/224), or the folder's median shorter side if that is smaller, but at least S. */
export function cacheSideFor(imageSize: number, medianShorterSide: number | null): number {
  const target = Math.round((imageSize * 256) / 224);
  if (medianShorterSide === null || medianShorterSide >= target) return target;
  return Math.max(imageSize, medianShorterSide);
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function listDir(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new DataError(`${dir}: cannot list the folder (${oneLine((e as Error).message)})`);
  }
}

/** Visible sub-folders of `dir`, sorted (symlinks to folders count). */
function subfolders(dir: string): string[] {
  return listDir(dir)
    .filter((d) => !d.name.startsWith('.') && (d.isDirectory() || (d.isSymbolicLink() && isDir(join(dir, d.name)))))
    .map((d) => d.name)
    .sort(byName);
}

/**
 * Files torchvision's ImageFolder would read that moco3 leaves out, by kind (`.bmp`, `hidden`): counted into
 * `leftOut`, for the one line that says so.
 */
type LeftOut = Map<string, number>;

/** Whether torchvision's ImageFolder would read a file of this name (moco3's kinds and TORCHVISION_ONLY). */
const torchvisionReads = (name: string) => isImage(name) || TORCHVISION_ONLY.some((e) => name.toLowerCase().endsWith(e));

/** The files torchvision would read under a hidden folder `dir` (every level: it walks them), symlink loops cut. */
function filesUnder(dir: string, seen = new Set<string>()): number {
  let real: string;
  let entries: Dirent[];
  try {
    real = realpathSync(dir);
    if (seen.has(real)) return 0;
    seen.add(real);
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0; // unreadable: nothing moco3 or torchvision could read either
  }
  let n = 0;
  for (const d of entries) {
    const at = join(dir, d.name);
    if (d.isDirectory() || (d.isSymbolicLink() && isDir(at))) n += filesUnder(at, seen);
    else if (torchvisionReads(d.name)) n++;
  }
  return n;
}

/** Counts into `leftOut` the files under the hidden folders among `entries` (of `dir`), which torchvision reads and moco3 skips. */
function countHiddenFolders(leftOut: LeftOut | undefined, dir: string, entries: Dirent[]): void {
  if (!leftOut) return;
  for (const d of entries) {
    if (!d.name.startsWith('.') || !(d.isDirectory() || (d.isSymbolicLink() && isDir(join(dir, d.name))))) continue;
    const n = filesUnder(join(dir, d.name));
    if (n > 0) leftOut.set('in hidden folders', (leftOut.get('in hidden folders') ?? 0) + n);
  }
}

function countLeftOut(leftOut: LeftOut | undefined, entries: Dirent[]): void {
  if (!leftOut) return;
  for (const d of entries) {
    if (d.isDirectory()) continue;
    const lower = d.name.toLowerCase();
    const kind = d.name.startsWith('.') && (isImage(d.name) || TORCHVISION_ONLY.some((e) => lower.endsWith(e))) ? 'hidden' : TORCHVISION_ONLY.find((e) => lower.endsWith(e));
    if (kind) leftOut.set(kind, (leftOut.get(kind) ?? 0) + 1);
  }
}

/** Image files of `dir`, sorted, directly in it (`recursive`: then those of its sub-folders, as torchvision's ImageFolder walks them), relative to `dir`. */
function imageFiles(dir: string, recursive = false, prefix = '', seen = new Set<string>(), leftOut?: LeftOut): string[] {
  const real = realpathSync(dir);
  if (seen.has(real)) return []; // a symlink loop
  seen.add(real);
  const all = listDir(dir);
  countLeftOut(leftOut, all);
  if (recursive) countHiddenFolders(leftOut, dir, all);
  const entries = all.filter((d) => !d.name.startsWith('.'));
  const out = entries
    .filter((d) => isImage(d.name) && !d.isDirectory())
    .map((d) => d.name)
    .sort(byName)
    .map((f) => prefix + f);
  if (recursive) for (const sub of subfolders(dir)) out.push(...imageFiles(join(dir, sub), true, `${prefix}${sub}/`, seen, leftOut));
  return out;
}

/** Files of one split, labelled by `classes`, class-interleaved, with the split's fingerprint. */
function listSplit(name: string, dir: string, classes: string[], isTrain: boolean, leftOut?: LeftOut): SplitListing {
  const folders = subfolders(dir);
  // a hidden class folder (.ipynb_checkpoints) is a class to torchvision, none to moco3
  countHiddenFolders(leftOut, dir, listDir(dir));
  if (folders.length === 0) {
    const loose = imageFiles(dir).length;
    throw new DataError(
      `${dir}: no class folders (expected ${name}/<class>/*.jpg${loose > 0 ? `; it holds ${loose} images directly, sort them into class folders as train/ has` : ''})`,
    );
  }
  const index = new Map(classes.map((c, i) => [c, i] as const));
  const perClass: FileEntry[][] = [];
  for (const cls of folders) {
    const label = index.get(cls);
    if (label === undefined) {
      throw new DataError(`${join(dir, cls)}: class '${cls}' is not a class of train/ (${classes.length} classes: ${classes.slice(0, 5).join(', ')}${classes.length > 5 ? ', ...' : ''})`);
    }
    const names = imageFiles(join(dir, cls), true, '', new Set(), leftOut);
    if (names.length === 0 && isTrain) throw new DataError(`${join(dir, cls)}: no images (${IMAGE_EXTENSIONS.join(', ')}) in this class folder`);
    perClass.push(
      names.map((f) => {
        const abs = join(dir, cls, f);
        let st: Stats;
        try {
          st = statSync(abs);
        } catch (e) {
          throw new DataError(`${abs}: cannot read the file (${oneLine((e as Error).message)})`);
        }
        // a named pipe would block the decoder's read for good, a device read without end
        if (!st.isFile()) {
          const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a named pipe' : st.isSocket() ? 'a socket' : 'a device';
          throw new DataError(`${abs}: ${kind}, not an image file: move it out of the image folder`);
        }
        return { rel: `${cls}/${f}`, abs, label, size: st.size, mtimeMs: st.mtimeMs };
      }),
    );
  }
  const files: FileEntry[] = [];
  const longest = Math.max(...perClass.map((p) => p.length));
  for (let k = 0; k < longest; k++) for (const p of perClass) if (k < p.length) files.push(p[k]!);
  if (files.length === 0) throw new DataError(`${dir}: no images (${IMAGE_EXTENSIONS.join(', ')}) in its class folders`);
  const h = createHash('sha256');
  h.update(`moco3 imagefolder v${CACHE_VERSION}\n${name}\n${JSON.stringify(classes)}\n`);
  // size and modification time: a copy of the folder (rsync -a to a node's disk, a hard-linked snapshot) keeps
  // its cache, which inodes and ctimes would not; a file replaced by another of the same size and mtime (to the
  // nanosecond) is not seen (docs: touch it)
  for (const f of files) h.update(`${f.rel}\t${f.size}\t${f.mtimeMs}\n`);
  return { name, dir, files, fingerprint: h.digest() };
}

// ---------------------------------------------------------------------------------------------
// cache files

function headerHash(buf: Buffer): Buffer {
  return createHash('sha256').update(buf.subarray(0, 120)).update(buf.subarray(FIXED_HEADER)).digest().subarray(0, 8);
}

function encodeHeader(h: Omit<CacheHeader, 'headerLength' | 'dataOffset'>): Buffer {
  const json = Buffer.from(JSON.stringify(h.meta), 'utf8');
  const H = align64(FIXED_HEADER + json.length);
  const buf = Buffer.alloc(H);
  buf.write(CACHE_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(CACHE_VERSION, 8);
  buf.writeUInt32LE(H, 12);
  buf.writeUInt32LE(h.n, 16);
  buf.writeUInt32LE(h.side, 20);
  buf.writeUInt32LE(h.channels, 24);
  buf.writeUInt32LE(h.classes, 28);
  buf.writeUInt32LE(h.probe, 32);
  buf.writeUInt32LE(json.length, 36);
  h.fingerprint.copy(buf, 40);
  for (let c = 0; c < 3; c++) {
    buf.writeDoubleLE(h.mean[c]!, 72 + 8 * c);
    buf.writeDoubleLE(h.std[c]!, 96 + 8 * c);
  }
  json.copy(buf, FIXED_HEADER);
  headerHash(buf).copy(buf, 120);
  return buf;
}

/** The header of a cache file, or why it is unusable. */
function readHeader(file: string): CacheHeader | { bad: string } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    return { bad: (e as Error).message };
  }
  try {
    const size = fstatSync(fd).size;
    const fixed = Buffer.alloc(FIXED_HEADER);
    if (readFully(fd, fixed, 0, FIXED_HEADER, 0) < FIXED_HEADER) return { bad: `truncated header (${size} bytes)` };
    if (fixed.toString('latin1', 0, 8) !== CACHE_MAGIC) return { bad: 'not a moco3 image cache (bad magic)' };
    if (fixed.readUInt32LE(8) !== CACHE_VERSION) return { bad: `format version ${fixed.readUInt32LE(8)}, this moco3 writes ${CACHE_VERSION}` };
    const H = fixed.readUInt32LE(12);
    const J = fixed.readUInt32LE(36);
    if (H % 64 !== 0 || H < FIXED_HEADER + J || H > 64 * 1024 * 1024 || H > size) return { bad: 'corrupt header' };
    const buf = Buffer.alloc(H);
    readFully(fd, buf, 0, H, 0);
    if (!headerHash(buf).equals(buf.subarray(120, 128))) return { bad: 'corrupt header (checksum)' };
    const n = buf.readUInt32LE(16);
    const side = buf.readUInt32LE(20);
    const channels = buf.readUInt32LE(24);
    const dataOffset = H + align64(4 * n);
    const expected = dataOffset + n * side * side * channels;
    if (size !== expected) return { bad: `truncated or padded: ${size} bytes, the header says ${expected}` };
    let meta: CacheHeader['meta'];
    try {
      meta = JSON.parse(buf.toString('utf8', FIXED_HEADER, FIXED_HEADER + J)) as CacheHeader['meta'];
    } catch {
      return { bad: 'corrupt header (JSON)' };
    }
    const f64 = (o: number): [number, number, number] => [buf.readDoubleLE(o), buf.readDoubleLE(o + 8), buf.readDoubleLE(o + 16)];
    return {
      n,
      side,
      channels,
      classes: buf.readUInt32LE(28),
      probe: buf.readUInt32LE(32),
      fingerprint: Buffer.from(buf.subarray(40, 72)),
      mean: f64(72),
      std: f64(96),
      headerLength: H,
      dataOffset,
      meta,
    };
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, dest: Uint8Array, offset: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const chunk = Math.min(length - done, 1 << 30);
    const r = readSync(fd, dest, offset + done, chunk, position + done);
    if (r === 0) break;
    done += r;
  }
  return done;
}

/** Writes all of `src` at `position` of the open file `path` (named in a write error: a full disk). */
function writeFully(fd: number, path: string, src: Uint8Array, position: number): void {
  withPath(path, () => {
    let done = 0;
    while (done < src.length) done += writeSync(fd, src, done, src.length - done, position + done);
  });
}

function canWrite(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Remove the temporary cache files (`.<split>-<side>.bin.<host>.<pid>.tmp`, any split and side) that
 * processes which no longer run left behind: this machine's when their pid is gone; another machine's (a
 * dataset folder shared over the network, several hosts building it at once), whose pids this one cannot
 * see, only when untouched for FOREIGN_TEMP_STALE_MS, so a build in progress there is never cut short
 * (src/engine/files.ts, isStaleTemp).
 */
function removeStaleTemps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  // the host part is absent in files of earlier versions
  for (const name of names) if (/^\.(?:train|val|test)-\d+\.bin\.(?:.+\.)?\d+\.tmp$/.test(name) && isStaleTemp(dir, name)) rmSync(join(dir, name), { force: true });
}

function decodeError(file: string, e: unknown): DataError {
  if (e instanceof DataError) return e;
  try {
    accessSync(file, fsConstants.R_OK); // a file that cannot be read is not a corrupt image
  } catch (a) {
    return new DataError(`${file}: cannot read the file (${oneLine((a as Error).message)})`);
  }
  return new DataError(`${file}: could not be decoded as an image (${oneLine(e instanceof Error ? e.message : String(e))})`);
}

interface BuildContext {
  decoder: ImageDecoder;
  concurrency: number;
  log: ((line: string) => void) | null;
  progressMin: number;
  classes: string[];
  source: string;
}

/**
 * Decode every image of the split into `file` (temp name, then rename); returns the header written. A process
 * that ends meanwhile leaves nothing: the temporary file goes, then `dropMade` (the folders this build made,
 * while empty).
 */
async function buildCache(listing: SplitListing, side: number, probe: number, file: string, dir: string, ctx: BuildContext, dropMade: () => void = () => {}): Promise<void> {
  const base = `${listing.name}-${side}.bin`;
  removeStaleTemps(dir);
  // host and pid in the name: builds of one shared folder on several machines never touch each other's file
  const tmp = join(dir, tempName(base));
  const n = listing.files.length;
  const img = side * side * 3;
  const meta = { split: listing.name, classes: ctx.classes, source: ctx.source };
  const placeholder = encodeHeader({ n, side, channels: 3, classes: ctx.classes.length, probe, fingerprint: listing.fingerprint, mean: [0, 0, 0], std: [0, 0, 0], meta });
  const H = placeholder.length;
  const dataOffset = H + align64(4 * n);
  const verbose = ctx.log !== null && n >= ctx.progressMin;
  if (verbose) ctx.log!(`imagefolder: caching ${listing.dir} (${n} images at ${side}x${side}) into ${file}`);
  // a process that exits while building (Ctrl-C in train, an error elsewhere) leaves no partial cache
  const dropTemp = () => {
    rmSync(tmp, { force: true });
    dropMade();
  };
  // a command with no handler of its own for Ctrl-C, TERM or HUP (data info, data preview) would end without an
  // exit event: it stops here, the cache dropped, with the signal's exit code
  const onSig = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nmoco3: ${sig}: stopped while caching ${listing.dir}; no partial cache is kept\n`);
    process.exit(128 + (osConstants.signals[sig] ?? 0));
  };
  const own = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).filter((sig) => process.listenerCount(sig) === 0);
  process.on('exit', dropTemp);
  for (const sig of own) process.on(sig, onSig);
  try {
    await writeCache(listing, side, probe, tmp, ctx, { H, dataOffset, img, meta, verbose });
    renameSync(tmp, file);
  } finally {
    process.off('exit', dropTemp);
    for (const sig of own) process.off(sig, onSig);
  }
}

async function writeCache(
  listing: SplitListing, side: number, probe: number, tmp: string, ctx: BuildContext,
  { H, dataOffset, img, meta, verbose }: { H: number; dataOffset: number; img: number; meta: CacheHeader['meta']; verbose: boolean },
): Promise<void> {
  const n = listing.files.length;
  const fd = openSync(tmp, 'w');
  let ok = false;
  try {
    const labels = Buffer.alloc(4 * n);
    listing.files.forEach((f, i) => labels.writeInt32LE(f.label, 4 * i));
    writeFully(fd, tmp, labels, H);
    const stats = new ChannelStats(3);
    const t0 = Date.now();
    let done = 0;
    let nextReport = 1;
    await pool(n, ctx.concurrency, async (i) => {
      const f = listing.files[i]!;
      let px: Uint8Array;
      try {
        px = await ctx.decoder.decode(f.abs, side);
      } catch (e) {
        throw decodeError(f.abs, e);
      }
      if (px.length !== img) throw new DataError(`${f.abs}: could not be decoded as an image (decoder gave ${px.length} bytes, expected ${img})`);
      stats.add(px);
      writeFully(fd, tmp, px, dataOffset + i * img);
      done++;
      if (verbose && done * 10 >= nextReport * n) {
        while (done * 10 >= nextReport * n) nextReport++;
        const rate = done / Math.max(1e-3, (Date.now() - t0) / 1000);
        ctx.log!(`imagefolder: ${listing.name} ${done}/${n} (${Math.floor((100 * done) / n)}%), ${rate.toFixed(0)} img/s`);
      }
    });
    const { mean, std } = stats.result() as { mean: [number, number, number]; std: [number, number, number] };
    writeFully(fd, tmp, encodeHeader({ n, side, channels: 3, classes: ctx.classes.length, probe, fingerprint: listing.fingerprint, mean, std, meta }), 0);
    withPath(tmp, () => fsyncSync(fd));
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(tmp, { force: true });
  }
}

/** Run fn(0..count-1) with at most `limit` in flight; the first error stops new work and is thrown once all in flight are done. */
async function pool(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let error: { e: unknown } | null = null;
  const worker = async () => {
    while (error === null && next < count) {
      const i = next++;
      try {
        await fn(i);
      } catch (e) {
        error ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, count)) }, worker));
  if (error !== null) throw (error as { e: unknown }).e;
}

// ---------------------------------------------------------------------------------------------
// splits

/** A split read per image from its cache file: `images` is not held in memory and throws. */
class StreamedSplit implements ImageSplit {
  readonly channels = 3 as const;
  private readonly imageBytes: number;
  constructor(
    private readonly fd: number,
    private readonly file: string,
    private readonly dataOffset: number,
    readonly labels: Int32Array,
    readonly n: number,
    readonly height: number,
    readonly width: number,
  ) {
    this.imageBytes = height * width * 3;
    streamedFiles.register(this, fd);
  }
  get images(): Uint8Array {
    throw new Error(`${this.file}: this split (${this.n} images) is streamed from its cache file, not held in memory; read it with gatherBatch`);
  }
  read(index: number, dest: Uint8Array, destOffset: number): void {
    if (!(Number.isInteger(index) && index >= 0 && index < this.n)) throw new RangeError(`index ${index} outside the split (n = ${this.n})`);
    const got = readFully(this.fd, dest, destOffset, this.imageBytes, this.dataOffset + index * this.imageBytes);
    if (got !== this.imageBytes) throw new DataError(`${this.file}: truncated (image ${index} could not be read); delete it to rebuild the cache`);
  }
}

const streamedFiles = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
});

function streamLimit(opt: number | undefined): number {
  let limit = opt;
  if (limit === undefined && process.env.MOCO3_STREAM_BYTES !== undefined && process.env.MOCO3_STREAM_BYTES !== '') {
    limit = Number(process.env.MOCO3_STREAM_BYTES);
    if (!Number.isFinite(limit) || limit < 0) throw new DataError(`MOCO3_STREAM_BYTES: expected a number of bytes, got '${process.env.MOCO3_STREAM_BYTES}'`);
  }
  return Math.min(limit ?? Math.floor(totalmem() * 0.25), MAX_IN_MEMORY);
}

/**
 * The first `take` images of a valid cache file, in memory or streamed; null when its labels are not those of
 * the listing's files (the header's checksum does not cover them): the caller rebuilds it.
 */
function openSplit(file: string, h: CacheHeader, take: number, listing: SplitListing, streamBytes: number): ImageSplit | null {
  const img = h.side * h.side * 3;
  const fd = openSync(file, 'r');
  let keep = false;
  try {
    const raw = Buffer.alloc(4 * h.n);
    if (readFully(fd, raw, 0, raw.length, h.headerLength) !== raw.length) throw new DataError(`${file}: truncated labels`);
    for (let i = 0; i < h.n; i++) if (raw.readInt32LE(4 * i) !== listing.files[i]!.label) return null;
    const labels = new Int32Array(take);
    for (let i = 0; i < take; i++) labels[i] = raw.readInt32LE(4 * i);
    if (take * img > streamBytes) {
      keep = true;
      return new StreamedSplit(fd, file, h.dataOffset, labels, take, h.side, h.side);
    }
    const images = new Uint8Array(take * img);
    if (readFully(fd, images, 0, images.length, h.dataOffset) !== images.length) throw new DataError(`${file}: truncated pixel data`);
    return { images, labels, n: take, height: h.side, width: h.side, channels: 3 };
  } finally {
    if (!keep) closeSync(fd);
  }
}

function checkSize(limit: number | null, n: number, dir: string, key: string): number {
  if (limit === null) return n;
  if (!Number.isInteger(limit) || limit < 1 || limit > n) throw new DataError(`${dir}: has ${n} images, ${limit} asked for (data.${key})`);
  return limit;
}

async function medianShorterSide(listing: SplitListing, decoder: ImageDecoder): Promise<number> {
  const n = listing.files.length;
  const k = Math.min(PROBE_SAMPLES, n);
  const sides = await Promise.all(
    Array.from({ length: k }, async (_, j) => {
      const f = listing.files[Math.floor((j * n) / k)]!;
      try {
        const { width, height } = await decoder.probe(f.abs);
        return Math.min(width, height);
      } catch (e) {
        throw decodeError(f.abs, e);
      }
    }),
  );
  sides.sort((a, b) => a - b);
  return sides[Math.floor((k - 1) / 2)]!;
}

export async function loadImageFolder(spec: DataSpec, opts: ImageFolderOptions = {}): Promise<Dataset> {
  const decoder = opts.decoder ?? sharpDecoder;
  const root = resolve(spec.path ?? join(dataDirectory(), IMAGEFOLDER_SUBDIR));
  const layout = 'expected train/<class>/*.jpg and val/<class>/*.jpg';
  // a relative data.path is read from the current folder; moco3 eval reads it from the run's config.yaml and
  // takes no --data: say where to run from
  const hint =
    spec.path !== null && !isAbsolute(spec.path)
      ? `data.path ${spec.path} is relative, so read from the current folder ${process.cwd()}: run moco3 eval and --resume from the folder ` +
        `the run was trained from (its config.yaml records data.path as given); for a new run, give an absolute path; ${layout}`
      : `--data imagefolder:PATH, ${layout}`;
  // below a file ($MOCO3_DATA set to one, a data.path under one): the file named
  const above = existsSync(root) ? null : fileAbove(root);
  if (above) throw new DataError(`${root}: ${above} is a file, not a folder${spec.path === null ? ' ($MOCO3_DATA names it)' : ''}: give the image folder (--data imagefolder:PATH)`);
  if (!existsSync(root)) throw new DataError(`${root}: image folder not found (${hint})`);
  if (!isDir(root)) throw new DataError(`${root}: not a folder (--data imagefolder:PATH, ${layout})`);
  const trainDir = join(root, 'train');
  if (!isDir(trainDir)) throw new DataError(`${root}: no train/ folder (${layout})`);
  const evalName = isDir(join(root, 'val')) ? 'val' : isDir(join(root, 'test')) ? 'test' : null;
  if (evalName === null) throw new DataError(`${root}: no val/ or test/ folder (${layout})`);

  const classes = subfolders(trainDir);
  if (classes.length === 0) listSplit('train', trainDir, classes, true); // throws with the reason
  if (spec.numClasses !== undefined && spec.numClasses !== classes.length) {
    throw new DataError(`${trainDir}: has ${classes.length} class folders, data.num_classes is ${spec.numClasses} (set data.num_classes: ${classes.length})`);
  }
  const leftOut: LeftOut = new Map();
  const train = listSplit('train', trainDir, classes, true, leftOut);
  // kNN and the linear probe tell classes apart: one class leaves them nothing to tell (checked after the
  // listing, whose faults are said first)
  if (classes.length === 1) {
    throw new DataError(`${trainDir}: holds one class folder (${classes[0]}); at least 2 classes are needed (train/<class>/ for each class)`);
  }
  const test = listSplit(evalName, join(root, evalName), classes, false, leftOut);
  const trainTake = checkSize(spec.trainSize, train.files.length, trainDir, 'train_size');
  const testTake = checkSize(spec.testSize, test.files.length, test.dir, 'test_size');

  const primary = join(root, '.moco3-cache');
  const fallback = join(opts.fallbackCacheRoot ?? join(dataDirectory(), 'cache'), createHash('sha256').update(root).digest('hex').slice(0, 16));
  const dirs = [primary, fallback];
  const log = opts.log === undefined ? (line: string) => void process.stderr.write(`${line}\n`) : opts.log;
  if (leftOut.size > 0) {
    const n = [...leftOut.values()].reduce((a, b) => a + b, 0);
    const kinds = [...leftOut].map(([k, c]) => `${k}: ${c}`).join(', ');
    log?.(
      `${root}: ${n} file${n === 1 ? '' : 's'} that torchvision's ImageFolder would read ${n === 1 ? 'is' : 'are'} left out (${kinds}): ` +
        `moco3 reads ${IMAGE_EXTENSIONS.join(' ')} and skips hidden files and folders; to include ${n === 1 ? 'it' : 'them'}, convert ${n === 1 ? 'it' : 'them'} (to PNG, say) or rename a hidden one`,
    );
  }

  // the side: given, or from the probe stored with an up-to-date train cache, or probed now
  const imageSize = spec.imageSize ?? spec.syntheticImageSize ?? 224;
  let probe = 0;
  let side = opts.side ?? 0;
  if (side === 0) {
    for (const d of dirs) {
      if (probe > 0 || !isDir(d)) continue;
      let names: string[];
      try {
        names = readdirSync(d).filter((f) => /^train-\d+\.bin$/.test(f)).sort(byName);
      } catch {
        continue;
      }
      for (const name of names) {
        const h = readHeader(join(d, name));
        if (!('bad' in h) && h.probe > 0 && h.fingerprint.equals(train.fingerprint)) {
          probe = h.probe;
          break;
        }
      }
    }
    if (probe === 0) probe = await medianShorterSide(train, decoder);
    side = cacheSideFor(imageSize, probe);
  }
  if (!Number.isInteger(side) || side < 1) throw new DataError(`imagefolder: cache side must be a positive integer, got ${side}`);

  const ctx: BuildContext = {
    decoder,
    concurrency: opts.concurrency ?? 2 * availableParallelism(),
    log,
    progressMin: opts.progressMin ?? 1000,
    classes,
    source: root,
  };
  const streamBytes = streamLimit(opts.streamBytes);

  const openOrBuild = async (listing: SplitListing, take: number): Promise<{ split: ImageSplit; header: CacheHeader }> => {
    const base = `${listing.name}-${side}.bin`;
    let stale: string | null = null;
    for (const d of dirs) {
      const file = join(d, base);
      if (!existsSync(file)) continue;
      const h = readHeader(file);
      if ('bad' in h) {
        stale ??= `${file}: ${h.bad}`;
        continue;
      }
      if (!h.fingerprint.equals(listing.fingerprint) || h.side !== side || h.channels !== 3 || h.n !== listing.files.length || h.classes !== classes.length) {
        stale ??= `${file}: made from other files than ${listing.dir} holds now`;
        continue;
      }
      const split = openSplit(file, h, take, listing, streamBytes);
      if (split === null) {
        stale ??= `${file}: its labels are not those of ${listing.dir}'s class folders`;
        continue;
      }
      return { split, header: h };
    }
    // the cache folders (and those above them) this attempt makes: removed again, while empty, when it fails
    const made = dirs.map((d) => missingAncestors(join(d, base)));
    const dropMade = () => made.forEach(removeEmptyFolders);
    const dir = dirs.find(canWrite);
    if (dir === undefined) {
      dropMade();
      throw new DataError(`${root}: cannot write an image cache to ${primary} or ${fallback}`);
    }
    if (stale !== null && log !== null) log(`imagefolder: rebuilding the cache (${stale})`);
    const file = join(dir, base);
    try {
      // stopped by a signal, the caches this load built before go too
      await buildCache(listing, side, opts.side === undefined ? probe : 0, file, dir, ctx, () => {
        dropMade();
        for (const undo of [...built].reverse()) undo();
      });
    } catch (e) {
      dropMade();
      throw e;
    }
    built.push(() => {
      rmSync(file, { force: true });
      dropMade();
    });
    const h = readHeader(file);
    if ('bad' in h) throw new DataError(`${file}: ${h.bad} right after writing it`);
    const split = openSplit(file, h, take, listing, streamBytes);
    if (split === null) throw new DataError(`${file}: its labels are not those of ${listing.dir}'s class folders right after writing it`);
    return { split, header: h };
  };

  // the eval split first: the smaller, so an image of it that cannot be read stops the load before the
  // train split's cache (hours for ImageNet) is built, not after. A load that fails leaves no cache it built.
  const built: (() => void)[] = [];
  let te: Awaited<ReturnType<typeof openOrBuild>>;
  let tr: Awaited<ReturnType<typeof openOrBuild>>;
  try {
    te = await openOrBuild(test, testTake);
    tr = await openOrBuild(train, trainTake);
  } catch (e) {
    for (const undo of built.reverse()) undo();
    throw e;
  }
  return {
    name: 'imagefolder',
    numClasses: classes.length,
    classNames: classes,
    train: tr.split,
    test: te.split,
    mean: tr.header.mean,
    std: tr.header.std,
    source: root,
  };
}
