/**
 * The random streams every run draws from (src/engine/rng.ts): xoshiro128** against its authors' reference
 * output, and the streams of a few key paths against an independent implementation of the generator and of
 * the key hashing in Python integers (tools/rng_reference.py prints them). A change to either changes every run's
 * initialisation, data order and views: runs would no longer resume exactly, nor repeat the results shipped
 * in docs/results.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashKeys, Rng } from '../../src/engine/rng.ts';

test('xoshiro128**: from the state (1, 2, 3, 4), the reference implementation\'s first outputs', () => {
  const g = new Rng(0);
  Object.assign(g as unknown as Record<string, number>, { s0: 1, s1: 2, s2: 3, s3: 4 });
  assert.deepEqual(Array.from({ length: 6 }, () => g.nextU32()), [11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
});

test('a key path names its stream: hashes and first outputs as the reference computes them; numbers past 2^32 keep their high half', () => {
  const cases: [Array<string | number>, number, number[], number][] = [
    [[0, 'aug', 5], 0xc85e31e2, [876778230, 2371195670, 2283644617], 0.20414083862369514],
    [['init', 7], 0xd4895e8f, [3348480581, 2009958725, 218737242], 0.7796288912592827],
    [[2 ** 40 + 3, 'order'], 0x17ae2576, [3808787791, 1938904400, 2283761942], 0.8868025127905336],
  ];
  for (const [keys, hash, first, uniform] of cases) {
    assert.equal(hashKeys(keys), hash, JSON.stringify(keys));
    const g = new Rng(...keys);
    assert.deepEqual([g.nextU32(), g.nextU32(), g.nextU32()], first, JSON.stringify(keys));
    // 53 bits: the first output's top 27 and the second's top 26
    assert.equal(new Rng(...keys).uniform(), uniform, JSON.stringify(keys));
  }
  // the same keys, the same stream; a number and its string, or keys in another order, another
  assert.equal(new Rng(3, 'aug', 1).nextU32(), new Rng(3, 'aug', 1).nextU32());
  assert.notEqual(hashKeys([3, 'aug', 1]), hashKeys(['3', 'aug', 1]));
  assert.notEqual(hashKeys([3, 'aug', 1]), hashKeys([1, 'aug', 3]));
  assert.notEqual(hashKeys([3]), hashKeys([3 + 2 ** 32]));
});

test('draws built on the stream: ranges, integers, normals in Box-Muller pairs, permutations', () => {
  const a = new Rng(11, 'draws');
  const b = new Rng(11, 'draws');
  for (let i = 0; i < 1000; i++) {
    const u = b.uniform();
    assert.equal(a.range(-2, 3), -2 + 5 * u);
  }
  // int(n) = floor(n u): every value of [0, 7) comes, none outside
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const u = b.uniform();
    const k = a.int(7);
    assert.equal(k, Math.floor(7 * u));
    seen.add(k);
  }
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4, 5, 6]);
  // normals come in pairs from two uniforms: r cos(2 pi v), then r sin(2 pi v), r = sqrt(-2 ln u)
  for (let i = 0; i < 5; i++) {
    const u = b.uniform();
    const v = b.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    assert.equal(a.normal(), r * Math.cos(2 * Math.PI * v));
    assert.equal(a.normal(), r * Math.sin(2 * Math.PI * v));
  }
  const out = a.fillNormal(new Float32Array(4), 1, 0.5);
  for (let i = 0; i < 4; i++) assert.equal(out[i], Math.fround(1 + 0.5 * b.normal()));
  const un = a.fillUniform(new Float32Array(3), 2, 4);
  for (let i = 0; i < 3; i++) assert.equal(un[i], Math.fround(2 + 2 * b.uniform()));
  assert.equal(a.bernoulli(0.3), b.uniform() < 0.3);
  // Fisher-Yates: swaps from the end, position i with int(i + 1)
  const p = a.permutation(6);
  const q = [0, 1, 2, 3, 4, 5];
  for (let i = 5; i > 0; i--) {
    const j = Math.floor((i + 1) * b.uniform());
    [q[i], q[j]] = [q[j]!, q[i]!];
  }
  assert.deepEqual(Array.from(p), q);
  // every order of 3 comes, about equally often
  const counts = new Map<string, number>();
  for (let i = 0; i < 6000; i++) {
    const k = Array.from(a.permutation(3)).join('');
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  for (const [k, n] of counts) assert.ok(n > 850 && n < 1150, `${k}: ${n} of 6000`);
});
