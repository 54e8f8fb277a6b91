import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/configs/config-json.js";
import type { ModelFamily } from "../../src/util/vocabulary.js";
import { familyConfigs } from "../../src/weights/builtin.js";
import { openDiffusersFolder } from "../../src/weights/diffusers-folder.js";
import { CheckpointShapes } from "../../src/weights/ldm-infer.js";
import { storedShape } from "../../src/weights/ldm-plans.js";
import {
  COMPONENT_NAMES,
  type ComponentName,
  componentClassName,
  type ModelFiles,
} from "../../src/weights/model-files.js";
import {
  encodeSafetensors,
  SafetensorsFile,
  type TensorToWrite,
} from "../../src/weights/safetensors.js";
import {
  type CheckpointLayout,
  detectCheckpointLayout,
  inferCheckpointConfigs,
  openSingleFile,
  singleFilePlan,
} from "../../src/weights/single-file.js";
import { WeightTracker } from "../../src/weights/source.js";
import type { Shape } from "../../src/weights/weight-modules.js";
import { fixturePath } from "../fixtures.js";
import { ldmTensors } from "./ldm-checkpoint.js";

const dir = mkdtempSync(join(tmpdir(), "single-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeCheckpoint(tensors: Record<string, TensorToWrite>): string {
  const path = join(dir, `checkpoint-${fileCount++}.safetensors`);
  writeFileSync(path, encodeSafetensors(tensors));
  return path;
}

function f16(shape: number[]): TensorToWrite {
  return { dtype: "F16", shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) };
}

function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** Compares every key of every component, bit for bit, and the key sets both ways. */
function expectSameWeights(actual: ModelFiles, expected: ModelFiles): void {
  expect(Object.keys(actual.weights).sort()).toEqual(Object.keys(expected.weights).sort());
  for (const component of COMPONENT_NAMES) {
    const want = expected.weights[component];
    const got = actual.weights[component];
    if (!want || !got) continue;
    expect(got.keys().sort()).toEqual(want.keys().sort());
    const tracker = new WeightTracker(got);
    const mismatched: string[] = [];
    for (const key of want.keys()) {
      const info = tracker.take(key, want.info(key).shape);
      expect(info.dtype).toBe(want.info(key).dtype);
      const bits = got.readFloat16?.(key);
      if (!bits || !sameBits(bits, want.readFloat16!(key)!)) mismatched.push(key);
      if (!sameBits(got.readFloat32(key), want.readFloat32(key)))
        mismatched.push(`${key} (float32)`);
    }
    tracker.assertAllUsed();
    expect(mismatched).toEqual([]);
  }
}

/** Fields a single file's weights determine (the rest comes from the family's builtin config). */
const STRUCTURAL: Record<ComponentName, string[]> = {
  unet: [
    "in_channels",
    "out_channels",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "mid_block_type",
    "transformer_layers_per_block",
    "reverse_transformer_layers_per_block",
    "cross_attention_dim",
    "use_linear_projection",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
    "time_embedding_dim",
    "conv_in_kernel",
    "conv_out_kernel",
  ],
  vae: [
    "in_channels",
    "out_channels",
    "latent_channels",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "mid_block_add_attention",
    "use_quant_conv",
    "use_post_quant_conv",
  ],
  text_encoder: [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "max_position_embeddings",
    "hidden_act",
  ],
  text_encoder_2: [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "max_position_embeddings",
    "hidden_act",
    "projection_dim",
  ],
};

function expectStructureOf(actual: ModelFiles, expected: ModelFiles): void {
  for (const component of COMPONENT_NAMES) {
    const want = expected.configs[component];
    if (!want) continue;
    const got = actual.configs[component]!;
    const pick = (c: JsonObject) =>
      Object.fromEntries(STRUCTURAL[component].map((f) => [f, c[f] ?? null]));
    expect([component, pick(got)]).toEqual([component, pick(want)]);
  }
}

describe("the fixture single-file checkpoints", () => {
  for (const [name, family] of [
    ["sd15", "sd1"],
    ["sdxl", "sdxl"],
  ] as const) {
    describe(`${name}-tiny`, () => {
      const folder = openDiffusersFolder(fixturePath("pipelines", `${name}-tiny`));
      const path = fixturePath("checkpoints", `${name}-tiny.safetensors`);
      afterAll(() => folder.close());

      it("with the folder's configs, every diffusers key is bit-identical and nothing is extra", () => {
        const single = openSingleFile(path, { configs: folder.configs });
        try {
          expect(single.family).toBe(family);
          expect(single.configs).toEqual(folder.configs);
          expectSameWeights(single, folder);
        } finally {
          single.close();
        }
      });

      it("with configs read off the weights, the structure and every tensor match", () => {
        const single = openSingleFile(path);
        try {
          expectStructureOf(single, folder);
          expectSameWeights(single, folder);
          for (const component of COMPONENT_NAMES) {
            if (!folder.weights[component]) continue;
            expect(componentClassName(single, component)).toBe(
              componentClassName(folder, component),
            );
          }
        } finally {
          single.close();
        }
      });
    });
  }
});

