// `convert` follows the same model rules as `generate`: an SDXL VAE whose config asks for
// force_upcast stays float32 in an fp16 conversion, a VAE with latents_mean/latents_std is
// refused before anything is written, and `convert --component all` of an SDXL model writes a
// folder that `generate -m` loads and that gives the image the diffusers folder gives.
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readModel } from "../../src/onnx/model-io.js";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { expectOneLineError, filesIn, readRawImage, runCli, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const SDXL = fixturePath("pipelines", "sdxl-tiny");
const SD15 = fixturePath("pipelines", "sd15-tiny");
/** ONNX TensorProto element types. */
const FLOAT = 1;
const FLOAT16 = 10;

function initializerTypes(path: string): Set<number> {
  return new Set((readModel(path, true).graph.initializer ?? []).map((t) => t.dataType ?? 0));
}

describe("convert applies the model's VAE rules", () => {
  it("keeps an SDXL VAE that asks for force_upcast in float32 under --dtype fp16", async () => {
    const out = ws.path("sdxl-vae.onnx");
    const run = await runCli(
      ["convert", SDXL, "--component", "vae_decoder", "--dtype", "fp16"].concat(["-o", out]),
    );
    expect(run.code, run.stderr).toBe(0);
    const types = initializerTypes(out);
    expect(types.has(FLOAT)).toBe(true);
    expect(types.has(FLOAT16)).toBe(false);
    // The UNet of the same model does become float16: the flag is not ignored.
    const unet = ws.path("sdxl-unet.onnx");
    const unetRun = await runCli(
      ["convert", SDXL, "--component", "unet", "--dtype", "fp16"].concat(["-o", unet]),
    );
    expect(unetRun.code, unetRun.stderr).toBe(0);
    expect(initializerTypes(unet).has(FLOAT16)).toBe(true);
  });

  it("refuses a VAE with latents_mean, writing nothing", async () => {
    const model = ws.path("sd15-latents-mean");
    cpSync(SD15, model, { recursive: true });
    const configPath = join(model, "vae", "config.json");
    const config = JSON.parse(readFileSync(configPath, "utf8"));
    writeFileSync(
      configPath,
      JSON.stringify({ ...config, latents_mean: [0, 0, 0, 0], latents_std: [1, 1, 1, 1] }),
    );
    const outDir = ws.outDir();
    const run = await runCli(
      ["convert", model, "--component", "vae_decoder"].concat(["-o", join(outDir, "vae.onnx")]),
    );
    expectOneLineError(run, /latents_mean/);
    expect(filesIn(outDir)).toEqual([]);
  });
});

describe("convert --component all of an SDXL model", () => {
  it("writes a folder generate loads, giving the diffusers folder's image", async () => {
    const folder = ws.path("sdxl-onnx");
    const convert = await runCli(["convert", SDXL, "--component", "all", "-o", folder]);
    expect(convert.code, convert.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(folder, "model_index.json"), "utf8"))).toMatchObject({
      _class_name: "OnnxStableDiffusionXLPipeline",
      text_encoder_2: ["diffusers", "OnnxRuntimeModel"],
      tokenizer_2: ["transformers", "CLIPTokenizer"],
    });
    const info = await runCli(["info", folder, "--json"]);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ family: "sdxl" });
    const images: Float32Array[] = [];
    for (const model of [SDXL, folder]) {
      const raw = ws.path(`xl-raw-${images.length}.safetensors`);
      const run = await runCli(
        ["generate", "a lighthouse", "-m", model, "--size", "64", "--steps", "2", "--seed", "5"]
          .concat(["--scheduler", "Euler", "--cache-dir", ws.cache, "--raw", raw])
          .concat(["-o", ws.outDir()]),
      );
      expect(run.code, run.stderr).toBe(0);
      images.push(readRawImage(raw));
    }
    // The same float32 graphs run either way; only onnxruntime's scheduling of the ops may differ.
    expect(maxAbsDiff(images[0], images[1])).toBeLessThan(1e-5);
  });
});
