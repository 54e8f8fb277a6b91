import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { fixturePath } from "../fixtures.js";

function fixtureConfig(model: string): Record<string, unknown> {
  return JSON.parse(readFileSync(fixturePath("pipelines", model, "unet", "config.json"), "utf8"));
}

function fullConfig(model: string): Record<string, unknown> {
  return JSON.parse(
    readFileSync(fixturePath("configs", "full", model, "unet", "config.json"), "utf8"),
  );
}

const heads = (config: ReturnType<typeof parseUnetConfig>) => ({
  down: config.downBlocks.map((b) => b.attention?.heads ?? null),
  mid: config.midBlock?.attention?.heads ?? null,
  up: config.upBlocks.map((b) => b.attention?.heads ?? null),
});

describe("parseUnetConfig", () => {
  it("reads attention_head_dim as the number of heads when num_attention_heads is absent", () => {
    expect(heads(parseUnetConfig(fullConfig("sd15")))).toEqual({
      down: [8, 8, 8, null],
      mid: 8,
      up: [null, 8, 8, 8],
    });
    // SD 2.x: per-level head counts (head size 64 everywhere), mirrored on the way up.
    expect(heads(parseUnetConfig(fullConfig("sd21")))).toEqual({
      down: [5, 10, 20, null],
      mid: 20,
      up: [null, 20, 10, 5],
    });
  });

  it("takes num_attention_heads when it is given", () => {
    const config = parseUnetConfig({ ...fixtureConfig("sd15-tiny"), num_attention_heads: 2 });
    expect(heads(config).down).toEqual([2, 2, 2, null]);
  });

  it("resolves SDXL: transformer depth per block, text_time conditioning, no level-1 attention", () => {
    const config = parseUnetConfig(fullConfig("sdxl"));
    expect(config.downBlocks.map((b) => b.attention?.transformerLayers ?? [])).toEqual([
      [],
      [2, 2],
      [10, 10],
    ]);
    expect(config.midBlock?.attention?.transformerLayers).toEqual([10]);
    expect(config.upBlocks.map((b) => b.attention?.transformerLayers ?? [])).toEqual([
      [10, 10, 10],
      [2, 2, 2],
      [],
    ]);
    expect(config.addition).toEqual({
      type: "text_time",
      timeEmbedDim: 256,
      projectionInputDim: 2816,
    });
    expect(config.useLinearProjection).toBe(true);
    expect(config.timeEmbeddingDim).toBe(1280);
  });

  it("resolves SD 2.1 tiny: linear projections, upcast attention, cross-attention width", () => {
    const config = parseUnetConfig(fixtureConfig("sd21-tiny"));
    expect(config.useLinearProjection).toBe(true);
    expect(config.upcastAttention).toBe(true);
    expect(config.downBlocks[0].attention).toEqual({
      heads: 2,
      crossAttentionDim: 24,
      transformerLayers: [1, 1],
    });
    expect(config.upBlocks.map((b) => b.layers)).toEqual([3, 3, 3, 3]);
    expect(config.upBlocks.map((b) => b.addUpsample)).toEqual([true, true, true, false]);
  });

  it("fills diffusers' defaults for absent fields", () => {
    const config = parseUnetConfig({});
    expect(config.blockOutChannels).toEqual([320, 640, 1280, 1280]);
    expect(config.downBlocks.map((b) => b.type)).toEqual([
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "DownBlock2D",
    ]);
    expect(config.normNumGroups).toBe(32);
    expect(config.normEps).toBe(1e-5);
    expect(config.flipSinToCos).toBe(true);
    expect(config.freqShift).toBe(0);
    expect(config.midBlock?.type).toBe("UNetMidBlock2DCrossAttn");
    expect(config.addition).toBeNull();
    expect(heads(config).mid).toBe(8);
  });

  it("supports asymmetric transformer depths with reverse_transformer_layers_per_block", () => {
    const base = fixtureConfig("sdxl-tiny");
    const config = parseUnetConfig({
      ...base,
      transformer_layers_per_block: [1, [1, 2], [2, 3]],
      reverse_transformer_layers_per_block: [[3, 2, 1], [2, 2, 1], 1],
    });
    expect(config.downBlocks[2].attention?.transformerLayers).toEqual([2, 3]);
    expect(config.midBlock?.attention?.transformerLayers).toEqual([2]);
    expect(config.upBlocks[0].attention?.transformerLayers).toEqual([3, 2, 1]);
    expect(() =>
      parseUnetConfig({ ...base, transformer_layers_per_block: [1, [1, 2], [2, 3]] }),
    ).toThrow(
      "unet/config.json: transformer_layers_per_block has per-layer lists, so reverse_transformer_layers_per_block is required",
    );
  });

  it("accepts a mid block without attention and no mid block at all", () => {
    const base = fixtureConfig("sd15-tiny");
    expect(
      parseUnetConfig({ ...base, mid_block_type: "UNetMidBlock2D" }).midBlock?.attention,
    ).toBeNull();
    expect(parseUnetConfig({ ...base, mid_block_type: null }).midBlock).toBeNull();
  });

  describe("rejects what the builder does not implement, naming field and value", () => {
    const base = fixtureConfig("sd15-tiny");
    const cases: Array<[string, unknown, string]> = [
      ["class_embed_type", "timestep", 'unsupported value for class_embed_type: "timestep"'],
      ["num_class_embeds", 10, "unsupported value for num_class_embeds: 10"],
      ["time_cond_proj_dim", 256, "unsupported value for time_cond_proj_dim: 256"],
      ["encoder_hid_dim", 1024, "unsupported value for encoder_hid_dim: 1024"],
      [
        "resnet_time_scale_shift",
        "scale_shift",
        'unsupported value for resnet_time_scale_shift: "scale_shift"',
      ],
      ["addition_embed_type", "text", 'unsupported value for addition_embed_type: "text"'],
      ["time_embedding_type", "fourier", 'unsupported value for time_embedding_type: "fourier"'],
      ["act_fn", "mish", 'unsupported value for act_fn: "mish"'],
      ["attention_type", "gated", 'unsupported value for attention_type: "gated"'],
      ["dual_cross_attention", true, "unsupported value for dual_cross_attention: true"],
      [
        "only_cross_attention",
        [true, false, false, false],
        "unsupported value for only_cross_attention: [true,false,false,false]",
      ],
      [
        "mid_block_type",
        "UNetMidBlock2DSimpleCrossAttn",
        'unsupported value for mid_block_type: "UNetMidBlock2DSimpleCrossAttn"',
      ],
      ["conv_in_kernel", 4, "unsupported value for conv_in_kernel: 4"],
      ["_class_name", "UNet2DModel", 'unsupported value for _class_name: "UNet2DModel"'],
      ["norm_num_groups", null, "unsupported value for norm_num_groups: null"],
    ];
    it.each(cases)("%s = %j", (field, value, message) => {
      expect(() => parseUnetConfig({ ...base, [field]: value })).toThrow(
        `unet/config.json: ${message}`,
      );
    });

    it("an unknown block type", () => {
      const config = {
        ...base,
        down_block_types: [
          "CrossAttnDownBlock2D",
          "SimpleCrossAttnDownBlock2D",
          "CrossAttnDownBlock2D",
          "DownBlock2D",
        ],
      };
      expect(() => parseUnetConfig(config)).toThrow(
        'unet/config.json: unsupported value for down_block_types: "SimpleCrossAttnDownBlock2D"',
      );
      expect(() =>
        parseUnetConfig({
          ...base,
          up_block_types: ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        }),
      ).toThrow('unsupported value for up_block_types: "AttnUpBlock2D"');
    });
  });

  describe("rejects malformed values", () => {
    const base = fixtureConfig("sd21-tiny");
    it("a per-block list of the wrong length", () => {
      expect(() => parseUnetConfig({ ...base, attention_head_dim: [2, 4, 4] })).toThrow(
        "unet/config.json: attention_head_dim has 3 entries, but the model has 4 blocks",
      );
    });
    it("channels that the heads do not divide", () => {
      expect(() => parseUnetConfig({ ...base, attention_head_dim: [3, 4, 4, 4] })).toThrow(
        "unet/config.json: block_out_channels[0] = 16 is not divisible by attention_head_dim = 3",
      );
    });
    it("a wrong type", () => {
      expect(() => parseUnetConfig({ ...base, layers_per_block: "two" })).toThrow(
        'unet/config.json: invalid value for layers_per_block: "two" (expected an integer >= 1 or a list of them)',
      );
      expect(() => parseUnetConfig({ ...base, use_linear_projection: "yes" })).toThrow(
        'unet/config.json: invalid value for use_linear_projection: "yes" (expected true or false)',
      );
      expect(() => parseUnetConfig([], "x/unet/config.json")).toThrow(
        "x/unet/config.json: expected a JSON object",
      );
    });
    it("mismatched up and down block counts", () => {
      expect(() =>
        parseUnetConfig({ ...base, up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"] }),
      ).toThrow("unet/config.json: up_block_types has 2 entries but down_block_types has 4");
    });
    it("text_time without its widths", () => {
      const xl = fixtureConfig("sdxl-tiny");
      expect(() => parseUnetConfig({ ...xl, addition_time_embed_dim: null })).toThrow(
        "unet/config.json: invalid value for addition_time_embed_dim: null (expected an integer for text_time)",
      );
    });
  });
});
