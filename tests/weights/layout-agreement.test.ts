// The weight layouts and the graph builders read the same typed configs, so every config the
// builders accept has a layout, and the layout holds exactly the weights the builder declares:
// a build over random weights with the layout's keys and shapes uses each key once.
import { describe, expect, it } from "vitest";
import { parseClipTextConfig } from "../../src/configs/clip-config.js";
import { type JsonObject, readConfigFile } from "../../src/configs/config-json.js";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { parseVaeConfig } from "../../src/configs/vae-config.js";
import { buildClipTextEncoder } from "../../src/models/clip-text.js";
import { buildUnet } from "../../src/models/unet.js";
import { buildVaeDecoder, buildVaeEncoder } from "../../src/models/vae.js";
import { RandomWeightSource } from "../../src/weights/builtin.js";
import {
  clipTextWeightShapes,
  unetWeightShapes,
  vaeWeightShapes,
} from "../../src/weights/weight-modules.js";
import { fixturePath } from "../fixtures.js";

const config = (family: string, component: string): JsonObject =>
  readConfigFile(fixturePath("pipelines", `${family}-tiny`, component, "config.json"));

function buildsOverItsLayout(json: JsonObject): void {
  const weights = new RandomWeightSource("layout", unetWeightShapes(json));
  buildUnet(parseUnetConfig(json), weights);
}

describe("layouts and builders agree", () => {
  it("UNet mid blocks: UNetMidBlock2D (no attention) and none at all", () => {
    const sd15 = config("sd15", "unet");
    // diffusers builds UNetMidBlock2D here with one resnet and nothing after it.
    const plain = [...unetWeightShapes({ ...sd15, mid_block_type: "UNetMidBlock2D" }).keys()];
    expect(
      plain
        .filter((k) => k.startsWith("mid_block."))
        .every((k) => k.startsWith("mid_block.resnets.0.")),
    ).toBe(true);
    expect(plain).toContain("mid_block.resnets.0.conv1.weight");
    const none = unetWeightShapes({ ...sd15, mid_block_type: null });
    expect([...none.keys()].some((k) => k.startsWith("mid_block."))).toBe(false);
    buildsOverItsLayout({ ...sd15, mid_block_type: "UNetMidBlock2D" });
    buildsOverItsLayout({ ...sd15, mid_block_type: null });
  });

  it("UNet configs of every family and per-layer transformer depths", () => {
    buildsOverItsLayout(config("sd15", "unet"));
    buildsOverItsLayout(config("sd21", "unet"));
    buildsOverItsLayout(config("sdxl", "unet"));
    buildsOverItsLayout({
      ...config("sd15", "unet"),
      transformer_layers_per_block: [[1, 2], 1, 1, 1],
      reverse_transformer_layers_per_block: [1, 1, 1, [2, 1, 1]],
    });
  });

  it("VAE with and without its mid attention and quant convolutions", () => {
    for (const json of [
      config("sd15", "vae"),
      { ...config("sdxl", "vae"), mid_block_add_attention: false, use_quant_conv: false },
    ]) {
      const weights = new RandomWeightSource("layout", vaeWeightShapes(json));
      buildVaeDecoder(parseVaeConfig(json), weights);
      buildVaeEncoder(parseVaeConfig(json), weights);
    }
  });

  it("text encoders with and without the projection", () => {
    for (const [family, component] of [
      ["sd15", "text_encoder"],
      ["sdxl", "text_encoder_2"],
    ] as const) {
      const json = config(family, component);
      const withProjection = component === "text_encoder_2";
      const weights = new RandomWeightSource("layout", clipTextWeightShapes(json, withProjection));
      buildClipTextEncoder(parseClipTextConfig(json), weights, { projection: withProjection });
    }
  });
});
