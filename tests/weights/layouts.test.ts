import { describe, expect, it } from "vitest";
import { readConfigFile } from "../../src/configs/config-json.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import {
  clipTextWeightShapes,
  parameterCount,
  type Shape,
  unetWeightShapes,
  vaeWeightShapes,
} from "../../src/weights/weight-modules.js";
import { fixturePath } from "../fixtures.js";

function fileShapes(path: string): Map<string, Shape> {
  const file = SafetensorsFile.open(path);
  try {
    return new Map(file.keys().map((k) => [k, file.info(k).shape]));
  } finally {
    file.close();
  }
}

function expectSameShapes(actual: Map<string, Shape>, expected: Map<string, Shape>): void {
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  expect({ missing, extra }).toEqual({ missing: [], extra: [] });
  for (const [key, shape] of expected) expect([key, actual.get(key)]).toEqual([key, shape]);
}

const cases = [
  ["sd15", ["unet", "vae", "text_encoder"]],
  ["sd21", ["unet", "vae", "text_encoder"]],
  ["sdxl", ["unet", "vae", "text_encoder", "text_encoder_2"]],
] as const;

describe("weight layouts match the tiny fixture folders", () => {
  for (const [family, components] of cases) {
    for (const component of components) {
      it(`${family}-tiny ${component}`, () => {
        const dir = fixturePath("pipelines", `${family}-tiny`, component);
        const config = readConfigFile(`${dir}/config.json`);
        const weightFile = component.startsWith("text") ? "model" : "diffusion_pytorch_model";
        const onDisk = fileShapes(`${dir}/${weightFile}.safetensors`);
        const enumerated =
          component === "unet"
            ? unetWeightShapes(config)
            : component === "vae"
              ? vaeWeightShapes(config)
              : clipTextWeightShapes(config, component === "text_encoder_2");
        expectSameShapes(enumerated, onDisk);
      });
    }
  }
});

describe("full-size parameter counts", () => {
  it("SD 1.5 UNet has 859,520,964 parameters", () => {
    const config = readConfigFile(fixturePath("configs", "full", "sd15", "unet", "config.json"));
    expect(parameterCount(unetWeightShapes(config))).toBe(859_520_964);
  });
  it("SDXL UNet has 2,567,463,684 parameters", () => {
    const config = readConfigFile(fixturePath("configs", "full", "sdxl", "unet", "config.json"));
    expect(parameterCount(unetWeightShapes(config))).toBe(2_567_463_684);
  });
});

describe("configs the layouts cannot describe", () => {
  const sd15 = () => readConfigFile(fixturePath("pipelines", "sd15-tiny", "unet", "config.json"));

  it("reject unsupported UNet options in one line naming the field", () => {
    expect(() =>
      unetWeightShapes({ ...sd15(), class_embed_type: "timestep" }, "my/unet/config.json"),
    ).toThrow(/^my\/unet\/config\.json: unsupported value for class_embed_type: "timestep"$/);
    expect(() => unetWeightShapes({ ...sd15(), down_block_types: ["DownBlock2D"] })).toThrow(
      /up_block_types has 4 entries but down_block_types has 1$/,
    );
    expect(() =>
      unetWeightShapes({ ...sd15(), up_block_types: ["UpBlock2D", "X", "UpBlock2D", "UpBlock2D"] }),
    ).toThrow(/unsupported value for up_block_types: "X"$/);
    expect(() => unetWeightShapes({ ...sd15(), layers_per_block: [2, 2] })).toThrow(
      /layers_per_block has 2 entries, but the model has 4 blocks$/,
    );
    expect(() => unetWeightShapes({ ...sd15(), block_out_channels: "32" })).toThrow(
      /invalid value for block_out_channels: "32" \(expected an integer >= 1 or a list of them\)$/,
    );
    // An absent field takes diffusers' default, as it does for the builder.
    const { block_out_channels: _, ...noChannels } = sd15();
    expect(unetWeightShapes(noChannels).get("conv_in.weight")).toEqual([320, 4, 3, 3]);
  });

  it("per-layer transformer depths need the reverse list when they vary", () => {
    const config = { ...sd15(), transformer_layers_per_block: [[1, 2], 1, 1, 1] };
    expect(() => unetWeightShapes(config)).toThrow(/reverse_transformer_layers_per_block/);
    const withReverse = {
      ...config,
      reverse_transformer_layers_per_block: [1, 1, 1, [2, 1, 1]],
    };
    const shapes = unetWeightShapes(withReverse);
    expect(shapes.has("down_blocks.0.attentions.1.transformer_blocks.1.norm1.weight")).toBe(true);
    expect(shapes.has("down_blocks.0.attentions.0.transformer_blocks.1.norm1.weight")).toBe(false);
    expect(shapes.has("up_blocks.3.attentions.0.transformer_blocks.1.norm1.weight")).toBe(true);
    expect(shapes.has("up_blocks.3.attentions.1.transformer_blocks.1.norm1.weight")).toBe(false);
  });

  it("scale_shift doubles the resnet time projection", () => {
    const shapes = unetWeightShapes({ ...sd15(), resnet_time_scale_shift: "scale_shift" });
    expect(shapes.get("down_blocks.0.resnets.0.time_emb_proj.weight")).toEqual([32, 64]);
  });

  it("VAE block types other than the encoder/decoder blocks are rejected", () => {
    const vae = readConfigFile(fixturePath("pipelines", "sd15-tiny", "vae", "config.json"));
    expect(() => vaeWeightShapes({ ...vae, up_block_types: ["UpDecoderBlock2D"] })).toThrow(
      /up_block_types has 1 entries but down_block_types has 4$/,
    );
  });
});
