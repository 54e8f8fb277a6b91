// The rules that make a diffusers ONNX folder reproduce the reference pipelines: the VAE
// encoder's in-graph sampling becomes mean and log-variance outputs, and the text encoder gets
// the hidden state clip skip asks for.
import { describe, expect, it } from "vitest";
import { GraphBuilder, type Value } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel, encodeModel, type ModelProto } from "../../src/onnx/proto.js";
import { GraphEdit } from "../../src/patch/graph-edit.js";
import { GraphIndex } from "../../src/patch/graph-index.js";
import { clipHiddenStatesRule } from "../../src/patch/rules/clip-hidden-states.js";
import { vaeEncoderMomentsRule } from "../../src/patch/rules/vae-encoder-moments.js";
import { createSession, float32Tensor, type OrtTensor, ort } from "../../src/runtime/session.js";
import { SeededRandom } from "../../src/util/random.js";
import { maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { opCounts, readExport } from "./helpers.js";

const TOLERANCE = 1e-4;

async function run(model: ModelProto, feeds: Record<string, OrtTensor>) {
  const session = await createSession(encodeModel(model));
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(
      Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]),
    ) as Record<string, Float32Array>;
  } finally {
    await session.release();
  }
}

function applyVaeRule(model: ModelProto) {
  const edit = new GraphEdit(model);
  const matches = vaeEncoderMomentsRule.match(edit.graph);
  expect(matches).toHaveLength(1);
  expect(vaeEncoderMomentsRule.check(edit.graph, matches[0])).toBe(true);
  vaeEncoderMomentsRule.rewrite(edit, matches[0], { mean: "latent_mean", logvar: "latent_logvar" });
  edit.commit();
}

describe("vae-encoder-moments", () => {
  it("replaces the in-graph sample by the mean and log-variance of the reference", async () => {
    const model = readExport("onnx/sd15-tiny/vae_encoder/model.onnx");
    expect(opCounts(model.graph).RandomNormalLike).toBe(1);
    applyVaeRule(model);
    expect(model.graph.output.map((o) => o.name)).toEqual(["latent_mean", "latent_logvar"]);
    const ops = opCounts(model.graph);
    expect(ops.RandomNormalLike).toBeUndefined();
    expect(ops.Exp).toBeUndefined(); // the sampling's std is pruned with it
    expect(ops.Clip).toBe(1); // the log-variance stays clamped as diffusers clamps it
    const cases = openCaseTensors("vae");
    const out = await run(model, {
      sample: float32Tensor(cases.readFloat32("sd15-tiny.image"), [1, 3, 64, 48]),
    });
    const mean = maxAbsDiff(out.latent_mean, cases.readFloat32("sd15-tiny.encoded_mean"));
    const logvar = maxAbsDiff(out.latent_logvar, cases.readFloat32("sd15-tiny.encoded_logvar"));
    console.log(
      `vae encoder moments: mean ${mean.toExponential(2)}, logvar ${logvar.toExponential(2)}`,
    );
    expect(mean).toBeLessThan(TOLERANCE);
    expect(logvar).toBeLessThan(TOLERANCE);
    cases.close();
  });

  it("counts 0 in graphs without in-graph sampling", () => {
    for (const file of [
      "onnx/sd15-tiny/vae_decoder/model.onnx",
      "onnx/sd15-tiny/unet/model.onnx",
    ]) {
      expect(vaeEncoderMomentsRule.match(new GraphIndex(readExport(file).graph))).toEqual([]);
    }
  });

  it("says why it cannot rewrite noise that is not scaled by exp(0.5 * logvar)", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [1, 4]);
    const noise = g.op("RandomNormalLike", [x]);
    g.output(g.add(x, g.mul(g.op("Sqrt", [g.op("Exp", [x])]), noise)), "sample", "float32");
    const graph = new GraphIndex(decodeModel(buildModelBytes(g)).graph);
    const [match] = vaeEncoderMomentsRule.match(graph);
    expect(vaeEncoderMomentsRule.check(graph, match)).toBe(
      "the noise scale is not exp(0.5 * logvar)",
    );
  });
});