/** A checkpoint built from a fixture folder's components in the given layout. */
function synthesize(
  folderName: string,
  layout: CheckpointLayout,
  extra: Record<string, TensorToWrite> = {},
  drop: (key: string) => boolean = () => false,
): { path: string; folder: ModelFiles } {
  const folder = openDiffusersFolder(fixturePath("pipelines", folderName));
  const components = Object.fromEntries(
    COMPONENT_NAMES.filter(
      (c) => folder.weights[c] && (c === "unet" || c === "vae" || layout[c]),
    ).map((c) => [c, { config: folder.configs[c]!, weights: folder.weights[c]! }]),
  );
  const tensors = { ...ldmTensors(layout, components), ...extra };
  for (const key of Object.keys(tensors)) if (drop(key)) delete tensors[key];
  return { path: writeCheckpoint(tensors), folder };
}

const SD2_LAYOUT: CheckpointLayout = {
  family: "sd2",
  unet: "model.diffusion_model.",
  vae: "first_stage_model.",
  text_encoder: { prefix: "cond_stage_model.model.", format: "open_clip" },
};

describe("SD 2.x single files (OpenCLIP ViT-H text encoder)", () => {
  // As released: the text tower has one more block than diffusers keeps (SD 2.x reads the
  // penultimate layer), and carries its projection and logit scale.
  const lastBlock = (key: string) => key.replace("resblocks.2.", "resblocks.3.");
  const built = synthesize("sd21-tiny", SD2_LAYOUT, {
    "cond_stage_model.model.text_projection": f16([24, 24]),
    "cond_stage_model.model.logit_scale": f16([]),
    alphas_cumprod: { dtype: "F32", shape: [1000], data: new Float32Array(1000) },
  });
  const file = SafetensorsFile.open(built.path);
  const withLastBlock: Record<string, TensorToWrite> = {};
  for (const key of file.keys()) {
    const info = file.info(key);
    const tensor = { dtype: info.dtype, shape: info.shape, data: file.readBytes(key) };
    withLastBlock[key] = tensor;
    if (key.includes("resblocks.2.")) withLastBlock[lastBlock(key)] = tensor;
  }
  file.close();
  const path = writeCheckpoint(withLastBlock);
  afterAll(() => built.folder.close());

  it("drops the last text block and maps every key bit-identically", () => {
    const single = openSingleFile(path);
    try {
      expect(single.family).toBe("sd2");
      expect(single.configs.text_encoder?.num_hidden_layers).toBe(3);
      expectStructureOf(single, built.folder);
      expectSameWeights(single, built.folder);
    } finally {
      single.close();
    }
  });

  it("accepts the folder's configs too", () => {
    const single = openSingleFile(path, { configs: built.folder.configs });
    expectSameWeights(single, built.folder);
    single.close();
  });
});

describe("older SD 1.x files", () => {
  it("read the text encoder saved without the text_model level, ignoring position_ids", () => {
    const layout: CheckpointLayout = {
      family: "sd1",
      unet: "model.diffusion_model.",
      vae: "first_stage_model.",
      text_encoder: { prefix: "cond_stage_model.transformer.", format: "transformers" },
    };
    const { path, folder } = synthesize("sd15-tiny", layout, {
      "cond_stage_model.transformer.embeddings.position_ids": {
        dtype: "I64",
        shape: [1, 77],
        data: new BigInt64Array(77),
      },
    });
    const single = openSingleFile(path);
    try {
      expectSameWeights(single, folder);
      expectStructureOf(single, folder);
    } finally {
      single.close();
      folder.close();
    }
  });
});

