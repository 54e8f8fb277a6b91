"""Independent reference for SeededRandom (src/util/random.ts): the first 32-bit outputs of
xoshiro128** for a few seeds, seeded as that file documents, and the first normal draws made
from them (53-bit uniforms, Box-Muller giving the cosine draw, then the sine one). Prints the
values that tests/util/random.test.ts pins. Run: python3 tests/util/random-reference.py"""

import math

M = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


def splitmix32(x):
    z = x & M
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & M
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & M
    return (z ^ (z >> 16)) & M


def seed_state(seed):
    low, high = seed & M, seed >> 32
    mix, mix_high = low, (high ^ 0x6A09E667) & M
    state = []
    for _ in range(4):
        mix = (mix + GOLDEN) & M
        word = splitmix32(mix)
        if high:
            mix_high = (mix_high + GOLDEN) & M
            word ^= splitmix32(mix_high ^ ((high * 0x27D4EB2F) & M))
        state.append(word)
    if not any(state):
        state[0] = 1
    return state


def rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & M


def words(seed):
    s = seed_state(seed)
    while True:
        yield (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 9) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)


def outputs(seed, n):
    stream = words(seed)
    return [next(stream) for _ in range(n)]


def uniform(stream):
    """[0, 1) from two words: their top 27 and 26 bits (exact in a double)."""
    high = next(stream) >> 5
    low = next(stream) >> 6
    return (high * 67108864 + low) / 9007199254740992


def normals(seed, n):
    stream = words(seed)
    out = []
    while len(out) < n:
        u1 = uniform(stream)
        while u1 <= 5e-324:  # Number.MIN_VALUE, the smallest positive double
            u1 = uniform(stream)
        u2 = uniform(stream)
        radius = math.sqrt(-2 * math.log(u1))
        out.append(radius * math.cos(2 * math.pi * u2))
        out.append(radius * math.sin(2 * math.pi * u2))
    return out[:n]


for seed in [0, 1, 42, 4294967295, 4294967296, 4294967297, 2**53 - 1]:
    print(seed, outputs(seed, 4))
for seed in [0, 42]:
    print(seed, [repr(v) for v in normals(seed, 6)])
