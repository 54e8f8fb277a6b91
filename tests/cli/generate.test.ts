// `todo-sd generate` end to end on the sd15-tiny fixture: the reference txt2img case through the
// flags (recorded latents, the case's scheduler config, raw float output), img2img from a PNG
// with recorded noise, the PNG's embedded parameters, and every kind of bad input.
import { afterAll, describe, expect, it } from "vitest";
import {
  encodePng,
  floatToRgb8,
  loadPipeline,
  readGenerationInfo,
  readPngFile,
  rgb8ToFloat,
} from "../../src/index.js";
import { encodeSafetensors, SafetensorsFile } from "../../src/weights/safetensors.js";
import { maxAbsDiff } from "../fixtures.js";
import { callOptions, cases, tensors } from "../pipelines/pipeline-cases.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => {
  ws.remove();
  tensors.close();
});

const euler = cases.find((c) => c.key === "sd15-tiny.euler")!;
const img2img = cases.find((c) => c.key === "sd15-tiny.img2img")!;

function f32(data: Float32Array, shape: number[]) {
  return { dtype: "F32" as const, shape, data };
}

function readRaw(path: string): { data: Float32Array; shape: readonly number[] } {
  const file = SafetensorsFile.open(path);
  try {
    return { data: file.readFloat32("image").slice(), shape: file.info("image").shape };
  } finally {
    file.close();
  }
}

/** The case's init image (NCHW floats) as an 8-bit PNG file. */
function initImagePng(): string {
  const [, , height, width] = tensors.info(`${img2img.key}.init_image`).shape;
  const nchw = tensors.readFloat32(`${img2img.key}.init_image`);
  const hwc = new Float32Array(nchw.length);
  const plane = width * height;
  for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) hwc[p * 3 + c] = nchw[c * plane + p];
  const rgb = floatToRgb8({ width, height, data: hwc });
  return ws.write("init.png", encodePng({ width, height, data: rgb }));
}

