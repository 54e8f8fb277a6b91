// A whole generation through the public API with engine "kernels" (WebGPU on SwiftShader, f32):
// loadPipeline and generate as a user calls them, the image within the pipeline tolerance of
// FIXTURES.md (2e-3) of the reference. SwiftShader takes about a minute and a half per case on a
// loaded 2-core machine, so CI runs one case with ToDo inside; `vite-node
// tests/engine/pipelines.child.ts` runs every case of cases/pipelines.json.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const CHROMIUM_LIBS = process.env.TODO_SD_CHROMIUM_LIBS ?? "/usr/lib/chromium";
const ICD = join(CHROMIUM_LIBS, "vk_swiftshader_icd.json");
const CASE = "sd15-tiny.euler-todo2";

interface Report {
  readonly results: readonly { key: string; maxAbsDiff: number }[];
  readonly errors: Record<string, string>;
}

describe("generate through the public API on the kernels engine", () => {
  it(`reproduces ${CASE} within 2e-3`, async () => {
    expect(existsSync(ICD), `${ICD} (Debian's chromium package) is needed`).toBe(true);
    const { stdout } = await promisify(execFile)(
      join("node_modules", ".bin", "vite-node"),
      [join("tests", "engine", "pipelines.child.ts"), CASE],
      {
        env: {
          ...process.env,
          LD_LIBRARY_PATH: [CHROMIUM_LIBS, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
          VK_ICD_FILENAMES: ICD,
        },
        timeout: 560_000,
        maxBuffer: 16 * 2 ** 20,
      },
    );
    const report = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Report;
    expect(report.errors).toEqual({});
    expect(report.results.map((r) => r.key)).toEqual([CASE]);
    expect(report.results[0].maxAbsDiff).toBeLessThanOrEqual(2e-3);
  }, 600_000);
});
