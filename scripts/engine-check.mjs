// One UNet call through both engines on WebGPU, in float16 and float32, on the same model and the
// same seeded inputs: the time of a call (median of 3 after 2 warm-ups) and the max abs
// difference of each output to onnxruntime's float32 output on the CPU (the reference: its WebGPU
// backend is itself about 1e-2 off on the tiny fixture model), and of the two float16 outputs to
// each other.
// For the GPU machine (BENCHMARKS.md); a model is built with random weights where it has none.
//
//   npm run build && node scripts/engine-check.mjs builtin:sd15 512 [todo]
import { writeFileSync } from "node:fs";
import { benchReduction, unetFeeds } from "../dist/bench/unet-bench.js";
import { crossAttentionWidth } from "../dist/models/unet.js";
import { openModelFiles } from "../dist/pipelines/load.js";
import { unetBuilds } from "../dist/pipelines/plan-runners.js";

const [source, sizeText, method = "none", out] = process.argv.slice(2);
if (!source || !sizeText) {
  console.error("usage: node scripts/engine-check.mjs <model> <size> [none|todo] [out.json]");
  process.exit(2);
}
const size = { width: Number(sizeText), height: Number(sizeText) };
const { files } = await openModelFiles(source);
const RUNS = [
  ["cpu", "onnxruntime", "float32"],
  ["webgpu", "onnxruntime", "float32"],
  ["webgpu", "onnxruntime", "float16"],
  ["webgpu", "kernels", "float32"],
  ["webgpu", "kernels", "float16"],
];
const outputs = new Map();
const rows = [];
for (const [device, engine, dtype] of RUNS) {
  const label = `${engine} ${device} ${dtype}`;
  const [warmup, repeats] = device === "cpu" ? [0, 1] : [2, 3];
  try {
    // onnxruntime's models over 2 GiB need external data files: the default model cache.
    const unet = unetBuilds(files, { device, dtype, engine });
    const reduction = method === "none" ? undefined : benchReduction(method, size, unet.family);
    const context = crossAttentionWidth(unet.config) ?? 768;
    const feeds = unetFeeds(2, size, unet.config.inChannels, context, undefined, 999);
    const load = performance.now();
    const runner = await unet.runner(reduction);
    const loadMs = performance.now() - load;
    for (let i = 0; i < warmup; i++) await runner.run(feeds);
    const times = [];
    let output;
    for (let i = 0; i < repeats; i++) {
      const start = performance.now();
      output = (await runner.run(feeds))[runner.outputNames[0]];
      times.push(performance.now() - start);
    }
    await runner.release();
    times.sort((a, b) => a - b);
    outputs.set(label, output.data);
    rows.push({ label, medianMs: times[Math.floor(repeats / 2)], loadMs });
  } catch (error) {
    rows.push({ label, error: error.message.split("\n")[0] });
  }
  console.error(JSON.stringify(rows.at(-1)));
}
const maxAbs = (a, b) => {
  if (!a || !b) return Number.NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const reference = outputs.get("onnxruntime cpu float32");
for (const row of rows) row.maxAbsDiffToCpuFp32 = maxAbs(outputs.get(row.label), reference);
const half = maxAbs(
  outputs.get("kernels webgpu float16"),
  outputs.get("onnxruntime webgpu float16"),
);
const result = { source, size: sizeText, method, rows, kernelsFp16VsOrtFp16: half };
console.log(JSON.stringify(result, null, 1));
if (out) writeFileSync(out, JSON.stringify(result, null, 1));
