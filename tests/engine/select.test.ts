// Engine selection: the choices, `auto` staying on onnxruntime, and the one-line errors of
// `kernels` where it cannot run, from the pure function and through loadPipeline (before any
// model is built or any GPU is touched).
import { describe, expect, it } from "vitest";
import { benchUnet } from "../../src/bench/unet-bench.js";
import { ENGINE_CHOICES, parseEngine, resolveEngine } from "../../src/engine/select.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { fixturePath } from "../fixtures.js";

describe("engine selection", () => {
  it("parses the three choices and names them when a value is unknown", () => {
    for (const choice of ENGINE_CHOICES) expect(parseEngine(choice)).toBe(choice);
    expect(() => parseEngine("kernel")).toThrow(
      /^unknown engine "kernel": use one of auto, kernels, onnxruntime$/,
    );
  });

  it("keeps onnxruntime for auto and onnxruntime on every device", () => {
    for (const device of ["cpu", "webgpu", "cuda", "wasm"] as const)
      for (const choice of ["auto", "onnxruntime"] as const)
        expect(resolveEngine(choice, { device })).toBe("onnxruntime");
  });

  it("picks the kernels on WebGPU", () => {
    expect(resolveEngine("kernels", { device: "webgpu" })).toBe("kernels");
  });

  it("refuses the kernels off WebGPU, in one line that points to onnxruntime", () => {
    for (const device of ["cpu", "cuda", "wasm"] as const)
      expect(() => resolveEngine("kernels", { device })).toThrow(
        new RegExp(
          `^the kernels engine runs on WebGPU only, not on device ${device}: .*--engine onnxruntime$`,
        ),
      );
  });

  it("loadPipeline refuses engine kernels on the CPU before building anything", async () => {
    const built: string[] = [];
    await expect(
      loadPipeline(fixturePath("pipelines", "sd15-tiny"), {
        engine: "kernels",
        cacheDir: false,
        onBuild: (component) => built.push(component),
      }),
    ).rejects.toThrow(/^the kernels engine runs on WebGPU only, not on device cpu/);
    expect(built).toEqual([]);
  });

  it("bench rows name the engine that ran, and bench refuses the kernels on the CPU", async () => {
    const model = fixturePath("pipelines", "sd15-tiny");
    const common = {
      sizes: [{ width: 64, height: 64 }],
      methods: ["none" as const],
      warmup: 0,
      repeats: 1,
      cacheDir: false as const,
    };
    const rows = await benchUnet(model, { ...common, engine: "onnxruntime" });
    expect(rows.map((r) => [r.engine, r.error])).toEqual([["onnxruntime", undefined]]);
    await expect(benchUnet(model, { ...common, engine: "kernels" })).rejects.toThrow(
      /^the kernels engine runs on WebGPU only, not on device cpu/,
    );
  }, 60_000);
});
