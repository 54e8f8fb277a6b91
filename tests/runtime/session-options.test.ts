// onnxruntime-node session options per device, and the WebGPU tuning flags that reach them.
import { describe, expect, it } from "vitest";
import { loadOptionsFromFlags, type ModelFlagValues } from "../../src/cli/options.js";
import { sessionOptions } from "../../src/runtime/session.js";

const flags: ModelFlagValues = { model: "builtin:sd15", device: "webgpu", cache: true };

describe("session options", () => {
  it("turns the memory pattern off on WebGPU unless asked for, and leaves the CPU alone", () => {
    const webgpu = sessionOptions({ device: "webgpu" });
    expect(webgpu.enableMemPattern).toBe(false);
    expect(webgpu.executionProviders).toEqual([
      { name: "webgpu", storageBufferCacheMode: "simple" },
      "cpu",
    ]);
    expect(
      sessionOptions({ device: "webgpu", webgpu: { memPattern: true } }).enableMemPattern,
    ).toBe(true);
    const cpu = sessionOptions({ device: "cpu", webgpu: { memPattern: false } });
    expect("enableMemPattern" in cpu).toBe(false);
    expect(cpu.executionProviders).toEqual(["cpu"]);
  });

  it("leaves outputs in GPU buffers on WebGPU only when asked", () => {
    expect(sessionOptions({ device: "webgpu" }).preferredOutputLocation).toBeUndefined();
    expect(
      sessionOptions({ device: "webgpu", keepOutputsOnDevice: true }).preferredOutputLocation,
    ).toBe("gpu-buffer");
    expect(
      "preferredOutputLocation" in sessionOptions({ device: "cpu", keepOutputsOnDevice: true }),
    ).toBe(false);
  });

  it("passes layout, validation and buffer caching to the WebGPU provider by onnxruntime's names", () => {
    const options = sessionOptions({
      device: "webgpu",
      webgpu: { preferredLayout: "NCHW", validationMode: "disabled", storageBufferCache: "simple" },
    });
    expect(options.executionProviders?.[0]).toEqual({
      name: "webgpu",
      preferredLayout: "NCHW",
      validationMode: "disabled",
      storageBufferCacheMode: "simple",
    });
  });

  it("maps the --webgpu-* flags, and gives no tuning when none is set", () => {
    expect(loadOptionsFromFlags(flags).webgpu).toBeUndefined();
    expect(
      loadOptionsFromFlags({ ...flags, webgpuMemPattern: "on", webgpuBufferCache: "lazyRelease" })
        .webgpu,
    ).toEqual({
      preferredLayout: undefined,
      validationMode: undefined,
      memPattern: true,
      storageBufferCache: "lazyRelease",
    });
    expect(loadOptionsFromFlags({ ...flags, webgpuMemPattern: "off" }).webgpu?.memPattern).toBe(
      false,
    );
  });
});
