// Exports brought to the builders' I/O contract: names, float32 tensors, int64 ids, a [batch]
// timestep, and the latent distribution from VAE encoders that output the moments.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel, encodeModel, type ModelProto } from "../../src/onnx/proto.js";
import {
  conformTextEncoderIo,
  conformUnetIo,
  conformVaeEncoderIo,
} from "../../src/patch/io-contract.js";
import { createSession, float32Tensor, type OrtTensor, ort } from "../../src/runtime/session.js";
import { readExport } from "./helpers.js";

const UNET_IO = {
  sample: "sample",
  timestep: "timestep",
  encoderHiddenStates: "encoder_hidden_states",
  textEmbeds: "text_embeds",
  timeIds: "time_ids",
  output: "out_sample",
};

async function run(model: ModelProto, feeds: Record<string, OrtTensor>) {
  const session = await createSession(encodeModel(model));
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v])) as Record<
      string,
      OrtTensor
    >;
  } finally {
    await session.release();
  }
}

/** A float16 "UNet" with an int64 scalar timestep: out = sample * 2 + t + mean(context). */
function float16Unet(): ModelProto {
  const g = new GraphBuilder("float16");
  const sample = g.input("latent_model_input", "float16", ["batch", 4, "h", "w"]);
  const t = g.input("timestep", "int64", []);
  const context = g.input("encoder_hidden_states", "float16", ["batch", 3, 2]);
  const mean = g.unsqueeze(g.reduceMean(context, [1, 2], false), [1, 2, 3]);
  const out = g.add(g.add(g.mul(sample, g.float(2)), g.cast(t, "float16")), mean);
  g.output(out, "noise_pred", "float16");
  return decodeModel(buildModelBytes(g), "fp16 unet");
}

describe("I/O contract", () => {
  it("feeds a float16 UNet with an integer scalar timestep float32 tensors under the builders' names", async () => {
    const model = float16Unet();
    expect(conformUnetIo(model, UNET_IO, "fp16 unet")).toBe(true);
    expect(model.graph.input.map((i) => [i.name, i.type?.tensorType?.elemType])).toEqual([
      ["sample", 1],
      ["timestep", 1],
      ["encoder_hidden_states", 1],
    ]);
    expect(model.graph.output.map((o) => [o.name, o.type?.tensorType?.elemType])).toEqual([
      ["out_sample", 1],
    ]);
    const sample = Float32Array.from({ length: 2 * 4 }, (_, i) => i / 4);
    const context = Float32Array.from({ length: 12 }, (_, i) => (i < 6 ? 1 : 3));
    const out = await run(model, {
      sample: float32Tensor(sample, [2, 4, 1, 1]),
      timestep: float32Tensor(new Float32Array([999.7, 999.7]), [2]),
      encoder_hidden_states: float32Tensor(context, [2, 3, 2]),
    });
    // 999.7 is truncated to 999, as numpy's cast to int64 does in diffusers' ONNX pipeline.
    const expected = Array.from(sample, (v, i) => v * 2 + 999 + (i < 4 ? 1 : 3));
    expect(out.out_sample.type).toBe("float32");
    expect([...(out.out_sample.data as Float32Array)]).toEqual(expected);
  });

  it("changes nothing in an export that already has the contract", () => {
    const model = readExport("onnx/sd15-tiny/unet/model.onnx");
    const before = encodeModel(model);
    expect(conformUnetIo(model, UNET_IO)).toBe(false);
    expect(Buffer.from(encodeModel(model)).equals(before)).toBe(true);
  });

  it("takes int64 token ids for an export that reads int32", async () => {
    const model = readExport("onnx/sd15-tiny/text_encoder/model.onnx");
    expect(model.graph.input[0].type?.tensorType?.elemType).toBe(6);
    expect(conformTextEncoderIo(model, { input: "input_ids" })).toBe(true);
    const ids = new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: 77 }, () => 49407n),
      [1, 77],
    );
    const out = await run(model, { input_ids: ids });
    expect(out.last_hidden_state.dims).toEqual([1, 77, 16]);
  });

  it("splits a latent_parameters output into mean and clamped log-variance", async () => {
    const g = new GraphBuilder();
    const image = g.input("sample", "float32", ["batch", 3, "h", "w"]);
    g.output(g.concat([image, g.mul(image, g.float(100))], 1), "latent_parameters", "float32");
    const model = decodeModel(buildModelBytes(g), "moments vae");
    const io = { input: "image", mean: "latent_mean", logvar: "latent_logvar" };
    conformVaeEncoderIo(model, io, "moments vae");
    const data = Float32Array.from([0.1, -0.5, 0.3]);
    const out = await run(model, { image: float32Tensor(data, [1, 3, 1, 1]) });
    expect([...(out.latent_mean.data as Float32Array)]).toEqual([...data]);
    expect([...(out.latent_logvar.data as Float32Array)]).toEqual([10, -30, 20]);
  });

  it("refuses a VAE encoder that neither samples nor outputs the moments", () => {
    const decoder = readExport("onnx/sd15-tiny/vae_decoder/model.onnx");
    expect(() =>
      conformVaeEncoderIo(decoder, { input: "image", mean: "m", logvar: "l" }, "vae_decoder"),
    ).toThrow(
      "vae_decoder: no latent sampling (RandomNormalLike) and no latent_parameters output; cannot read the latent distribution",
    );
  });
});
