// The kernels engine against the UNet fixture cases on SwiftShader (the Vulkan driver on the CPU
// that Debian's Chromium ships), f32: the same graphs the onnxruntime path runs (tests/models),
// executed by src/engine, each output within 1e-4 of the reference (FIXTURES.md). SwiftShader
// runs about a thousand launches per UNet call in tens of seconds on a loaded 2-core machine, so
// CI takes a baseline and a ToDo case; `vite-node tests/engine/conformance.child.ts [model]` runs
// every case. Dawn finds its driver through the environment a process starts with, so the work
// runs in a child process.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import type { CaseReport } from "./conformance.child.js";

const CHROMIUM_LIBS = process.env.TODO_SD_CHROMIUM_LIBS ?? "/usr/lib/chromium";
const ICD = join(CHROMIUM_LIBS, "vk_swiftshader_icd.json");

interface Report {
  readonly results: readonly CaseReport[];
  readonly errors: Record<string, string>;
}

async function child(...args: string[]): Promise<Report> {
  const { stdout } = await promisify(execFile)(
    join("node_modules", ".bin", "vite-node"),
    [join("tests", "engine", "conformance.child.ts"), ...args],
    {
      env: {
        ...process.env,
        LD_LIBRARY_PATH: [CHROMIUM_LIBS, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
        VK_ICD_FILENAMES: ICD,
      },
      timeout: 280_000,
      maxBuffer: 16 * 2 ** 20,
    },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Report;
}

describe("the kernels engine on SwiftShader, f32", () => {
  let report: Report;
  beforeAll(async () => {
    expect(existsSync(ICD), `${ICD} (Debian's chromium package) is needed`).toBe(true);
    report = await child("sd15-tiny", "baseline,todo-nearest-2", "16x16");
  }, 300_000);

  it("runs the UNet's baseline and ToDo cases within 1e-4 of the reference", () => {
    expect(report.errors).toEqual({});
    expect(report.results.map((r) => r.name)).toEqual([
      "unet-sd15-tiny 16x16 baseline",
      "unet-sd15-tiny 16x16 todo-nearest-2",
    ]);
    for (const r of report.results) expect(r.maxAbsDiff, r.name).toBeLessThanOrEqual(1e-4);
  });

  it("keeps every operator on the GPU and reads nothing back inside a call", () => {
    for (const r of report.results) {
      expect(r.hostFallbacks, r.name).toEqual({});
      expect(r.readbacks, r.name).toBe(0);
    }
  });
});
