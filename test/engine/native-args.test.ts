/**
 * The native addon's arguments, checked before a kernel runs: moco3's own callers (src/engine/native-kernels.ts,
 * src/data/augment.ts) pass float32 and int32 arrays of the shapes TensorFlow.js has checked, but the addon
 * counted sizes in elements of whatever array it was given and trusted the shapes: a Uint8Array where floats go
 * was read or written 4 times its bytes, shapes that do not broadcast read past an operand, a negative size
 * wrote before a buffer. Each such call is now a JavaScript error, the process whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeAddon } from '../../src/engine/native.ts';

// the addon's calls, untyped: these tests pass what its callers never should
const a = nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
const F = (...v: number[]) => Float32Array.from(v);
const elementType = /not a typed array of the element type the kernel reads/;

test('a typed array of another element type is a TypeError, never read or written as floats', () => {
  assert.ok(a, 'the native addon is built (npm install builds it)');
  const cases: [string, () => unknown][] = [
    ['unary, Uint8Array input', () => a.unary!(0, new Uint8Array(16), new Float32Array(16), 0)],
    ['unary, Int32Array output', () => a.unary!(0, F(1, 2, 3, 4), new Int32Array(4), 0)],
    ['unary, Float64Array input', () => a.unary!(0, new Float64Array(4), new Float32Array(4), 0)],
    ['gelu, Uint8Array dy', () => a.gelu!(F(1, 2), new Uint8Array(2), new Float32Array(2))],
    ['softmax, Uint8Array', () => a.softmax!(new Uint8Array(4), new Float32Array(4), 2)],
    ['binary, Uint8Array operand', () => a.binary!(0, new Uint8Array(4), [4], F(1), [1], new Float32Array(4))],
    ['compare, Float32Array output (a bool tensor is bytes)', () => a.compare!(0, F(1, 2, 3, 4), [4], F(2), [1], new Float32Array(4))],
    ['reduce, Uint8Array', () => a.reduce!(0, new Uint8Array(3), [3], [0], new Float32Array(1), false)],
    ['transpose, Uint8Array (1-byte elements)', () => a.transpose!(new Uint8Array(4), [2, 2], [1, 0], new Uint8Array(4))],
    ['copyBox, Float64Array output', () => a.copyBox!(F(1, 2, 3, 4), [4], [0], [4], new Float64Array(4), [4], [0])],
    ['matmul, Uint8Array batch index', () => a.matmul!(F(1, 2, 3, 4), F(1, 2, 3, 4), new Float32Array(4), 1, 2, 2, 2, false, false, 0, 0, new Uint8Array(1), null)],
    ['biasAct, Uint8Array bias', () => a.biasAct!(new Float32Array(4), 2, new Uint8Array(2), -1, 0)],
    ['layerNorm, Uint8Array x', () => a.layerNorm!(new Uint8Array(4), F(1, 1), F(0, 0), 1e-5, new Float32Array(4), new Float32Array(2), new Float32Array(2))],
    ['augment, Uint8Array output', () => a.augment!(new Uint8Array(4 * 4 * 3), 1, 4, 4, 3, crop(1, 4), 1, 2, null, new Uint8Array(2 * 2 * 3))],
    ['augment, Float32Array params', () => a.augment!(new Uint8Array(4 * 4 * 3), 1, 4, 4, 3, Float32Array.from(crop(1, 4)), 1, 2, null, new Float32Array(2 * 2 * 3))],
  ];
  for (const [what, call] of cases) assert.throws(call, (e: Error) => e instanceof TypeError && elementType.test(e.message), what);
  // the element types it takes still work: any 4-byte type for a copy of bits
  const o = new Int32Array(4);
  a.transpose!(Int32Array.from([1, 2, 3, 4]), [2, 2], [1, 0], o);
  assert.deepEqual([...o], [1, 3, 2, 4]);
  const cmp = new Uint8Array(4);
  a.compare!(0, F(1, 2, 3, 4), [4], F(2), [1], cmp);
  assert.deepEqual([...cmp], [0, 0, 1, 1]);
});

/** augment's parameters: `count` whole-image crops of an s x s image (20 numbers an image). */
function crop(count: number, s: number): Float64Array {
  const p = new Float64Array(count * 20);
  for (let j = 0; j < count; j++) p.set([0, 0, 0, s, s], j * 20);
  return p;
}

