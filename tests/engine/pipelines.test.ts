// A whole generation through the public API with engine "kernels" (WebGPU on SwiftShader, f32):
// loadPipeline and generate as a user calls them, the image within the pipeline tolerance of
// FIXTURES.md (2e-3) of the reference. SwiftShader takes about a minute and a half per case on a
// loaded 2-core machine, so CI runs one case with ToDo inside; `vite-node
// tests/engine/pipelines.child.ts` runs every case of cases/pipelines.json.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

const CASE = "sd15-tiny.euler-todo2";

interface Report {
  readonly results: readonly { key: string; maxAbsDiff: number }[];
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
  }, 600_000);
});
