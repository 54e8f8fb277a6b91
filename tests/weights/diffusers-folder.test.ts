import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { float32ArrayToFloat16 } from "../../src/util/float16.js";
import {
  familyOfConfigs,
  openDiffusersComponent,
  openDiffusersFolder,
  readModelIndex,
  resolveWeightFiles,
} from "../../src/weights/diffusers-folder.js";
import { componentClassName } from "../../src/weights/model-files.js";
import { encodeSafetensors, SafetensorsFile } from "../../src/weights/safetensors.js";
import { WeightTracker } from "../../src/weights/source.js";
import { fixturePath } from "../fixtures.js";

const root = mkdtempSync(join(tmpdir(), "diffusers-folder-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let folderCount = 0;
/** A fresh folder holding the given files (`.safetensors` names get a one-tensor file). */
function folder(files: Record<string, string | Record<string, number[]>>): string {
  const dir = join(root, `case-${folderCount++}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") {
      writeFileSync(join(dir, name), content);
      continue;
    }
    const tensors = Object.fromEntries(
      Object.entries(content).map(([key, values]) => [
        key,
        {
          dtype: "F16" as const,
          shape: [values.length],
          data: float32ArrayToFloat16(Float32Array.from(values)),
        },
      ]),
    );
    writeFileSync(join(dir, name), encodeSafetensors(tensors));
  }
  return dir;
}

const chosen = (dir: string, variant?: string) => {
  const files = resolveWeightFiles(dir, variant);
  return basename(files.kind === "single" ? files.path : files.indexPath);
};

describe("model_index.json", () => {
  it("separates components, null components and attributes", () => {
    const index = readModelIndex(fixturePath("pipelines", "sd15-tiny"));
    expect(index.className).toBe("StableDiffusionPipeline");
    expect(index.components.unet).toEqual(["diffusers", "UNet2DConditionModel"]);
    expect(index.components.text_encoder).toEqual(["transformers", "CLIPTextModel"]);
    expect(index.components.safety_checker).toEqual([null, null]);
    expect(index.attributes.requires_safety_checker).toBe(false);
    expect(index.attributes._class_name).toBe("StableDiffusionPipeline");
  });

  it("is required by openDiffusersFolder, with a one-line error", () => {
    const dir = folder({});
    expect(() => openDiffusersFolder(dir)).toThrow(/model_index\.json: file not found$/);
  });
});

describe("opening the fixture pipelines", () => {
  it("opens every weight-bearing component of sdxl-tiny", () => {
    const files = openDiffusersFolder(fixturePath("pipelines", "sdxl-tiny"));
    try {
      expect(Object.keys(files.weights).sort()).toEqual([
        "text_encoder",
        "text_encoder_2",
        "unet",
        "vae",
      ]);
      expect(files.family).toBe("sdxl");
      expect(files.configs.unet?.addition_embed_type).toBe("text_time");
      expect(componentClassName(files, "text_encoder_2")).toBe("CLIPTextModelWithProjection");
      const unet = files.weights.unet!;
      expect(unet.keys()).toHaveLength(720);
      // The source reads exactly what the file holds.
      const direct = SafetensorsFile.open(
        fixturePath("pipelines", "sdxl-tiny", "unet", "diffusion_pytorch_model.safetensors"),
      );
      const key = "down_blocks.1.attentions.0.proj_in.weight";
      expect(unet.info(key)).toEqual({ dtype: "F16", shape: [32, 32] });
      expect(unet.readFloat32(key)).toEqual(direct.readFloat32(key));
      expect(unet.readFloat16?.(key)).toEqual(new Uint16Array(direct.readBytes(key).buffer));
      direct.close();
      const tracker = new WeightTracker(unet);
      for (const k of unet.keys()) tracker.take(k);
      tracker.assertAllUsed();
    } finally {
      files.close();
    }
  });

  it("opens one component, with the model index when present", () => {
    const files = openDiffusersComponent(fixturePath("pipelines", "sd15-tiny"), "text_encoder");
    try {
      expect(Object.keys(files.weights)).toEqual(["text_encoder"]);
      expect(files.configs.text_encoder?.hidden_act).toBe("quick_gelu");
      expect(files.weights.text_encoder?.keys()).toHaveLength(52);
      expect(componentClassName(files, "text_encoder")).toBe("CLIPTextModel");
    } finally {
      files.close();
    }
  });

  it("tells the family from the UNet config", () => {
    for (const [name, family] of [
      ["sd15-tiny", "sd1"],
      ["sd21-tiny", "sd2"],
      ["sdxl-tiny", "sdxl"],
    ] as const) {
      const files = openDiffusersComponent(fixturePath("pipelines", name), "unet");
      expect(files.family).toBe(family);
      files.close();
    }
    expect(familyOfConfigs({})).toBeUndefined();
  });
});

describe("weight file resolution", () => {
  const tensor = { w: [1, 2] };

  it("prefers the plain file, or the variant when asked", () => {
    const dir = folder({
      "diffusion_pytorch_model.safetensors": tensor,
      "diffusion_pytorch_model.fp16.safetensors": tensor,
    });
    expect(chosen(dir)).toBe("diffusion_pytorch_model.safetensors");
    expect(chosen(dir, "fp16")).toBe("diffusion_pytorch_model.fp16.safetensors");
  });

  it("falls back to the plain file when the variant is absent", () => {
    const dir = folder({ "model.safetensors": tensor });
    expect(chosen(dir, "fp16")).toBe("model.safetensors");
  });

  it("uses the only variant when no variant is asked and no plain file exists", () => {
    expect(chosen(folder({ "model.fp16.safetensors": tensor }))).toBe("model.fp16.safetensors");
  });

  it("asks to choose when several variants and no plain file exist", () => {
    const dir = folder({ "model.fp16.safetensors": tensor, "model.bf16.safetensors": tensor });
    expect(() => resolveWeightFiles(dir)).toThrow(
      /no plain safetensors weights; variants present: bf16, fp16 \(pass one as the variant option\)$/,
    );
    expect(chosen(dir, "bf16")).toBe("model.bf16.safetensors");
    expect(() => resolveWeightFiles(dir, "fp32")).toThrow(/no "fp32" or plain safetensors weights/);
  });

  it("finds sharded indexes, plain and variant", () => {
    const dir = folder({
      "diffusion_pytorch_model.safetensors.index.json": "{}",
      "diffusion_pytorch_model.safetensors.index.fp16.json": "{}",
    });
    expect(chosen(dir)).toBe("diffusion_pytorch_model.safetensors.index.json");
    expect(chosen(dir, "fp16")).toBe("diffusion_pytorch_model.safetensors.index.fp16.json");
    const variantOnly = folder({ "model.safetensors.index.fp16.json": "{}" });
    expect(chosen(variantOnly)).toBe("model.safetensors.index.fp16.json");
  });

  it("refuses pickled weights with a clear error", () => {
    const dir = folder({ "config.json": "{}", "diffusion_pytorch_model.bin": "pickle" });
    expect(() => resolveWeightFiles(dir)).toThrow(
      /only safetensors weights are supported, found diffusion_pytorch_model\.bin \(convert to \.safetensors\)$/,
    );
  });

  it("names the folder when there is no weight file at all", () => {
    const dir = folder({ "config.json": "{}" });
    expect(() => resolveWeightFiles(dir)).toThrow(
      /: no weight file \(expected diffusion_pytorch_model/,
    );
  });
});

describe("sharded weights", () => {
  function shardedComponent(
    index: string,
    shards: Record<string, Record<string, number[]>>,
  ): string {
    const pipeline = folder({
      "model_index.json": '{"unet": ["diffusers", "UNet2DConditionModel"]}',
    });
    const unet = join(pipeline, "unet");
    mkdirSync(unet);
    writeFileSync(join(unet, "config.json"), '{"_class_name": "UNet2DConditionModel"}');
    writeFileSync(join(unet, "diffusion_pytorch_model.safetensors.index.fp16.json"), index);
    for (const [name, tensors] of Object.entries(shards)) {
      const encoded = Object.fromEntries(
        Object.entries(tensors).map(([key, values]) => [
          key,
          { dtype: "F32" as const, shape: [values.length], data: Float32Array.from(values) },
        ]),
      );
      writeFileSync(join(unet, name), encodeSafetensors(encoded));
    }
    return pipeline;
  }

  it("reads each key from the shard the index names", () => {
    const pipeline = shardedComponent(
      JSON.stringify({
        metadata: { total_size: 20 },
        weight_map: {
          a: "s-00001-of-00002.safetensors",
          b: "s-00002-of-00002.safetensors",
          c: "s-00002-of-00002.safetensors",
        },
      }),
      {
        "s-00001-of-00002.safetensors": { a: [1, 2] },
        "s-00002-of-00002.safetensors": { b: [3], c: [4, 5] },
      },
    );
    const files = openDiffusersComponent(pipeline, "unet", { variant: "fp16" });
    try {
      const unet = files.weights.unet!;
      expect(unet.keys().sort()).toEqual(["a", "b", "c"]);
      expect([...unet.readFloat32("a")]).toEqual([1, 2]);
      expect([...unet.readFloat32("c")]).toEqual([4, 5]);
      expect(unet.readFloat16?.("c")).toBeUndefined(); // F32 data has no lossless float16 form
      expect(unet.label).toMatch(/diffusion_pytorch_model\.safetensors\.index\.fp16\.json$/);
    } finally {
      files.close();
    }
  });

  it("names the index and the shard when a shard is missing", () => {
    const pipeline = shardedComponent(
      JSON.stringify({ weight_map: { a: "gone.safetensors" } }),
      {},
    );
    expect(() => openDiffusersComponent(pipeline, "unet", { variant: "fp16" })).toThrow(
      /index\.fp16\.json: shard "gone\.safetensors" \(for "a"\) not found$/,
    );
  });

  it("rejects an index whose shard lacks a listed key, or that points outside the folder", () => {
    const lacking = shardedComponent(
      JSON.stringify({ weight_map: { a: "s.safetensors", z: "s.safetensors" } }),
      {
        "s.safetensors": { a: [1] },
      },
    );
    expect(() => openDiffusersComponent(lacking, "unet", { variant: "fp16" })).toThrow(
      /weight "z" is mapped to shard "s\.safetensors", which lacks it$/,
    );
    const escaping = shardedComponent(
      JSON.stringify({ weight_map: { a: "../x.safetensors" } }),
      {},
    );
    expect(() => openDiffusersComponent(escaping, "unet", { variant: "fp16" })).toThrow(
      /maps to "\.\.\/x\.safetensors", not a file name inside the folder$/,
    );
    const noMap = shardedComponent(JSON.stringify({ metadata: {} }), {});
    expect(() => openDiffusersComponent(noMap, "unet", { variant: "fp16" })).toThrow(
      /has no "weight_map" object$/,
    );
  });
});

describe("bad folders", () => {
  it("gives one line naming what is missing or broken", () => {
    const missing = join(root, "nowhere");
    expect(() => openDiffusersComponent(missing, "unet")).toThrow(/nowhere: folder not found$/);

    const noComponent = folder({ "model_index.json": '{"vae": ["diffusers", "AutoencoderKL"]}' });
    expect(() => openDiffusersFolder(noComponent)).toThrow(/vae: component folder not found$/);

    const noConfig = folder({ "model_index.json": "{}" });
    mkdirSync(join(noConfig, "unet"));
    expect(() => openDiffusersComponent(noConfig, "unet")).toThrow(
      /unet\/config\.json: file not found$/,
    );

    const badConfig = folder({});
    mkdirSync(join(badConfig, "vae"));
    writeFileSync(join(badConfig, "vae", "config.json"), '{"a": 1,, }');
    expect(() => openDiffusersComponent(badConfig, "vae")).toThrow(
      /vae\/config\.json: malformed JSON at line 1/,
    );

    const corrupt = folder({});
    mkdirSync(join(corrupt, "vae"));
    writeFileSync(join(corrupt, "vae", "config.json"), "{}");
    writeFileSync(join(corrupt, "vae", "diffusion_pytorch_model.safetensors"), "not really");
    expect(() => openDiffusersComponent(corrupt, "vae")).toThrow(
      /diffusion_pytorch_model\.safetensors: not a valid safetensors file/,
    );

    const nullComponent = folder({ "model_index.json": '{"text_encoder_2": [null, null]}' });
    expect(() => openDiffusersComponent(nullComponent, "text_encoder_2")).toThrow(
      /component "text_encoder_2" is null in this pipeline$/,
    );
    const nothing = folder({ "model_index.json": '{"scheduler": ["diffusers", "PNDMScheduler"]}' });
    expect(() => openDiffusersFolder(nothing)).toThrow(
      /lists none of unet, vae, text_encoder, text_encoder_2$/,
    );
  });
});
