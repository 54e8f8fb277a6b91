// The array conversion to float16 (its short path on the bits for normal values) against the
// scalar conversion, over every float16 boundary that matters: each half value, the midpoints
// between neighbours (ties to even), just above and below them, and the edges of the range.
import { describe, expect, it } from "vitest";
import {
  float16BitsToFloat32,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
} from "../../src/util/float16.js";

function bitsOf(value: number): number {
  return new Uint32Array(Float32Array.of(value).buffer)[0];
}

function fromBits(bits: number): number {
  return new Float32Array(Uint32Array.of(bits).buffer)[0];
}

describe("float32ArrayToFloat16", () => {
  it("rounds every value as the scalar conversion does", () => {
    const values: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      const v = float16BitsToFloat32(h);
      const next = float16BitsToFloat32(h + 1);
      const mid = Math.fround((v + next) / 2);
      for (const x of [v, mid, fromBits(bitsOf(mid) + 1), fromBits(bitsOf(mid) - 1)])
        values.push(x, -x);
    }
    values.push(65504, 65519.99, 65520, 65536, 1e9, Infinity, -Infinity, Number.NaN, 0, -0);
    values.push(2 ** -14, 2 ** -15, 2 ** -24, 2 ** -25, 2 ** -26, 1e-30);
    const input = Float32Array.from(values);
    const fast = float32ArrayToFloat16(input);
    const scalar = Uint16Array.from(input, (v) => float32ToFloat16Bits(v));
    let mismatches = 0;
    for (let i = 0; i < input.length; i++) if (fast[i] !== scalar[i]) mismatches++;
    expect(mismatches).toBe(0);
    // Ties go to even: 1 + 2^-11 lies halfway between 1 and the next half value.
    expect(float32ArrayToFloat16(Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11))).toEqual(
      Uint16Array.of(0x3c00, 0x3c02),
    );
  });

  it("reads a view into a larger buffer from its own offset", () => {
    const backing = Float32Array.of(7, 1.5, -2, 9);
    expect(float32ArrayToFloat16(backing.subarray(1, 3))).toEqual(Uint16Array.of(0x3e00, 0xc000));
  });
});
