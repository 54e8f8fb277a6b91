// `info --device`: which engine runs float16 and float32 models and the kernels' path, read from
// the adapter (SwiftShader: no shader-f16, so auto stays on onnxruntime and the kernels run
// float32 on the portable path); off WebGPU, onnxruntime; and the flags' one-line errors.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type EngineReport, formatEngineReport } from "../../src/cli/info-engine.js";
import { runOnSwiftShader } from "../swiftshader.js";
import { runCli, SD15 } from "./helpers.js";

describe("info --device", () => {
  it("reports onnxruntime for both dtypes off WebGPU, as text and JSON", async () => {
    const text = await runCli(["info", SD15, "--device", "cpu"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain("engine on cpu (--engine auto):");
    expect(text.stdout).toMatch(/float16 {2}onnxruntime: the kernels engine runs on WebGPU only/);
    const json = await runCli(["info", SD15, "--device", "wasm", "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const engine = JSON.parse(json.stdout).engine as EngineReport;
    expect(engine.device).toBe("wasm");
    expect(engine.rows.map((r) => [r.dtype, r.engine])).toEqual([
      ["float16", "onnxruntime"],
      ["float32", "onnxruntime"],
    ]);
    expect(engine.adapter).toBeUndefined();
  });

  it("leaves the engine out without --device", async () => {
    const run = await runCli(["info", SD15, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).engine).toBeUndefined();
  });

  it("refuses --engine without --device, kernels off WebGPU and unknown values, in one line", async () => {
    for (const [args, message] of [
      [["--engine", "kernels"], "todo-sd: --engine needs --device: the engine depends on it\n"],
      [
        ["--device", "cpu", "--engine", "kernels"],
        "todo-sd: the kernels engine runs on WebGPU only, not on device cpu: use --device webgpu, or --engine onnxruntime\n",
      ],
    ] as const) {
      const run = await runCli(["info", SD15, ...args]);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toBe(message);
      expect(run.stdout).toBe("");
    }
    const bad = await runCli(["info", SD15, "--device", "webgpu", "--engine", "kernel"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown engine "kernel": use one of auto, kernels, onnxruntime/);
  });

  it("formats the adapter's features and each dtype's engine and path", () => {
    const lines = formatEngineReport({
      device: "webgpu",
      choice: "auto",
      adapter: {
        description: "nvidia hopper H100",
        shaderF16: true,
        subgroups: true,
        matrixShapes: ["16x16x16", "16x8x16"],
        maxBindingBytes: 2 ** 31 - 4,
      },
      rows: [
        {
          dtype: "float16",
          engine: "kernels",
          kernelPath: "tensor cores, f16",
          reason: "auto: float16 on an adapter with shader-f16",
        },
        { dtype: "float32", engine: "onnxruntime", reason: "auto runs float32 on onnxruntime" },
      ],
    });
    expect(lines).toEqual([
      "engine on webgpu (--engine auto):",
      "  adapter: nvidia hopper H100",
      "  features: shader-f16, subgroups, subgroup matrices 16x16x16, 16x8x16; largest binding 2.0 GiB",
      "  float16  kernels (tensor cores, f16): auto: float16 on an adapter with shader-f16",
      "  float32  onnxruntime: auto runs float32 on onnxruntime",
    ]);
  });

  it("reads SwiftShader's adapter: auto keeps onnxruntime, kernels run float32 on the portable path", async () => {
    const report = JSON.parse(
      await runOnSwiftShader(join("tests", "cli", "info-engine.child.ts"), [SD15], {
        timeout: 120_000,
      }),
    ) as { autoCode: number; engine: EngineReport; kernelsCode: number; kernelsText: string };
    expect(report.autoCode).toBe(0);
    expect(report.engine.adapter?.shaderF16).toBe(false);
    expect(report.engine.adapter?.matrixShapes).toEqual([]);
    expect(report.engine.adapter?.description).toMatch(/swiftshader/i);
    expect(report.engine.rows.map((r) => [r.dtype, r.engine, r.kernelPath])).toEqual([
      ["float16", "onnxruntime", undefined],
      ["float32", "onnxruntime", undefined],
    ]);
    expect(report.kernelsCode).toBe(0);
    expect(report.kernelsText).toContain(
      "  float16  kernels: cannot run here: the adapter has no shader-f16 (float32 can)",
    );
    expect(report.kernelsText).toContain("  float32  kernels (portable, f32): asked for");
  }, 180_000);
});
