"""Independent reference for SeededRandom (src/util/random.ts): the first 32-bit outputs of
xoshiro128** for a few seeds, seeded as that file documents. Prints the values that
tests/util/random.test.ts pins. Run: python3 tests/util/random-reference.py"""

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


def outputs(seed, n):
    s = seed_state(seed)
    out = []
    for _ in range(n):
        out.append((rotl((s[1] * 5) & M, 7) * 9) & M)
        t = (s[1] << 9) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
    return out


for seed in [0, 1, 42, 4294967295, 4294967296, 4294967297, 2**53 - 1]:
    print(seed, outputs(seed, 4))
