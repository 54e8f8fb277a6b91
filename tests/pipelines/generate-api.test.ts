// The public generate API around the numerics: input checks before any model runs, progress,
// cancellation, and the model folders a pipeline refuses.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GENERATION_DEFAULTS,
  type GenerateOptions,
  loadPipeline,
  MAX_SEED,
  type StableDiffusionPipeline,
} from "../../src/index.js";
import { fixturePath } from "../fixtures.js";

const folder = fixturePath("pipelines", "sd15-tiny");
let pipeline: StableDiffusionPipeline;
const work = mkdtempSync(join(tmpdir(), "todo-sd-api-"));

beforeAll(async () => {
  pipeline = await loadPipeline(folder, { cacheDir: false });
});
afterAll(async () => {
  await pipeline.release();
  rmSync(work, { recursive: true, force: true });
});

const small: GenerateOptions = {
  prompt: "a cat",
  width: 64,
  height: 64,
  steps: 3,
  seed: 1,
  scheduler: "Euler",
};

describe("generate input checks", () => {
  it.each([
    [
      "a width not a multiple of 8",
      { width: 100 },
      "width must be a positive multiple of 8; got 100",
    ],
    ["an empty prompt list", { prompt: [] }, "prompt: give at least one prompt"],
    [
      "a negative prompt list of another length",
      { prompt: ["a", "b"], negativePrompt: ["x", "y", "z"] },
      "negativePrompt: 3 negative prompts for 2 prompts",
    ],
    [
      "a strength outside (0, 1]",
      {
        strength: 1.5,
        image: { data: new Float32Array(64 * 64 * 3), count: 1, width: 64, height: 64 },
      },
      "strength must be in (0, 1]; got 1.5",
    ],
    ["a strength without an init image", { strength: 0.5 }, "strength is for img2img"],
    ["zero steps", { steps: 0 }, "steps must be a whole number >= 1; got 0"],
    ["an unknown scheduler", { scheduler: "Nope" }, 'unknown scheduler "Nope"'],
    [
      "an unknown latents placement",
      { latentsOnDevice: "gpu" },
      'latentsOnDevice must be "auto", "on" or "off"; got "gpu"',
    ],
    [
      "latents on the device where the runtime cannot keep them",
      { latentsOnDevice: "on" },
      'latentsOnDevice "on": this runtime cannot keep tensors on its device',
    ],
  ] as const)("rejects %s with one line", async (_label, change, message) => {
    const error = await pipeline
      .generate({ ...small, ...change } as GenerateOptions)
      .catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain("\n");
  });
});

describe("progress and cancellation", () => {
  it("reports every step with the latents", async () => {
    const seen: { step: number; total: number; dims: readonly number[] | undefined }[] = [];
    const result = await pipeline.generate({
      ...small,
      onProgress: (p) => seen.push({ step: p.step, total: p.totalSteps, dims: p.latents?.dims }),
    });
    expect(seen.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(seen.every((s) => s.total === 3)).toBe(true);
    expect(seen[0].dims).toEqual([1, 4, 8, 8]);
    expect(result.timings.unetCalls).toBe(3);
    expect(result.timings.denoisedOn).toBe("host");
    expect(result.images.count).toBe(1);
  });

  it("stops at the next step when the signal aborts, and before any work when already aborted", async () => {
    const controller = new AbortController();
    let steps = 0;
    const running = pipeline.generate({
      ...small,
      signal: controller.signal,
      onProgress: () => {
        steps++;
        controller.abort();
      },
    });
    await expect(running).rejects.toMatchObject({
      name: "AbortError",
      message: "generation cancelled",
    });
    expect(steps).toBe(1);
    const aborted = new AbortController();
    aborted.abort();
    let called = false;
    await expect(
      pipeline.generate({
        ...small,
        signal: aborted.signal,
        onProgress: () => {
          called = true;
        },
      }),
    ).rejects.toMatchObject({ name: "AbortError" });
    expect(called).toBe(false);
  });

  it("gives the same images for the same seed", async () => {
    const a = await pipeline.generate(small);
    const b = await pipeline.generate(small);
    expect(Buffer.from(a.images.data.buffer).equals(Buffer.from(b.images.data.buffer))).toBe(true);
  });
});

describe("model folders the pipeline refuses", () => {
  function copyWithIndex(edit: (index: Record<string, unknown>) => void): string {
    const dir = mkdtempSync(join(work, "model-"));
    cpSync(folder, dir, { recursive: true });
    const indexPath = join(dir, "model_index.json");
    const index = JSON.parse(readFileSync(indexPath, "utf8")) as Record<string, unknown>;
    edit(index);
    writeFileSync(indexPath, JSON.stringify(index));
    return dir;
  }

  it("names an unknown component class", async () => {
    const dir = copyWithIndex((index) => {
      index.unet = ["diffusers", "UNet3DConditionModel"];
    });
    await expect(loadPipeline(dir, { cacheDir: false })).rejects.toThrow(
      /model_index.json: unsupported class UNet3DConditionModel for unet \(supported: UNet2DConditionModel\)/,
    );
  });

  it("names a missing component", async () => {
    const dir = copyWithIndex((index) => {
      index.vae = [null, null];
    });
    await expect(loadPipeline(dir, { cacheDir: false })).rejects.toThrow(/the pipeline has no vae/);
  });

  it("names an unknown scheduler class", async () => {
    const dir = copyWithIndex((index) => {
      index.scheduler = ["diffusers", "FancyScheduler"];
    });
    await expect(loadPipeline(dir, { cacheDir: false })).rejects.toThrow(
      /unsupported class FancyScheduler for scheduler/,
    );
  });
});

describe("the generation plan", () => {
  it("applies the defaults once and the pipeline runs the plan as resolved", async () => {
    const plan = pipeline.plan({ prompt: "a cat", width: 64, height: 64, steps: 2 });
    expect(plan.guidanceScale).toBe(GENERATION_DEFAULTS.guidanceScale);
    expect(plan.imagesPerPrompt).toBe(1);
    expect(plan.strength).toBeUndefined();
    expect(plan.latentDims).toEqual([1, 4, 8, 8]);
    expect(Number.isInteger(plan.seed) && plan.seed >= 0 && plan.seed <= MAX_SEED).toBe(true);
    const result = await pipeline.generate(plan);
    // The seed drawn for a call without one is the one recorded, and it reproduces the images.
    expect(result.parameters.seed).toBe(plan.seed);
    expect(result.parameters.scheduler).toBe(plan.scheduler);
    const again = await pipeline.generate({
      prompt: "a cat",
      width: 64,
      height: 64,
      steps: 2,
      seed: plan.seed,
    });
    expect(again.images.data).toEqual(result.images.data);
  });

  it("gives img2img the default strength and refuses a mis-sized init image before any model runs", () => {
    const image = { data: new Float32Array(64 * 64 * 3), count: 1, width: 64, height: 64 };
    const plan = pipeline.plan({ prompt: "a cat", steps: 10, scheduler: "Euler", image });
    expect(plan.strength).toBe(GENERATION_DEFAULTS.strength);
    expect(plan.timesteps.length).toBe(Math.floor(10 * GENERATION_DEFAULTS.strength));
    expect(plan.width).toBe(64);
    expect(() => pipeline.plan({ prompt: "a cat", width: 128, height: 64, image })).toThrow(
      "init image is 64x64 but the output is 128x64; resize it first",
    );
  });
});
