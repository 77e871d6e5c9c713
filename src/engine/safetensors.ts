/**
 * safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}, __metadata__: {string: string}}, then the raw little-endian data.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './files.ts';
import { InputError } from '../config/errors.ts';

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
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new SafetensorsError(`${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
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

export function decodeSafetensors(buf: Uint8Array, label = 'safetensors'): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  checkLittleEndian();
  if (buf.length < 8) throw new SafetensorsError(`${label}: file too short for a safetensors header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n <= 0 || 8 + n > buf.length) throw new SafetensorsError(`${label}: header length ${n} does not fit the file (${buf.length} bytes)`);
  let header: Record<string, { dtype: StDtype; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8'));
  } catch {
    throw new SafetensorsError(`${label}: header is not JSON`);
  }
  const base = 8 + n;
  const tensors = new Map<string, StTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype: StDtype; shape: number[]; data_offsets: [number, number] };
    if (!(e.dtype in BYTES)) throw new SafetensorsError(`${label}: ${name}: unsupported dtype ${e.dtype}`);
    const [b, end] = e.data_offsets;
    const count = e.shape.reduce((a, c) => a * c, 1);
    if (end - b !== count * BYTES[e.dtype] || base + end > buf.length) {
      throw new SafetensorsError(`${label}: ${name}: data offsets [${b}, ${end}] do not match shape [${e.shape}] or the file length`);
    }
    const bytes = buf.slice(base + b, base + end); // copy: aligned and detached from the file buffer
    const data =
      e.dtype === 'F32'
        ? new Float32Array(bytes.buffer, bytes.byteOffset, count)
        : e.dtype === 'I32'
          ? new Int32Array(bytes.buffer, bytes.byteOffset, count)
          : new BigInt64Array(bytes.buffer, bytes.byteOffset, count);
    tensors.set(name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

export function writeSafetensors(path: string, tensors: Map<string, StTensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export function readSafetensors(path: string): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  return decodeSafetensors(readFileSync(path), path);
}
