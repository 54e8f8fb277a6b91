// Every tensor-core shader (GEMM, convolution, flash attention in each rescale mode and ablation,
// at every head dim the models use), and the f16 upsample, pass Dawn's WGSL validation. CI has no
// GPU with subgroup matrices or shader-f16, so these shaders never run here; Dawn's null backend
// offers the features and validates the WGSL (types, the uniformity analysis that matrix offsets
// need), which catches a broken shader before a GPU machine does; the workgroup variables' sizes
// are checked too.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

interface Report {
  readonly compiled: number;
  readonly families: readonly string[];
  readonly lazy: number;
  readonly everyTile: number;
  readonly doubleStaged: number;
  readonly rowBlocks: number;
  readonly pairedLanes: number;
  readonly quadLanes: number;
  readonly unguarded: number;
  readonly failures: Record<string, string[]>;
  readonly misaligned: Record<string, string[]>;
  readonly splitK: number;
  readonly reductions: number;
  readonly upsampleCopies: readonly number[];
}

describe("tensor-core shaders", () => {
  it("pass Dawn's WGSL validation", async () => {
    const report = JSON.parse(
      await runOnSwiftShader(join("tests", "gpu", "tensor-core-wgsl.child.ts"), [], {
        timeout: 240_000,
      }),
    ) as Report;
    expect(report.failures).toEqual({});
    // Every workgroup variable a multiple of 16 bytes (see the child for why).
    expect(report.misaligned).toEqual({});
    expect(report.families).toEqual(["attention", "gemm", "conv", "upsample"]);
    // The f16 upsample's three copies, one shader each.
    expect(report.upsampleCopies).toEqual([1, 1, 1]);
    // 3 matrix shapes x (attention variants + 6 GEMMs + 6 convolutions).
    expect(report.compiled).toBeGreaterThan(100);
    expect(report.lazy).toBeGreaterThan(0);
    expect(report.everyTile).toBeGreaterThan(0);
    expect(report.doubleStaged).toBeGreaterThan(0);
    // Subgroups owning two blocks of query rows (the second block's Q fragments).
    expect(report.rowBlocks).toBeGreaterThan(0);
    // Softmax lanes on adjacent key pairs (the default), and lazy softmaxes whose keys fill
    // every tile, without the bounds check.
    expect(report.pairedLanes).toBeGreaterThan(0);
    // The score-scratch sweep's four-key runs (SCORE_SCRATCH_SWEEP) compile too.
    expect(report.quadLanes).toBeGreaterThan(0);
    expect(report.unguarded).toBeGreaterThan(0);
    // Split-K: 3 matrix shapes x 4 tilings x (3 GEMMs + 1 convolution), each with its reduction.
    expect(report.splitK).toBe(48);
    expect(report.reductions).toBe(48);
  }, 250_000);
});
