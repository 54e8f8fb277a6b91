// A diffusers ONNX export folder as pipeline components, against the reference fixtures.
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ValueInfoProto } from "../../src/onnx/proto.js";
import { ModelCache } from "../../src/pipelines/model-cache.js";
import {
  type OnnxFolder,
  onnxDefaultSide,
  onnxUnetFamily,
  openOnnxFolder,
} from "../../src/pipelines/onnx-folder.js";
import { StableDiffusionPipeline } from "../../src/pipelines/stable-diffusion.js";
import { resolveReduction, settingsFromReferenceArgs } from "../../src/reduce/options.js";
import { fixturePath, maxAbsDiff, openCaseTensors } from "../fixtures.js";
import {
  callOptions,
  cases as pipelineCases,
  tensors as pipelineTensors,
} from "./pipeline-cases.js";

const TOLERANCE = 1e-4;
const FOLDER = fixturePath("onnx", "sd15-tiny");

let folder: OnnxFolder;
let cacheDir: string;

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), "todo-sd-onnx-folder-"));
  folder = await openOnnxFolder(FOLDER, { cache: new ModelCache(cacheDir) });
});
afterAll(async () => {
  await folder?.release();
  pipelineTensors.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe("openOnnxFolder on onnx/sd15-tiny", () => {
  it("reads what the pipeline needs from the folder", () => {
    expect(folder.family).toBe("sd1");
    expect(folder.textEncoders).toHaveLength(1);
    expect(folder.textEncoders[0].layers).toBe(3);
    expect(folder.textEncoders[0].hiddenSize).toBe(16);
    expect(folder.vae.scalingFactor).toBe(0.18215);
    expect(folder.schedulerConfig._class_name).toBe("PNDMScheduler");
    expect(folder.latentChannels).toBe(4);
    expect(folder.defaultSize).toBe(512);
    expect(folder.tokenizers[0].encode("a cat").length).toBeGreaterThan(0);
  });

  it("encodes prompts like the reference text encoder, clip skip included", async () => {
    const cases = openCaseTensors("text-encoders");
    const ids = cases.readBigInt64("sd15-tiny.text_encoder.input_ids");
    const rows = Array.from({ length: 4 }, (_, b) =>
      Array.from(ids.subarray(b * 77, (b + 1) * 77), Number),
    );
    const encoder = folder.textEncoders[0];
    const plain = await encoder.encode(rows, {});
    expect(plain.skipHiddenState).toBeUndefined();
    const skip = await encoder.encode(rows, { hiddenStateFromEnd: 2, finalLayerNorm: true });
    const reference = (key: string) => cases.readFloat32(`sd15-tiny.text_encoder.${key}`);
    const diffs = {
      last: maxAbsDiff(plain.lastHiddenState.data, reference("last_hidden_state")),
      pooled: maxAbsDiff(plain.pooled!.data, reference("pooler_output")),
      penultimateAfterFinalLn: maxAbsDiff(
        skip.skipHiddenState!.data,
        reference("penultimate_after_final_ln"),
      ),
    };
    console.log("onnx folder text encoder", diffs);
    for (const diff of Object.values(diffs)) expect(diff).toBeLessThan(TOLERANCE);
    expect(skip.skipHiddenState!.dims).toEqual([4, 77, 16]);
    cases.close();
  });

  it("decodes and encodes like the reference VAE (the distribution, not a sample)", async () => {
    const cases = openCaseTensors("vae");
    const decoded = await folder.vae.decode({
      data: cases.readFloat32("sd15-tiny.latents"),
      dims: [1, 4, 8, 12],
    });
    const { mean, logvar } = await folder.vae.encode({
      data: cases.readFloat32("sd15-tiny.image"),
      dims: [1, 3, 64, 48],
    });
    const diffs = {
      decoded: maxAbsDiff(decoded.data, cases.readFloat32("sd15-tiny.decoded")),
      mean: maxAbsDiff(mean.data, cases.readFloat32("sd15-tiny.encoded_mean")),
      logvar: maxAbsDiff(logvar.data, cases.readFloat32("sd15-tiny.encoded_logvar")),
    };
    console.log("onnx folder vae", diffs);
    for (const diff of Object.values(diffs)) expect(diff).toBeLessThan(TOLERANCE);
    // Encoding twice gives the same numbers: no random draw is left in the graph.
    const again = await folder.vae.encode({
      data: cases.readFloat32("sd15-tiny.image"),
      dims: [1, 3, 64, 48],
    });
    expect(again.mean.data).toEqual(mean.data);
    cases.close();
  });

  it("runs the UNet as exported and patched for ToDo, one patched model per settings", async () => {
    const cases = openCaseTensors("unet-sd15-tiny");
    const inputs = {
      sample: { data: cases.readFloat32("16x16.sample"), dims: [2, 4, 16, 16] },
      timestep: new Float32Array([700, 700]),
      encoderHiddenStates: {
        data: cases.readFloat32("16x16.encoder_hidden_states"),
        dims: [2, 77, 16],
      },
    };
    const todo = settingsFromReferenceArgs({
      downsample_method: "nearest",
      downsample_factor: 2,
      timestep_threshold_switch: 0,
    });
    const off = resolveReduction({ ...todo, factor: 1 }, { architecture: "sd1" });
    const plain = await folder.unet(undefined);
    expect(await folder.unet(off)).toBe(plain); // nothing to reduce: the export as is
    const patched = await folder.unet(todo);
    expect(await folder.unet({ ...todo })).toBe(patched);
    const diffs = {
      baseline: maxAbsDiff(
        (await plain.predict(inputs)).data,
        cases.readFloat32("16x16.out.baseline"),
      ),
      todo: maxAbsDiff(
        (await patched.predict(inputs)).data,
        cases.readFloat32("16x16.out.todo-nearest-2"),
      ),
    };
    console.log("onnx folder unet", diffs);
    for (const diff of Object.values(diffs)) expect(diff).toBeLessThan(TOLERANCE);
    cases.close();
    // The UNet keeps its weights in weights.pb: the patched graph went to the cache, with the
    // weights linked (or copied) beside it rather than loaded and rewritten.
    const entries = readdirSync(cacheDir).filter((e) => !e.startsWith("."));
    expect(entries).toHaveLength(1);
    const entry = join(cacheDir, entries[0]);
    expect(readdirSync(entry).sort()).toEqual(["entry.json", "model.onnx", "weights.pb"]);
    expect(statSync(join(entry, "weights.pb")).size).toBe(
      statSync(join(FOLDER, "unet", "weights.pb")).size,
    );
  });
});

describe("openOnnxFolder without a cache", () => {
  it("loads external weights and runs the patched UNet from memory", async () => {
    const unused = join(tmpdir(), `todo-sd-no-cache-${process.pid}`);
    const saved = process.env.TODO_SD_CACHE;
    process.env.TODO_SD_CACHE = unused;
    const inMemory = await openOnnxFolder(FOLDER, { cache: false });
    try {
      const cases = openCaseTensors("unet-sd15-tiny");
      const unet = await inMemory.unet(
        settingsFromReferenceArgs({ downsample_method: "nearest-exact", downsample_factor: 2 }),
      );
      const out = await unet.predict({
        sample: { data: cases.readFloat32("24x16.sample"), dims: [2, 4, 24, 16] },
        timestep: new Float32Array([700, 700]),
        encoderHiddenStates: {
          data: cases.readFloat32("24x16.encoder_hidden_states"),
          dims: [2, 77, 16],
        },
      });
      const diff = maxAbsDiff(out.data, cases.readFloat32("24x16.out.todo-nearest-exact-2"));
      cases.close();
      expect(diff).toBeLessThan(TOLERANCE);
      expect(existsSync(unused)).toBe(false);
    } finally {
      await inMemory.release();
      if (saved === undefined) delete process.env.TODO_SD_CACHE;
      else process.env.TODO_SD_CACHE = saved;
    }
  });
});

describe("openOnnxFolder refusals", () => {
  it("refuses a folder that is not an ONNX export", async () => {
    await expect(openOnnxFolder(fixturePath("pipelines", "sd15-tiny"))).rejects.toThrow(
      /model_index\.json names StableDiffusionPipeline, not an ONNX pipeline/,
    );
  });

  it("refuses an XL model index over a UNet without SDXL's inputs, and names a missing text_encoder_2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "todo-sd-xl-index-"));
    try {
      cpSync(FOLDER, dir, { recursive: true });
      const indexPath = join(dir, "model_index.json");
      const index = JSON.parse(readFileSync(indexPath, "utf8"));
      writeFileSync(
        indexPath,
        JSON.stringify({ ...index, _class_name: "OnnxStableDiffusionXLPipeline" }),
      );
      await expect(openOnnxFolder(dir)).rejects.toThrow(/text_encoder_2\/model\.onnx is missing/);
      cpSync(join(dir, "text_encoder"), join(dir, "text_encoder_2"), { recursive: true });
      await expect(openOnnxFolder(dir)).rejects.toThrow(
        /names OnnxStableDiffusionXLPipeline, but the UNet lacks SDXL's text_embeds and time_ids inputs/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names a missing folder's model_index.json", async () => {
    const dir = mkdtempSync(join(tmpdir(), "todo-sd-empty-"));
    try {
      await expect(openOnnxFolder(dir)).rejects.toThrow(/model_index\.json: file not found/);
      expect(existsSync(join(dir, "model_index.json"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the ONNX folder in the pipeline", () => {
  const sd15 = pipelineCases.filter((c) => c.pipeline === "sd15-tiny");

  it.each(sd15.map((c) => [c.label, c] as const))(
    "reproduces the reference images of %s",
    async (_label, c) => {
      const pipeline = new StableDiffusionPipeline(folder);
      const options = callOptions(c);
      // The reference img2img keeps the init image's size; the folder carries no UNet config
      // whose sample size would say so, so the size is given.
      const size = options.image
        ? { width: options.image.width, height: options.image.height }
        : {};
      const result = await pipeline.generate({ ...options, ...size });
      const diff = maxAbsDiff(result.images.data, pipelineTensors.readFloat32(`${c.key}.image`));
      console.log(`onnx folder ${c.key}: max abs diff ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(2e-3);
    },
  );
});

describe("the family of an export, from its UNet's inputs", () => {
  const input = (name: string, dims: (number | string)[]): ValueInfoProto => ({
    name,
    type: {
      tensorType: {
        elemType: 1,
        shape: {
          dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })),
        },
      },
    },
  });
  const context = (width: number | string) => input("encoder_hidden_states", ["b", 77, width]);

  it("is SDXL with text_time inputs, else SD 2.x for a 1024-wide context, else SD 1.x", () => {
    expect(onnxUnetFamily([context(2048), input("text_embeds", ["b", 1280])])).toBe("sdxl");
    expect(onnxUnetFamily([context(2048), input("time_ids", ["b", 6])])).toBe("sdxl");
    expect(onnxUnetFamily([context(1024)])).toBe("sd2");
    expect(onnxUnetFamily([context(768)])).toBe("sd1");
    expect(onnxUnetFamily([context("width")])).toBe("sd1");
  });

  it("sets the default side: 1024 for SDXL, 768 for SD 2.x v-prediction, else 512", () => {
    expect(onnxDefaultSide("sdxl", false)).toBe(1024);
    expect(onnxDefaultSide("sd2", true)).toBe(768);
    expect(onnxDefaultSide("sd2", false)).toBe(512);
    expect(onnxDefaultSide("sd1", true)).toBe(512);
  });
});
