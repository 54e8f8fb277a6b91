import { describe, expect, it } from "vitest";
import type { FloatImage } from "../../src/image/float-image.js";
import {
  compareImages,
  comparisonToJson,
  meanSquaredError,
  peakSignalToNoiseRatio,
  structuralSimilarity,
} from "../../src/image/metrics.js";
import { SeededRandom } from "../../src/util/random.js";
import { pattern, REFERENCE } from "./helpers.js";

function constant(width: number, height: number, value: number): FloatImage {
  return { width, height, data: new Float32Array(width * height * 3).fill(value) };
}

function map(image: FloatImage, f: (value: number, index: number) => number): FloatImage {
  return { ...image, data: image.data.map(f) };
}

/** SSIM written directly from the paper's definition: one 2-D window sum per position. */
function bruteForceSsim(a: FloatImage, b: FloatImage): number {
  const size = 11;
  const weights: number[] = [];
  for (let i = 0; i < size; i++) weights.push(Math.exp(-((i - 5) ** 2) / (2 * 1.5 * 1.5)));
  const sum = weights.reduce((s, w) => s + w, 0);
  const w = weights.map((x) => x / sum);
  const c1 = 0.01 ** 2;
  const c2 = 0.03 ** 2;
  let total = 0;
  for (let c = 0; c < 3; c++) {
    let channelSum = 0;
    let count = 0;
    for (let y = 0; y + size <= a.height; y++) {
      for (let x = 0; x + size <= a.width; x++) {
        let mx = 0;
        let my = 0;
        for (let j = 0; j < size; j++) {
          for (let i = 0; i < size; i++) {
            const k = ((y + j) * a.width + x + i) * 3 + c;
            mx += w[i] * w[j] * a.data[k];
            my += w[i] * w[j] * b.data[k];
          }
        }
        let vx = 0;
        let vy = 0;
        let cov = 0;
        for (let j = 0; j < size; j++) {
          for (let i = 0; i < size; i++) {
            const k = ((y + j) * a.width + x + i) * 3 + c;
            vx += w[i] * w[j] * (a.data[k] - mx) ** 2;
            vy += w[i] * w[j] * (b.data[k] - my) ** 2;
            cov += w[i] * w[j] * (a.data[k] - mx) * (b.data[k] - my);
          }
        }
        channelSum +=
          ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        count++;
      }
    }
    total += channelSum / count;
  }
  return total / 3;
}

describe("MSE and PSNR", () => {
  it("are exact on a hand-computed case", () => {
    const a = constant(4, 4, 0.5);
    // Every sample off by 0.1 (half up, half down): MSE 0.01, PSNR 20 dB.
    const b = map(a, (v, i) => v + (i % 2 === 0 ? 0.1 : -0.1));
    expect(meanSquaredError(a, b)).toBeCloseTo(0.01, 7);
    expect(peakSignalToNoiseRatio(a, b)).toBeCloseTo(20, 5);
  });

  it("report identical images as MSE 0 and PSNR +Infinity", () => {
    const a = pattern(12, 12, 0);
    expect(meanSquaredError(a, a)).toBe(0);
    expect(peakSignalToNoiseRatio(a, a)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("structuralSimilarity", () => {
  it("is 1 for identical images", () => {
    const a = pattern(24, 20, 0);
    expect(structuralSimilarity(a, a)).toBeCloseTo(1, 12);
  });

  it("matches the hand-computed value for two constant images", () => {
    // sigma = 0 everywhere, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = 0.01^2.
    const [a, b] = [0.5, 0.6];
    const expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4);
    const value = structuralSimilarity(constant(16, 13, a), constant(16, 13, b));
    expect(value).toBeCloseTo(expected, 6);
    expect(expected).toBeCloseTo(0.98361, 5);
  });

  it("matches scikit-image (gaussian_weights, sigma 1.5, population covariance)", () => {
    const a = pattern(24, 20, 0);
    const cases: Record<string, FloatImage> = {
      pattern: pattern(24, 20, 1),
      offset: map(a, (v) => v + 0.1),
      clipped: map(a, (v) => Math.min(1, v + 0.3)),
    };
    for (const [name, b] of Object.entries(cases)) {
      expect(structuralSimilarity(a, b), name).toBeCloseTo(REFERENCE.ssim[name], 7);
    }
  });

  it("matches a direct implementation of the definition on random images", () => {
    const random = new SeededRandom(7);
    const a = map(constant(17, 14, 0), () => random.uniform());
    const b = map(a, (v) => Math.min(1, Math.max(0, v + 0.2 * (random.uniform() - 0.5))));
    expect(structuralSimilarity(a, b)).toBeCloseTo(bruteForceSsim(a, b), 10);
    // Exactly one window position across (11 px wide) and down (11 px high).
    for (const [width, height] of [
      [11, 14],
      [17, 11],
    ]) {
      const c = map(constant(width, height, 0), () => random.uniform());
      const d = map(c, (v) => Math.min(1, Math.max(0, v + 0.2 * (random.uniform() - 0.5))));
      expect(structuralSimilarity(c, d)).toBeCloseTo(bruteForceSsim(c, d), 10);
    }
  });

  it("falls as noise grows", () => {
    const random = new SeededRandom(3);
    const a = pattern(32, 32, 0);
    const noise = Array.from(a.data, () => random.uniform() - 0.5);
    const scores = [0.02, 0.1, 0.4].map((level) =>
      structuralSimilarity(
        a,
        map(a, (v, i) => v + level * noise[i]),
      ),
    );
    expect(scores[0]).toBeLessThan(1);
    expect(scores[1]).toBeLessThan(scores[0]);
    expect(scores[2]).toBeLessThan(scores[1]);
    expect(scores[2]).toBeGreaterThan(0);
  });

  it("rejects images of different or too small sizes", () => {
    expect(() => structuralSimilarity(constant(16, 16, 0), constant(16, 15, 0))).toThrow(
      "cannot compare a 16x16 image with a 16x15 image; sizes must match",
    );
    expect(() => structuralSimilarity(constant(10, 16, 0), constant(10, 16, 0))).toThrow(
      "SSIM needs images of at least 11x11 pixels, got 10x16",
    );
  });
});

describe("compareImages", () => {
  it("writes an infinite PSNR as the string Infinity in JSON", () => {
    const a = pattern(12, 12, 0);
    const json = comparisonToJson(compareImages(a, a));
    expect(json).toEqual({ mse: 0, psnr: "Infinity", ssim: expect.closeTo(1, 12), maxAbsDiff: 0 });
    expect(JSON.parse(JSON.stringify(json)).psnr).toBe("Infinity");
    const b = map(a, (v) => v * 0.9);
    const finite = comparisonToJson(compareImages(a, b));
    expect(typeof finite.psnr).toBe("number");
    expect(finite.maxAbsDiff).toBeCloseTo(Math.max(...a.data) * 0.1, 6);
  });
});
