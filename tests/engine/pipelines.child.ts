// Runs cases of cases/pipelines.json through the public API with engine "kernels" (WebGPU, f32)
// in a process of its own (Dawn finds its Vulkan driver through the environment a process starts
// with). Arguments: case labels to run (all if none). Prints one JSON line.
import { loadPipeline } from "../../src/index.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { callOptions, cases, tensors } from "../pipelines/pipeline-cases.js";

const labels = process.argv.slice(2);
const results: { key: string; maxAbsDiff: number }[] = [];
const errors: Record<string, string> = {};
for (const c of cases) {
  if (labels.length > 0 && !labels.includes(c.key)) continue;
  try {
    const pipeline = await loadPipeline(fixturePath("pipelines", c.pipeline), {
      cacheDir: false,
      device: "webgpu",
      dtype: "float32",
      engine: "kernels",
    });
    try {
      const result = await pipeline.generate(callOptions(c));
      results.push({
        key: c.key,
        maxAbsDiff: maxAbsDiff(result.images.data, tensors.readFloat32(`${c.key}.image`)),
      });
    } finally {
      await pipeline.release();
    }
  } catch (error) {
    errors[c.key] = (error as Error).message;
  }
}
tensors.close();
process.stdout.write(`${JSON.stringify({ results, errors })}\n`);
