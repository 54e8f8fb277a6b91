import { describe, expect, it } from "vitest";
import { parseVaeConfig } from "../../src/configs/vae-config.js";
import type { ModelBuildOptions } from "../../src/models/layers.js";
import { buildVaeDecoder, buildVaeEncoder } from "../../src/models/vae.js";
import { MS_DOMAIN } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";
import { vaeDtype } from "../../src/util/vocabulary.js";
import type { WeightSource } from "../../src/weights/source.js";
import { maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { editedWeights, fixtureComponent } from "./component-weights.js";

const TOLERANCE = 1e-4;
const CASES = readCaseJson<{ cases: Array<{ pipeline: string; scaling_factor: number }> }>(
  "vae",
).cases;

async function run(
  built: ReturnType<typeof buildVaeDecoder>,
  feeds: Record<string, { data: Float32Array; dims: readonly number[] }>,
) {
  const session = await createSession(buildModelBytes(built.builder));
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, v]) => [k, float32Tensor(v.data, v.dims)]),
    );
    return await runFloat32(session, tensors);
  } finally {
    await session.release();
  }
}

function caseTensor(key: string) {
  const file = openCaseTensors("vae");
  try {
    return { data: file.readFloat32(key), dims: file.info(key).shape };
  } finally {
    file.close();
  }
}

