// The GPU kernels against their float64 references on SwiftShader (the Vulkan driver on the CPU
// that Debian's Chromium ships): the f32 instantiation of the portable path, at scaled-down UNet
// shapes with edge sizes. Each element must be within the error bound that the reference derives
// from the kernel's arithmetic (src/gpu/reference/matmul.ts). Dawn finds its driver through the
// environment a process starts with, so the work runs in a child process.
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { allKernelChecks } from "../../src/gpu/checks.js";
import { CONV_CASES, GEMM_CASES } from "../../src/gpu/kernels/matmul-checks.js";
import { GROUP_NORM_CASES } from "../../src/gpu/kernels/norm-checks.js";
import { CHROMIUM_LIBS, runOnSwiftShader, SWIFTSHADER_ICD } from "../swiftshader.js";

interface Report {
  readonly variant: { path: string; storage: string };
  readonly pipelines: number;
  readonly results: readonly {
    family: string;
    name: string;
    elements: number;
    worstRatio: number;
    maxAbsError: number;
    nonFinite: number;
  }[];
  readonly errors: Record<string, string>;
}

function child(icd: string, ...args: string[]): Promise<string> {
  return runOnSwiftShader(join("tests", "gpu", "kernel-checks.child.ts"), args, {
    timeout: 240_000,
    icd,
  });
}

describe("GPU kernels on SwiftShader", () => {
  let report: Report;
  beforeAll(async () => {
    report = JSON.parse(await child(SWIFTSHADER_ICD)) as Report;
  }, 250_000);

  it("runs the portable f32 path on an adapter without shader-f16", () => {
    expect(report.variant).toEqual({ path: "portable", storage: "f32" });
  });

  it("checks every kernel case (GEMM, convolution, attention, norms, elementwise) within its error bound", () => {
    // Every CI check, plus the GEMM once more with its default tiling.
    expect(report.results.length).toBe(allKernelChecks({ ci: true }).length + 1);
    for (const family of [
      "gemm",
      "conv",
      "attention",
      "avgpool",
      "groupnorm",
      "layernorm",
      "elementwise",
      "upsample",
      "timestep",
    ])
      expect(
        report.results.some((r) => r.family === family),
        family,
      ).toBe(true);
    for (const r of report.results) {
      expect(r.elements, r.name).toBeGreaterThan(0);
      expect(r.nonFinite, r.name).toBe(0);
      expect(r.worstRatio, `${r.family} ${r.name}: max error ${r.maxAbsError}`).toBeLessThanOrEqual(
        1,
      );
    }
    // Each case compiled its own pipeline (shapes are compile-time constants); group norm
    // compiles three (partial sums, statistics, apply), a split-K matmul two (the split
    // multiplies, the reduction).
    const splits = [...GEMM_CASES, ...CONV_CASES].filter((c) => c.options.splitK).length;
    expect(splits).toBe(5);
    expect(report.pipelines).toBe(report.results.length + 2 * GROUP_NORM_CASES.length + splits);
  });

  it("says in one line what is missing", () => {
    expect(report.errors.f16).toMatch(/^fp16 asked for, but this adapter .* has no shader-f16/);
    expect(report.errors.tensorCore).toMatch(
      /tensor-core kernels store f32; the tensor-core path needs f16/,
    );
    expect(report.errors.huge).toMatch(
      /^huge needs a \d+-byte GPU buffer, more than this adapter allows in one binding \(\d+ bytes: maxStorageBufferBindingSize/,
    );
    for (const text of Object.values(report.errors)) expect(text).not.toContain("\n");
  });

  it("tells how to reach SwiftShader when no adapter is found", async () => {
    const result = JSON.parse(
      await child(join(CHROMIUM_LIBS, "no-such-icd.json"), "no-adapter"),
    ) as {
      error?: string;
    };
    expect(result.error).toMatch(/^no WebGPU adapter found: .*LD_LIBRARY_PATH=.*VK_ICD_FILENAMES=/);
  }, 120_000);
});
