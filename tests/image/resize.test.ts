import { describe, expect, it } from "vitest";
import { floatToRgb8, rgb8ToFloat } from "../../src/image/float-image.js";
import { fitImage, type ResampleFilter, resizeImage } from "../../src/image/resize.js";
import { maxAbsDiff } from "../fixtures.js";
import { pattern, REFERENCE } from "./helpers.js";

// The 13x9 8-bit source that make-reference.py resized with Pillow.
const source = rgb8ToFloat({
  width: 13,
  height: 9,
  channels: 3,
  data: floatToRgb8(pattern(13, 9, 0)),
});

function toBytes(values: Float32Array): number[] {
  return Array.from(values, (v) => v * 255);
}

describe("resizeImage against Pillow", () => {
  // Pillow rounds to 8 bits at the end of each pass; we stay in float. Resizing along one
  // axis (one pass) must round to Pillow's bytes, but for exact ties (x.5), which Pillow's
  // fixed-point weights may break either way; along both axes, Pillow's rounding between the
  // passes leaves up to about one step of difference.
  const filters: ResampleFilter[] = ["lanczos", "bicubic", "bilinear"];
  for (const filter of filters) {
    for (const [width, height] of [
      [5, 9],
      [30, 9],
      [13, 4],
    ]) {
      it(`${filter} 13x9 -> ${width}x${height} (one axis) rounds to Pillow's bytes`, () => {
        const out = resizeImage(source, width, height, { filter });
        const expected = REFERENCE.resize[`${filter}.${width}x${height}`];
        expect(maxAbsDiff(toBytes(out.data), expected)).toBeLessThanOrEqual(0.5 + 1e-4);
      });
    }
    for (const [width, height] of [
      [7, 5],
      [20, 15],
    ]) {
      it(`${filter} 13x9 -> ${width}x${height} is within 1.5/255 of Pillow`, () => {
        const out = resizeImage(source, width, height, { filter });
        const expected = REFERENCE.resize[`${filter}.${width}x${height}`];
        expect(maxAbsDiff(toBytes(out.data), expected)).toBeLessThanOrEqual(1.5);
      });
    }
    it(`${filter} with a fractional source box`, () => {
      const out = resizeImage(source, 6, 6, { filter, box: [2.5, 0.5, 10.5, 8.5] });
      expect(maxAbsDiff(toBytes(out.data), REFERENCE.resize[`${filter}.box`])).toBeLessThanOrEqual(
        1.5,
      );
    });
  }
});

describe("resizeImage", () => {
  it("returns a copy at the same size", () => {
    const out = resizeImage(source, 13, 9);
    expect(out.data).toEqual(source.data);
    expect(out.data).not.toBe(source.data);
  });

  it("keeps a constant image constant, up and down", () => {
    const flat = { width: 10, height: 6, data: new Float32Array(180).fill(0.3) };
    for (const [w, h] of [
      [3, 2],
      [25, 17],
    ]) {
      const out = resizeImage(flat, w, h);
      expect(maxAbsDiff(out.data, new Float32Array(w * h * 3).fill(0.3))).toBeLessThan(1e-6);
    }
  });

  it("clips the overshoot of Lanczos at a hard edge to [0, 1]", () => {
    const edge = { width: 8, height: 1, data: new Float32Array(24) };
    edge.data.fill(1, 12);
    const out = resizeImage(edge, 21, 1);
    expect(Math.min(...out.data)).toBe(0);
    expect(Math.max(...out.data)).toBe(1);
  });

  it("rejects bad sizes, boxes and filters", () => {
    expect(() => resizeImage(source, 0, 5)).toThrow(
      "cannot resize to 0x5: the size must be positive integers",
    );
    expect(() => resizeImage(source, 4, 4, { box: [0, 0, 14, 9] })).toThrow(
      /outside the 13x9 image/,
    );
    expect(() => resizeImage(source, 4, 4, { box: [3, 0, 3, 9] })).toThrow(/is empty/);
    expect(() => resizeImage(source, 4, 4, { filter: "nearest" as ResampleFilter })).toThrow(
      'unknown resampling filter "nearest"',
    );
  });
});

describe("fitImage", () => {
  it("stretch is a plain resize", () => {
    expect(fitImage(source, 7, 5).data).toEqual(resizeImage(source, 7, 5).data);
  });

  it("cover crops the centre of the longer side", () => {
    // 13x9 into 9x9: the centre 9x9 region, at scale 1.
    const out = fitImage(source, 9, 9, "cover");
    const centre = resizeImage(source, 9, 9, { box: [2, 0, 11, 9] });
    expect(out.data).toEqual(centre.data);
    for (let y = 0; y < 9; y++) {
      for (let x = 0; x < 9; x++) {
        for (let c = 0; c < 3; c++) {
          expect(out.data[(y * 9 + x) * 3 + c]).toBeCloseTo(
            source.data[(y * 13 + x + 2) * 3 + c],
            6,
          );
        }
      }
    }
    expect(() => fitImage(source, 9, 9, "fill" as "cover")).toThrow(/unknown fit mode "fill"/);
  });
});
