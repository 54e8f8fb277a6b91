// The denoising loop with latents kept on the device, on a simulated device: onnxruntime-node on
// the CPU behind a runner whose kept outputs and uploads are opaque handles. The images must
// match the host loop's, the latents must cross to the device once, and every device tensor
// must be freed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSamplerStep, type SamplerStepOptions } from "../../src/models/sampler-step.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import type { GenerateOptions } from "../../src/pipelines/generate-options.js";
import { loadPipeline, openModelFiles } from "../../src/pipelines/load.js";
import { unetBuilds } from "../../src/pipelines/plan-runners.js";
import { RunnerUnet } from "../../src/pipelines/runner-components.js";
import { StableDiffusionPipeline } from "../../src/pipelines/stable-diffusion.js";
import { createRunner } from "../../src/runtime/session.js";
import type { ModelRunner } from "../../src/runtime/types.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { type DeviceStats, simulatedDevice } from "./simulated-device.js";

const stats: DeviceStats = { live: 0, uploads: 0, hostSamples: 0, unetRuns: 0 };
const opened: StableDiffusionPipeline[] = [];

/** A model's Node pipeline (host loop) and the same parts with the UNet on the simulated device. */
async function pipelines(
  name: string,
): Promise<{ host: StableDiffusionPipeline; device: StableDiffusionPipeline }> {
  const folder = fixturePath("pipelines", name);
  const host = await loadPipeline(folder, { cacheDir: false });
  opened.push(host);
  const { files } = await openModelFiles(folder);
  const builds = unetBuilds(files, { cacheDir: false });
  const steppers = new Map<string, Promise<ModelRunner>>();
  const samplerStep = (options: SamplerStepOptions) => {
    const key = JSON.stringify(options);
    let stepper = steppers.get(key);
    if (!stepper) {
      stepper = createRunner(buildModelBytes(buildSamplerStep(options))).then((r) =>
        simulatedDevice(r, stats),
      );
      steppers.set(key, stepper);
    }
    return stepper;
  };
  const unets = new Map<string, Promise<RunnerUnet>>();
  const device = new StableDiffusionPipeline({
    ...host.parts,
    unet(reduction) {
      const key = JSON.stringify(reduction ?? null);
      let unet = unets.get(key);
      if (!unet) {
        unet = builds
          .runner(reduction)
          .then((r) => new RunnerUnet(simulatedDevice(r, stats), samplerStep));
        unets.set(key, unet);
      }
      return unet;
    },
  });
  return { host, device };
}

let host: StableDiffusionPipeline;
let device: StableDiffusionPipeline;
beforeAll(async () => {
  ({ host, device } = await pipelines("sd15-tiny"));
});
afterAll(async () => {
  for (const pipeline of opened) await pipeline.release();
});

const base: GenerateOptions = {
  prompt: "a red cube on a table",
  width: 64,
  height: 64,
  steps: 4,
  seed: 7,
  guidanceScale: 7.5,
};

