/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST): a 4-byte magic 0x0000TTDD (TT = element type,
 * DD = number of dimensions), DD big-endian uint32 sizes, then the elements. Only unsigned bytes (TT = 0x08)
 * are read. Files may be gzipped; that is detected from the gzip magic, not the name.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
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

/** Larger than any IDX file this reader is meant for: a header asking for more is not trusted with an allocation. */
const MAX_IDX_BYTES = 2 ** 32;

/**
 * Decompress a gzipped IDX file piece by piece into one array of the length its header gives. Reading
 * the whole file and gunzipping it at once would leave the compressed file and the inflated pieces, some
 * 70 MB for Fashion-MNIST's train images, to the garbage collector, which may not free them for the
 * rest of a training run: that was a fifth of the process's memory.
 */
async function gunzipIdx(fh: FileHandle, file: string, expectMagic: number | undefined): Promise<IdxArray> {
  let head = new Uint8Array(0);
  let header = null as ReturnType<typeof parseHeader>;
  let out = null as Uint8Array | null;
  let total = 0;
  // the bytes past the header's length are counted, not kept: the error says how many there were
  const keep = (bytes: Uint8Array) => {
    if (out && total < out.length) out.set(bytes.subarray(0, out.length - total), total);
    total += bytes.length;
  };
  // a bad header stops the reading; thrown from inside the pipeline, it would reach the caller as an AbortError
  let bad: DataError | null = null;
  try {
    await pipeline(fh.createReadStream({ start: 0, highWaterMark: 1 << 20, autoClose: false }), createGunzip({ chunkSize: 1 << 16 }), async (source: AsyncIterable<Buffer>) => {
      for await (const piece of source) {
        if (!header) {
          const joined = new Uint8Array(head.length + piece.length);
          joined.set(head);
          joined.set(piece, head.length);
          head = joined;
          try {
            header = parseHeader(head, file, expectMagic, false);
          } catch (e) {
            bad = e as DataError;
            return;
          }
          if (!header) continue;
          if (header.headerLen + header.count <= MAX_IDX_BYTES) out = new Uint8Array(header.headerLen + header.count);
          total = 0;
          keep(head);
          continue;
        }
        keep(piece);
      }
    });
  } catch (e) {
    if (!bad) throw e;
  }
  if (bad) throw bad;
  if (!header) return parseIdx(head, file, expectMagic); // shorter than a header: parseIdx says so
  const { dims, headerLen, count } = header;
  if (!out || total !== out.length) throw lengthError(file, dims, count, total - headerLen);
  return { dims, data: out.subarray(headerLen) };
}

/** Read an IDX file, gunzipping it when it starts with the gzip magic. */
export async function readIdxFile(path: string, expectMagic?: number): Promise<IdxArray> {
  const cannotRead = (e: unknown) => new DataError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw cannotRead(e);
  }
  try {
    const magic = new Uint8Array(2);
    const { bytesRead } = await fh.read(magic, 0, 2, 0);
    if (bytesRead < 2 || magic[0] !== 0x1f || magic[1] !== 0x8b) return parseIdx(await readFile(path), path, expectMagic);
    return await gunzipIdx(fh, path, expectMagic);
  } catch (e) {
    if (e instanceof DataError) throw e;
    // zlib's errors carry codes Z_DATA_ERROR, Z_BUF_ERROR (the file ends early), ...; the others are the file system's
    if (String((e as NodeJS.ErrnoException).code).startsWith('Z_')) throw new DataError(`${path}: corrupt or truncated gzip data (${(e as Error).message})`);
    throw cannotRead(e);
  } finally {
    await fh.close();
  }
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
