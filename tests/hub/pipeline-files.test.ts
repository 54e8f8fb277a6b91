import { describe, expect, it } from "vitest";
import { HubError } from "../../src/hub/errors.js";
import {
  pipelineComponents,
  planPipelineFiles,
  shardFilesOf,
} from "../../src/hub/pipeline-files.js";

const modelIndex = {
  _class_name: "StableDiffusionPipeline",
  _diffusers_version: "0.30.0",
  requires_safety_checker: false,
  feature_extractor: [null, null],
  scheduler: ["diffusers", "PNDMScheduler"],
  text_encoder: ["transformers", "CLIPTextModel"],
  tokenizer: ["transformers", "CLIPTokenizer"],
  unet: ["diffusers", "UNet2DConditionModel"],
};

const repo = [
  ".gitattributes",
  "README.md",
  "model_index.json",
  "v1-5-pruned.safetensors",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "text_encoder/model.fp16.safetensors",
  "text_encoder/pytorch_model.bin",
  "text_encoder/flax_model.msgpack",
  "text_encoder/model.onnx",
  "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json",
  "tokenizer/tokenizer_config.json",
  "tokenizer/vocab.json",
  "unet/config.json",
  "unet/README.md",
  "unet/diffusion_pytorch_model.safetensors",
  "unet/diffusion_pytorch_model.fp16.safetensors",
  "unet/diffusion_pytorch_model.non_ema.safetensors",
  "unet/diffusion_pytorch_model.bin",
  "unet/diffusion_pytorch_model.fp16.bin",
];

function plan(files: readonly string[], variant?: string, index: unknown = modelIndex) {
  return planPipelineFiles(files, index, { repoId: "org/name", variant });
}

function errorOf(action: () => unknown): HubError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    return error as HubError;
  }
  throw new Error("expected an error");
}

describe("pipelineComponents", () => {
  it("lists components with a library and class, in order, and skips absent ones", () => {
    expect(pipelineComponents(modelIndex, "org/name")).toEqual([
      "scheduler",
      "text_encoder",
      "tokenizer",
      "unet",
    ]);
    expect(errorOf(() => pipelineComponents([1, 2], "org/name")).code).toBe("not-a-pipeline");
  });
});

describe("planPipelineFiles", () => {
  it("takes configs, tokenizer files and plain safetensors, nothing else", () => {
    expect(plan(repo)).toEqual({
      components: ["scheduler", "text_encoder", "tokenizer", "unet"],
      files: [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
      ],
      shardIndexes: [],
    });
  });

  it("takes the variant where it exists", () => {
    const files = plan(repo, "fp16").files;
    expect(files).toContain("unet/diffusion_pytorch_model.fp16.safetensors");
    expect(files).toContain("text_encoder/model.fp16.safetensors");
    expect(files).not.toContain("unet/diffusion_pytorch_model.safetensors");
    expect(plan(repo, "non_ema").files).toEqual(
      expect.arrayContaining([
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "text_encoder/model.safetensors",
      ]),
    );
  });

  it("prefers plain safetensors to a variant in PyTorch format, like diffusers", () => {
    const files = plan(
      ["model_index.json", "unet/config.json", "unet/a.safetensors", "unet/a.bf16.bin"],
      "bf16",
      { unet: ["diffusers", "UNet2DConditionModel"] },
    ).files;
    expect(files).toEqual(["model_index.json", "unet/config.json", "unet/a.safetensors"]);
  });

  it("falls back to other formats when there are no safetensors", () => {
    const index = { unet: ["diffusers", "UNet2DConditionModel"] };
    expect(
      plan(["unet/config.json", "unet/diffusion_pytorch_model.bin"], undefined, index).files,
    ).toContain("unet/diffusion_pytorch_model.bin");
    // The diffusers ONNX layout: a graph and its external weights.
    expect(
      plan(["unet/model.onnx", "unet/weights.pb", "unet/flax_model.msgpack"], undefined, index)
        .files,
    ).toEqual(["model_index.json", "unet/model.onnx", "unet/weights.pb"]);
  });

  it("takes a shard index instead of the shards, and a single file over a sharded copy", () => {
    const index = { text_encoder: ["transformers", "CLIPTextModel"] };
    const files = [
      "text_encoder/config.json",
      "text_encoder/model.safetensors.index.json",
      "text_encoder/model-00001-of-00002.safetensors",
      "text_encoder/model-00002-of-00002.safetensors",
      "text_encoder/model.safetensors.index.fp16.json",
      "text_encoder/model.fp16-00001-of-00002.safetensors",
      "text_encoder/model.fp16-00002-of-00002.safetensors",
    ];
    expect(plan(files, undefined, index)).toMatchObject({
      files: ["model_index.json", "text_encoder/config.json"],
      shardIndexes: ["text_encoder/model.safetensors.index.json"],
    });
    expect(plan(files, "fp16", index).shardIndexes).toEqual([
      "text_encoder/model.safetensors.index.fp16.json",
    ]);
    expect(plan([...files, "text_encoder/model.safetensors"], undefined, index)).toMatchObject({
      files: ["model_index.json", "text_encoder/config.json", "text_encoder/model.safetensors"],
      shardIndexes: [],
    });
  });

  it("skips components on request", () => {
    const result = planPipelineFiles(repo, modelIndex, {
      repoId: "org/name",
      skipComponents: ["text_encoder", "tokenizer"],
    });
    expect(result.components).toEqual(["scheduler", "unet"]);
    expect(result.files.some((f) => f.startsWith("text_encoder/"))).toBe(false);
  });

  it("explains a missing variant, variant-only weights and a missing component", () => {
    const missing = errorOf(() => plan(repo, "bf16"));
    expect(missing.code).toBe("variant-not-found");
    expect(missing.message).toBe(
      'org/name has no "bf16" variant of its weights (variants found: fp16, non_ema)',
    );
    const only = errorOf(() =>
      plan(["unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"], undefined, {
        unet: ["diffusers", "UNet2DConditionModel"],
      }),
    );
    expect(only.code).toBe("variant-not-found");
    expect(only.message).toContain("unet has only variant weights (fp16)");
    const absent = errorOf(() => plan(["model_index.json"], undefined, modelIndex));
    expect(absent.code).toBe("not-a-pipeline");
    expect(absent.message).toContain('component "scheduler"');
  });
});

describe("shardFilesOf", () => {
  it("lists each shard once, inside the index's folder", () => {
    const index = {
      weight_map: {
        a: "m-00001-of-00002.safetensors",
        b: "m-00002-of-00002.safetensors",
        c: "m-00001-of-00002.safetensors",
      },
    };
    expect(shardFilesOf(index, "unet/m.safetensors.index.json", "org/name")).toEqual([
      "unet/m-00001-of-00002.safetensors",
      "unet/m-00002-of-00002.safetensors",
    ]);
    expect(() => shardFilesOf({}, "unet/x.index.json", "org/name")).toThrow(/no weight_map/);
  });
});
