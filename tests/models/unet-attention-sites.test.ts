// Which self-attentions the UNet hands to token reduction, and at which spatial level.
import { describe, expect, it, vi } from "vitest";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { parseReductionOptions, resolveReduction } from "../../src/reduce/options.js";
import type { AttentionSite, ReductionSettings } from "../../src/reduce/self-attention.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";

const calls: Array<{ site: AttentionSite; settings: ReductionSettings | undefined }> = [];

vi.mock("../../src/reduce/self-attention.js", async (importOriginal) => {
  const original = await importOriginal<typeof import("../../src/reduce/self-attention.js")>();
  return {
    ...original,
    selfAttentionWithReduction: (
      ...args: Parameters<typeof original.selfAttentionWithReduction>
    ) => {
      calls.push({ site: args[2], settings: args[3] });
      return original.selfAttentionWithReduction(...args);
    },
  };
});

const { buildUnet } = await import("../../src/models/unet.js");
const { parseUnetConfig } = await import("../../src/configs/unet-config.js");
const { fixtureComponent } = await import("./component-weights.js");

function sitesOf(model: string, reduction?: ReductionSettings) {
  calls.length = 0;
  const { config, weights } = fixtureComponent(model, "unet");
  const built = buildUnet(parseUnetConfig(config), weights, { reduction });
  const inputs = built.builder.toGraphProto().input;
  return {
    built,
    calls: [...calls],
    timestepName: inputs.find((i) => i.name === "timestep")?.name,
  };
}

/** "down_blocks.1.attentions.0" -> level, one entry per Transformer2DModel (first block only). */
function levels(found: typeof calls): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { site } of found) {
    const block = site.name.replace(/\.transformer_blocks\.\d+\.attn1$/, "");
    out[block] = site.level;
  }
  return out;
}

describe("UNet self-attention sites", () => {
  it("gives SD 1.5 levels by position: 1 at full resolution, one more per downsampling", () => {
    const { calls: found } = sitesOf("sd15-tiny");
    // One self-attention per transformer block, never a cross-attention.
    expect(found).toHaveLength(16);
    expect(found.every((c) => c.site.name.endsWith(".attn1"))).toBe(true);
    expect(levels(found)).toEqual({
      "down_blocks.0.attentions.0": 1,
      "down_blocks.0.attentions.1": 1,
      "down_blocks.1.attentions.0": 2,
      "down_blocks.1.attentions.1": 2,
      "down_blocks.2.attentions.0": 3,
      "down_blocks.2.attentions.1": 3,
      "mid_block.attentions.0": 4,
      "up_blocks.1.attentions.0": 3,
      "up_blocks.1.attentions.1": 3,
      "up_blocks.1.attentions.2": 3,
      "up_blocks.2.attentions.0": 2,
      "up_blocks.2.attentions.1": 2,
      "up_blocks.2.attentions.2": 2,
      "up_blocks.3.attentions.0": 1,
      "up_blocks.3.attentions.1": 1,
      "up_blocks.3.attentions.2": 1,
    });
  });

  it("puts SDXL's first attention at level 2 (its full-resolution blocks have none)", () => {
    const { calls: found } = sitesOf("sdxl-tiny");
    const found2 = levels(found);
    expect(found2["down_blocks.1.attentions.0"]).toBe(2);
    expect(found2["down_blocks.2.attentions.1"]).toBe(3);
    expect(found2["mid_block.attentions.0"]).toBe(3);
    expect(found2["up_blocks.0.attentions.2"]).toBe(3);
    expect(found2["up_blocks.1.attentions.0"]).toBe(2);
    expect(Math.min(...Object.values(found2))).toBe(2);
    // transformer_layers_per_block [1, 2, 2]: two self-attentions per level-2/3 transformer.
    expect(found.filter((c) => c.site.name.startsWith("down_blocks.1.attentions.0."))).toHaveLength(
      2,
    );
  });

  it("passes the settings through untouched and the timestep input and grid as values", () => {
    const settings: ReductionSettings = resolveReduction(parseReductionOptions({ factor: 2 }), {
      architecture: "sd1",
    });
    const { calls: found, timestepName } = sitesOf("sd15-tiny", settings);
    for (const { site, settings: given } of found) {
      expect(given).toBe(settings);
      expect(site.timestep.name).toBe(timestepName);
      expect(site.height.name).not.toBe(site.width.name);
    }
  });

  it("gives the token grid of each block at run time (20x12 latents: 10x6 at level 2, 3x2 in the middle)", async () => {
    const { built, calls: found } = sitesOf("sd15-tiny");
    const g = built.builder;
    const probe = (name: string, i: number) => {
      const site = found.find((c) => c.site.name.startsWith(name))!.site;
      g.output(g.cast(site.height, "float32"), `height_${i}`, "float32");
      g.output(g.cast(site.width, "float32"), `width_${i}`, "float32");
    };
    probe("down_blocks.0.", 0);
    probe("down_blocks.1.", 1);
    probe("mid_block.", 2);
    probe("up_blocks.2.", 3);
    const session = await createSession(buildModelBytes(g));
    const out = await runFloat32(session, {
      sample: float32Tensor(new Float32Array(4 * 20 * 12), [1, 4, 20, 12]),
      timestep: float32Tensor(Float32Array.of(500), [1]),
      encoder_hidden_states: float32Tensor(new Float32Array(77 * 16), [1, 77, 16]),
    });
    const grid = (i: number) => [out[`height_${i}`].data[0], out[`width_${i}`].data[0]];
    expect([grid(0), grid(1), grid(2), grid(3)]).toEqual([
      [20, 12],
      [10, 6],
      [3, 2],
      [10, 6],
    ]);
  });
});
