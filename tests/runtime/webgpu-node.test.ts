// onnxruntime-node's WebGPU backend, on SwiftShader (the Vulkan driver on the CPU that Debian's
// Chromium ships; no GPU needed): GPU-buffer tensors uploaded, kept between runs and read back,
// and the pipeline's denoising loop with its latents on the device giving the host loop's image.
// The backend finds the driver through the environment a process starts with, so the work runs
// in a child process (webgpu-generate.child.ts) and reports JSON.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fixturePath } from "../fixtures.js";
import { runOnSwiftShader } from "../swiftshader.js";

interface ChildReport {
  readonly transfers: {
    readonly uploaded: number[];
    readonly keptType: string;
    readonly kept: number[];
    readonly again: number[];
  };
  readonly runs: readonly {
    readonly scheduler: string;
    readonly denoisedOn: readonly string[];
    readonly unetCalls: readonly number[];
    readonly maxDiff: number;
    readonly finite: boolean;
  }[];
}

describe("onnxruntime-node on WebGPU (SwiftShader)", () => {
  it("keeps tensors and the denoising loop's latents on the GPU", async () => {
    const last = await runOnSwiftShader(
      join("tests", "runtime", "webgpu-generate.child.ts"),
      [fixturePath("pipelines", "sd15-tiny"), "Euler a", "DPM++ 2M Karras"],
      { timeout: 400_000 },
    );
    const report = JSON.parse(last) as ChildReport;
    expect(report.transfers).toEqual({
      uploaded: [1, 2, 3, 4, 5, 6],
      keptType: "resident",
      kept: [2, 4, 6, 8, 10, 12],
      again: [4, 8, 12, 16, 20, 24],
    });
    expect(report.runs.map((r) => r.scheduler)).toEqual(["Euler a", "DPM++ 2M Karras"]);
    for (const run of report.runs) {
      expect(run.denoisedOn, run.scheduler).toEqual(["device", "host"]);
      expect(run.unetCalls[0], run.scheduler).toBe(run.unetCalls[1]);
      expect(run.finite, run.scheduler).toBe(true);
      expect(run.maxDiff, run.scheduler).toBeLessThanOrEqual(1e-4);
    }
  }, 420_000);
});
