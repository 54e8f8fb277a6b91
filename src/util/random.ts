/**
 * The toolkit's seeded random number generator.
 *
 * Uniform draws come from xoshiro128** (Blackman and Vigna, "Scrambled linear pseudorandom
 * number generators", 2018), seeded from a 53-bit integer (all its bits) through SplitMix32 so
 * that nearby seeds give unrelated streams. Normal draws use the Box-Muller transform on two uniforms.
 * The stream is fixed by this file: the same seed gives the same numbers on every platform.
 * It is not the stream of torch's generator; to reproduce a Python run exactly, pass its
 * latents and noise in (see `NoiseSource`).
 */
export class SeededRandom {
  private readonly state = new Uint32Array(4);
  private spareNormal: number | undefined;

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`seed must be a non-negative integer, got ${seed}`);
    }
    // Both 32-bit halves feed the state: the low half through one SplitMix32 sequence, the high
    // half (up to 21 bits) through a second one started elsewhere on the Weyl sequence, so no
    // two seeds below 2^53 share a state by construction. Seeds below 2^32 have a zero high half
    // and keep the stream they always had.
    const low = seed >>> 0;
    const high = Math.floor(seed / 2 ** 32);
    let mix = low;
    let mixHigh = (high ^ 0x6a09e667) >>> 0;
    for (let i = 0; i < 4; i++) {
      mix = (mix + 0x9e3779b9) >>> 0;
      this.state[i] = splitMix32(mix);
      if (high !== 0) {
        mixHigh = (mixHigh + 0x9e3779b9) >>> 0;
        this.state[i] = (this.state[i] ^ splitMix32(mixHigh ^ Math.imul(high, 0x27d4eb2f))) >>> 0;
      }
    }
    if (this.state.every((v) => v === 0)) this.state[0] = 1;
  }

  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const s = this.state;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits of precision. */
  uniform(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** Standard normal draw. */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const value = this.spareNormal;
      this.spareNormal = undefined;
      return value;
    }
    let u1 = this.uniform();
    while (u1 <= Number.MIN_VALUE) u1 = this.uniform();
    const u2 = this.uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    this.spareNormal = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  }

  /** A tensor of `count` standard normal values. */
  normalArray(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.normal();
    return out;
  }
}

/** SplitMix32's output function (the finaliser of MurmurHash3). */
function splitMix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Where random tensors come from: every random draw of a pipeline or a stochastic sampler
 * goes through one of these, in order, so a run can be replayed with recorded draws.
 */
/** Seeds that no one asked for: 32 bits, the range every front end accepts and prints. */
export const MAX_SEED = 0xffffffff;

/** A seed for a call that gave none (uniform over 0..MAX_SEED; not reproducible by design). */
export function randomSeed(): number {
  return Math.floor(Math.random() * (MAX_SEED + 1));
}

export interface NoiseSource {
  /** A standard normal tensor of the given shape (row-major). */
  normal(dims: readonly number[]): Float32Array;
}

export function seededNoise(seed: number): NoiseSource {
  const random = new SeededRandom(seed);
  return { normal: (dims) => random.normalArray(elementCount(dims)) };
}

/**
 * Replays recorded draws in order; each must have the asked shape's element count. When
 * `fallback` is given, draws beyond the recorded ones come from it; otherwise running out is
 * an error.
 */
export function recordedNoise(draws: readonly Float32Array[], fallback?: NoiseSource): NoiseSource {
  let index = 0;
  return {
    normal(dims) {
      const count = elementCount(dims);
      if (index >= draws.length) {
        if (fallback) return fallback.normal(dims);
        throw new Error(
          `recorded noise ran out: draw ${index} of shape [${dims.join(",")}] was asked, only ${draws.length} were given`,
        );
      }
      const draw = draws[index];
      if (draw.length !== count) {
        throw new Error(
          `recorded noise draw ${index} has ${draw.length} values, but shape [${dims.join(",")}] needs ${count}`,
        );
      }
      index++;
      return draw.slice();
    },
  };
}

export function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const d of dims) count *= d;
  return count;
}
