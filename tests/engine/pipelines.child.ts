// Runs cases of cases/pipelines.json through the public API with engine "kernels" (WebGPU, f32)
// in a process of its own (Dawn finds its Vulkan driver through the environment a process starts
// with). Arguments: case labels to run (all if none). Each case builds its models into a model
// cache of its own and the engine reads them back from the saved files, as onnxruntime does.
// Prints one JSON line, with the components each case built and the cache entries they left.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadPipeline } from "../../src/index.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { callOptions, cases, tensors } from "../pipelines/pipeline-cases.js";

const labels = process.argv.slice(2);
const results: {
  key: string;
  maxAbsDiff: number;
  built: string[];
  cacheEntries: number;
  denoisedOn: string;
}[] = [];
const errors: Record<string, string> = {};
for (const c of cases) {
  if (labels.length > 0 && !labels.includes(c.key)) continue;
  const cacheDir = mkdtempSync(join(tmpdir(), "todo-sd-kernels-cache-"));
  const built: string[] = [];
  try {
    const pipeline = await loadPipeline(fixturePath("pipelines", c.pipeline), {
      cacheDir,
      device: "webgpu",
      dtype: "float32",
      engine: "kernels",
      onBuild: (component, path) => built.push(`${component} ${path ? "saved" : "in memory"}`),
    });
    try {
      const result = await pipeline.generate(callOptions(c));
      results.push({
        key: c.key,
        maxAbsDiff: maxAbsDiff(result.images.data, tensors.readFloat32(`${c.key}.image`)),
        built,
        cacheEntries: readdirSync(cacheDir).filter((name) => !name.startsWith(".")).length,
        denoisedOn: result.timings.denoisedOn,
      });
    } finally {
      await pipeline.release();
    }
  } catch (error) {
    errors[c.key] = (error as Error).message;
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}
tensors.close();
process.stdout.write(`${JSON.stringify({ results, errors })}\n`);