describe.each(CASES)("VAE $pipeline against the reference", ({ pipeline, scaling_factor }) => {
  const load = () => {
    const { config, weights } = fixtureComponent(pipeline, "vae");
    return { config: parseVaeConfig(config), weights };
  };

  it("exposes the scaling factor", () => {
    expect(load().config.scalingFactor).toBe(scaling_factor);
  });

  // Query chunking (for onnxruntime-web's binding limit) must not change the result: planned
  // for a 32 x 32 latent, a 100 kB limit cuts the mid-block attention into many slices.
  const chunked = { maxBindingBytes: 100_000, maxLatentSide: 32, maxBatch: 1 };
  for (const [attention, options] of [
    ["MultiHeadAttention", { ops: { attention: "MultiHeadAttention" } }],
    ["MatMul", { ops: { attention: "MatMul" } }],
    ["MultiHeadAttention, chunked", { attentionChunking: chunked }],
    ["MatMul, chunked", { ops: { attention: "MatMul" }, attentionChunking: chunked }],
  ] as const satisfies readonly (readonly [string, ModelBuildOptions])[]) {
    it(`decodes latents (${attention})`, async () => {
      const { config, weights } = load();
      const out = await run(buildVaeDecoder(config, weights, options), {
        latents: caseTensor(`${pipeline}.latents`),
      });
      const reference = caseTensor(`${pipeline}.decoded`);
      expect(out.image.dims).toEqual(reference.dims);
      const diff = maxAbsDiff(out.image.data, reference.data);
      console.log(`vae ${pipeline} decoded (${attention}, fp32): max abs ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(TOLERANCE);
    });

    it(`encodes an image to mean and log-variance (${attention})`, async () => {
      const { config, weights } = load();
      const out = await run(buildVaeEncoder(config, weights, options), {
        image: caseTensor(`${pipeline}.image`),
      });
      for (const [name, key] of [
        ["latent_mean", "encoded_mean"],
        ["latent_logvar", "encoded_logvar"],
      ] as const) {
        const reference = caseTensor(`${pipeline}.${key}`);
        expect(out[name].dims).toEqual(reference.dims);
        const diff = maxAbsDiff(out[name].data, reference.data);
        console.log(
          `vae ${pipeline} ${key} (${attention}, fp32): max abs ${diff.toExponential(2)}`,
        );
        expect(diff).toBeLessThan(TOLERANCE);
      }
    });
  }
});

describe("VAE builders", () => {
  const { config: json, weights } = fixtureComponent("sdxl-tiny", "vae");
  const config = parseVaeConfig(json);

  it("splits the mid-block attention into as many query slices as the binding limit needs", () => {
    const attentions = (options: ModelBuildOptions) =>
      buildVaeDecoder(config, weights, options)
        .builder.toGraphProto()
        .node.filter((n) => n.domain === MS_DOMAIN && n.opType === "MultiHeadAttention").length;
    expect(attentions({})).toBe(1);
    // One head, 64 x 64 = 4096 positions: 4096^2 float32 scores are 64 MiB; at 16 MiB a slice, 4.
    const chunking = { maxBindingBytes: 16 * 2 ** 20, maxLatentSide: 64, maxBatch: 1 };
    expect(attentions({ attentionChunking: chunking })).toBe(4);
    // float16 scores are half as large.
    expect(attentions({ attentionChunking: chunking, dtype: "float16" })).toBe(2);
  });

  it("keeps every node of a finely split attention within WebGPU's 8 bindings per kernel", () => {
    // 64 MiB of scores in 1 MiB slices: 64 attentions, joined by Concats of at most 7 inputs.
    const chunking = { maxBindingBytes: 2 ** 20, maxLatentSide: 64, maxBatch: 1 };
    const nodes = buildVaeDecoder(config, weights, {
      attentionChunking: chunking,
    }).builder.toGraphProto().node;
    expect(nodes.filter((n) => n.opType === "MultiHeadAttention")).toHaveLength(64);
    const widest = Math.max(...nodes.map((n) => n.input.length + n.output.length));
    expect(widest).toBeLessThanOrEqual(8);
  });

  it("builds float16 graphs that run and stay close", async () => {
    const decoded = await run(buildVaeDecoder(config, weights, { dtype: "float16" }), {
      latents: caseTensor("sdxl-tiny.latents"),
    });
    const reference = caseTensor("sdxl-tiny.decoded");
    let scale = 0;
    for (const v of reference.data) scale = Math.max(scale, Math.abs(v));
    const relative = maxAbsDiff(decoded.image.data, reference.data) / scale;
    console.log(`vae sdxl-tiny decoded (fp16): relative ${relative.toExponential(2)}`);
    expect(relative).toBeLessThan(0.02);
    const encoded = await run(buildVaeEncoder(config, weights, { dtype: "float16" }), {
      image: caseTensor("sdxl-tiny.image"),
    });
    expect(
      maxAbsDiff(encoded.latent_mean.data, caseTensor("sdxl-tiny.encoded_mean").data),
    ).toBeLessThan(0.05);
  });

  it("picks float32 for a float16 SDXL pipeline when the config forces an upcast", () => {
    expect(config.forceUpcast).toBe(true);
    expect(vaeDtype(config, "float16", "sdxl")).toBe("float32");
    expect(vaeDtype({ ...config, forceUpcast: false }, "float16", "sdxl")).toBe("float16");
    expect(vaeDtype(config, "float32", "sdxl")).toBe("float32");
    expect(vaeDtype(config, "float16", "sd1")).toBe("float16");
  });

  it("uses each half's weights only, and rejects keys that belong to neither half", () => {
    expect(() => buildVaeDecoder(config, weights)).not.toThrow();
    const stray = editedWeights(weights, [], {
      "decoder_extra.weight": { dtype: "F16", shape: [2] },
    });
    expect(() => buildVaeDecoder(config, stray)).toThrow(
      "sdxl-tiny/vae: 1 unused weight(s): decoder_extra.weight",
    );
    expect(() => buildVaeEncoder(config, stray)).toThrow(
      "sdxl-tiny/vae: 1 unused weight(s): decoder_extra.weight",
    );
    const missing = editedWeights(weights, ["encoder.mid_block.attentions.0.to_q.bias"]);
    expect(() => buildVaeEncoder(config, missing)).toThrow(
      'sdxl-tiny/vae: missing weight "encoder.mid_block.attentions.0.to_q.bias"',
    );
    expect(() => buildVaeDecoder(config, missing)).not.toThrow();
  });

  it("clamps the log-variance to [-30, 20] like the reference distribution", async () => {
    // Push the log-variance channels of quant_conv's bias far out of range, one per sign.
    const shifted: WeightSource = {
      ...editedWeights(weights, []),
      readFloat32: (key) =>
        key === "quant_conv.bias"
          ? Float32Array.of(0, 0, 0, 0, 1e3, -1e3, 1e3, -1e3)
          : weights.readFloat32(key),
    };
    const out = await run(buildVaeEncoder(config, shifted), {
      image: caseTensor("sdxl-tiny.image"),
    });
    const plane = out.latent_logvar.data.length / 4;
    expect(new Set(out.latent_logvar.data.subarray(0, plane))).toEqual(new Set([20]));
    expect(new Set(out.latent_logvar.data.subarray(plane, 2 * plane))).toEqual(new Set([-30]));
  });

  it("leaves out quant convolutions and mid attention when the config says so", () => {
    const noQuant = {
      ...config,
      useQuantConv: false,
      usePostQuantConv: false,
      midBlockAddAttention: false,
    };
    const hidden = weights
      .keys()
      .filter((k) => k.includes("quant_conv") || k.includes("mid_block.attentions"));
    const source: WeightSource = editedWeights(weights, hidden);
    const built = buildVaeDecoder(noQuant, source);
    expect(built.builder.initializers.some((i) => i.name.includes("post_quant_conv"))).toBe(false);
    expect(() => buildVaeDecoder(config, source)).toThrow(
      'missing weight "post_quant_conv.weight"',
    );
  });

  it("uses com.microsoft.GroupNorm on GPU backends", () => {
    const built = buildVaeDecoder(config, weights, { backend: "cuda" });
    const ops = built.builder
      .toGraphProto()
      .node.filter((n) => n.domain === MS_DOMAIN)
      .map((n) => n.opType);
    expect(ops).toContain("GroupNorm");
  });
});

describe("parseVaeConfig", () => {
  const { config: base } = fixtureComponent("sd15-tiny", "vae");
  const json = base as Record<string, unknown>;

  it("fills diffusers' defaults", () => {
    const config = parseVaeConfig({});
    expect(config.blockOutChannels).toEqual([64]);
    expect(config.layersPerBlock).toBe(1);
    expect(config.scalingFactor).toBe(0.18215);
    expect(config.forceUpcast).toBe(true);
    expect(config.shiftFactor).toBeNull();
  });

  it.each([
    ["_class_name", "AutoencoderTiny", 'unsupported value for _class_name: "AutoencoderTiny"'],
    ["act_fn", "gelu", 'unsupported value for act_fn: "gelu"'],
    [
      "down_block_types",
      ["DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      'unsupported value for down_block_types: "AttnDownEncoderBlock2D"',
    ],
    [
      "latents_mean",
      [0, 1],
      "invalid value for latents_mean: [0,1] (expected 4 numbers, one per latent channel)",
    ],
    ["scaling_factor", "0.18", 'invalid value for scaling_factor: "0.18" (expected a number)'],
  ])("rejects %s = %j", (field, value, message) => {
    expect(() => parseVaeConfig({ ...json, [field]: value })).toThrow(
      `vae/config.json: ${message}`,
    );
  });
});