describe("clip-hidden-states on the sd15-tiny text encoder export", () => {
  const cases = () => openCaseTensors("text-encoders");
  const ids = () => {
    const t = cases();
    // The export takes int32 ids.
    const ids = Int32Array.from(t.readBigInt64("sd15-tiny.text_encoder.input_ids"), Number);
    const tensor = new ort.Tensor("int32", ids, [4, 77]);
    return { t, feeds: { input_ids: tensor } };
  };

  it.each<[number, boolean, string]>([
    [2, true, "penultimate_after_final_ln"],
    [2, false, "penultimate_hidden_state"],
    [1, true, "last_hidden_state"],
  ])("hidden_states[-%i] (final norm: %s) equals the reference %s", async (n, norm, key) => {
    const model = readExport("onnx/sd15-tiny/text_encoder/model.onnx");
    const edit = new GraphEdit(model);
    const [match] = clipHiddenStatesRule.match(edit.graph);
    expect(clipHiddenStatesRule.check(edit.graph, match)).toBe(true);
    expect(match.hiddenStates).toHaveLength(4); // embeddings + 3 layers
    clipHiddenStatesRule.rewrite(edit, match, { fromEnd: n, finalLayerNorm: norm, output: "skip" });
    edit.commit();
    const { t, feeds } = ids();
    const out = await run(model, feeds);
    const diff = maxAbsDiff(out.skip, t.readFloat32(`sd15-tiny.text_encoder.${key}`));
    console.log(`text encoder hidden_states[-${n}] (norm ${norm}): ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(TOLERANCE);
    t.close();
  });

  it("refuses a hidden state the encoder does not have", () => {
    const model = readExport("onnx/sd15-tiny/text_encoder/model.onnx");
    const edit = new GraphEdit(model);
    const [match] = clipHiddenStatesRule.match(edit.graph);
    expect(() =>
      clipHiddenStatesRule.rewrite(edit, match, { fromEnd: 5, finalLayerNorm: true, output: "s" }),
    ).toThrow(
      "hidden_states[-5] does not exist: the text encoder has 3 layers (1 to 4 from the end)",
    );
  });

  it("counts 0 in a model without last_hidden_state", () => {
    const unet = new GraphIndex(readExport("onnx/sd15-tiny/vae_decoder/model.onnx").graph);
    expect(clipHiddenStatesRule.match(unet)).toEqual([]);
  });
});

describe("clip-hidden-states on a pre-norm encoder with a decomposed final norm", () => {
  it("replays the decomposition on the earlier state, equal to the fused norm", async () => {
    const fused = tinyEncoder(false);
    const decomposed = tinyEncoder(true);
    for (const model of [fused, decomposed]) {
      const edit = new GraphEdit(model);
      const [match] = clipHiddenStatesRule.match(edit.graph);
      expect(clipHiddenStatesRule.check(edit.graph, match)).toBe(true);
      expect(match.hiddenStates).toHaveLength(3);
      clipHiddenStatesRule.rewrite(edit, match, { fromEnd: 2, finalLayerNorm: true, output: "s" });
      edit.commit();
    }
    const random = new SeededRandom(5);
    const feeds = { x: float32Tensor(random.normalArray(2 * 5 * 8), [2, 5, 8]) };
    const [a, b] = [await run(fused, feeds), await run(decomposed, feeds)];
    expect(maxAbsDiff(a.s, b.s)).toBeLessThan(1e-5);
    expect(maxAbsDiff(a.last_hidden_state, b.last_hidden_state)).toBeLessThan(1e-5);
    expect(maxAbsDiff(a.s, a.last_hidden_state)).toBeGreaterThan(1e-3);
  });
});

/** x (B, S, 8) + 2 pre-norm residual layers (attention-free: a linear branch and an MLP). */
function tinyEncoder(decomposedNorm: boolean): ModelProto {
  const g = new GraphBuilder();
  const random = new SeededRandom(11);
  const w = (dims: number[], scale = 0.3) => {
    const values = random.normalArray(dims.reduce((a, b) => a * b, 1)).map((v) => v * scale);
    return g.weight(`w${random.nextUint32()}`, dims, () => values);
  };
  const norm = (x: Value) => g.layerNorm(x, w([8], 0.5), w([8], 0.1), 1e-5);
  let h = g.add(g.input("x", "float32", ["batch", 5, 8]), w([5, 8])); // + position embedding
  for (let layer = 0; layer < 2; layer++) {
    h = g.add(h, g.matMul(norm(h), w([8, 8])));
    h = g.add(h, g.matMul(g.gelu(g.matMul(norm(h), w([8, 16]))), w([16, 8])));
  }
  const scale = w([8], 0.5);
  const bias = w([8], 0.1);
  let out: Value;
  if (decomposedNorm) {
    const mean = g.reduceMean(h, [-1]);
    const centred = g.sub(h, mean);
    const variance = g.reduceMean(g.mul(centred, centred), [-1]);
    const normalised = g.div(centred, g.op("Sqrt", [g.add(variance, g.float(1e-5))]));
    out = g.add(g.mul(normalised, scale), bias);
  } else out = g.layerNorm(h, scale, bias, 1e-5);
  g.output(out, "last_hidden_state", "float32");
  return decodeModel(buildModelBytes(g), "tiny encoder");
}
