import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { DOWNSAMPLE_MODES } from "../../src/reduce/options.js";
import { downsampleTokens, upsampleTokens } from "../../src/reduce/resample.js";
import {
  decodeFloat32,
  float32,
  int64Scalar,
  maxAbsDiff,
  runGraph,
  torchVectors,
} from "./helpers.js";

const vectors = torchVectors();

// The picks (nearest, pools) are exact; the weighted modes differ from torch only in float32
// rounding. bicubic sums 16 products per value, where a MatMul's fused multiply-adds round
// differently from torch's separate ones (inputs are standard normal).
const TOLERANCE: Readonly<Record<string, number>> = {
  nearest: 0,
  "nearest-exact": 0,
  avg: 1e-6,
  max: 0,
  area: 1e-6,
  bilinear: 1e-6,
  bicubic: 4e-6,
};

function resampleGraph(
  mode: (typeof DOWNSAMPLE_MODES)[number],
  factor: number,
  sizes?: [number, number],
) {
  const g = new GraphBuilder();
  const tokens = g.input("tokens", "float32", ["batch", "n", "c"]);
  const height = sizes ? g.int64([sizes[0]], []) : g.input("height", "int64", []);
  const width = sizes ? g.int64([sizes[1]], []) : g.input("width", "int64", []);
  const down = downsampleTokens(g, { tokens, height, width }, factor, mode);
  const up = upsampleTokens(g, down, { height, width }, factor, mode);
  g.output(down, "down", "float32");
  g.output(up, "up", "float32");
  return g;
}

describe("ToDo resampling against torch", () => {
  for (const v of vectors.resample) {
    for (const mode of DOWNSAMPLE_MODES) {
      it(`${mode} ${v.height}x${v.width} by ${v.factor}`, async () => {
        const input = decodeFloat32(v.input);
        const channels = input.length / (v.height * v.width);
        const out = await runGraph(resampleGraph(mode, v.factor), {
          tokens: float32(input, [1, v.height * v.width, channels]),
          height: int64Scalar(v.height),
          width: int64Scalar(v.width),
        });
        const expected = v.modes[mode];
        const oh = Math.floor(v.height / v.factor);
        const ow = Math.floor(v.width / v.factor);
        expect(out.down.dims).toEqual([1, oh * ow, channels]);
        const tolerance = TOLERANCE[mode];
        expect(maxAbsDiff(out.down.data, decodeFloat32(expected.down))).toBeLessThanOrEqual(
          tolerance,
        );
        expect(maxAbsDiff(out.up.data, decodeFloat32(expected.up))).toBeLessThanOrEqual(tolerance);
      });
    }
  }
});
