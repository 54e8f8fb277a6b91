// UNet config features the fixtures do not exercise, checked by equivalences and structure.
import { describe, expect, it } from "vitest";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { buildUnet, sinusoidalEmbedding } from "../../src/models/unet.js";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import {
  createSession,
  float32Tensor,
  type OrtTensor,
  runFloat32,
} from "../../src/runtime/session.js";
import { SeededRandom } from "../../src/util/random.js";
import type { WeightSource } from "../../src/weights/source.js";
import { maxAbsDiff } from "../fixtures.js";
import { editedWeights, fixtureComponent } from "./component-weights.js";

const random = new SeededRandom(11);
const context = random.normalArray(77 * 16);

function tinyUnet(
  overrides: Record<string, unknown>,
  edit?: (w: WeightSource) => WeightSource,
  model = "sd15-tiny",
) {
  const { config, weights } = fixtureComponent(model, "unet");
  return buildUnet(
    parseUnetConfig({ ...(config as object), ...overrides }),
    edit ? edit(weights) : weights,
  );
}

async function runUnet(built: ReturnType<typeof tinyUnet>, sample: Float32Array, dims: number[]) {
  const session = await createSession(buildModelBytes(built.builder));
  const feeds: Record<string, OrtTensor> = {
    sample: float32Tensor(sample, dims),
    timestep: float32Tensor(Float32Array.of(321), [1]),
    encoder_hidden_states: float32Tensor(context, [1, 77, 16]),
  };
  return (await runFloat32(session, feeds)).out_sample;
}

const countOps = (built: ReturnType<typeof tinyUnet>, type: string) =>
  built.builder.toGraphProto().node.filter((n) => n.opType === type).length;

describe("UNet options", () => {
  it("center_input_sample maps the sample to 2x - 1 first", async () => {
    const x = random.normalArray(4 * 8 * 8);
    const dims = [1, 4, 8, 8];
    const centered = await runUnet(tinyUnet({ center_input_sample: true }), x, dims);
    const plain = await runUnet(
      tinyUnet({}),
      x.map((v) => 2 * v - 1),
      dims,
    );
    expect(maxAbsDiff(centered.data, plain.data)).toBeLessThan(1e-5);
  });

  it("builds and runs a mid block without attention, and no mid block at all", async () => {
    const withoutMidAttention = (w: WeightSource) =>
      editedWeights(
        w,
        w
          .keys()
          .filter(
            (k) => k.startsWith("mid_block.attentions.") || k.startsWith("mid_block.resnets.1."),
          ),
      );
    const withoutMid = (w: WeightSource) =>
      editedWeights(
        w,
        w.keys().filter((k) => k.startsWith("mid_block.")),
      );
    const x = random.normalArray(4 * 8 * 8);
    for (const built of [
      tinyUnet({ mid_block_type: "UNetMidBlock2D" }, withoutMidAttention),
      tinyUnet({ mid_block_type: null }, withoutMid),
    ]) {
      const out = await runUnet(built, x, [1, 4, 8, 8]);
      expect(out.dims).toEqual([1, 4, 8, 8]);
      expect(out.data.every(Number.isFinite)).toBe(true);
    }
  });

  it("scales resnet outputs by resnet_out_scale_factor and mid_block_scale_factor", () => {
    const divides = (built: ReturnType<typeof tinyUnet>) => countOps(built, "Div");
    const base = divides(tinyUnet({}));
    // sd15-tiny: 4 x 2 down and 4 x 3 up resnets, 2 in the middle.
    expect(divides(tinyUnet({ resnet_out_scale_factor: 2 })) - base).toBe(20);
    expect(divides(tinyUnet({ mid_block_scale_factor: 2 })) - base).toBe(2);
  });

  it("adds the time embedding activations the config asks for", () => {
    const sigmoids = (overrides: Record<string, unknown>) =>
      countOps(tinyUnet(overrides), "Sigmoid");
    const base = sigmoids({});
    expect(sigmoids({ time_embedding_act_fn: "silu" }) - base).toBe(1);
    expect(sigmoids({ timestep_post_act: "silu" }) - base).toBe(1);
  });

  it("sizes SDXL's inputs for another number of time ids (the refiner has 5)", () => {
    const inputs = tinyUnet({}, undefined, "sdxl-tiny");
    expect(inputs.builder.toGraphProto().input.length).toBe(5);
    const { config, weights } = fixtureComponent("sdxl-tiny", "unet");
    const parsed = parseUnetConfig(config);
    const graph = buildUnet(parsed, weights, { timeIds: 5 }).builder.toGraphProto();
    const dims = (name: string) =>
      graph.input
        .find((i) => i.name === name)
        ?.type?.tensorType?.shape?.dim?.map((d) => d.dimValue ?? d.dimParam);
    expect(dims("text_embeds")).toEqual(["batch", 24]);
    expect(dims("time_ids")).toEqual(["batch", 5]);
    expect(() => buildUnet(parsed, weights, { timeIds: 8 })).toThrow(
      "unet: projection_class_embeddings_input_dim 64 leaves no room for text embeddings beside 8 time ids x 8",
    );
  });
});

describe("sinusoidalEmbedding", () => {
  /** DDPM's embedding in float64: frequencies exp(-ln(1e4) i / (half - shift)). */
  function reference(t: number, dim: number, flip: boolean, shift: number): number[] {
    const half = Math.floor(dim / 2);
    const args = Array.from(
      { length: half },
      (_, i) => t * Math.exp((-Math.log(10000) * i) / (half - shift)),
    );
    const sin = args.map(Math.sin);
    const cos = args.map(Math.cos);
    const out = flip ? [...cos, ...sin] : [...sin, ...cos];
    return dim % 2 === 1 ? [...out, 0] : out;
  }

  it.each([
    [8, true, 0],
    [8, false, 1],
    [7, true, 0],
  ])("dim %i, flipSinToCos %s, freqShift %i", async (dim, flip, shift) => {
    const g = new GraphBuilder();
    const t = g.input("t", "float32", ["n"]);
    g.output(sinusoidalEmbedding(g, t, dim, flip, shift), "emb", "float32");
    const times = [0, 1, 500, 999];
    const out = await runFloat32(await createSession(buildModelBytes(g)), {
      t: float32Tensor(Float32Array.from(times), [times.length]),
    });
    expect(out.emb.dims).toEqual([times.length, dim]);
    const expected = times.flatMap((v) => reference(v, dim, flip, shift));
    // float32 arguments reach ~1000 rad, where one ulp of the argument is ~6e-5.
    expect(maxAbsDiff(out.emb.data, expected)).toBeLessThan(5e-4);
  });
});
