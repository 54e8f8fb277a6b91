// The kernels engine on src/gpu's tuned kernels, on SwiftShader in f32: a small graph with MatMul,
// Conv and MultiHeadAttention nodes in shapes the tuned GEMM, convolution and flash attention take
// and in shapes they refuse (tuned.child.ts), every output against a float64 reference, and the
// launches by kernel showing which ran where. The work runs in a child process: Dawn finds its
// driver through the environment a process starts with.
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";
import type { TunedReport } from "./tuned.child.js";

// Inputs and weights are uniform in [-1, 1); the longest dot product has 27 terms, so float32
// accumulation errs by at most about 27 * 27 * 2^-24 < 5e-5 (the classic n * eps * sum |a b|
// bound); softmax and the layer norm's 1/sqrt (of a variance near 1/3 over 12 values) add a
// few ulps. Far below the 1e-1 scale of a wrong layout or index.
const TOLERANCE = 5e-5;

describe("the kernels engine on the tuned src/gpu kernels (SwiftShader, f32)", () => {
  let report: TunedReport;
  beforeAll(async () => {
    const last = await runOnSwiftShader(join("tests", "engine", "tuned.child.ts"), [], {
      timeout: 400_000,
    });
    report = JSON.parse(last) as TunedReport;
  }, 410_000);

  it("matches the float64 reference on the tuned and the fallback paths, call after call", () => {
    expect(report.diffs).toHaveLength(2);
    for (const diffs of report.diffs) {
      expect(Object.keys(diffs).sort()).toEqual(
        [
          "linear",
          "batched",
          "broadcast",
          "conv3",
          "conv3s2",
          "conv1",
          "convAsymmetric",
          "convFedWeights",
          "attention",
          "attentionNarrow",
          "attentionScale",
          "attentionWide",
          "attentionWideHeads",
          "layerNorm",
          "layerNormNoBias",
          "geglu",
          "linearGelu",
          "linearResidual",
          "transformerOut",
          "transformerOutBatched",
          "convSplit",
          "groupNormLong",
          "groupNormConv",
          "groupNormTokens",
          "convResidual",
          "concatChannels",
          "concatLast",
          "concatThree",
        ].sort(),
      );
      for (const [name, diff] of Object.entries(diffs))
        expect(diff, name).toBeLessThanOrEqual(TOLERANCE);
    }
  });

  it("runs what the tuned kernels take on them and the rest on the portable kernels", () => {
    for (const kernels of report.kernels)
      expect(kernels).toEqual({
        // The Linear with its bias fused (no Add launch), the GEGLU projection with its split and
        // GELU fused (no Split copies, Div, Erf, Add or Mul launches), the Linear with its GELU,
        // the Linear with its bias and residual (no Add launch either), the proj_out written into
        // its map with the map added (no Transpose copy, no Add), the batched proj_out with its
        // bias (its Transpose and Add run apart), and the batched product; then the wide heads'
        // score and value products per block of queries (2 blocks of the head of 512, 4 of the two
        // heads of 136).
        "tuned gemm": 7 + 2 * 2 + 2 * 4,
        // The head of 512's two score products (K = 512 over a few tiles) split K in two: their
        // partial sums added by a reduction each.
        "tuned gemm reduce": 2,
        // a (5, 4) broadcast against b (2, 3, 4, 6).
        matmul: 1,
        // 3x3, 3x3 stride 2, 1x1, and bottom-right padding (written into the zero-filled NHWC
        // input); each reading and writing NCHW itself but the padded one, which reads the map.
        // Then the 1x1 reading its group norm's NHWC result, the 3x3 with the residual Add in
        // its epilogue (no Add launch), and the one over K = 576 with a single output tile, which
        // splits K in two: its partial sums added by a reduction.
        "tuned conv": 7,
        "tuned conv reduce": 1,
        // The long rows' group norms (NCHW, and NHWC for the convolution): chunk statistics, then
        // the merged ones applied.
        "group norm silu partials": 2,
        "group norm silu": 2,
        // The tokens' group norm, written (B, H W, C) (no copy for the Transpose).
        "group norm": 1,
        fill: 1,
        // The padded convolution's input written into its map; the wide heads' K transposed per
        // head (each case), V (two heads), and each block's queries in and results out; the
        // batched proj_out's Transpose; the three-part Concat's parts.
        copy: 1 + 1 + 2 * 2 + (1 + 1 + 2 * 4) + 1 + 3,
        // The two-part Concats, one launch each.
        concat: 2,
        // The batched proj_out's residual Add.
        Add: 1,
        // The wide heads' scores, a block at a time; the Concats' first parts.
        softmax: 2 + 4 + 3,
        // Weights fed as an input rather than an initializer.
        conv: 1,
        // Heads of 8; heads of 2 and a scale other than 1/sqrt(d) stay portable.
        "tuned attention": 1,
        attention: 2,
        // With a bias; the one without stays portable.
        "tuned layernorm": 1,
        LayerNormalization: 1,
      });
    // No host round trip: one submit per call.
    expect(report.launches.every((n) => n > 6)).toBe(true);
    expect(report.submits).toEqual([1, 1]);
  });

  it("reads K and V stored by head where kvByHeadFrom asks, with the same outputs", () => {
    const { diff, kernels, labels } = report.byHead;
    expect(diff).toBe(0);
    // The one tuned attention, on K and V copied by head first: two copies more.
    expect(kernels["tuned attention"]).toBe(1);
    expect(kernels.copy).toBe((report.kernels[0].copy ?? 0) + 2);
    expect(labels.some((label) => label.includes(" K/V by head "))).toBe(true);
  });

  // The GEMMs' and the convolution's reductions both go (tuned.child.ts's head of 512, convSplit).
  it("runs every GEMM and convolution unsplit when splitK is false, within the same bound", () => {
    expect(report.unsplit.reductions).toBe(0);
    expect(report.unsplit.diff).toBeLessThanOrEqual(TOLERANCE);
  });

  it("submits every submitEvery launches with the same outputs, and refuses a fractional one", () => {
    const { launches, submits, diff } = report.chunked;
    expect(launches).toBeGreaterThan(6);
    expect(submits).toBe(Math.ceil(launches / 3));
    expect(diff).toBe(0);
    // Every pass of each call timed on the GPU, none carried into the next call; the passes'
    // own time within the span from the first's start to the last's end.
    const gpu = report.chunked.gpu ?? [];
    expect(gpu).toHaveLength(2);
    for (const stats of gpu) {
      expect(stats?.passes).toBe(submits);
      expect(stats?.untimed).toBe(0);
      expect(stats?.busyMs).toBeGreaterThan(0);
      expect(stats?.busyMs).toBeLessThanOrEqual((stats?.spanMs ?? 0) + 1e-6);
    }
    expect(report.timedAndProfiled).toBe(
      "timeSubmits and profile time the same passes two ways: ask for one of them",
    );
    expect(report.badSubmitEvery).toBe(
      "submitEvery must be a whole number of launches (1 or more) or Infinity, not 0.5",
    );
  });
});