describe("generate", () => {
  it("reproduces the sd15 euler case from --latents and --scheduler-config, with --raw", async () => {
    const latents = ws.write(
      "euler-latents.safetensors",
      encodeSafetensors({
        latents: f32(tensors.readFloat32(`${euler.key}.latents`), [1, 4, 16, 16]),
      }),
    );
    const schedulerConfig = ws.write(
      "euler-scheduler.json",
      JSON.stringify(euler.scheduler_config),
    );
    const out = ws.outDir();
    const raw = ws.path("euler-raw.safetensors");
    const run = await runCli([
      "generate",
      euler.call.prompt as string,
      "--model",
      SD15,
      "--negative",
      euler.call.negative_prompt as string,
      "--size",
      "128",
      "--steps",
      String(euler.call.num_inference_steps),
      "--cfg",
      String(euler.call.guidance_scale),
      "--scheduler-config",
      schedulerConfig,
      "--latents",
      latents,
      "--seed",
      "7",
      "--raw",
      raw,
      "--out",
      out,
      "--cache-dir",
      ws.cache,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const image = readRaw(raw);
    expect(image.shape).toEqual([1, 128, 128, 3]);
    const diff = maxAbsDiff(image.data, tensors.readFloat32(`${euler.key}.image`));
    console.log(`generate ${euler.key}: max abs diff ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(2e-3);

    // One PNG, named on stdout, carrying the web UI parameters and the full record.
    const paths = run.stdout.trim().split("\n");
    expect(paths).toHaveLength(1);
    expect(filesIn(out)).toEqual([paths[0].slice(out.length + 1)]);
    expect(paths[0]).toMatch(/todo-sd-\d{8}-\d{6}-7-0\.png$/);
    const png = readPngFile(paths[0]);
    expect(png.data).toEqual(floatToRgb8({ width: 128, height: 128, data: image.data }));
    const info = readGenerationInfo(png.text, paths[0]);
    expect(info.parameters).toMatchObject({
      prompt: euler.call.prompt,
      negativePrompt: euler.call.negative_prompt,
      steps: 4,
      cfgScale: 7.5,
      seed: 7,
      width: 128,
      height: 128,
      sampler: "Euler",
    });
    expect(info.record).toMatchObject({
      model: "sd15-tiny",
      scheduler: "EulerDiscreteScheduler",
      schedulerConfig: { timestep_spacing: "linspace" },
      reduction: null,
      width: 128,
      seed: 7,
    });
    expect(run.stderr).toMatch(
      /EulerDiscreteScheduler; token reduction: token reduction off; engine onnxruntime\n/,
    );
  });

  it("runs img2img from a PNG with --strength and recorded --noise, as the library does", async () => {
    const init = initImagePng();
    const options = callOptions(img2img);
    const noise = ws.write(
      "img2img-noise.safetensors",
      encodeSafetensors({
        "noise.0": f32(options.noise![0], [1, 4, 16, 16]),
        "noise.1": f32(options.noise![1], [1, 4, 16, 16]),
      }),
    );
    const schedulerConfig = ws.write(
      "img2img-scheduler.json",
      JSON.stringify(options.schedulerConfig),
    );
    const out = ws.outDir();
    const raw = ws.path("img2img-raw.safetensors");
    const run = await runCli([
      "generate",
      img2img.call.prompt as string,
      "-m",
      SD15,
      "--image",
      init,
      "--strength",
      "0.6",
      "--steps",
      "5",
      "--scheduler-config",
      schedulerConfig,
      "--noise",
      noise,
      "--seed",
      "1",
      "--raw",
      raw,
      "-o",
      out,
      "--cache-dir",
      ws.cache,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(filesIn(out)).toHaveLength(1);
    const cli = readRaw(raw);
    expect(cli.shape).toEqual([1, 128, 128, 3]);

    const pipeline = await loadPipeline(SD15, { cacheDir: ws.cache });
    try {
      const decoded = rgb8ToFloat(readPngFile(init));
      const library = await pipeline.generate({
        prompt: img2img.call.prompt,
        image: { ...decoded, count: 1 },
        strength: 0.6,
        steps: 5,
        guidanceScale: 7.5,
        schedulerConfig: options.schedulerConfig,
        noise: options.noise,
        seed: 1,
      });
      expect(maxAbsDiff(cli.data, library.images.data)).toBeLessThan(1e-6);
    } finally {
      await pipeline.release();
    }
    const record = readGenerationInfo(readPngFile(run.stdout.trim()).text, "png").record;
    expect(record).toMatchObject({ strength: 0.6, steps: 5 });
  });

  describe("bad input: one line on stderr, non-zero exit, no file written", () => {
    const prompt = "a cat";
    const tiny = ["--steps", "1", "--size", "64", "--cache-dir", ws.cache];

    it("an unknown flag", async () => {
      const out = ws.outDir();
      const run = await runCli(["generate", prompt, "-m", SD15, "-o", out, "--stepz", "3"]);
      expectOneLineError(run, /unknown option '--stepz'.*--steps/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a missing model", async () => {
      const out = ws.outDir();
      const run = await runCli(["generate", prompt, "-m", ws.path("nowhere"), "-o", out, ...tiny]);
      expectOneLineError(run, /nowhere: no such file or folder/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a truncated .safetensors checkpoint", async () => {
      const out = ws.outDir();
      const model = ws.truncatedCheckpoint();
      const run = await runCli(["generate", prompt, "-m", model, "-o", out, ...tiny]);
      expectOneLineError(run, /truncated\.safetensors: not a valid safetensors file/);
      expect(filesIn(out)).toEqual([]);
    });

    it("an init image that is not a PNG", async () => {
      const out = ws.outDir();
      const image = ws.textFileNamedPng();
      const run = await runCli(["generate", prompt, "-m", SD15, "--image", image, "-o", out]);
      expectOneLineError(run, /not-an-image\.png/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a size that is not a multiple of 8", async () => {
      for (const flags of [
        ["--size", "100"],
        ["--size", "128x100"],
        ["--width", "129"],
      ]) {
        const out = ws.outDir();
        const run = await runCli(["generate", prompt, "-m", SD15, "-o", out, ...flags]);
        expectOneLineError(run, /multiple of 8/);
        expect(filesIn(out)).toEqual([]);
      }
    });

    it("an output folder that cannot be written", async () => {
      const run = await runCli(["generate", prompt, "-m", SD15, "-o", ws.underRegularFile()]);
      expectOneLineError(run, /output folder .*regular-file\/sub is not writable \(ENOTDIR\)/);
      const out = ws.outDir();
      const raw = await runCli([
        "generate",
        prompt,
        "-m",
        SD15,
        "-o",
        out,
        "--raw",
        ws.underRegularFile("raw.safetensors"),
      ]);
      expectOneLineError(raw, /--raw: .*regular-file is a file, not a folder$/);
      expect(filesIn(out)).toEqual([]);
    });

    it("latents of the wrong size", async () => {
      const latents = ws.write(
        "small-latents.safetensors",
        encodeSafetensors({ latents: f32(new Float32Array(4 * 8 * 8), [1, 4, 8, 8]) }),
      );
      const out = ws.outDir();
      const run = await runCli(["generate", prompt, "-m", SD15, "--latents", latents, "-o", out]);
      expectOneLineError(
        run,
        /--latents: .*small-latents\.safetensors holds 256 values; 128x128 with --batch 1 needs \[1, 4, 16, 16\] = 1024$/,
      );
      expect(filesIn(out)).toEqual([]);
    });

    it("a scheduler config without a class, and an unknown sampler", async () => {
      const config = ws.write("no-class.json", JSON.stringify({ beta_start: 0.00085 }));
      const out = ws.outDir();
      const run = await runCli([
        "generate",
        prompt,
        "-m",
        SD15,
        "-o",
        out,
        "--scheduler-config",
        config,
      ]);
      expectOneLineError(run, /has no _class_name; add one or name the sampler with --scheduler/);
      const unknown = await runCli([
        "generate",
        prompt,
        "-m",
        SD15,
        "-o",
        out,
        "--scheduler",
        "Nope",
      ]);
      expectOneLineError(unknown, /unknown scheduler "Nope"/);
      expect(filesIn(out)).toEqual([]);
    });
  });
});
