// End-to-end conformance: every case of cases/pipelines.json through the public API, with the
// recorded initial latents and noise draws, within 2e-3 max abs on the image.
import { afterAll, describe, expect, it } from "vitest";
import { loadPipeline, type StableDiffusionPipeline } from "../../src/index.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { callOptions, cases, tensors } from "./pipeline-cases.js";

const pipelines = new Map<string, Promise<StableDiffusionPipeline>>();
afterAll(async () => {
  for (const p of pipelines.values()) await (await p).release();
  tensors.close();
});

function pipelineFor(name: string): Promise<StableDiffusionPipeline> {
  let pipeline = pipelines.get(name);
  if (!pipeline) {
    pipeline = loadPipeline(fixturePath("pipelines", name), { cacheDir: false });
    pipelines.set(name, pipeline);
  }
  return pipeline;
}

describe("pipelines conformance", () => {
  it.each(cases.map((c) => [c.key, c] as const))("%s", async (_key, c) => {
    const pipeline = await pipelineFor(c.pipeline);
    const result = await pipeline.generate(callOptions(c));
    const expected = tensors.readFloat32(`${c.key}.image`);
    expect(result.images.data.length).toBe(expected.length);
    const diff = maxAbsDiff(result.images.data, expected);
    console.log(`${c.key}: max abs diff ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(2e-3);
  });
});