describe("latents kept on the device", () => {
  it.each([
    ["Euler", {}],
    ["Euler a", {}],
    ["DPM++ 2M Karras", {}],
    ["DPM++ 2M SDE Karras", {}],
    ["Heun", {}],
    ["UniPC", {}],
    ["Euler", { guidanceScale: 1 }],
    ["Euler a", { imagesPerPrompt: 2 }],
  ] as const)("%s %j gives the host loop's image", async (scheduler, change) => {
    const options: GenerateOptions = { ...base, scheduler, ...change };
    const before = { ...stats };
    const progress: { step: number; latents: boolean }[] = [];
    const onDevice = await device.generate({
      ...options,
      latentsOnDevice: "on",
      onProgress: (p) => progress.push({ step: p.step, latents: p.latents !== undefined }),
    });
    const onHost = await host.generate(options);
    expect(onDevice.timings.denoisedOn).toBe("device");
    expect(onHost.timings.denoisedOn).toBe("host");
    expect(maxAbsDiff(onDevice.images.data, onHost.images.data)).toBeLessThanOrEqual(1e-4);
    const calls = onHost.timings.unetCalls;
    expect(onDevice.timings.unetCalls).toBe(calls);
    expect(progress).toEqual(
      Array.from({ length: calls }, (_, i) => ({ step: i + 1, latents: false })),
    );
    // The latents crossed to the device once (the first model input); the rest stayed there.
    expect(stats.unetRuns - before.unetRuns).toBe(calls);
    expect(stats.hostSamples - before.hostSamples).toBe(1);
    // Sources, conditioning: uploaded once per generation, not per step.
    expect(stats.uploads - before.uploads).toBeLessThanOrEqual(2);
    // Everything the loop made is freed, except the conditioning the UNet keeps for reuse.
    expect(stats.live - before.live).toBeLessThanOrEqual(1);
  });

  it("feeds SDXL's pooled text embeddings and time ids from the device on every step", async () => {
    const sdxl = await pipelines("sdxl-tiny");
    const options: GenerateOptions = { ...base, scheduler: "Euler a" };
    const before = { ...stats };
    const onDevice = await sdxl.device.generate({ ...options, latentsOnDevice: "on" });
    const onHost = await sdxl.host.generate(options);
    expect(onDevice.timings.denoisedOn).toBe("device");
    expect(maxAbsDiff(onDevice.images.data, onHost.images.data)).toBeLessThanOrEqual(1e-4);
    // Bank, hidden states, text embeds and time ids: each uploaded once.
    expect(stats.uploads - before.uploads).toBe(4);
    expect(stats.hostSamples - before.hostSamples).toBe(1);
  });

  it("steps img2img on the device from where the schedule begins", async () => {
    const image = {
      data: Float32Array.from({ length: 64 * 64 * 3 }, (_, i) => (i % 7) / 7),
      count: 1,
      width: 64,
      height: 64,
    };
    const options: GenerateOptions = {
      ...base,
      scheduler: "DPM++ 2M",
      image,
      strength: 0.5,
      steps: 6,
    };
    const onDevice = await device.generate({ ...options, latentsOnDevice: "on" });
    const onHost = await host.generate(options);
    expect(onDevice.timings.denoisedOn).toBe("device");
    expect(onDevice.timings.unetCalls).toBe(3);
    expect(maxAbsDiff(onDevice.images.data, onHost.images.data)).toBeLessThanOrEqual(1e-4);
  });

  it("steps on the host when asked, or when the sampler clips (auto)", async () => {
    const off = await device.generate({ ...base, scheduler: "Euler", latentsOnDevice: "off" });
    expect(off.timings.denoisedOn).toBe("host");
    // DDIM from this model's config keeps its default clip_sample: not linear.
    const clipped = await device.generate({ ...base, scheduler: "DDIM" });
    expect(clipped.timings.denoisedOn).toBe("host");
    const unclipped = await device.generate({
      ...base,
      scheduler: "DDIM",
      schedulerOverrides: { clip_sample: false },
    });
    expect(unclipped.timings.denoisedOn).toBe("device");
  });

  it("refuses 'on' for a sampler that is not linear, before any step", async () => {
    const before = stats.unetRuns;
    const error = await device
      .generate({ ...base, scheduler: "DDIM", latentsOnDevice: "on" })
      .catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /^latentsOnDevice "on": DDIMScheduler cannot be stepped on the device: its step is not a linear combination of its inputs; use "auto" or "off"$/,
    );
    expect(stats.unetRuns).toBe(before);
  });

  it("frees the device tensors when a generation is cancelled mid-loop", async () => {
    const live = stats.live;
    const controller = new AbortController();
    const error = await device
      .generate({
        ...base,
        scheduler: "Euler",
        steps: 6,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.step === 2) controller.abort();
        },
      })
      .catch((e: Error) => e);
    expect((error as Error).name).toBe("AbortError");
    // Only the conditioning the UNet keeps for its next generation is still on the device.
    expect(stats.live - live).toBe(0);
  });

  it("names the step whose latents turned non-finite, on the device and on the host", async () => {
    const live = stats.live;
    // Guidance this strong overflows float32 at the first step.
    const broken = { ...base, scheduler: "Euler", guidanceScale: 1e308 };
    for (const [pipeline, mode] of [
      [device, "on"],
      [host, "off"],
    ] as const) {
      const error = await pipeline.generate({ ...broken, latentsOnDevice: mode }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error?.name, mode).toBe("NonFiniteError");
      expect(error?.message).toMatch(
        /latents became NaN or infinite at step 1 of 4; the guidance scale 1e\+308 is likely at fault/,
      );
    }
    expect(stats.live - live).toBe(0);
  });
});
