import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors, SafetensorsError } from '../../src/engine/safetensors.ts';
import { rng } from '../helpers/rng.ts';
import { tempDir } from '../helpers/tmp.ts';

/** A real checkpoint's model.safetensors (the PyTorch reference fixture). */
const real = readFileSync(join(import.meta.dirname, '..', 'torchref', 'fixture', 'frozen', 'checkpoints', 'step-0000001', 'model.safetensors'));

type Rng = ReturnType<typeof rng>;

const headerLen = Number(real.readBigUInt64LE(0));
const header = JSON.parse(real.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, any>;
const data = real.subarray(8 + headerLen);

function assemble(h: unknown, body: Uint8Array, lenDelta = 0): Uint8Array {
  const json = Buffer.from(typeof h === 'string' ? h : JSON.stringify(h), 'utf8');
  const out = Buffer.alloc(8 + json.length + body.length);
  out.writeBigUInt64LE(BigInt(Math.max(0, json.length + lenDelta)), 0);
  json.copy(out, 8);
  Buffer.from(body).copy(out, 8 + json.length);
  return out;
}

const ODD: unknown[] = [null, -1, 1.5, 2 ** 53, 1e300, 'x', '3', [], [1], [1, 2, 3], {}, true, [-4, 8], [8, 4], [0, 1e12], ['0', '4'], [null], NaN];

/** One mutation of the header's JSON value (a tensor entry, a field of one, the whole header). */
function mutateHeader(r: Rng): Uint8Array {
  const h = structuredClone(header);
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  const name = r.pick(names);
  const e = h[name];
  switch (r.int(12)) {
    case 0:
      return assemble(r.pick([null, 7, 'str', [1, 2], true, []]), data);
    case 1:
      delete e[r.pick(['dtype', 'shape', 'data_offsets'])];
      break;
    case 2:
      e[r.pick(['dtype', 'shape', 'data_offsets'])] = r.pick(ODD);
      break;
    case 3:
      e.dtype = r.pick(['F16', 'BF16', 'F64', 'I8', 'U8', 'BOOL', 'f32', 'I32', 'I64', 'F32', '__proto__', 'toString']);
      break;
    case 4:
      e.shape = e.shape.map((d: number) => (r.next() < 0.5 ? d + r.pick([-1, 1, 2, -d]) : d));
      break;
    case 5:
      e.data_offsets = e.data_offsets.map((o: number) => o + r.pick([-4, 4, -1, 1, 8, 1 << 20]));
      break;
    case 6: {
      const other = h[r.pick(names)];
      [e.data_offsets, other.data_offsets] = [other.data_offsets, e.data_offsets];
      break;
    }
    case 7:
      h[name] = r.pick(ODD);
      break;
    case 8:
      h.__metadata__ = r.pick([null, 3, { a: 1 }, ['x'], { format: 'pt' }, 'pt']);
      break;
    case 9:
      delete h[name];
      break;
    case 10:
      h[`${name}.copy`] = structuredClone(e);
      break;
    default: {
      // cut or garble the JSON text itself
      const text = JSON.stringify(h);
      const at = r.int(text.length);
      return assemble(r.next() < 0.5 ? text.slice(0, at) : text.slice(0, at) + String.fromCharCode(r.int(256)) + text.slice(at + 1), data);
    }
  }
  return assemble(h, data, r.next() < 0.1 ? r.pick([-8, -1, 1, 8]) : 0);
}

/** One mutation of the file's bytes: flips, cuts, extensions, a rewritten length prefix. */
function mutateBytes(r: Rng): Uint8Array {
  const b = Buffer.from(real);
  switch (r.int(6)) {
    case 0: {
      for (let i = r.int(8) + 1; i > 0; i--) b[r.int(b.length)] = r.int(256);
      return b;
    }
    case 1: {
      // flips inside the header, where they matter most
      for (let i = r.int(4) + 1; i > 0; i--) b[8 + r.int(headerLen)] = r.int(256);
      return b;
    }
    case 2:
      return b.subarray(0, r.int(b.length));
    case 3:
      return Buffer.concat([b, Buffer.alloc(r.int(64) + 1, r.int(256))]);
    case 4:
      b.writeBigUInt64LE(r.pick([0n, 1n, 2n, BigInt(headerLen - 1), BigInt(headerLen + 1), 2n ** 63n, 2n ** 64n - 1n, BigInt(b.length)]), 0);
      return b;
    default:
      return b.subarray(0, r.int(16));
  }
}

test('safetensors fuzz: 2400 seeded mutations of a real checkpoint are read correctly or refused with SafetensorsError', () => {
  const r = rng(12);
  const t0 = performance.now();
  let read = 0;
  let refused = 0;
  const N = 2400;
  for (let i = 0; i < N; i++) {
    const buf = i % 2 === 0 ? mutateHeader(r) : mutateBytes(r);
    let out: ReturnType<typeof decodeSafetensors>;
    try {
      out = decodeSafetensors(buf, 'fuzz.safetensors');
    } catch (e) {
      assert.ok(e instanceof SafetensorsError, `mutation ${i}: ${e instanceof Error ? e.stack : String(e)}`);
      assert.match(e.message, /^fuzz\.safetensors: /);
      assert.equal(e.message.includes('\n'), false);
      refused++;
      continue;
    }
    // read: every tensor is whole and holds what its shape says
    read++;
    for (const [name, t] of out.tensors) {
      assert.equal(t.data.length, t.shape.reduce((a, c) => a * c, 1), `mutation ${i}: ${name}`);
    }
  }
  assert.equal(read + refused, N);
  assert.ok(refused > N / 2, `${refused} refused`);
  assert.ok(read > 50, `${read} read`);
  assert.ok(performance.now() - t0 < 10_000, 'no mutation may make the reader slow');
});

test('safetensors: the damage classes seen in the field are refused with one line', () => {
  const name = Object.keys(header).find((k) => k !== '__metadata__')!;
  const cases: [unknown, RegExp][] = [
    [null, /the header is not a JSON object/],
    [{ ...header, [name]: { ...header[name], data_offsets: undefined } }, /data_offsets undefined is not a pair/],
    [{ ...header, [name]: { ...header[name], shape: '3' } }, /shape "3" is not an array/],
    [{ ...header, [name]: { ...header[name], dtype: 'F16' } }, /unsupported dtype "F16"/],
    [{ ...header, [name]: { ...header[name], data_offsets: [...header[name].data_offsets, 0] } }, /data_offsets \[\S+\] is not a pair/],
    [{ ...header, __metadata__: { format: 'pt', step: 1 } }, /__metadata__ is not an object of strings/],
  ];
  for (const [h, re] of cases) assert.throws(() => decodeSafetensors(assemble(h, data), 'x.safetensors'), (e: Error) => e instanceof SafetensorsError && re.test(e.message));
  // the data must be tiled: a tensor left out of the header leaves a gap (or bytes after the last), extra bytes are refused
  const byOffset = Object.keys(header).filter((k) => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const without = (k: string) => Object.fromEntries(Object.entries(header).filter(([n]) => n !== k));
  const gaps: [Uint8Array, RegExp][] = [
    [assemble(without(byOffset[0]!), data), /leave a gap after byte 0$/],
    [assemble(without(byOffset.at(-1)!), data), /^x\.safetensors: the tensors hold \d+ bytes of data, the file \d+$/],
    [assemble(header, Buffer.concat([data, Buffer.alloc(4)])), new RegExp(`^x\\.safetensors: the tensors hold ${data.length} bytes of data, the file ${data.length + 4}$`)],
  ];
  for (const [buf, re] of gaps) assert.throws(() => decodeSafetensors(buf, 'x.safetensors'), (e: Error) => e instanceof SafetensorsError && re.test(e.message));
  // the unmutated file reads
  assert.ok(decodeSafetensors(real).tensors.size > 10);
});

test('checkSafetensorsFile validates the header against the file size without reading the data', async () => {
  const { writeFileSync } = await import('node:fs');
  const { checkSafetensorsFile } = await import('../../src/engine/safetensors.ts');
  const dir = tempDir('moco3-stcheck-');
  const ok = join(dir, 'ok.safetensors');
  writeFileSync(ok, real);
  assert.equal(checkSafetensorsFile(ok).names.length, decodeSafetensors(real).tensors.size);
  const cut = join(dir, 'cut.safetensors');
  writeFileSync(cut, real.subarray(0, real.length - 1));
  assert.throws(() => checkSafetensorsFile(cut, '; do this'), /cut\.safetensors: (.*truncated|the tensors hold).*; do this$/);
  assert.throws(() => checkSafetensorsFile(join(dir, 'none.safetensors')), /none\.safetensors: missing$/);
  assert.throws(() => checkSafetensorsFile(dir), (e: Error) => e instanceof SafetensorsError && e.message === `${dir}: is a folder, not a file`);
});
