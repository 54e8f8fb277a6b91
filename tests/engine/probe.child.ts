// Run by select.test.ts in a process of its own (Dawn finds its Vulkan driver through the
// environment a process starts with): what `auto` learns of the adapter for a float16 model on
// WebGPU, and the engine it then picks; and a bench row of the kernels engine, asked for by name
// in float32, with the path its tuned kernels took. Prints one JSON line.

import { benchUnet } from "../../src/bench/unet-bench.js";
import { engineLabel } from "../../src/cli/bench.js";
import { openModelFiles } from "../../src/pipelines/load.js";
import { probeEngine, type RunnerOptions, unetBuilds } from "../../src/pipelines/plan-runners.js";
import { fixturePath } from "../fixtures.js";

const asked: RunnerOptions = { device: "webgpu", dtype: "float16" };
const options = await probeEngine(asked);
const { files } = await openModelFiles(fixturePath("pipelines", "sd15-tiny"));
const unet = unetBuilds(files, { ...options, cacheDir: false });
files.close();
const rows = await benchUnet(fixturePath("pipelines", "sd15-tiny"), {
  device: "webgpu",
  dtype: "float32",
  engine: "kernels",
  sizes: [{ width: 64, height: 64 }],
  methods: ["none"],
  warmup: 0,
  repeats: 1,
  cacheDir: false,
});
const bench = rows.map((r) => ({
  engine: r.engine,
  kernelPath: r.kernelPath,
  label: engineLabel(r),
}));
process.stdout.write(
  `${JSON.stringify({ shaderF16: options.shaderF16, engine: unet.engine, bench })}\n`,
);