test('shapes that do not broadcast are refused (the smaller operand was read past its end); a size 0 against 1 is 0', () => {
  assert.throws(() => a.binary!(0, F(1, 2), [2], F(1, 2, 3), [3], new Float32Array(3)), /binary: shapes that do not broadcast/);
  assert.throws(() => a.binary!(0, new Float32Array(6), [2, 3], new Float32Array(8), [4, 2], new Float32Array(12)), /do not broadcast/);
  assert.throws(() => a.compare!(0, new Float32Array(0), [0], new Float32Array(5), [5], new Uint8Array(5)), /do not broadcast/);
  // [0] + [1] is [0], as TensorFlow.js makes it: no output element (it was 1, the larger size taken)
  a.binary!(0, new Float32Array(0), [0], F(5), [1], new Float32Array(0));
  assert.throws(() => a.binary!(0, new Float32Array(0), [0], F(5), [1], new Float32Array(1)), /output size mismatch/);
  // and broadcasting that is right still works
  const o = new Float32Array(4);
  a.binary!(0, F(1, 2, 3, 4), [2, 2], F(10, 20), [2], o);
  assert.deepEqual([...o], [11, 22, 13, 24]);
});

test('a size that is negative, not whole or past 2^53 is refused (two negatives made a positive size; a box moved before its buffer)', () => {
  const size = /a size that is not a whole number from 0 to 2\^53/;
  assert.throws(() => a.binary!(0, F(1, 2, 3, 4), [-2, -2], F(10, 20, 30, 40), [2, 2], new Float32Array(4)), size);
  assert.throws(() => a.copyBox!(F(1, 2, 3, 4, 5), [1, 1, 5], [0, 0, 0], [-4, -1, 4], new Float32Array(5), [1, 1, 5], [5, 2, 0]), size);
  assert.throws(() => a.transpose!(F(1, 2), [2.5], [0], new Float32Array(2)), size);
  assert.throws(() => a.reduce!(0, F(1), [2 ** 60], [0], new Float32Array(1), false), size);
  // sizes each within 2^53 whose product passes 2^64 + 4, which wrapped to 4 and passed the size check of 4 elements
  const wide = [4 * 5 * 5581 * 8681, 49477 * 384773];
  const past = /sizes whose product passes 2\^63/;
  assert.throws(() => a.transpose!(new Float32Array(4), wide, [1, 0], new Float32Array(4)), past);
  assert.throws(() => a.copyBox!(new Float32Array(4), wide, [1, 0], [1, 4], new Float32Array(4), [1, 4], [0, 0]), past);
  assert.throws(() => a.binary!(0, new Float32Array(4), wide, F(1), [1], new Float32Array(4)), past);
  assert.throws(() => a.reduce!(0, new Float32Array(4), wide, [0], new Float32Array(4), false), past);
  // a list whose element's getter throws: that error, and the process goes on (it was fatal)
  const s = [1];
  Object.defineProperty(s, 0, { get: () => { throw new Error('boom'); } });
  assert.throws(() => a.binary!(0, F(1), s, F(1), [1], new Float32Array(1)), /boom/);
  // one whose getter grows it: read as long as it was (a write past the list's end)
  const g: number[] = [1];
  Object.defineProperty(g, 0, { get: () => (g.push(...new Array(1000).fill(1)), 1) });
  assert.doesNotThrow(() => a.binary!(0, F(1), g, F(1), [1], new Float32Array(1)));
});

test('reduce refuses an op it has not (any other was a min); augment a negative count or an image size past 4096', () => {
  assert.throws(() => a.reduce!(42, F(5, 1, 9), [3], [0], new Float32Array(1), false), /reduce: unknown op/);
  const o = new Float32Array(1);
  a.reduce!(2, F(5, 1, 9), [3], [0], o, false);
  assert.deepEqual([...o], [1]);
  const src = new Uint8Array(4 * 4 * 3);
  assert.throws(() => a.augment!(src, 1, 4, 4, 3, crop(1, 4), -5, 2, null, new Float32Array(12)), /augment: bad arguments/);
  assert.throws(() => a.augmentAsync!(src, 1, 4, 4, 3, crop(1, 4), -5, 2, null, new Float32Array(12)), /augment: bad arguments/);
  assert.throws(() => a.augment!(src, 1, 4, 4, 3, crop(1, 4), 1, 2 ** 31 - 1, null, new Float32Array(3)), /augment: bad arguments/);
});

