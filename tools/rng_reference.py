#!/usr/bin/env python3
"""Reference for moco3's random streams (src/engine/rng.ts), in plain Python integers.

xoshiro128** as its authors' C code (prng.di.unimi.it/xoshiro128starstar.c) writes it, and moco3's seeding:
the key path hashed to 32 bits (FNV-1a per string, murmur3's finaliser per key), expanded to the 128-bit
state by splitmix32-style steps. Prints the values test/engine/rng.test.ts expects:

    python3 tools/rng_reference.py

Standard library only.
"""
M = 0xFFFFFFFF


def rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & M


def mul(a, b):
    return (a * b) & M


def fmix32(h):
    h ^= h >> 16
    h = mul(h, 0x85EBCA6B)
    h ^= h >> 13
    h = mul(h, 0xC2B2AE35)
    h ^= h >> 16
    return h


def hash_string(s, h):
    for ch in s:
        h = mul(h ^ ord(ch), 0x01000193)
    return fmix32(h ^ len(s))


def hash_keys(keys):
    h = 0x9E3779B9
    for k in keys:
        if isinstance(k, int):
            lo, hi = k & M, (k >> 32) & M
            h = fmix32(h ^ fmix32((lo + 0x632BE5AB) & M))
            h = fmix32(h ^ fmix32((hi + 0x85157AF5) & M))
        else:
            h = fmix32(h ^ hash_string(k, 0x811C9DC5))
    return h


class Xoshiro128ss:
    def __init__(self, state):
        self.s = list(state)

    def next(self):
        s = self.s
        result = mul(rotl(mul(s[1], 5), 7), 9)
        t = (s[1] << 9) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
        return result

    def uniform(self):
        a = self.next() >> 5
        b = self.next() >> 6
        return (a * 67108864 + b) / 9007199254740992


def seeded(keys):
    x = hash_keys(keys)
    state = []
    for _ in range(4):
        x = (x + 0x9E3779B9) & M
        state.append(fmix32(x))
    if not any(state):
        state[0] = 1
    return Xoshiro128ss(state)


if __name__ == '__main__':
    g = Xoshiro128ss([1, 2, 3, 4])
    print('state (1, 2, 3, 4):', [g.next() for _ in range(6)])
    for keys in ([0, 'aug', 5], ['init', 7], [2**40 + 3, 'order']):
        g = seeded(keys)
        print(f'{keys}: hash {hash_keys(keys):#010x}, first {[g.next() for _ in range(3)]}, uniform {seeded(keys).uniform()!r}')
