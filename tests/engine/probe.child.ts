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
const statuses: string[] = [];
const rows = await benchUnet(fixturePath("pipelines", "sd15-tiny"), {
  device: "webgpu",
  dtype: "float32",
  engine: "kernels",
  sizes: [{ width: 64, height: 64 }],
  methods: ["none"],
  warmup: 0,
  repeats: 1,
  cacheDir: false,
  onStatus: (message) => statuses.push(message),
});
// What the row compiled: the count and time in the row, and the same count by kind on stderr.
const compileLine = statuses.find((m) => m.startsWith("64x64 none: compiled ")) ?? "";
const byKind = compileLine
  .split(": ")
  .slice(2)
  .join(": ")
  .split(", ")
  .map((entry) => /^(.+) (\d+) in \d+\.\d s$/.exec(entry) ?? ["", "", "NaN"]);
const bench = rows.map((r) => ({
  engine: r.engine,
  kernelPath: r.kernelPath,
  label: engineLabel(r),
  // Pipelines, their compile time summed and the time they spanned: all there.
  compiled:
    (r.compiled?.pipelines ?? 0) > 0 && (r.compiled?.ms ?? 0) > 0 && (r.compiled?.wallMs ?? 0) > 0,
  compileLine:
    /^64x64 none: compiled (\d+) pipelines in \d+\.\d s \(\d+\.\d s from the first to the last\): /.exec(
      compileLine,
    )?.[1] === String(r.compiled?.pipelines),
  kindsAddUp: byKind.reduce((n, m) => n + Number(m[2]), 0) === r.compiled?.pipelines,
  kinds: byKind.map((m) => m[1]).includes("gemm") || byKind.map((m) => m[1]).includes("conv"),
}));
// The tensor cores asked for by name on an adapter without them (and in float32): refused in
// one line when the runner is made, so the row carries the error.
const [tensorCore] = await benchUnet(fixturePath("pipelines", "sd15-tiny"), {
  device: "webgpu",
  dtype: "float32",
  engine: "kernels",
  kernelPath: "tensor-core",
  sizes: [{ width: 64, height: 64 }],
  methods: ["none"],
  warmup: 0,
  repeats: 1,
  cacheDir: false,
});
process.stdout.write(
  `${JSON.stringify({ shaderF16: options.shaderF16, engine: unet.engine, bench, tensorCore: tensorCore?.error })}\n`,
);
