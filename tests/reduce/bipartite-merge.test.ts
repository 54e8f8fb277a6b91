import { describe, expect, it } from "vitest";
import { GraphBuilder, type Value } from "../../src/onnx/builder.js";
import {
  destinationMask,
  mergeTokens,
  randomCellChoice,
  restoreTokens,
  saltOf,
} from "../../src/reduce/bipartite-merge.js";
import { maxAbsDiff } from "../fixtures.js";
import { decodeFloat32, float32, int64Scalar, runGraph, torchVectors } from "./helpers.js";

const vectors = torchVectors();

/** softmax(x m^T / sqrt(C)) m, the attention the torch vectors use. */
function plainAttention(g: GraphBuilder, queries: Value, keys: Value, channels: number): Value {
  const scores = g.div(
    g.matMul(queries, g.transpose(keys, [0, 2, 1])),
    g.float(Math.sqrt(channels)),
  );
  return g.matMul(g.softmax(scores), keys);
}

describe("ToMe bipartite matching against torch", () => {
  for (const v of vectors.tome) {
    it(`${v.height}x${v.width}, stride ${v.strideX}x${v.strideY}, ratio ${v.ratio}`, async () => {
      const channels = 4;
      const g = new GraphBuilder();
      const tokens = g.input("tokens", "float32", [2, "n", channels]);
      const height = g.input("height", "int64", []);
      const width = g.input("width", "int64", []);
      const options = { ratio: v.ratio, strideX: v.strideX, strideY: v.strideY };
      const { merged, restoreIndex } = mergeTokens(g, { tokens, height, width }, options, true);
      const changed = g.add(g.mul(merged, g.float(2)), g.float(1));
      g.output(restoreTokens(g, changed, restoreIndex!), "roundtrip", "float32");
      g.output(plainAttention(g, tokens, merged, channels), "attended", "float32");
      g.output(merged, "merged", "float32");
      const out = await runGraph(g, {
        tokens: float32(decodeFloat32(v.input), [2, v.height * v.width, channels]),
        height: int64Scalar(v.height),
        width: int64Scalar(v.width),
      });
      expect(out.merged.dims).toEqual([2, v.merged, channels]);
      expect(maxAbsDiff(out.roundtrip.data, decodeFloat32(v.roundtrip))).toBeLessThan(1e-6);
      expect(maxAbsDiff(out.attended.data, decodeFloat32(v.attended))).toBeLessThan(1e-6);
    });
  }
});

describe("ToMe destination choice", () => {
  async function mask(height: number, width: number, random?: { seed: number; step: number }) {
    const g = new GraphBuilder();
    const h = g.input("height", "int64", []);
    const w = g.input("width", "int64", []);
    const t = g.input("t", "float32", []);
    const options = {
      ratio: 0.5,
      strideX: 3,
      strideY: 2,
      random: random ? { seed: random.seed, salt: saltOf("block"), timestep: t } : undefined,
    };
    g.output(g.cast(destinationMask(g, h, w, options), "float32"), "mask", "float32");
    const out = await runGraph(g, {
      height: int64Scalar(height),
      width: int64Scalar(width),
      t: float32([random?.step ?? 0], []),
    });
    return Array.from(out.mask.data);
  }

  it("marks the top-left token of each whole cell", async () => {
    const m = await mask(5, 7);
    const expected = Array.from({ length: 35 }, (_, p) => {
      const row = Math.floor(p / 7);
      const col = p % 7;
      return row < 4 && col < 6 && row % 2 === 0 && col % 3 === 0 ? 1 : 0;
    });
    expect(m).toEqual(expected);
  });

  it("picks one seeded token per cell, the same as the documented hash", async () => {
    const seed = 42;
    const step = 701;
    const m = await mask(6, 9, { seed, step });
    const expected = new Array(54).fill(0);
    for (let cy = 0; cy < 3; cy++)
      for (let cx = 0; cx < 3; cx++) {
        const k = randomCellChoice(seed, saltOf("block"), step, cy * 3 + cx, 6);
        expected[(cy * 2 + Math.floor(k / 3)) * 9 + cx * 3 + (k % 3)] = 1;
      }
    expect(m).toEqual(expected);
    const other = await mask(6, 9, { seed: seed + 1, step });
    expect(other).not.toEqual(m);
  });
});

describe("ToMe on small grids", () => {
  async function roundtrip(
    height: number,
    width: number,
    ratio: number,
    strideX: number,
    strideY: number,
  ) {
    const g = new GraphBuilder();
    const tokens = g.input("tokens", "float32", [2, "n", 4]);
    const h = g.input("height", "int64", []);
    const w = g.input("width", "int64", []);
    const options = { ratio, strideX, strideY };
    const { merged, restoreIndex } = mergeTokens(g, { tokens, height: h, width: w }, options, true);
    g.output(restoreTokens(g, merged, restoreIndex!), "roundtrip", "float32");
    g.output(merged, "merged", "float32");
    const input = new Float32Array(2 * height * width * 4).map((_, i) => Math.sin(i * 1.7));
    const out = await runGraph(g, {
      tokens: float32(input, [2, height * width, 4]),
      height: int64Scalar(height),
      width: int64Scalar(width),
    });
    return { input, merged: out.merged, roundtrip: out.roundtrip };
  }

  it("merges nothing when floor(N * ratio) is 0, and restores every token", async () => {
    const out = await roundtrip(2, 2, 0.2, 2, 2);
    expect(out.merged.dims).toEqual([2, 4, 4]);
    expect(maxAbsDiff(out.roundtrip.data, out.input)).toBe(0);
  });

  it("caps a stride larger than the grid at the grid", async () => {
    const capped = await roundtrip(1, 3, 0.5, 2, 2);
    const explicit = await roundtrip(1, 3, 0.5, 2, 1);
    expect(capped.merged.dims).toEqual([2, 2, 4]);
    expect(maxAbsDiff(capped.roundtrip.data, explicit.roundtrip.data)).toBe(0);
  });
});
