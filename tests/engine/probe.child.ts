// Run by select.test.ts in a process of its own (Dawn finds its Vulkan driver through the
// environment a process starts with): what `auto` learns of the adapter for a float16 model on
// WebGPU, and the engine it then picks. Prints one JSON line.

import { openModelFiles } from "../../src/pipelines/load.js";
import { probeEngine, type RunnerOptions, unetBuilds } from "../../src/pipelines/plan-runners.js";
import { fixturePath } from "../fixtures.js";

const asked: RunnerOptions = { device: "webgpu", dtype: "float16" };
const options = await probeEngine(asked);
const { files } = await openModelFiles(fixturePath("pipelines", "sd15-tiny"));
const unet = unetBuilds(files, { ...options, cacheDir: false });
process.stdout.write(`${JSON.stringify({ shaderF16: options.shaderF16, engine: unet.engine })}\n`);
files.close();
