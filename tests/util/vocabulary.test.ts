import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DEVICES,
  float32Only,
  MODEL_FAMILIES,
  modelDtype,
  parseDevice,
  parseDtype,
  vaeDtype,
  WEB_DEVICES,
} from "../../src/util/vocabulary.js";

describe("the vocabulary", () => {
  it("imports nothing, so every layer and the browser bundle may use it", () => {
    const source = readFileSync("src/util/vocabulary.ts", "utf8");
    expect(source).not.toMatch(/^\s*import\s/m);
    expect(source).not.toMatch(/^\s*export .* from\s/m);
  });

  it("lists the devices, the browser's among them, and the families", () => {
    expect(DEVICES).toEqual(["cpu", "webgpu", "cuda", "wasm"]);
    for (const device of WEB_DEVICES) expect(DEVICES).toContain(device);
    expect(MODEL_FAMILIES).toEqual(["sd1", "sd2", "sdxl"]);
  });

  it("parses devices and element types, refusing others in one line", () => {
    expect(parseDevice("WebGPU")).toBe("webgpu");
    expect(() => parseDevice("tpu")).toThrow(/^unknown device "tpu"; expected one of cpu, /);
    expect(parseDtype("fp16")).toBe("float16");
    expect(parseDtype("FP32")).toBe("float32");
    expect(parseDtype("float16")).toBe("float16");
    expect(() => parseDtype("bf16")).toThrow(/^unknown dtype "bf16"; expected fp32 or fp16$/);
    // Names an object inherits are not element types.
    expect(() => parseDtype("constructor")).toThrow(/^unknown dtype "constructor"/);
  });

  it("chooses float32 on CPUs and float16 on GPUs unless asked, and upcasts a VAE that asks", () => {
    expect(modelDtype("cpu", undefined)).toBe("float32");
    expect(modelDtype("wasm", undefined)).toBe("float32");
    expect(modelDtype("webgpu", undefined)).toBe("float16");
    expect(modelDtype("cuda", undefined)).toBe("float16");
    expect(modelDtype("webgpu", "float32")).toBe("float32");
    expect(modelDtype("cpu", "float16")).toBe("float16");
    expect(DEVICES.filter(float32Only)).toEqual(["wasm"]);
    expect(vaeDtype({ forceUpcast: true }, "float16", "sdxl")).toBe("float32");
    expect(vaeDtype({ forceUpcast: false }, "float16", "sdxl")).toBe("float16");
    expect(vaeDtype({ forceUpcast: true }, "float32", "sdxl")).toBe("float32");
    // diffusers' SD 1.x / 2.x pipelines ignore the flag (true by default in every config).
    expect(vaeDtype({ forceUpcast: true }, "float16", "sd1")).toBe("float16");
    expect(vaeDtype({ forceUpcast: true }, "float16", "sd2")).toBe("float16");
  });
});
