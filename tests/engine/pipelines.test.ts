// A whole generation through the public API with engine "kernels" (WebGPU on SwiftShader, f32):
// loadPipeline and generate as a user calls them, the image within the pipeline tolerance of
// FIXTURES.md (2e-3) of the reference. SwiftShader takes about a minute per case on a loaded
// 2-core machine, so CI runs one case with ToDo inside, its models built into a model cache and
// read back from the saved files as onnxruntime reads them, its latents kept on the device between
// steps; `vite-node tests/engine/pipelines.child.ts` runs every case of cases/pipelines.json.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

const CASE = "sd15-tiny.euler-todo2";

interface Report {
  readonly results: readonly {
    key: string;
    maxAbsDiff: number;
    built: readonly string[];
    cacheEntries: number;
    denoisedOn: string;
  }[];
  readonly errors: Record<string, string>;
}

describe("generate through the public API on the kernels engine", () => {
  it(`reproduces ${CASE} within 2e-3`, async () => {
    const last = await runOnSwiftShader(join("tests", "engine", "pipelines.child.ts"), [CASE], {
      timeout: 560_000,
    });
    const report = JSON.parse(last) as Report;
    expect(report.errors).toEqual({});
    expect(report.results.map((r) => r.key)).toEqual([CASE]);
    expect(report.results[0].maxAbsDiff).toBeLessThanOrEqual(2e-3);
    // The latents stayed on the GPU between steps: the UNet's prediction went to the sampler-step
    // graph, run by the kernels engine on the same device, and the next sample came back to it.
    expect(report.results[0].denoisedOn).toBe("device");
    // The models were built into the case's cache and read back from the saved files (the
    // kernels engine shares onnxruntime's cache): none was built in memory.
    const built = report.results[0].built;
    expect(built.length).toBeGreaterThan(0);
    expect(built.filter((b) => !b.endsWith(" saved"))).toEqual([]);
    expect(report.results[0].cacheEntries).toBe(built.length);
  }, 600_000);
});
