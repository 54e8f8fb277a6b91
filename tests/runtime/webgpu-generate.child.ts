// Run by webgpu-node.test.ts in a process of its own (onnxruntime-node's WebGPU backend finds its
// Vulkan driver through the environment the process starts with): tensors moved to the GPU, kept
// there between runs and read back; then the tiny SD 1.5 pipeline on WebGPU, each sampler with the
// latents on the device and on the host. Prints one JSON line.
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { createRunner } from "../../src/runtime/session.js";
import { float32 } from "../../src/runtime/types.js";

const [folder, ...schedulers] = process.argv.slice(2);

// y = x + x on the GPU: upload x, keep y, feed y back in, read both ways.
const g = new GraphBuilder();
const x = g.input("x", "float32", [2, 3]);
g.output(g.add(x, x), "y", "float32", [2, 3]);
const doubler = await createRunner(buildModelBytes(g), {
  device: "webgpu",
  keepOutputsOnDevice: true,
});
if (!doubler.upload || !doubler.runOnDevice)
  throw new Error("the WebGPU runner cannot keep tensors");
const uploaded = await doubler.upload(float32(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]));
const kept = (await doubler.runOnDevice({ x: uploaded }, ["y"])).y;
const again = (await doubler.run({ x: kept })).y;
const transfers = {
  uploaded: Array.from(await uploaded.read()),
  keptType: kept.type,
  kept: kept.type === "resident" ? Array.from(await kept.read()) : [],
  again: again.type === "float32" ? Array.from(again.data) : [],
};
uploaded.dispose();
if (kept.type === "resident") kept.dispose();
await doubler.release();
const pipeline = await loadPipeline(folder, {
  device: "webgpu",
  dtype: "float32",
  cacheDir: false,
});
const runs = [];
try {
  for (const scheduler of schedulers) {
    const options = {
      prompt: "a red cube on a table",
      width: 64,
      height: 64,
      steps: 3,
      seed: 7,
      guidanceScale: 7.5,
      scheduler,
    };
    const device = await pipeline.generate({ ...options, latentsOnDevice: "on" });
    const host = await pipeline.generate({ ...options, latentsOnDevice: "off" });
    let maxDiff = 0;
    for (let i = 0; i < host.images.data.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(device.images.data[i] - host.images.data[i]));
    runs.push({
      scheduler,
      denoisedOn: [device.timings.denoisedOn, host.timings.denoisedOn],
      unetCalls: [device.timings.unetCalls, host.timings.unetCalls],
      maxDiff,
      finite: device.images.data.every(Number.isFinite),
    });
  }
} finally {
  await pipeline.release();
}
console.log(JSON.stringify({ transfers, runs }));
