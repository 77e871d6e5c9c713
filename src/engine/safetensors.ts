/**
 * safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}, __metadata__: {string: string}}, then the raw little-endian data.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from './files.ts';
import { InputError, readFailure } from '../config/errors.ts';

export type StDtype = 'F32' | 'I32' | 'I64';
export type StData = Float32Array | Int32Array | BigInt64Array;
export interface StTensor {
  dtype: StDtype;
  shape: number[];
  data: StData;
}

export class SafetensorsError extends InputError {
  override name = 'SafetensorsError';
}

const BYTES: Record<StDtype, number> = { F32: 4, I32: 4, I64: 8 };

function checkLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new SafetensorsError('big-endian hosts are not supported');
}

export function encodeSafetensors(tensors: Map<string, StTensor>, metadata: Record<string, string> = {}): Uint8Array {
  checkLittleEndian();
  const names = [...tensors.keys()].sort();
  // no prototype: a tensor named `__proto__` is an entry like any other
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    if (name === '__metadata__') throw new SafetensorsError(`a tensor cannot be named __metadata__: the format keeps that key for the file's metadata`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new SafetensorsError(`${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    const kind = { F32: Float32Array, I32: Int32Array, I64: BigInt64Array }[t.dtype];
    if (!(t.data instanceof kind)) throw new SafetensorsError(`${name}: dtype ${t.dtype} needs ${kind.name} data, got ${t.data.constructor.name}`);
    const bytes = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/** The largest header this reader accepts (the format's own limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0);
}

interface StEntry {
  name: string;
  dtype: StDtype;
  shape: number[];
  begin: number;
  end: number;
  count: number;
}

/** The 8-byte length prefix of a file of `fileLength` bytes, validated: the header's length. */
function headerLength(prefix: Uint8Array, fileLength: number, label: string): number {
  if (fileLength < 8 || prefix.length < 8) throw new SafetensorsError(`${label}: ${fileLength} bytes, too short for a safetensors file`);
  const big = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (big < 2n || big > BigInt(Math.min(MAX_HEADER_BYTES, fileLength - 8))) {
    throw new SafetensorsError(`${label}: header length ${big} does not fit the file (${fileLength} bytes): not a safetensors file, or truncated`);
  }
  return Number(big);
}

/** The header (bytes 8 .. 8+n) of a file of `fileLength` bytes, validated entry by entry and as a whole. */
function parseHeader(headerBytes: Uint8Array, fileLength: number, label: string): { entries: StEntry[]; metadata: Record<string, string>; base: number } {
  const bad = (what: string) => new SafetensorsError(`${label}: ${what}`);
  const n = headerBytes.length;
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    throw bad('the header is not UTF-8 JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('the header is not a JSON object');
  const base = 8 + n;
  const dataLen = fileLength - base;
  let metadata: Record<string, string> = {};
  const entries: StEntry[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw bad('__metadata__ is not an object of strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`${name}: entry is not an object`);
    const e = entry as Record<string, unknown>;
    if (typeof e.dtype !== 'string' || !Object.hasOwn(BYTES, e.dtype)) throw bad(`${name}: unsupported dtype ${JSON.stringify(e.dtype)} (expected one of ${Object.keys(BYTES).join(', ')})`);
    if (!isIntArray(e.shape)) throw bad(`${name}: shape ${JSON.stringify(e.shape)} is not an array of non-negative integers`);
    if (!isIntArray(e.data_offsets) || e.data_offsets.length !== 2) throw bad(`${name}: data_offsets ${JSON.stringify(e.data_offsets)} is not a pair of non-negative integers`);
    const dtype = e.dtype as StDtype;
    const [begin, end] = e.data_offsets as [number, number];
    const count = e.shape.reduce((a, c) => a * c, 1);
    if (!Number.isSafeInteger(count * BYTES[dtype]) || end < begin || end - begin !== count * BYTES[dtype]) {
      throw bad(`${name}: data_offsets [${begin}, ${end}] do not hold a ${dtype} tensor of shape [${e.shape}]`);
    }
    if (end > dataLen) throw bad(`${name}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes): truncated`);
    entries.push({ name, dtype, shape: e.shape, begin, end, count });
  }
  // the entries must tile the data: sorted by offset, each starts where the previous ended, the last ends the file
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) throw bad(`${e.name}: data_offsets [${e.begin}, ${e.end}] ${e.begin < at ? 'overlap another tensor' : `leave a gap after byte ${at}`}`);
    at = e.end;
  }
  if (at !== dataLen) throw bad(`the tensors hold ${at} bytes of data, the file ${dataLen}`);
  return { entries, metadata, base };
}

