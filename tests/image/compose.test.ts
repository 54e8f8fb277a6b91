import { describe, expect, it } from "vitest";
import {
  drawText,
  GLYPH_ADVANCE,
  hasGlyph,
  LINE_HEIGHT,
  measureText,
} from "../../src/image/bitmap-font.js";
import { sideBySide } from "../../src/image/compose.js";
import type { FloatImage } from "../../src/image/float-image.js";

function solid(width: number, height: number, rgb: [number, number, number]): FloatImage {
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { width, height, data };
}

function pixel(image: FloatImage, x: number, y: number): number[] {
  const o = (y * image.width + x) * 3;
  return Array.from(image.data.subarray(o, o + 3));
}

/** Rows of "#" (ink, any non-white pixel) and "." for a region. */
function inkRows(
  image: FloatImage,
  x0: number,
  y0: number,
  width: number,
  height: number,
): string[] {
  const rows: string[] = [];
  for (let y = y0; y < y0 + height; y++) {
    let row = "";
    for (let x = x0; x < x0 + width; x++) row += pixel(image, x, y).some((v) => v < 1) ? "#" : ".";
    rows.push(row);
  }
  return rows;
}

describe("bitmap font", () => {
  it("has a glyph for every printable ASCII character", () => {
    for (let code = 32; code < 127; code++) expect(hasGlyph(String.fromCharCode(code))).toBe(true);
    expect(hasGlyph("é")).toBe(false);
  });

  it("draws the glyph's pixels at the requested scale", () => {
    const canvas = solid(12, 20, [1, 1, 1]);
    drawText(canvas, "1", 1, 1, { scale: 2 });
    const one = ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."];
    const expected = one.flatMap((row) => {
      const wide = [...row].map((c) => c + c).join("");
      return [wide, wide];
    });
    expect(inkRows(canvas, 1, 1, 10, 14)).toEqual(expected);
    expect(pixel(canvas, 5, 1)).toEqual([0, 0, 0]);
  });

  it("measures text and draws unknown characters as ?", () => {
    expect(measureText("", 3)).toBe(0);
    expect(measureText("ab", 1)).toBe(2 * GLYPH_ADVANCE - 1);
    expect(measureText("ab", 3)).toBe(3 * (2 * GLYPH_ADVANCE - 1));
    const unknown = solid(6, 9, [1, 1, 1]);
    const question = solid(6, 9, [1, 1, 1]);
    drawText(unknown, "é", 0, 0);
    drawText(question, "?", 0, 0);
    expect(unknown.data).toEqual(question.data);
  });

  it("skips pixels outside the image and past clipRight", () => {
    const canvas = solid(8, 5, [1, 1, 1]);
    drawText(canvas, "MMMM", -3, -2, { clipRight: 4 });
    expect(inkRows(canvas, 4, 0, 4, 5).join("")).not.toContain("#");
    expect(inkRows(canvas, 0, 0, 4, 5).join("")).toContain("#");
    expect(() => drawText(canvas, "x", 0, 0, { scale: 1.5 })).toThrow(/positive integer/);
  });
});

describe("sideBySide", () => {
  it("places images left to right with a background-coloured gap", () => {
    const red = solid(3, 2, [1, 0, 0]);
    const blue = solid(2, 4, [0, 0, 1]);
    const out = sideBySide([red, blue], { gap: 2, background: [0, 1, 0] });
    expect([out.width, out.height]).toEqual([7, 4]);
    expect(pixel(out, 0, 0)).toEqual([1, 0, 0]);
    expect(pixel(out, 2, 1)).toEqual([1, 0, 0]);
    expect(pixel(out, 3, 0)).toEqual([0, 1, 0]);
    expect(pixel(out, 4, 3)).toEqual([0, 1, 0]);
    expect(pixel(out, 5, 3)).toEqual([0, 0, 1]);
    expect(pixel(out, 0, 3)).toEqual([0, 1, 0]);
  });

  it("writes each label under its own image, centred, and cuts long ones at the image edge", () => {
    const gray = solid(40, 10, [0.5, 0.5, 0.5]);
    const out = sideBySide([gray, gray], {
      gap: 4,
      labels: ["a", "a very long label"],
      labelScale: 1,
    });
    const band = LINE_HEIGHT + 4;
    expect(out.height).toBe(10 + band);
    const first = inkRows(out, 0, 10, 40, band);
    // "a" is 5 px wide: centred at x = floor((40 - 5) / 2) = 17, two rows below the image.
    expect(first[2 + 2]).toBe(`${".".repeat(17)}.###.${".".repeat(18)}`);
    expect(inkRows(out, 40, 10, 4, band).join("")).not.toContain("#");
    expect(inkRows(out, 44, 10, 40, band).join("")).toContain("#");
  });

  it("picks a label scale from the image width", () => {
    const small = sideBySide([solid(128, 4, [1, 1, 1])], { labels: ["x"] });
    const large = sideBySide([solid(512, 4, [1, 1, 1])], { labels: ["x"] });
    expect(small.height - 4).toBe(LINE_HEIGHT + 4);
    expect(large.height - 4).toBe(2 * (LINE_HEIGHT + 4));
  });

  it("rejects bad input with a clear message", () => {
    const image = solid(2, 2, [0, 0, 0]);
    expect(() => sideBySide([])).toThrow("sideBySide needs at least one image");
    expect(() => sideBySide([image], { labels: ["a", "b"] })).toThrow(
      "sideBySide got 2 labels for 1 images",
    );
    expect(() => sideBySide([image], { gap: -1 })).toThrow(
      "gap must be a non-negative integer, got -1",
    );
    expect(() => sideBySide([image, { width: 2, height: 2, data: new Float32Array(3) }])).toThrow(
      /^image 2: 3 values do not make a 2x2 RGB image/,
    );
  });
});
