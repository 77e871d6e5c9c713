import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, readSafetensors, SafetensorsError, writeSafetensors, type StTensor } from '../../src/engine/safetensors.ts';
import { tempDir } from '../helpers/tmp.ts';

test('safetensors layout follows the format: u64 header length, JSON header, raw data', () => {
  const t = new Map<string, StTensor>([
    ['b', { dtype: 'F32', shape: [2], data: new Float32Array([1.5, -2]) }],
    ['a.num_batches_tracked', { dtype: 'I64', shape: [], data: new BigInt64Array([7n]) }],
  ]);
  const buf = encodeSafetensors(t, { format: 'pt' });
  const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0, 'header padded to 8 bytes');
  const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString());
  assert.deepEqual(header.__metadata__, { format: 'pt' });
  // names sorted: 'a.num_batches_tracked' (8 bytes) then 'b' (8 bytes)
  assert.deepEqual(header['a.num_batches_tracked'], { dtype: 'I64', shape: [], data_offsets: [0, 8] });
  assert.deepEqual(header.b, { dtype: 'F32', shape: [2], data_offsets: [8, 16] });
  const raw = buf.subarray(8 + n);
  assert.equal(Buffer.from(raw).readBigInt64LE(0), 7n);
  assert.equal(Buffer.from(raw).readFloatLE(8), 1.5);
  assert.equal(Buffer.from(raw).readFloatLE(12), -2);
  const back = decodeSafetensors(buf);
  assert.deepEqual([...(back.tensors.get('b')!.data as Float32Array)], [1.5, -2]);
  assert.equal((back.tensors.get('a.num_batches_tracked')!.data as BigInt64Array)[0], 7n);
});

test('writes atomically and rejects a truncated file', () => {
  const dir = tempDir('moco3-st-');
  const p = join(dir, 'x.safetensors');
  writeSafetensors(p, new Map([['w', { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }]]));
  assert.deepEqual(readdirSync(dir), ['x.safetensors']);
  assert.deepEqual([...(readSafetensors(p).tensors.get('w')!.data as Float32Array)], [1, 2, 3, 4]);
  const buf = readFileSync(p);
  assert.throws(() => decodeSafetensors(buf.subarray(0, buf.length - 4), 'cut.safetensors'), /cut\.safetensors: w: data_offsets \[0, 16\] run past the end/);
});

test('a tensor whose data is not of its dtype is refused when written (an I64 given float32 wrote a file whose data did not fit its header)', () => {
  const bad = new Map<string, StTensor>([['n', { dtype: 'I64', shape: [2], data: new Float32Array(2) as unknown as BigInt64Array }]]);
  assert.throws(() => encodeSafetensors(bad), /n: dtype I64 needs BigInt64Array data, got Float32Array/);
  const f32 = new Map<string, StTensor>([['w', { dtype: 'F32', shape: [2], data: new Int32Array(2) as unknown as Float32Array }]]);
  assert.throws(() => encodeSafetensors(f32), /w: dtype F32 needs Float32Array data, got Int32Array/);
  // more values than the shape holds, or fewer
  for (const data of [new Float32Array(5), new Float32Array(3)]) {
    const t = new Map<string, StTensor>([['w', { dtype: 'F32', shape: [2, 2], data }]]);
    assert.throws(() => encodeSafetensors(t), (e: Error) => e instanceof SafetensorsError && e.message === `w: shape [2,2] holds 4 values, data has ${data.length}`);
  }
});

test('a tensor named __proto__ round-trips like any other; one named __metadata__ is refused when written', () => {
  const t = (v: number[]) => ({ dtype: 'F32' as const, shape: [v.length], data: Float32Array.from(v) });
  const back = decodeSafetensors(encodeSafetensors(new Map([['__proto__', t([1, 2])], ['w', t([3])]])));
  assert.deepEqual([...back.tensors.keys()].sort(), ['__proto__', 'w']);
  assert.deepEqual(Array.from(back.tensors.get('__proto__')!.data as Float32Array), [1, 2]);
  assert.throws(() => encodeSafetensors(new Map([['__metadata__', t([1])]])), /cannot be named __metadata__/);
});
