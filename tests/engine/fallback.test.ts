// The kernels engine's hand-over to another engine where `auto` chose it: a model the kernels
// cannot run goes to the other runner once, with one warning; other errors are not swallowed.
import { describe, expect, it } from "vitest";
import { kernelsOrFallback, withFallback } from "../../src/engine/fallback.js";
import { unsupported } from "../../src/engine/unsupported.js";
import {
  float32,
  type ModelRunner,
  type ResidentTensor,
  type RunnerTensor,
} from "../../src/runtime/types.js";

/** A runner whose `run` answers with `answer` (or throws it), counting calls and releases. */
function fakeRunner(answer: number | Error) {
  const state = { runs: 0, released: 0 };
  const runner: ModelRunner = {
    inputNames: ["x"],
    outputNames: ["y"],
    async run(): Promise<Record<string, RunnerTensor>> {
      state.runs++;
      if (answer instanceof Error) throw answer;
      return { y: float32(Float32Array.of(answer), [1]) };
    },
    async release() {
      state.released++;
    },
  };
  return { runner, state };
}

const feeds = { x: float32(Float32Array.of(0), [1]) };
const value = async (runner: ModelRunner) => (await runner.run(feeds)).y.data[0];

describe("kernels engine fallback", () => {
  it("hands a model the kernels cannot run to the other engine once, and keeps it there", async () => {
    const kernels = fakeRunner(unsupported("attention heads of width 1024"));
    const other = fakeRunner(7);
    const reasons: string[] = [];
    let made = 0;
    const runner = withFallback(
      kernels.runner,
      async () => {
        made++;
        return other.runner;
      },
      (reason) => reasons.push(reason),
    );
    expect(await value(runner)).toBe(7);
    expect(await value(runner)).toBe(7);
    expect(reasons).toEqual([
      "attention heads of width 1024 is not supported by the kernels engine yet",
    ]);
    expect({
      made,
      kernelRuns: kernels.state.runs,
      kernelReleases: kernels.state.released,
    }).toEqual({
      made: 1,
      kernelRuns: 1,
      kernelReleases: 1,
    });
    await runner.release();
    expect(other.state.released).toBe(1);
    expect(kernels.state.released).toBe(1);
  });

  it("keeps the kernels where they run, and lets other errors through", async () => {
    const fine = withFallback(
      fakeRunner(3).runner,
      async () => fakeRunner(7).runner,
      () => {
        throw new Error("no fallback expected");
      },
    );
    expect(await value(fine)).toBe(3);
    const broken = withFallback(
      fakeRunner(new Error("device lost")).runner,
      async () => fakeRunner(7).runner,
      () => {
        throw new Error("no fallback expected");
      },
    );
    await expect(broken.run(feeds)).rejects.toThrow(/^device lost$/);
  });

  it("falls back when the kernels refuse the model as it loads (an operator they lack)", async () => {
    const reasons: string[] = [];
    const runner = await kernelsOrFallback(
      async () => {
        throw unsupported("the operator com.microsoft.GroupQueryAttention");
      },
      async () => fakeRunner(5).runner,
      (reason) => reasons.push(reason),
    );
    expect(await value(runner)).toBe(5);
    expect(reasons).toEqual([
      "the operator com.microsoft.GroupQueryAttention is not supported by the kernels engine yet",
    ]);
    await expect(
      kernelsOrFallback(
        async () => {
          throw new Error("no adapter");
        },
        async () => fakeRunner(5).runner,
        () => {},
      ),
    ).rejects.toThrow(/^no adapter$/);
  });

  it("forwards tensors kept on the device: the kernels' until the model moves, then the other engine's", async () => {
    const calls: string[] = [];
    const resident = (tag: string): ResidentTensor => ({
      type: "resident",
      dims: [1],
      handle: tag,
      read: async () => Float32Array.of(0),
      dispose() {},
    });
    const deviceRunner = (tag: string, answer: Error | undefined): ModelRunner => ({
      inputNames: ["x"],
      outputNames: ["y"],
      async run() {
        return { y: float32(Float32Array.of(0), [1]) };
      },
      async upload() {
        calls.push(`${tag} upload`);
        return resident(tag);
      },
      async runOnDevice(given, keep) {
        calls.push(`${tag} runOnDevice ${Object.keys(given).join(",")} keep ${keep.join(",")}`);
        if (answer) throw answer;
        return { y: resident(tag) };
      },
      async release() {},
    });
    const runner = withFallback(
      deviceRunner("kernels", unsupported("a 5x5 convolution")),
      async () => deviceRunner("onnxruntime", undefined),
      () => {},
    );
    const upload = runner.upload as NonNullable<ModelRunner["upload"]>;
    const runOnDevice = runner.runOnDevice as NonNullable<ModelRunner["runOnDevice"]>;
    expect((await upload(float32(Float32Array.of(1), [1]))).handle).toBe("kernels");
    const out = await runOnDevice(feeds, ["y"]);
    expect((out.y as ResidentTensor).handle).toBe("onnxruntime");
    expect((await upload(float32(Float32Array.of(1), [1]))).handle).toBe("onnxruntime");
    expect(calls).toEqual([
      "kernels upload",
      "kernels runOnDevice x keep y",
      "onnxruntime runOnDevice x keep y",
      "onnxruntime upload",
    ]);
    // Moved to a runner that keeps nothing on the device: runs go to its run(), uploads fail in
    // one line.
    const hostOnly = withFallback(
      deviceRunner("kernels", unsupported("a 5x5 convolution")),
      async () => fakeRunner(5).runner,
      () => {},
    );
    const moved = await (hostOnly.runOnDevice as NonNullable<ModelRunner["runOnDevice"]>)(feeds, [
      "y",
    ]);
    expect((moved.y as RunnerTensor).data[0]).toBe(5);
    await expect(
      (hostOnly.upload as NonNullable<ModelRunner["upload"]>)(float32(Float32Array.of(1), [1])),
    ).rejects.toThrow("the model moved to onnxruntime, which cannot keep tensors on this device");
    // A runner that keeps nothing on the device offers neither.
    const plain = withFallback(
      fakeRunner(1).runner,
      async () => fakeRunner(2).runner,
      () => {},
    );
    expect(plain.upload).toBeUndefined();
    expect(plain.runOnDevice).toBeUndefined();
  });
});
