/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST): a 4-byte magic 0x0000TTDD (TT = element type,
 * DD = number of dimensions), DD big-endian uint32 sizes, then the elements. Only unsigned bytes (TT = 0x08)
 * are read. Files may be gzipped; that is detected from the gzip magic, not the name.
 */
import { constants } from 'node:buffer';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cannotRead, fileIsGzip, gunzipPieces } from './gunzip.ts';
import { DataError } from './types.ts';

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

export interface IdxArray {
  dims: number[];
  /** the elements, row-major */
  data: Uint8Array;
}

const hex = (v: number) => '0x' + (v >>> 0).toString(16).padStart(8, '0');

/** The header of an IDX file: its dims, its length in bytes and the element count; null while `buf` is too short to tell. */
function parseHeader(buf: Uint8Array, file: string, expectMagic: number | undefined, complete: boolean): { dims: number[]; headerLen: number; count: number } | null {
  if (buf.length < 4) {
    if (!complete) return null;
    throw new DataError(`${file}: truncated IDX file (${buf.length} bytes, no header)`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  const ndim = magic & 0xff;
  if (expectMagic !== undefined ? magic !== expectMagic : (magic & 0xffffff00) !== 0x00000800 || ndim === 0) {
    const want = expectMagic !== undefined ? hex(expectMagic) : '0x000008NN (unsigned bytes)';
    throw new DataError(`${file}: bad magic ${hex(magic)} (expected ${want}); not an IDX file of this kind`);
  }
  const headerLen = 4 + 4 * ndim;
  if (buf.length < headerLen) {
    if (!complete) return null;
    throw new DataError(`${file}: truncated IDX header (${buf.length} of ${headerLen} bytes)`);
  }
  const dims: number[] = [];
  let count = 1;
  for (let d = 0; d < ndim; d++) {
    const size = view.getUint32(4 + 4 * d, false);
    dims.push(size);
    count *= size;
  }
  return { dims, headerLen, count };
}

/** The error for a file whose data is not the length its header gives. */
function lengthError(file: string, dims: number[], count: number, have: number): DataError {
  const what = have < count ? 'truncated' : 'too long';
  return new DataError(`${file}: wrong length (${what}): header says ${dims.join('x')} = ${count} bytes of data, file has ${have}`);
}

/** Parse an (already decompressed) IDX buffer; `file` names it in errors. */
export function parseIdx(buf: Uint8Array, file: string, expectMagic?: number): IdxArray {
  const { dims, headerLen, count } = parseHeader(buf, file, expectMagic, true)!;
  const have = buf.length - headerLen;
  if (have !== count) throw lengthError(file, dims, count, have);
  return { dims, data: buf.subarray(headerLen) };
}

/** Deflate inflates at most 1032 bytes from one: a header asking for more than that is not trusted with an allocation. */
const MAX_INFLATE_RATIO = 1032;

/** A gzipped IDX file of `gzBytes` bytes inflated piece by piece into one array of the length its header gives (src/data/gunzip.ts). */
async function gunzipIdx(file: string, gzBytes: number, expectMagic: number | undefined): Promise<IdxArray> {
  let head = new Uint8Array(0);
  let header = null as ReturnType<typeof parseHeader>;
  let out = null as Uint8Array | null;
  let total = 0;
  // the bytes past the header's length are counted, not kept: the error says how many there were
  const keep = (bytes: Uint8Array) => {
    if (out && total < out.length) out.set(bytes.subarray(0, out.length - total), total);
    total += bytes.length;
  };
  await gunzipPieces(
    file,
    (piece) => {
      if (header) return keep(piece);
      const joined = new Uint8Array(head.length + piece.length);
      joined.set(head);
      joined.set(piece, head.length);
      head = joined;
      header = parseHeader(head, file, expectMagic, false);
      if (!header) return;
      // nor with more than one array can hold (a damaged dimension: a RangeError naming no file)
      if (header.headerLen + header.count <= Math.min(MAX_INFLATE_RATIO * gzBytes, constants.MAX_LENGTH)) out = new Uint8Array(header.headerLen + header.count);
      keep(head);
    },
    (message) => `${file}: corrupt or truncated gzip data (${message})`,
  );
  if (!header) return parseIdx(head, file, expectMagic); // shorter than a header: parseIdx says so
  const { dims, headerLen, count } = header;
  if (!out && total === headerLen + count) {
    throw new DataError(`${file}: header says ${dims.join('x')} = ${count} bytes of data, more than moco3 can hold in one array (${constants.MAX_LENGTH})`);
  }
  if (!out || total !== out.length) throw lengthError(file, dims, count, total - headerLen);
  return { dims, data: out.subarray(headerLen) };
}

/** Read an IDX file, gunzipping it when it starts with the gzip magic. */
export async function readIdxFile(path: string, expectMagic?: number): Promise<IdxArray> {
  let size: number;
  try {
    size = statSync(path).size;
    if (!fileIsGzip(path)) return parseIdx(await readFile(path), path, expectMagic);
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw cannotRead(path, e);
  }
  return gunzipIdx(path, size, expectMagic);
}

/** Build the bytes of an IDX file (header + data); used to write test fixtures. */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x00000800 | dims.length, false);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}
