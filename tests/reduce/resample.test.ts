import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { DOWNSAMPLE_MODES } from "../../src/reduce/options.js";
import { downsampleTokens, upsampleTokens } from "../../src/reduce/resample.js";
import { maxAbsDiff } from "../fixtures.js";
import { decodeFloat32, float32, int64Scalar, runGraph, torchVectors } from "./helpers.js";

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

describe("ToDo graph shapes", () => {
  const opTypes = (g: GraphBuilder) => new Set(g.toGraphProto().node.map((n) => n.opType));
  const branches = (g: GraphBuilder) => {
    const ifs = g.toGraphProto().node.filter((n) => n.opType === "If");
    expect(ifs).toHaveLength(2); // one for the reduction, one for the restore
    const branch = (name: string) =>
      new Set(ifs[0].attribute?.find((a) => a.name === name)?.g?.node.map((n) => n.opType));
    return { divisible: branch("then_branch"), otherwise: branch("else_branch") };
  };

  for (const mode of ["nearest", "nearest-exact"] as const) {
    it(`${mode} on a grid the factor divides is a strided Slice, restored by an Expand`, async () => {
      const g = resampleGraph(mode, 2, [16, 12]);
      const ops = opTypes(g);
      expect(ops.has("Slice")).toBe(true);
      expect(ops.has("Expand")).toBe(true);
      for (const op of ["Gather", "Resize", "If", "MatMul"]) expect(ops.has(op), op).toBe(false);
      const slice = g.toGraphProto().node.find((n) => n.opType === "Slice")!;
      const steps = g.initializers.find((i) => i.name === slice.input[4])!;
      expect(Array.from(new BigInt64Array(steps.data.bytes().buffer), Number)).toEqual([2, 2]);
      const starts = g.initializers.find((i) => i.name === slice.input[1])!;
      const start = mode === "nearest" ? 0 : 1;
      expect(Array.from(new BigInt64Array(starts.data.bytes().buffer), Number)).toEqual([
        start,
        start,
      ]);
    });

    it(`${mode} on a run-time grid takes the Slice branch of an If when the factor divides`, () => {
      const { divisible, otherwise } = branches(resampleGraph(mode, 2));
      expect(divisible.has("Slice")).toBe(true);
      expect(divisible.has("Gather")).toBe(false);
      expect(divisible.has("Resize")).toBe(false);
      expect(otherwise.has("Gather")).toBe(true);
    });
  }

  it("picks torch's rows on a constant grid that the factor does not divide (Gather, no If)", async () => {
    const g = resampleGraph("nearest", 3, [20, 12]);
    const ops = opTypes(g);
    expect(ops.has("Gather")).toBe(true);
    expect(ops.has("If")).toBe(false);
    const v = vectors.resample.find((r) => r.height === 20 && r.width === 12)!;
    const input = decodeFloat32(v.input);
    const out = await runGraph(g, { tokens: float32(input, [1, 240, 2]) });
    expect(maxAbsDiff(out.down.data, decodeFloat32(v.modes.nearest.down))).toBe(0);
    expect(maxAbsDiff(out.up.data, decodeFloat32(v.modes.nearest.up))).toBe(0);
  });

  it("pools channel-last without transposes or Resize", () => {
    const ops = opTypes(resampleGraph("avg", 2, [16, 16]));
    expect(ops.has("ReduceMean")).toBe(true);
    for (const op of ["Transpose", "Resize", "AveragePool", "Gather"])
      expect(ops.has(op), op).toBe(false);
  });

  it("rejects a factor below 2", () => {
    expect(() => resampleGraph("nearest", 1, [16, 16])).toThrow(/whole number >= 2; got 1/);
  });
});
