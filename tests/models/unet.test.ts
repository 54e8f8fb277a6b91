import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { buildUnet, type UnetBuildOptions } from "../../src/models/unet.js";
import { MS_DOMAIN } from "../../src/onnx/builder.js";
import { buildModelBytes, saveModel } from "../../src/onnx/model-io.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";
import type { WeightSource } from "../../src/weights/source.js";
import { maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { editedWeights, fixtureComponent } from "./component-weights.js";
import { runBaselineCases } from "./unet-cases.js";

const MODELS = ["sd15-tiny", "sd21-tiny", "sdxl-tiny"] as const;
const TOLERANCE = 1e-4;

function build(
  model: string,
  options: UnetBuildOptions = {},
  edit?: (w: WeightSource) => WeightSource,
) {
  const { config, weights } = fixtureComponent(model, "unet");
  return buildUnet(parseUnetConfig(config), edit ? edit(weights) : weights, options);
}

function opTypes(built: ReturnType<typeof build>): string[] {
  return built.builder
    .toGraphProto()
    .node.map((n) => (n.domain === MS_DOMAIN ? `ms.${n.opType}` : n.opType));
}

describe.each(MODELS)("UNet %s against the reference", (model) => {
  it("reproduces every baseline case (fused MultiHeadAttention, the CPU default)", async () => {
    const built = build(model);
    expect(opTypes(built)).toContain("ms.MultiHeadAttention");
    const results = await runBaselineCases(model, built);
    expect(results.length).toBeGreaterThan(0);
    for (const r of results) {
      console.log(
        `unet ${model} ${r.size} baseline (MultiHeadAttention, fp32): max abs ${r.maxAbsDiff.toExponential(2)}`,
      );
      expect(r.maxAbsDiff).toBeLessThan(TOLERANCE);
    }
  });

  it("reproduces every baseline case with MatMul/Softmax attention", async () => {
    const built = build(model, { ops: { attention: "MatMul" } });
    expect(opTypes(built)).not.toContain("ms.MultiHeadAttention");
    expect(opTypes(built)).toContain("Softmax");
    for (const r of await runBaselineCases(model, built)) {
      console.log(
        `unet ${model} ${r.size} baseline (MatMul, fp32): max abs ${r.maxAbsDiff.toExponential(2)}`,
      );
      expect(r.maxAbsDiff).toBeLessThan(TOLERANCE);
    }
  });

  it("reproduces every baseline case with attention chunked over the queries", async () => {
    // Planned for a 24 x 24 latent, a 2 MB limit cuts sd15-tiny's level-1 self-attention into 6
    // slices and its cross-attention into 3: 16 x 16 = 256 queries divide into neither, so the
    // padding path runs too. SDXL attends from level 2 on, over 4x fewer tokens.
    const maxBindingBytes = model === "sdxl-tiny" ? 200_000 : 2_000_000;
    const attentionChunking = { maxBindingBytes, maxLatentSide: 24, maxBatch: 2 };
    for (const op of ["MultiHeadAttention", "MatMul"] as const) {
      const plain = build(model, { ops: { attention: op } });
      const built = build(model, { ops: { attention: op }, attentionChunking });
      const attentions = (b: ReturnType<typeof build>) =>
        opTypes(b).filter((t) => t === "ms.MultiHeadAttention" || t === "Softmax").length;
      expect(attentions(built)).toBeGreaterThan(attentions(plain));
      expect(opTypes(built)).toContain("Pad");
      for (const r of await runBaselineCases(model, built)) {
        console.log(
          `unet ${model} ${r.size} baseline (${op}, queries chunked, fp32): max abs ${r.maxAbsDiff.toExponential(2)}`,
        );
        expect(r.maxAbsDiff).toBeLessThan(TOLERANCE);
      }
    }
  });

  it("builds a float16 model that runs and stays close", async () => {
    const built = build(model, { dtype: "float16" });
    const weights = built.builder.initializers.filter((i) => i.data.type === "float16");
    expect(weights.length).toBeGreaterThan(100);
    for (const r of await runBaselineCases(model, built)) {
      const relative = r.maxAbsDiff / r.maxReference;
      console.log(
        `unet ${model} ${r.size} baseline (fp16): max abs ${r.maxAbsDiff.toExponential(2)}, relative ${relative.toExponential(2)}`,
      );
      expect(relative).toBeLessThan(0.02);
    }
  });
});

describe("UNet graph", () => {
  it("broadcasts a [1] timestep over the batch like the reference", async () => {
    const session = await createSession(buildModelBytes(build("sd15-tiny").builder));
    const cases = openCaseTensors("unet-sd15-tiny");
    const feed = (timestep: Float32Array) => ({
      sample: float32Tensor(cases.readFloat32("16x16.sample"), [2, 4, 16, 16]),
      timestep: float32Tensor(timestep, [timestep.length]),
      encoder_hidden_states: float32Tensor(
        cases.readFloat32("16x16.encoder_hidden_states"),
        [2, 77, 16],
      ),
    });
    const one = await runFloat32(session, feed(Float32Array.of(700)));
    const both = await runFloat32(session, feed(Float32Array.of(700, 700)));
    expect(maxAbsDiff(one.out_sample.data, both.out_sample.data)).toBe(0);
    const reference = cases.readFloat32("16x16.out.baseline");
    expect(maxAbsDiff(one.out_sample.data, reference)).toBeLessThan(TOLERANCE);
    cases.close();
  });

  it("declares SDXL's extra inputs with their widths", () => {
    const graph = build("sdxl-tiny").builder.toGraphProto();
    const dims = (name: string) =>
      graph.input
        .find((i) => i.name === name)
        ?.type?.tensorType?.shape?.dim?.map((d) => d.dimValue ?? d.dimParam);
    expect(graph.input.map((i) => i.name)).toEqual([
      "sample",
      "timestep",
      "encoder_hidden_states",
      "text_embeds",
      "time_ids",
    ]);
    expect(dims("text_embeds")).toEqual(["batch", 16]);
    expect(dims("time_ids")).toEqual(["batch", 6]);
    expect(dims("encoder_hidden_states")).toEqual(["batch", "sequence", 32]);
    expect(graph.output.map((o) => o.name)).toEqual(["out_sample"]);
  });

  it("uses com.microsoft.GroupNorm when asked (CUDA)", () => {
    const types = opTypes(build("sd15-tiny", { backend: "cuda" }));
    expect(types).toContain("ms.GroupNorm");
    expect(types).not.toContain("InstanceNormalization");
    const cpu = opTypes(build("sd15-tiny", { backend: "cpu" }));
    expect(cpu).toContain("InstanceNormalization");
    expect(cpu).not.toContain("ms.GroupNorm");
  });

  it("reads no weight while building and each weight once while saving", () => {
    const { config, weights } = fixtureComponent("sd15-tiny", "unet");
    const reads = new Map<string, number>();
    const counting: WeightSource = {
      label: weights.label,
      keys: () => weights.keys(),
      has: (key) => weights.has(key),
      info: (key) => weights.info(key),
      readFloat32: (key) => {
        reads.set(key, (reads.get(key) ?? 0) + 1);
        return weights.readFloat32(key);
      },
    };
    const built = buildUnet(parseUnetConfig(config), counting);
    expect(reads.size).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "todo-sd-unet-"));
    try {
      const files = saveModel(built.builder, join(dir, "unet.onnx"), { externalData: "always" });
      expect(files).toHaveLength(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(reads.size).toBe(weights.keys().length);
    expect([...reads.values()].every((n) => n === 1)).toBe(true);
  });
});

describe("UNet weight keys", () => {
  const key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight";

  it("rejects a missing weight, naming it", () => {
    expect(() => build("sd15-tiny", {}, (w) => editedWeights(w, [key]))).toThrow(
      `sd15-tiny/unet: missing weight "${key}"`,
    );
  });

  it("rejects unused weights, naming them", () => {
    const extra = {
      "down_blocks.0.attentions.0.extra.weight": { dtype: "F16" as const, shape: [4] },
    };
    expect(() => build("sd15-tiny", {}, (w) => editedWeights(w, [], extra))).toThrow(
      "sd15-tiny/unet: 1 unused weight(s): down_blocks.0.attentions.0.extra.weight",
    );
  });

  it("rejects a weight of the wrong shape", () => {
    const shaped = (w: WeightSource): WeightSource => ({
      ...editedWeights(w, []),
      info: (k) => (k === key ? { dtype: "F16", shape: [16, 8] } : w.info(k)),
    });
    expect(() => build("sd15-tiny", {}, shaped)).toThrow(
      `weight "${key}" has shape [16,8], expected [16,16]`,
    );
  });

  it("rejects weights of another architecture (SD 2.1 weights under an SD 1.5 config)", () => {
    const { config } = fixtureComponent("sd15-tiny", "unet");
    const { weights } = fixtureComponent("sd21-tiny", "unet");
    expect(() => buildUnet(parseUnetConfig(config), weights)).toThrow(
      /sd21-tiny\/unet: weight ".*" has shape/,
    );
  });
});