/**
 * Reads a safetensors buffer, validating all of it first: the header length, a JSON object header, every
 * entry's dtype, shape and offsets (in range, matching dtype x shape, tiling the data with no gap or
 * overlap). Anything else is refused with a SafetensorsError naming `label`.
 */
export function decodeSafetensors(buf: Uint8Array, label = 'safetensors'): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  checkLittleEndian();
  const n = headerLength(buf, buf.length, label);
  const { entries, metadata, base } = parseHeader(buf.subarray(8, 8 + n), buf.length, label);
  const tensors = new Map<string, StTensor>();
  for (const e of entries) {
    const bytes = new Uint8Array(buf.subarray(base + e.begin, base + e.end)); // a copy: aligned, detached from the file buffer
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: typedOf(e, bytes) });
  }
  return { tensors, metadata };
}

export function writeSafetensors(path: string, tensors: Map<string, StTensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

function ioError(path: string, e: unknown, hint: string): SafetensorsError {
  return new SafetensorsError(`${path}: ${readFailure(e)}${hint}`);
}

/** Reads `len` bytes at `pos` of an open file into `into` (at `at`), in pieces of at most 1 GiB (a read's limit is 2 GiB); the bytes read. */
function readFully(fd: number, into: Uint8Array, at: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const r = readSync(fd, into, at + got, Math.min(len - got, 2 ** 30), pos + got);
    if (r === 0) break;
    got += r;
  }
  return got;
}

/**
 * A safetensors file opened and its header validated against its size, `read` then given its entries and
 * the open file; `hint` is appended to an error. The data is never read as one buffer: files of 2 GiB and
 * more (Node's limit for one) read as any other.
 */
function withSafetensorsFile<T>(path: string, hint: string, read: (fd: number, h: { entries: StEntry[]; metadata: Record<string, string>; base: number }) => T): T {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw ioError(path, e, hint);
  }
  try {
    const size = fstatSync(fd).size;
    const prefix = Buffer.alloc(8);
    readFully(fd, prefix, 0, 8, 0);
    const n = headerLength(prefix, size, path);
    const header = Buffer.alloc(n);
    const got = readFully(fd, header, 0, n, 8);
    return read(fd, parseHeader(header.subarray(0, got), size, path));
  } catch (e) {
    if (e instanceof SafetensorsError) {
      if (hint) e.message += hint;
      throw e;
    }
    throw ioError(path, e, hint);
  } finally {
    closeSync(fd);
  }
}

/** Validates a safetensors file's header against its size without reading the data; `hint` is appended to an error. */
export function checkSafetensorsFile(path: string, hint = ''): { names: string[]; shapes: Map<string, number[]>; metadata: Record<string, string> } {
  return withSafetensorsFile(path, hint, (_fd, { entries, metadata }) => ({ names: entries.map((e) => e.name), shapes: new Map(entries.map((e) => [e.name, e.shape])), metadata }));
}

/** Reads and validates a safetensors file, each tensor into an array of its own; a missing, unreadable or damaged file is a SafetensorsError. */
export function readSafetensors(path: string, hint = ''): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  checkLittleEndian();
  return withSafetensorsFile(path, hint, (fd, { entries, metadata, base }) => {
    const tensors = new Map<string, StTensor>();
    for (const e of entries) {
      const bytes = new Uint8Array(e.end - e.begin);
      if (readFully(fd, bytes, 0, bytes.length, base + e.begin) !== bytes.length) throw new SafetensorsError(`${path}: ${e.name}: the file ends inside its data (truncated while read?)`);
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: typedOf(e, bytes) });
    }
    return { tensors, metadata };
  });
}

/** An entry's bytes as its dtype's typed array (no copy). */
function typedOf(e: StEntry, bytes: Uint8Array): StTensor['data'] {
  return e.dtype === 'F32'
    ? new Float32Array(bytes.buffer, bytes.byteOffset, e.count)
    : e.dtype === 'I32'
      ? new Int32Array(bytes.buffer, bytes.byteOffset, e.count)
      : new BigInt64Array(bytes.buffer, bytes.byteOffset, e.count);
}
