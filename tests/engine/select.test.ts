// Engine selection: the choices, `auto` (the kernels for float16 on WebGPU with shader-f16, else
// onnxruntime) and the adapter probe it rests on, and the one-line errors of
// `kernels` where it cannot run, from the pure function and through loadPipeline (before any
// model is built or any GPU is touched).
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { benchUnet } from "../../src/bench/unet-bench.js";
import {
  checkKernelPath,
  ENGINE_CHOICES,
  KERNEL_PATH_CHOICES,
  parseEngine,
  parseKernelPath,
  resolveEngine,
} from "../../src/engine/select.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { probeEngine } from "../../src/pipelines/plan-runners.js";
import { fixturePath } from "../fixtures.js";
import { runOnSwiftShader } from "../swiftshader.js";

describe("engine selection", () => {
  it("parses the three choices and names them when a value is unknown", () => {
    for (const choice of ENGINE_CHOICES) expect(parseEngine(choice)).toBe(choice);
    expect(() => parseEngine("kernel")).toThrow(
      /^unknown engine "kernel": use one of auto, kernels, onnxruntime$/,
    );
  });

  it("keeps onnxruntime for auto and onnxruntime on every device when the adapter is unknown", () => {
    for (const device of ["cpu", "webgpu", "cuda", "wasm"] as const)
      for (const choice of ["auto", "onnxruntime"] as const)
        expect(resolveEngine(choice, { device, dtype: "float16" })).toBe("onnxruntime");
  });

  it("picks the kernels for auto only for float16 on WebGPU with shader-f16", () => {
    expect(resolveEngine("auto", { device: "webgpu", dtype: "float16", shaderF16: true })).toBe(
      "kernels",
    );
    expect(resolveEngine("auto", { device: "webgpu", dtype: "float32", shaderF16: true })).toBe(
      "onnxruntime",
    );
    expect(resolveEngine("auto", { device: "webgpu", dtype: "float16", shaderF16: false })).toBe(
      "onnxruntime",
    );
    for (const device of ["cpu", "cuda", "wasm"] as const)
      expect(resolveEngine("auto", { device, dtype: "float16", shaderF16: true })).toBe(
        "onnxruntime",
      );
    expect(
      resolveEngine("onnxruntime", { device: "webgpu", dtype: "float16", shaderF16: true }),
    ).toBe("onnxruntime");
  });

  it("probes the adapter only where auto has a choice to make", async () => {
    // CPU, an explicit engine, float32 or an already probed adapter: returned as they are.
    for (const options of [
      { device: "cpu" as const },
      { device: "webgpu" as const, engine: "onnxruntime" as const },
      { device: "webgpu" as const, dtype: "float32" as const },
      { device: "webgpu" as const, shaderF16: true },
    ])
      expect(await probeEngine(options)).toBe(options);
  });

  it("finds SwiftShader's adapter without shader-f16, so auto stays on onnxruntime there; bench names the kernels' path", async () => {
    const report = JSON.parse(
      await runOnSwiftShader(join("tests", "engine", "probe.child.ts"), [], { timeout: 120_000 }),
    ) as { shaderF16?: boolean; engine: string };
    expect(report).toEqual({
      shaderF16: false,
      engine: "onnxruntime",
      // The kernels engine asked for by name runs float32 on the tuned kernels' portable path.
      // The row counts the pipelines its first call compiled, and stderr lists them by kind.
      bench: [
        {
          engine: "kernels",
          kernelPath: "portable, f32",
          label: "kernels (portable, f32)",
          compiled: true,
          compileLine: true,
          kindsAddUp: true,
          kinds: true,
        },
      ],
      // The tensor cores asked for on an adapter without them, in float32: the row says why.
      tensorCore: "no tensor-core kernels store f32; the tensor-core path needs f16",
    });
  }, 150_000);

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

  it("parses the kernel paths, and refuses one for another engine than the kernels", () => {
    for (const path of KERNEL_PATH_CHOICES) expect(parseKernelPath(path)).toBe(path);
    expect(() => parseKernelPath("tensor-cores")).toThrow(
      /^unknown kernel path "tensor-cores": use one of auto, tensor-core, portable$/,
    );
    expect(() => checkKernelPath("kernels", "portable")).not.toThrow();
    expect(() => checkKernelPath("onnxruntime", "auto")).not.toThrow();
    expect(() => checkKernelPath("onnxruntime", "portable")).toThrow(
      /^a kernel path \(portable\) applies to the kernels engine, and onnxruntime runs these models: use --engine kernels$/,
    );
  });

  it("loadPipeline refuses engine kernels on the CPU, and a kernel path for onnxruntime, before building anything", async () => {
    for (const [options, message] of [
      [{ engine: "kernels" }, /^the kernels engine runs on WebGPU only, not on device cpu/],
      [
        { kernelPath: "tensor-core" },
        /^a kernel path \(tensor-core\) applies to the kernels engine/,
      ],
    ] as const) {
      const built: string[] = [];
      await expect(
        loadPipeline(fixturePath("pipelines", "sd15-tiny"), {
          ...options,
          cacheDir: false,
          onBuild: (component) => built.push(component),
        }),
      ).rejects.toThrow(message);
      expect(built).toEqual([]);
    }
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
