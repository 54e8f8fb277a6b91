// The browser engine's pipeline (models, tokenizer and manifest fetched from the server), run
// here on onnxruntime-node: it must draw what the Node pipeline draws from the same model.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeModel } from "../../src/onnx/proto.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { StableDiffusionPipeline } from "../../src/pipelines/stable-diffusion.js";
import { parseReductionOptions } from "../../src/reduce/options.js";
import { createRunner } from "../../src/runtime/session.js";
import { loadRemotePipeline } from "../../src/serve/remote-pipeline.js";
import { maxAbsDiff } from "../fixtures.js";
import { type DeviceStats, simulatedDevice } from "../pipelines/simulated-device.js";
import { startTestServer, type TestServer, TINY_MODEL } from "./helpers.js";

let test: TestServer;
let local: StableDiffusionPipeline;
beforeAll(async () => {
  test = await startTestServer();
  local = await loadPipeline(TINY_MODEL, { cacheDir: false });
});
afterAll(async () => {
  await local?.release();
  await test?.close();
});

describe("remote pipeline", () => {
  it("reproduces the Node pipeline's images from the served wasm models", async () => {
    const downloads = new Set<string>();
    const remote = await loadRemotePipeline({
      baseUrl: test.url,
      backend: "wasm",
      createRunner: (model) => createRunner(model, { device: "cpu" }),
      onDownload: (file, received, total) => {
        expect(received).toBeLessThanOrEqual(total ?? Number.POSITIVE_INFINITY);
        downloads.add(file);
      },
    });
    try {
      expect(remote.family).toBe("sd1");
      for (const options of [
        { reduction: parseReductionOptions({ factor: 2 }) },
        { clipSkip: 1, negativePrompt: "blurry", scheduler: "Euler a" },
      ]) {
        const call = {
          prompt: "a lighthouse at dusk",
          width: 128,
          height: 96,
          steps: 3,
          guidanceScale: 6,
          seed: 11,
          ...options,
        };
        const [mine, theirs] = [await remote.generate(call), await local.generate(call)];
        expect(mine.parameters).toEqual(theirs.parameters);
        const diff = maxAbsDiff(mine.images.data, theirs.images.data);
        console.log(
          `remote vs local (${Object.keys(options).join(", ")}): ${diff.toExponential(2)}`,
        );
        expect(diff).toBeLessThan(1e-5);
      }
      expect([...downloads].sort()).toEqual([
        "UNet",
        "VAE decoder",
        "accelerated UNet",
        "text encoder 1",
      ]);
    } finally {
      await remote.release();
    }
  });

  it("keeps the latents on a device that can hold them, with the served sampler-step graphs", async () => {
    const stats: DeviceStats = { live: 0, uploads: 0, hostSamples: 0, unetRuns: 0 };
    const downloads = new Set<string>();
    const remote = await loadRemotePipeline({
      baseUrl: test.url,
      backend: "wasm",
      createRunner: async (model) => simulatedDevice(await createRunner(model), stats),
      onDownload: (file) => downloads.add(file),
    });
    try {
      const call = {
        prompt: "a lighthouse at dusk",
        width: 64,
        height: 64,
        steps: 3,
        guidanceScale: 6,
        seed: 5,
        scheduler: "Euler a",
      };
      const mine = await remote.generate({ ...call, latentsOnDevice: "on" });
      const theirs = await local.generate(call);
      expect(mine.timings.denoisedOn).toBe("device");
      const diff = maxAbsDiff(mine.images.data, theirs.images.data);
      console.log(`remote on the device vs local: ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-4);
      expect(stats.hostSamples).toBe(1);
      expect(downloads.has("sampler step")).toBe(true);
    } finally {
      await remote.release();
    }
    const bad = await fetch(`${test.url}/api/model/sampler-step?backend=wasm&guided=2&noise=0`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe('guided: use 0 or 1; got "2"');
  });

  it("serves WebGPU models in float16 by default and in float32 when asked", async () => {
    const manifest = async (query: string) =>
      ((await (await fetch(`${test.url}/api/model/manifest?${query}`)).json()) as { dtype: string })
        .dtype;
    expect(await manifest("backend=webgpu")).toBe("float16");
    expect(await manifest("backend=webgpu&precision=fp32")).toBe("float32");
    expect(await manifest("backend=webgpu&precision=fp16")).toBe("float16");
    expect(await manifest("backend=wasm")).toBe("float32");
    // The float32 WebGPU UNet is a different file from the float16 one.
    const unet = async (precision: string) =>
      (
        (await (
          await fetch(
            `${test.url}/api/model/unet?backend=webgpu&precision=${precision}&reduction=null`,
          )
        ).json()) as { model: string }
      ).model;
    expect(await unet("fp32")).not.toBe(await unet("fp16"));
  });

  it("builds UNet and VAE graphs with attention split for a binding limit when asked", async () => {
    const links = async (path: string, plan: string) =>
      (
        (await (
          await fetch(`${test.url}/api/model/${path}?backend=webgpu&precision=fp32${plan}`)
        ).json()) as { model: string }
      ).model;
    const attentions = async (model: string) => {
      const bytes = new Uint8Array(await (await fetch(`${test.url}${model}`)).arrayBuffer());
      return decodeModel(bytes).graph.node.filter(
        (n) => n.opType === "MultiHeadAttention" || n.opType === "Softmax",
      ).length;
    };
    // sd15-tiny at a 96 x 96 latent (768 px): level-1 scores of a batch-2 call are 2.7 GB in
    // float32; at 1 GiB a buffer, three slices. The VAE's 9216^2 scores (340 MB) fit whole.
    const plan = `&maxBinding=${2 ** 30}&latentSide=96`;
    const plain = await attentions(await links("unet", ""));
    const split = await attentions(await links("unet", plan));
    expect(split).toBeGreaterThan(plain);
    expect(await attentions(await links("vae-decoder", plan))).toBe(
      await attentions(await links("vae-decoder", "")),
    );
    // A 1 MiB limit splits the VAE's attention too: 1024^2 float32 scores at a 32 x 32 latent.
    expect(await attentions(await links("vae-decoder", "&maxBinding=1048576&latentSide=32"))).toBe(
      4,
    );
    const bad = async (query: string) =>
      (
        (await (await fetch(`${test.url}/api/model/unet?backend=webgpu${query}`)).json()) as {
          error: string;
        }
      ).error;
    expect(await bad("&maxBinding=12&latentSide=96")).toBe(
      'maxBinding: a whole number of bytes, at least 1 MiB; got "12"',
    );
    expect(await bad(`&maxBinding=${2 ** 30}`)).toBe(
      'latentSide: a whole number from 1 to 4096; got "null"',
    );
  });

  it("passes the server's one-line errors on", async () => {
    const bad = await fetch(
      `${test.url}/api/model/unet?backend=wasm&reduction=${encodeURIComponent('{"factor":"auto"}')}`,
    );
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe(
      "reduction: give resolved settings (no auto values)",
    );
    const unknown = await fetch(`${test.url}/api/model/files/wasm/${"0".repeat(32)}/model.onnx`);
    expect(unknown.status).toBe(404);
    const backend = await fetch(`${test.url}/api/model/manifest?backend=webgl`);
    expect(((await backend.json()) as { error: string }).error).toBe(
      'backend: use wasm or webgpu; got "webgl"',
    );
    const wasmHalf = await fetch(`${test.url}/api/model/manifest?backend=wasm&precision=fp16`);
    expect(wasmHalf.status).toBe(400);
    expect(((await wasmHalf.json()) as { error: string }).error).toBe(
      'precision: the wasm backend computes in fp32; got "fp16"',
    );
    const odd = await fetch(`${test.url}/api/model/manifest?backend=webgpu&precision=fp8`);
    expect(((await odd.json()) as { error: string }).error).toBe(
      'precision: use fp32 or fp16; got "fp8"',
    );
    await expect(
      loadRemotePipeline({
        baseUrl: `${test.url}/nowhere`,
        backend: "wasm",
        createRunner: (model) => createRunner(model, { device: "cpu" }),
      }),
    ).rejects.toThrow(/the server could not give .*\/nowhere\/api\/model\/manifest: not found/);
  });
});
