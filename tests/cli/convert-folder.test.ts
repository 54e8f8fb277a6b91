// `convert --component all` writes a complete diffusers ONNX folder: model index, tokenizer,
// scheduler and VAE configs beside the components, so `generate` and `info` load it and it
// gives the image the weights give.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixturePath, maxAbsDiff } from "../fixtures.js";
import { readRawImage, runCli, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

describe("convert --component all", () => {
  it("writes a folder generate and info load, giving the checkpoint's image", async () => {
    const checkpoint = fixturePath("checkpoints", "sd15-tiny.safetensors");
    const folder = ws.path("sd15-onnx");
    const convert = await runCli(["convert", checkpoint, "--component", "all", "-o", folder]);
    expect(convert.code, convert.stderr).toBe(0);
    for (const file of [
      "model_index.json",
      "tokenizer/vocab.json",
      "tokenizer/merges.txt",
      "scheduler/scheduler_config.json",
      "vae_decoder/config.json",
    ])
      expect(existsSync(join(folder, file)), file).toBe(true);
    expect(JSON.parse(readFileSync(join(folder, "model_index.json"), "utf8"))).toMatchObject({
      _class_name: "OnnxStableDiffusionPipeline",
      unet: ["diffusers", "OnnxRuntimeModel"],
      text_encoder: ["diffusers", "OnnxRuntimeModel"],
      vae_decoder: ["diffusers", "OnnxRuntimeModel"],
      vae_encoder: ["diffusers", "OnnxRuntimeModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
    });

    const info = await runCli(["info", folder, "--json"]);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ family: "sd1" });

    const images: Float32Array[] = [];
    for (const model of [checkpoint, folder]) {
      const raw = ws.path(`raw-${images.length}.safetensors`);
      const run = await runCli([
        "generate",
        "a lighthouse",
        "-m",
        model,
        "--size",
        "64",
        "--steps",
        "2",
        "--seed",
        "5",
        "--scheduler",
        "Euler",
        "--todo",
        "1",
        "--cache-dir",
        ws.cache,
        "--raw",
        raw,
        "-o",
        ws.outDir(),
      ]);
      expect(run.code, run.stderr).toBe(0);
      images.push(readRawImage(raw));
    }
    // The same float32 graphs run either way; only onnxruntime's scheduling of the ops may differ.
    expect(maxAbsDiff(images[0], images[1])).toBeLessThan(1e-5);
  });
});