describe("configs read off full-size shapes", () => {
  /** The shapes a full-size LDM checkpoint of a family has, from the builtin configs. */
  function fullSizeShapes(family: ModelFamily, layout: CheckpointLayout): Map<string, Shape> {
    const configs = familyConfigs(family);
    const shapes = new Map<string, Shape>();
    for (const component of COMPONENT_NAMES) {
      let config = configs[component];
      if (!config) continue;
      // Released SD 2.x files hold all 24 blocks of the OpenCLIP ViT-H text tower.
      if (family === "sd2" && component === "text_encoder")
        config = { ...config, num_hidden_layers: 24 };
      for (const mapping of singleFilePlan(component, config, layout, "test").values()) {
        shapes.set(mapping.source, storedShape(mapping));
      }
    }
    return shapes;
  }

  const layouts: Record<ModelFamily, CheckpointLayout> = {
    sd1: {
      family: "sd1",
      unet: "model.diffusion_model.",
      vae: "first_stage_model.",
      text_encoder: { prefix: "cond_stage_model.transformer.text_model.", format: "transformers" },
    },
    sd2: SD2_LAYOUT,
    sdxl: {
      family: "sdxl",
      unet: "model.diffusion_model.",
      vae: "first_stage_model.",
      text_encoder: {
        prefix: "conditioner.embedders.0.transformer.text_model.",
        format: "transformers",
      },
      text_encoder_2: { prefix: "conditioner.embedders.1.model.", format: "open_clip" },
    },
  };

  for (const family of ["sd1", "sd2", "sdxl"] as const) {
    it(`recover the ${family} builtin configs exactly`, () => {
      const ckpt = new CheckpointShapes(fullSizeShapes(family, layouts[family]), "full");
      const layout = detectCheckpointLayout(ckpt);
      expect(layout).toEqual(layouts[family]);
      expect(inferCheckpointConfigs(ckpt, layout)).toEqual(familyConfigs(family));
    });
  }

  it("tell the family of a UNet-only file by its cross-attention width", () => {
    for (const family of ["sd1", "sd2", "sdxl"] as const) {
      const shapes = fullSizeShapes(family, layouts[family]);
      const unetOnly = new Map(
        [...shapes].filter(([key]) => key.startsWith("model.diffusion_model.")),
      );
      expect(detectCheckpointLayout(new CheckpointShapes(unetOnly, "unet only")).family).toBe(
        family,
      );
    }
  });
});

