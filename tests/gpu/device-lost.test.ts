// A GPU wait whose device is lost fails with the reason instead of hanging: a fake GPU whose
// readbacks and queue never finish, and whose device is lost on cue.
import { describe, expect, it } from "vitest";
import { GpuContext } from "../../src/gpu/context.js";

function fakeGpu() {
  let loseDevice!: (info: { reason: string; message: string }) => void;
  const never = () => new Promise<void>(() => {});
  const device = {
    lost: new Promise((resolve) => {
      loseDevice = resolve;
    }),
    queue: { submit() {}, writeBuffer() {}, onSubmittedWorkDone: never },
    createBuffer: () => ({ mapAsync: never, destroy() {} }),
    createCommandEncoder: () => ({ copyBufferToBuffer() {}, finish: () => ({}) }),
    destroy() {},
  };
  const adapter = {
    info: { vendor: "fake" },
    features: new Set<string>(),
    limits: {
      maxStorageBufferBindingSize: 1 << 20,
      maxBufferSize: 1 << 20,
      maxComputeWorkgroupStorageSize: 16384,
      maxComputeInvocationsPerWorkgroup: 256,
      maxComputeWorkgroupsPerDimension: 65535,
      maxComputeWorkgroupSizeX: 256,
      maxStorageBuffersPerShaderStage: 8,
    },
    requestDevice: async () => device,
  };
  const gpu = { requestAdapter: async () => adapter } as unknown as GPU;
  return { gpu, lose: (reason: string, message: string) => loseDevice({ reason, message }) };
}

describe("a lost GPU device", () => {
  it("fails the waits in flight and every later one with the reason, in one line", async () => {
    const fake = fakeGpu();
    const ctx = await GpuContext.create({ gpu: fake.gpu });
    const tensor = {
      buffer: {} as GPUBuffer,
      shape: [4],
      storage: "f32" as const,
      size: 4,
    };
    const reading = ctx.read(tensor);
    const finishing = ctx.finish();
    // Neither settles while the device lives.
    const pending = Symbol("pending");
    const first = await Promise.race([
      reading.then(
        () => "read",
        () => "failed",
      ),
      new Promise((resolve) => setTimeout(() => resolve(pending), 50)),
    ]);
    expect(first).toBe(pending);
    fake.lose("unknown", "VK_ERROR_DEVICE_LOST\nmore detail");
    const expected = "the GPU device was lost (unknown: VK_ERROR_DEVICE_LOST)";
    await expect(reading).rejects.toThrow(expected);
    await expect(finishing).rejects.toThrow(expected);
    await expect(ctx.finish()).rejects.toThrow(expected);
    await expect(ctx.whileAlive(Promise.resolve(1))).rejects.toThrow(expected);
    expect(() => ctx.dispatch([])).toThrow(expected);
  });

  it("passes a wait's value through while the device lives", async () => {
    const ctx = await GpuContext.create({ gpu: fakeGpu().gpu });
    await expect(ctx.whileAlive(Promise.resolve(42))).resolves.toBe(42);
    await expect(ctx.whileAlive(Promise.reject(new Error("mapping failed")))).rejects.toThrow(
      "mapping failed",
    );
  });
});
