/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST): a 4-byte magic 0x0000TTDD (TT = element type,
 * DD = number of dimensions), DD big-endian uint32 sizes, then the elements. Only unsigned bytes (TT = 0x08)
 * are read. Files may be gzipped; that is detected from the gzip magic, not the name.
 */
import { readFile } from 'node:fs/promises';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { DataError } from './types.ts';

const gunzipAsync = promisify(gunzip);

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

export interface IdxArray {
  dims: number[];
  /** the elements, row-major */
  data: Uint8Array;
}

const hex = (v: number) => '0x' + (v >>> 0).toString(16).padStart(8, '0');

/** Parse an (already decompressed) IDX buffer; `file` names it in errors. */
export function parseIdx(buf: Uint8Array, file: string, expectMagic?: number): IdxArray {
  if (buf.length < 4) throw new DataError(`${file}: truncated IDX file (${buf.length} bytes, no header)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  const ndim = magic & 0xff;
  if (expectMagic !== undefined ? magic !== expectMagic : (magic & 0xffffff00) !== 0x00000800 || ndim === 0) {
    const want = expectMagic !== undefined ? hex(expectMagic) : '0x000008NN (unsigned bytes)';
    throw new DataError(`${file}: bad magic ${hex(magic)} (expected ${want}); not an IDX file of this kind`);
  }
  const headerLen = 4 + 4 * ndim;
  if (buf.length < headerLen) throw new DataError(`${file}: truncated IDX header (${buf.length} of ${headerLen} bytes)`);
  const dims: number[] = [];
  let count = 1;
  for (let d = 0; d < ndim; d++) {
    const size = view.getUint32(4 + 4 * d, false);
    dims.push(size);
    count *= size;
  }
  const have = buf.length - headerLen;
  if (have !== count) {
    const what = have < count ? 'truncated' : 'too long';
    throw new DataError(
      `${file}: wrong length (${what}): header says ${dims.join('x')} = ${count} bytes of data, file has ${have}`,
    );
  }
  return { dims, data: buf.subarray(headerLen) };
}

/** Read an IDX file, gunzipping it when it starts with the gzip magic. */
export async function readIdxFile(path: string, expectMagic?: number): Promise<IdxArray> {
  let raw: Uint8Array;
  try {
    raw = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(`${path}: cannot read (${code ?? String(e)})`);
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      raw = await gunzipAsync(raw);
    } catch (e) {
      throw new DataError(`${path}: corrupt or truncated gzip data (${(e as Error).message})`);
    }
  }
  return parseIdx(raw, path, expectMagic);
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