test('an output, operand, row length, box or bias one element off what the call says is refused (it was read or written past its end)', () => {
  assert.throws(() => a.unary!(1, F(1, 2, 3, 4), new Float32Array(3), 0), /unary: bad arguments/);
  assert.throws(() => a.binary!(0, F(1, 2, 3), [4], F(1, 2, 3, 4), [4], new Float32Array(4)), /binary: operand size mismatch/);
  assert.throws(() => a.binary!(0, F(1, 2, 3, 4), [4], F(1, 2, 3), [4], new Float32Array(4)), /binary: operand size mismatch/);
  // 5 values are no whole number of rows of 2
  assert.throws(() => a.softmax!(F(1, 2, 3, 4, 5), new Float32Array(5), 2), /softmax: bad arguments/);
  // a box of 3 from 2 in a source of 4: one past its end
  assert.throws(() => a.copyBox!(F(1, 2, 3, 4), [4], [2], [3], new Float32Array(4), [4], [0]), /copyBox: box out of bounds/);
  // x one short of its rows times gamma's length
  assert.throws(() => a.layerNorm!(F(1, 2, 3), F(1, 1), F(0, 0), 1e-5, new Float32Array(4), new Float32Array(2), new Float32Array(2)), /layerNorm: size mismatch/);
  // an axis twice: the output would take 4 elements of a [2, 3]'s first axis
  assert.throws(() => a.transpose!(F(1, 2, 3, 4, 5, 6), [2, 3], [0, 0], new Float32Array(6)), /transpose: bad perm/);
  // a bias of 2 for rows of 4 (it takes 4, or 1 for all)
  assert.throws(() => a.biasAct!(new Float32Array(8), 4, F(1, 2), -1, 0), /biasAct: bias length/);
  // the same calls with the sizes right
  const o = new Float32Array(4);
  a.copyBox!(F(1, 2, 3, 4), [4], [1], [3], o, [4], [0]);
  assert.deepEqual([...o], [2, 3, 4, 0]);
  const y = F(0, 0, 0, 0, 1, 1, 1, 1);
  a.biasAct!(y, 4, F(1, 2, 3, 4), -1, 0);
  assert.deepEqual([...y], [1, 2, 3, 4, 2, 3, 4, 5]);
});

test('augment refuses a crop box past its image on either axis', () => {
  const src = new Uint8Array(2 * 4 * 4 * 3).map((_, i) => (i * 37) % 256);
  const wide = crop(1, 4);
  wide[4] = 5; // a width of 5 in an image 4 wide
  assert.throws(() => a.augment!(src, 2, 4, 4, 3, wide, 1, 2, null, new Float32Array(12)), /augment: a crop box outside its image/);
  const tall = crop(1, 4);
  tall[3] = 5;
  assert.throws(() => a.augment!(src, 2, 4, 4, 3, tall, 1, 2, null, new Float32Array(12)), /augment: a crop box outside its image/);
});

test('augmentAsync works on its own copy of the parameters: a change the caller makes once the call has returned does not reach it', async () => {
  const src = new Uint8Array(2 * 64 * 64 * 3).map((_, i) => (i * 37) % 256);
  // 512 whole-image views of the second image, blurred: long enough that the change below lands while they are made
  const count = 512;
  const p = crop(count, 64);
  for (let j = 0; j < count; j++) (p[j * 20] = 1), (p[j * 20 + 15] = 1), (p[j * 20 + 16] = 1.5);
  const want = new Float32Array(count * 48 * 48 * 3);
  a.augment!(src, 2, 64, 64, 3, p, count, 48, null, want);
  const got = new Float32Array(want.length);
  const pending = a.augmentAsync!(src, 2, 64, 64, 3, p, count, 48, null, got) as Promise<void>;
  for (let j = 0; j < count; j++) p.set([0, 0, 0, 48, 48], j * 20), (p[j * 20 + 15] = 0);
  await pending;
  let differ = 0;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) differ++;
  assert.equal(differ, 0, 'values that differ from the views of the parameters as passed');
});