describe("bad single files", () => {
  const sd15 = fixturePath("checkpoints", "sd15-tiny.safetensors");
  const sd15Folder = () => openDiffusersFolder(fixturePath("pipelines", "sd15-tiny"));
  function copyOf(path: string, change: (tensors: Record<string, TensorToWrite>) => void): string {
    const file = SafetensorsFile.open(path);
    const tensors: Record<string, TensorToWrite> = {};
    for (const key of file.keys()) {
      const info = file.info(key);
      tensors[key] = { dtype: info.dtype, shape: info.shape, data: file.readBytes(key) };
    }
    file.close();
    change(tensors);
    return writeCheckpoint(tensors);
  }

  it("refuse unknown layouts, naming the first keys or the likely mistake", () => {
    const unknown = writeCheckpoint({ "encoder.weight": f16([2]), "decoder.weight": f16([2]) });
    expect(() => openSingleFile(unknown)).toThrow(
      /unknown checkpoint layout: no model\.diffusion_model\., first_stage_model\., cond_stage_model\. or conditioner\. keys \(first keys: encoder\.weight, decoder\.weight\)$/,
    );
    const diffusers = fixturePath(
      "pipelines",
      "sd15-tiny",
      "unet",
      "diffusion_pytorch_model.safetensors",
    );
    expect(() => openSingleFile(diffusers)).toThrow(
      /this looks like one diffusers component; open its model folder instead\)$/,
    );
  });

  it("refuse SDXL refiners and mixed checkpoints", () => {
    const refiner = writeCheckpoint({
      "conditioner.embedders.0.model.token_embedding.weight": f16([10, 4]),
      "model.diffusion_model.out.2.weight": f16([4, 4, 3, 3]),
    });
    expect(() => openSingleFile(refiner)).toThrow(/: SDXL refiner checkpoints are not supported$/);
    const mixed = writeCheckpoint({
      "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": f16([10, 768]),
      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": f16([
        320, 1024,
      ]),
    });
    expect(() => openSingleFile(mixed)).toThrow(
      /: mixed checkpoint: the text encoders are SD 1\.x, the UNet is SD 2\.x$/,
    );
  });

  it("need the family for a UNet-only file of unusual width", () => {
    const unetOnly = copyOf(sd15, (tensors) => {
      for (const key of Object.keys(tensors))
        if (!key.startsWith("model.diffusion_model.")) delete tensors[key];
    });
    expect(() => openSingleFile(unetOnly)).toThrow(
      /: cannot tell whether this is SD 1\.x, SD 2\.x or SDXL from its weights; pass the family$/,
    );
    expect(() => openSingleFile(sd15, { family: "sdxl" })).toThrow(
      /sd15-tiny\.safetensors: the weights are SD 1\.x, not the SDXL that was asked for$/,
    );
    const folder = sd15Folder();
    const single = openSingleFile(unetOnly, {
      family: "sd1",
      configs: { unet: folder.configs.unet! },
    });
    expect(Object.keys(single.weights)).toEqual(["unet"]);
    expect(single.modelIndex?.components).toEqual({ unet: ["diffusers", "UNet2DConditionModel"] });
    single.close();
    folder.close();
  });

  it("name the missing tensor and the diffusers key it was for", () => {
    const missing = copyOf(sd15, (tensors) => {
      delete tensors["model.diffusion_model.input_blocks.4.1.proj_in.weight"];
    });
    const folder = sd15Folder();
    expect(() => openSingleFile(missing, { configs: folder.configs })).toThrow(
      /checkpoint-\d+\.safetensors unet does not match its config: missing "model\.diffusion_model\.input_blocks\.4\.1\.proj_in\.weight" \(for down_blocks\.1\.attentions\.0\.proj_in\.weight\)$/,
    );
    folder.close();
  });

  it("reject a config that does not describe the checkpoint", () => {
    const sdxl = openDiffusersFolder(fixturePath("pipelines", "sdxl-tiny"));
    expect(() => openSingleFile(sd15, { configs: { unet: sdxl.configs.unet! } })).toThrow(
      /sd15-tiny\.safetensors unet does not match its config: .* \(and \d+ more\)$/,
    );
    const sd21 = openDiffusersFolder(fixturePath("pipelines", "sd21-tiny"));
    expect(() =>
      openSingleFile(sd15, { configs: { text_encoder: sd21.configs.text_encoder! } }),
    ).toThrow(
      /text_encoder does not match its config: "cond_stage_model\.transformer\.text_model\.embeddings\.token_embedding\.weight" has shape \[49408,16\], expected \[49408,24\]/,
    );
    const fewerLayers = { ...sdxl.configs.text_encoder_2!, num_hidden_layers: 2 };
    expect(() =>
      openSingleFile(fixturePath("checkpoints", "sdxl-tiny.safetensors"), {
        configs: { text_encoder_2: fewerLayers },
      }),
    ).toThrow(
      /text_encoder_2 config leaves 12 weight\(s\) unused: "conditioner\.embedders\.1\.model\.transformer\.resblocks\.2\.attn\.in_proj_bias" and 11 more \(does the config describe this checkpoint\?\)$/,
    );
    sdxl.close();
    sd21.close();
  });

  it("reject weights a component's config leaves unused", () => {
    const extra = copyOf(sd15, (tensors) => {
      tensors["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.bias"] = f16([
        16,
      ]);
    });
    expect(() => openSingleFile(extra)).toThrow(
      /: unet config leaves 1 weight\(s\) unused: "model\.diffusion_model\.input_blocks\.1\.1\.transformer_blocks\.0\.attn1\.to_q\.bias"/,
    );
  });

  it("ignore keys outside the components", () => {
    const withJunk = copyOf(sd15, (tensors) => {
      tensors.betas = { dtype: "F32", shape: [1000], data: new Float32Array(1000) };
      tensors["model_ema.decay"] = { dtype: "F32", shape: [], data: new Float32Array(1) };
    });
    const single = openSingleFile(withJunk);
    expect(Object.keys(single.weights).sort()).toEqual(["text_encoder", "unet", "vae"]);
    single.close();
  });

  it("refuse a text encoder narrower than the UNet's cross-attention", () => {
    const layout: CheckpointLayout = {
      family: "sd1",
      unet: "model.diffusion_model.",
      vae: "first_stage_model.",
      text_encoder: { prefix: "cond_stage_model.transformer.text_model.", format: "transformers" },
    };
    const sd21 = openDiffusersFolder(fixturePath("pipelines", "sd21-tiny"));
    const sd15Files = sd15Folder();
    const tensors = ldmTensors(layout, {
      unet: { config: sd15Files.configs.unet!, weights: sd15Files.weights.unet! },
      text_encoder: { config: sd21.configs.text_encoder!, weights: sd21.weights.text_encoder! },
    });
    expect(() => openSingleFile(writeCheckpoint(tensors))).toThrow(
      /: the UNet attends to 16-wide text features but the text encoders give 24 \(mixed checkpoint\?\)$/,
    );
    sd21.close();
    sd15Files.close();
  });

  it("refuse pickled checkpoints and name missing or corrupt files", () => {
    expect(() => openSingleFile(join(dir, "model.ckpt"))).toThrow(
      /model\.ckpt: only safetensors checkpoints are supported \(convert it to \.safetensors\)$/,
    );
    expect(() => openSingleFile(join(dir, "absent.safetensors"))).toThrow(
      /absent\.safetensors: cannot open \(ENOENT\)$/,
    );
    const corrupt = join(dir, "corrupt.safetensors");
    writeFileSync(corrupt, "0123456789");
    expect(() => openSingleFile(corrupt)).toThrow(
      /corrupt\.safetensors: not a valid safetensors file/,
    );
  });
});
