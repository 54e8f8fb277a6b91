import { describe, expect, it } from "vitest";
import { floatToRgb8, imagesFromBatch, rgb8ToFloat } from "../../src/image/float-image.js";
import { decodePng, encodePng } from "../../src/image/png.js";
import { maxAbsDiff, openCaseTensors } from "../fixtures.js";

describe("floatToRgb8", () => {
  it("clips and rounds like numpy (half to even, float32 product)", () => {
    // Expected bytes computed with numpy: (np.float32(v) * 255).round().astype("uint8").
    const values = [126.5 / 255, 127.5 / 255, 2.5 / 255, 3.5 / 255, 1e-9, 0.999, 0.00196078431];
    const expected = [126, 128, 2, 4, 0, 255, 0];
    const data = Float32Array.from(values.flatMap((v) => [v, v, v]));
    const image = { width: values.length, height: 1, data };
    const bytes = floatToRgb8(image);
    expect(Array.from(bytes.filter((_, i) => i % 3 === 0))).toEqual(expected);
  });

  it("clips out-of-range values and maps NaN to 0", () => {
    const data = Float32Array.of(-0.5, 1.5, Number.NaN, 0, 1, Number.POSITIVE_INFINITY);
    expect(Array.from(floatToRgb8({ width: 2, height: 1, data }))).toEqual([
      0, 255, 0, 0, 255, 255,
    ]);
  });

  it("rejects data that is not width x height x 3", () => {
    expect(() => floatToRgb8({ width: 2, height: 2, data: new Float32Array(11) })).toThrow(
      "image: 11 values do not make a 2x2 RGB image (need 12)",
    );
  });
});

describe("rgb8ToFloat", () => {
  it("divides by 255, repeats gray and drops alpha", () => {
    const gray = rgb8ToFloat({
      width: 2,
      height: 1,
      channels: 2,
      data: Uint8Array.of(51, 0, 255, 9),
    });
    expect(Array.from(gray.data)).toEqual([0.2, 0.2, 0.2, 1, 1, 1].map(Math.fround));
    const rgba = rgb8ToFloat({
      width: 1,
      height: 1,
      channels: 4,
      data: Uint8Array.of(0, 102, 255, 7),
    });
    expect(Array.from(rgba.data)).toEqual([0, 0.4, 1].map(Math.fround));
  });

  it("rejects a channel count or length that does not fit", () => {
    expect(() =>
      rgb8ToFloat({ width: 2, height: 1, channels: 5, data: new Uint8Array(10) }),
    ).toThrow(/with 5 channels/);
    expect(() =>
      rgb8ToFloat({ width: 2, height: 1, channels: 3, data: new Uint8Array(5) }),
    ).toThrow(/5 bytes do not make a 2x1 image/);
  });
});

describe("images from the reference pipelines", () => {
  // Each fixture image through 8 bits and PNG and back: off by at most half a step.
  const file = openCaseTensors("pipelines");
  const keys = file.keys().filter((key) => key.endsWith(".image"));

  it("has images to test", () => {
    expect(keys.length).toBeGreaterThan(0);
  });

  for (const key of keys) {
    it(`${key} survives floatToRgb8 -> PNG -> rgb8ToFloat within 0.5/255`, () => {
      const [batch, height, width, channels] = file.info(key).shape;
      expect(channels).toBe(3);
      const images = imagesFromBatch(file.readFloat32(key), batch, height, width);
      for (const image of images) {
        const png = encodePng({ width, height, data: floatToRgb8(image) });
        const back = rgb8ToFloat(decodePng(png, key));
        expect(maxAbsDiff(back.data, image.data)).toBeLessThanOrEqual(0.5 / 255 + 1e-7);
      }
    });
  }
});

describe("imagesFromBatch", () => {
  it("splits without copying and checks the size", () => {
    const data = new Float32Array(2 * 2 * 3 * 3).map((_, i) => i);
    const [first, second] = imagesFromBatch(data, 2, 2, 3);
    expect(second.data[0]).toBe(18);
    expect(first.data.buffer).toBe(data.buffer);
    expect(() => imagesFromBatch(data, 3, 2, 3)).toThrow(/do not make 3x2x3x3/);
  });
});
