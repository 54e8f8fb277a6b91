// "The single-file checkpoints give the same images as their diffusers folders": the sd15 and
// sdxl euler pipelines cases through loadPipeline on the single-file fixtures, with configs,
// tokenizers and scheduler from the matching diffusers folder, within 2e-3 of the references.
import { afterAll, describe, expect, it } from "vitest";
import { loadPipeline } from "../../src/index.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { callOptions, cases, tensors } from "../pipelines/pipeline-cases.js";

afterAll(() => tensors.close());

describe("single-file checkpoints", () => {
  it.each([
    ["sd15-tiny", "sd15-tiny.euler"],
    ["sdxl-tiny", "sdxl-tiny.euler"],
  ])("%s.safetensors reproduces %s", async (name, key) => {
    const c = cases.find((k) => k.key === key)!;
    const pipeline = await loadPipeline(fixturePath("checkpoints", `${name}.safetensors`), {
      configFrom: fixturePath("pipelines", name),
      cacheDir: false,
    });
    try {
      const result = await pipeline.generate(callOptions(c));
      const diff = maxAbsDiff(result.images.data, tensors.readFloat32(`${key}.image`));
      console.log(`${name}.safetensors ${key}: max abs diff ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(2e-3);
    } finally {
      await pipeline.release();
    }
  });
});
