// A stand-in for a device that keeps tensors between runs (onnxruntime-web's GPU buffers): a
// runner whose uploads and kept outputs are opaque handles over host copies, counted so tests
// can see what crossed to the device and what was never freed.
import {
  float32,
  type ModelRunner,
  type ResidentTensor,
  type RunnerFeed,
  type RunnerTensor,
} from "../../src/runtime/types.js";

export interface DeviceStats {
  /** Resident tensors not yet disposed. */
  live: number;
  uploads: number;
  /** UNet runs whose sample came from the host. */
  hostSamples: number;
  unetRuns: number;
}

/** A runner that keeps "device" tensors as opaque handles over host copies. */
export function simulatedDevice(runner: ModelRunner, stats: DeviceStats): ModelRunner {
  const disposed = new WeakSet<object>();
  const resident = (data: Float32Array, dims: readonly number[]): ResidentTensor => {
    stats.live++;
    const handle = { data };
    return {
      type: "resident",
      dims,
      handle,
      read: async () => data.slice(),
      dispose() {
        if (disposed.has(handle)) return;
        disposed.add(handle);
        stats.live--;
      },
    };
  };
  const toHost = (feeds: Readonly<Record<string, RunnerFeed>>) => {
    const out: Record<string, RunnerTensor> = {};
    for (const [name, feed] of Object.entries(feeds)) {
      if (feed.type !== "resident") {
        out[name] = feed;
        continue;
      }
      const handle = feed.handle as { data: Float32Array };
      if (disposed.has(handle)) throw new Error(`input ${name} was used after it was disposed`);
      out[name] = float32(handle.data, feed.dims);
    }
    if ("sample" in feeds) {
      stats.unetRuns++;
      if (feeds.sample.type !== "resident") stats.hostSamples++;
    }
    return out;
  };
  return {
    inputNames: runner.inputNames,
    outputNames: runner.outputNames,
    run: (feeds) => runner.run(toHost(feeds)),
    async upload(tensor) {
      stats.uploads++;
      return resident(tensor.data.slice(), tensor.dims);
    },
    async runOnDevice(feeds, keep) {
      const out: Record<string, RunnerFeed> = {};
      for (const [name, tensor] of Object.entries(await runner.run(toHost(feeds))))
        out[name] =
          keep.includes(name) && tensor.type === "float32"
            ? resident(tensor.data, tensor.dims)
            : tensor;
      return out;
    },
    release: () => runner.release(),
  };
}
