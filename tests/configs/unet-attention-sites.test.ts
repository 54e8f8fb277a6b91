// The one list of the UNet's attention sites and levels that the builder, `info` and the
// patch rules share.
import { describe, expect, it } from "vitest";
import { readConfigFile } from "../../src/configs/config-json.js";
import { parseUnetConfig, unetAttentionSites } from "../../src/configs/unet-config.js";
import { levelFromName } from "../../src/patch/unet-levels.js";
import { fixturePath } from "../fixtures.js";

const unet = (family: string) =>
  parseUnetConfig(readConfigFile(fixturePath("configs", "full", family, "unet", "config.json")));

describe("unetAttentionSites", () => {
  it("SD 1.5: levels 1 to 3 down, 4 in the middle, back up to 1", () => {
    const sites = unetAttentionSites(unet("sd15"));
    expect(sites.map((s) => [s.module, s.level])).toEqual([
      ["down_blocks.0.attentions.0", 1],
      ["down_blocks.0.attentions.1", 1],
      ["down_blocks.1.attentions.0", 2],
      ["down_blocks.1.attentions.1", 2],
      ["down_blocks.2.attentions.0", 3],
      ["down_blocks.2.attentions.1", 3],
      ["mid_block.attentions.0", 4],
      ["up_blocks.1.attentions.0", 3],
      ["up_blocks.1.attentions.1", 3],
      ["up_blocks.1.attentions.2", 3],
      ["up_blocks.2.attentions.0", 2],
      ["up_blocks.2.attentions.1", 2],
      ["up_blocks.2.attentions.2", 2],
      ["up_blocks.3.attentions.0", 1],
      ["up_blocks.3.attentions.1", 1],
      ["up_blocks.3.attentions.2", 1],
    ]);
    expect(sites.map((s) => s.channels)).toEqual([
      320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320,
    ]);
    expect(sites.every((s) => s.depth === 1)).toBe(true);
  });

  it("SDXL: nothing at level 1; 10 transformer blocks at level 2, 60 at level 3 (middle included)", () => {
    const sites = unetAttentionSites(unet("sdxl"));
    const depthPerLevel = new Map<number, number>();
    for (const s of sites) depthPerLevel.set(s.level, (depthPerLevel.get(s.level) ?? 0) + s.depth);
    // Down: 2 x 2 at level 2, 2 x 10 at level 3; mid: 10; up: 3 x 10 at level 3, 3 x 2 at level 2.
    expect(Object.fromEntries(depthPerLevel)).toEqual({ 2: 10, 3: 60 });
  });

  it("a mid block without attention and no mid block have no site there", () => {
    const json = readConfigFile(fixturePath("configs", "full", "sd15", "unet", "config.json"));
    for (const mid_block_type of ["UNetMidBlock2D", null]) {
      const sites = unetAttentionSites(parseUnetConfig({ ...json, mid_block_type }));
      expect(sites).toHaveLength(15);
      expect(sites.some((s) => s.module.startsWith("mid_block."))).toBe(false);
    }
  });

  it("the patch rules' module-path levels agree with the sites", () => {
    for (const family of ["sd15", "sd21", "sdxl"]) {
      const config = unet(family);
      for (const site of unetAttentionSites(config)) {
        const name = `/${site.module.replace(/\./g, "/")}/transformer_blocks.0/attn1/MatMul`;
        expect([site.module, levelFromName(name, config.downBlocks.length)]).toEqual([
          site.module,
          site.level,
        ]);
      }
    }
  });
});
