/**
 * Seeded random weights for a known key/shape list, generated on each read: a full-size model
 * can be built and benchmarked without its multi-gigabyte file and without holding its weights
 * in memory. Every tensor has its own stream, seeded from the source seed and a hash of its
 * key, so reading one tensor never needs the others and the order of reads does not matter.
 *
 * Values are float16 (so float32 and float16 builds see the same numbers):
 * - `*.bias`: 0; other 1-D tensors (every GroupNorm/LayerNorm weight in these models): 1;
 * - everything else: uniform with variance 1/fan_in (fan_in = product of all but the first
 *   dimension), which keeps activations of order one through each layer, finite in float16.
 *   Draws come from a 4096-level grid spanning the range, which makes generation a table
 *   lookup per value.
 */
import { float16ArrayToFloat32, float32ToFloat16Bits } from "../util/float16.js";
import { SeededRandom } from "../util/random.js";
import { KeyedWeightSource, type WeightInfo } from "./source.js";
import type { Shape } from "./weight-modules.js";

const LEVELS = 4096;
const ONE_FLOAT16 = 0x3c00;

export class RandomWeightSource extends KeyedWeightSource<Shape> {
  constructor(
    label: string,
    shapes: ReadonlyMap<string, Shape>,
    readonly seed = 0,
  ) {
    super(label, shapes);
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`${label}: seed must be a non-negative integer, got ${seed}`);
    }
  }

  identity(): unknown {
    // The generator is fixed by this file; bump the version when it changes.
    return { random: 1, label: this.label, seed: this.seed, tensors: this.entries.size };
  }

  info(key: string): WeightInfo {
    return { dtype: "F16", shape: this.entry(key) };
  }

  readFloat32(key: string): Float32Array {
    return float16ArrayToFloat32(this.readFloat16(key));
  }

  readFloat16(key: string): Uint16Array {
    const shape = this.entry(key);
    const count = shape.reduce((a, b) => a * b, 1);
    const out = new Uint16Array(count);
    if (key.endsWith(".bias")) return out;
    if (shape.length === 1) return out.fill(ONE_FLOAT16);

    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    const halfWidth = Math.sqrt(3 / Math.max(fanIn, 1));
    const table = new Uint16Array(LEVELS);
    for (let i = 0; i < LEVELS; i++) {
      table[i] = float32ToFloat16Bits(halfWidth * (((i + 0.5) / LEVELS) * 2 - 1));
    }
    // xoshiro128** (the generator of SeededRandom), run on local variables: this loop
    // produces billions of values for a full-size model.
    const seeding = new SeededRandom(streamSeed(this.seed, key));
    let s0 = seeding.nextUint32();
    let s1 = seeding.nextUint32();
    let s2 = seeding.nextUint32();
    let s3 = seeding.nextUint32() | 1;
    // Two 12-bit draws from each 32-bit output.
    for (let i = 0; i < count; i += 2) {
      const x = Math.imul(s1, 5);
      const bits = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      out[i] = table[bits >>> 20];
      if (i + 1 < count) out[i + 1] = table[bits & (LEVELS - 1)];
    }
    return out;
  }
}

/** A 53-bit seed from the source seed and the key (two independent FNV-1a hashes). */
export function streamSeed(seed: number, key: string): number {
  const text = `${seed}\u0000${key}`;
  let low = 0x811c9dc5;
  let high = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    low = Math.imul(low ^ c, 0x01000193);
    high = Math.imul(high ^ c, 0x01000193) ^ (high >>> 13);
  }
  return (high >>> 11) * 2 ** 32 + (low >>> 0);
}
