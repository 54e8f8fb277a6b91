// The attention rules one by one: what each matches (counts), what its check accepts, the ops
// its rewrite adds, negative cases (count 0, refusals) and numerical equality on onnxruntime.
import { describe, expect, it } from "vitest";
import { encodeModel, type ModelProto } from "../../src/onnx/proto.js";
import { ATTENTION_RULES, applyRules, findSelfAttention } from "../../src/patch/apply-rules.js";
import { checkSelfAttention } from "../../src/patch/attention.js";
import { GraphIndex } from "../../src/patch/graph-index.js";
import { classicAttentionRule } from "../../src/patch/rules/classic-attention.js";
import { fusedAttentionRule } from "../../src/patch/rules/fused-attention.js";
import { sdpaAttentionRule } from "../../src/patch/rules/sdpa-attention.js";
import { unetSignature } from "../../src/patch/unet-levels.js";
import {
  parseReductionOptions,
  type ReductionSettings,
  resolveReduction,
} from "../../src/reduce/options.js";
import { createSession, float32Tensor, type OrtTensor } from "../../src/runtime/session.js";
import { SeededRandom } from "../../src/util/random.js";
import { maxAbsDiff } from "../fixtures.js";
import { allNodes, builtUnet, opCounts, readExport, runSession } from "./helpers.js";
import { type MiniPattern, miniUnet } from "./mini-unet.js";

function settings(input: Parameters<typeof parseReductionOptions>[0]): ReductionSettings {
  return resolveReduction(parseReductionOptions({ factor: 2, ...input }), { architecture: "sd1" });
}

const nearest2 = settings({ mode: "nearest", factor: 2, factorLevel2: 2 });

/** Matches and accepted (self-attention) matches of one rule. */
function counts(model: ModelProto, rule: typeof sdpaAttentionRule) {
  const graph = new GraphIndex(model.graph);
  const matches = rule.match(graph);
  const accepted = matches.filter((m) => rule.check(graph, m) === true);
  return { matched: matches.length, selfAttention: accepted.length };
}

describe("rule counts on real exports", () => {
  it("sdpa-attention finds the SD 1.5 exports' 16 self- and 16 cross-attentions", () => {
    for (const file of ["onnx/sd15-tiny/unet/model.onnx", "onnx/sd15-tiny-unet-sdpa/model.onnx"]) {
      const model = readExport(file);
      expect(counts(model, sdpaAttentionRule)).toEqual({ matched: 32, selfAttention: 16 });
      expect(counts(model, classicAttentionRule)).toEqual({ matched: 0, selfAttention: 0 });
      expect(counts(model, fusedAttentionRule)).toEqual({ matched: 0, selfAttention: 0 });
    }
  });

  it("the two SD 1.5 exports hold the same graph (one with external weights)", () => {
    const strip = (m: ModelProto) =>
      m.graph.node.map((n) => `${n.opType}(${n.input.join(",")})->${n.output.join(",")}`);
    expect(strip(readExport("onnx/sd15-tiny/unet/model.onnx"))).toEqual(
      strip(readExport("onnx/sd15-tiny-unet-sdpa/model.onnx")),
    );
  });

  it("classic-attention finds the SDXL export's 22 self- and 22 cross-attentions", () => {
    const model = readExport("onnx/sdxl-tiny-unet/model.onnx");
    expect(counts(model, classicAttentionRule)).toEqual({ matched: 44, selfAttention: 22 });
    expect(counts(model, sdpaAttentionRule)).toEqual({ matched: 0, selfAttention: 0 });
  });

  it("fused-multi-head-attention finds this project's fused UNet attention", () => {
    expect(counts(builtUnet("sd15-tiny"), fusedAttentionRule)).toEqual({
      matched: 32,
      selfAttention: 16,
    });
    expect(counts(builtUnet("sd15-tiny"), sdpaAttentionRule).matched).toBe(0);
  });

  it("says why cross-attention is left alone", () => {
    const model = readExport("onnx/sd15-tiny/unet/model.onnx");
    const graph = new GraphIndex(model.graph);
    const verdicts = sdpaAttentionRule.match(graph).map((m) => checkSelfAttention(graph, m));
    expect(verdicts.filter((v) => v !== true)).toEqual(
      Array(16).fill('cross-attention (keys and values come from input "encoder_hidden_states")'),
    );
  });
});

describe.each<[MiniPattern, string]>([
  ["classic", "classic-attention"],
  ["sdpa", "sdpa-attention"],
  ["mha", "fused-multi-head-attention"],
])("rule for the %s pattern on a small UNet-shaped graph", (pattern, ruleName) => {
  it("matches its three self-attentions, at levels 1, 2 and 1", () => {
    const model = miniUnet({ pattern });
    const graph = new GraphIndex(model.graph);
    const found = findSelfAttention(graph, ATTENTION_RULES, unetSignature(model.graph, "mini"));
    expect(found.skipped).toEqual([]);
    expect(found.accepted.map((a) => [a.rule.name, a.level])).toEqual([
      [ruleName, 1],
      [ruleName, 2],
      [ruleName, 1],
    ]);
  });

  it("counts 0 when every attention is cross-attention, and the patch refuses", () => {
    const model = miniUnet({ pattern, cross: true });
    const rule = ATTENTION_RULES.find((r) => r.name === ruleName)!;
    expect(counts(model, rule)).toEqual({ matched: 3, selfAttention: 0 });
    const before = encodeModel(model);
    expect(() => applyRules(model, ATTENTION_RULES, nearest2, "cross.onnx")).toThrow(
      /^no self-attention blocks recognised in cross\.onnx: 3 blocks: cross-attention/,
    );
    expect(Buffer.from(encodeModel(model)).equals(before)).toBe(true); // refused, untouched
  });

  it.each<[string, ReductionSettings]>([
    ["nearest 2 at levels 1 and 2", nearest2],
    ["bilinear 2, stop at 0.8", settings({ mode: "bilinear", stopThreshold: 0.8 })],
    ["ToDo switching to ToMe at 0.8", settings({ mode: "avg", switchThreshold: 0.8 })],
    ["all tokens, nearest-exact 2", settings({ mode: "nearest-exact", target: "all" })],
  ])("patched equals the same graph built with %s", async (_label, reduction) => {
    const patched = miniUnet({ pattern });
    const { report } = applyRules(patched, ATTENTION_RULES, reduction, "mini");
    expect(report.byRule).toEqual({
      [ruleName]: Object.values(report.byLevel).reduce((a, b) => a + b),
    });
    const reference = miniUnet({ pattern, reduction });
    for (const [height, width, t] of [
      [8, 12, 900],
      [12, 8, 500],
    ]) {
      const feeds = miniFeeds(height, width, t);
      const [a, b] = await Promise.all([run(patched, feeds), run(reference, feeds)]);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
    }
  });
});

describe("what the rewrite adds", () => {
  it("nearest on a run-time grid: one strided Slice per block, switched by its step, no If", () => {
    const model = miniUnet({ pattern: "sdpa" });
    const before = opCounts(model.graph);
    applyRules(model, ATTENTION_RULES, settings({ mode: "nearest" }), "mini");
    const after = opCounts(model.graph);
    expect(after.Slice - (before.Slice ?? 0)).toBe(2);
    const slices = allNodes(model.graph).filter((n) => n.opType === "Slice");
    expect(slices.filter((n) => n.input.length === 5)).toHaveLength(2); // starts, ends, axes, steps
    expect(after.If ?? 0).toBe(0);
    // Queries and the attention core are untouched: the same Softmax and MatMul count.
    expect(after.Softmax).toBe(before.Softmax);
    expect(after.MatMul).toBe(before.MatMul);
  });

  it("avg on a fixed grid: no divisibility test, one If per block for the stop threshold", () => {
    const model = miniUnet({ pattern: "sdpa", staticSize: { height: 8, width: 8 } });
    const before = opCounts(model.graph);
    const { report } = applyRules(model, ATTENTION_RULES, settings({ mode: "avg" }), "mini");
    expect(report.byLevel).toEqual({ 1: 2 });
    const after = opCounts(model.graph);
    // The only Ifs are the reference's "no reduction once t/1000 <= 0" test, one per block.
    const ifs = model.graph.node.filter((n) => n.opType === "If");
    expect(ifs).toHaveLength(2);
    expect(after.If).toBe(2);
    expect(after.Resize).toBe(before.Resize);
  });

  it("a stop threshold puts the reduction inside an If on the timestep", () => {
    const model = miniUnet({ pattern: "mha", staticSize: { height: 8, width: 8 } });
    applyRules(model, ATTENTION_RULES, settings({ mode: "bilinear", stopThreshold: 0.5 }), "m");
    const ifs = model.graph.node.filter((n) => n.opType === "If");
    expect(ifs).toHaveLength(2);
    const condition = model.graph.node.find((n) => n.output[0] === ifs[0].input[0]);
    expect(condition?.opType).toBe("Greater");
    expect(ifs.every((n) => n.input[0] === ifs[0].input[0])).toBe(true); // one test per model
  });

  it("rewires only the key and value projections for --merge-target kv", () => {
    const model = miniUnet({ pattern: "mha", names: true });
    const graph = new GraphIndex(model.graph);
    const match = fusedAttentionRule.match(graph)[0];
    if (typeof match.traced === "string") throw new Error(match.traced);
    const { query, key, value } = match.traced;
    applyRules(model, ATTENTION_RULES, settings({ mode: "nearest" }), "mini");
    expect(query.node.input[0]).toBe(query.tokens);
    expect(key.node.input[0]).not.toBe(key.tokens);
    expect(value.node.input[0]).toBe(key.node.input[0]);
  });
});

describe("refusals", () => {
  it("refuses a static-shape export whose reshapes fix the key length", () => {
    const model = miniUnet({ pattern: "static", staticSize: { height: 8, width: 8 } });
    expect(() => applyRules(model, ATTENTION_RULES, nearest2, "static.onnx")).toThrow(
      /no self-attention blocks recognised in static\.onnx: 3 blocks: Reshape .* fixes the key\/value length/,
    );
  });

  it("refuses settings that reduce none of the levels holding self-attention", () => {
    const model = miniUnet({ pattern: "sdpa" });
    const level3Only = settings({ factor: 1, factorLevel2: 1 });
    expect(() => applyRules(model, ATTENTION_RULES, level3Only, "mini")).toThrow(
      /^the settings reduce nothing in mini: its self-attention sits at levels 1, 2 and token reduction off/,
    );
  });

  it("refuses a model that already has token reduction", () => {
    const model = miniUnet({ pattern: "sdpa" });
    applyRules(model, ATTENTION_RULES, nearest2, "mini");
    expect(() => applyRules(model, ATTENTION_RULES, nearest2, "mini")).toThrow(
      /^mini already has token reduction \(ToDo nearest factor 2/,
    );
  });

  it("refuses a model that is not a UNet", () => {
    const vae = readExport("onnx/sd15-tiny/vae_decoder/model.onnx");
    expect(() => applyRules(vae, ATTENTION_RULES, nearest2, "vae_decoder")).toThrow(
      /^vae_decoder is not a UNet: it needs a 4-D sample input and a timestep input \(its inputs: latent_sample\)$/,
    );
  });
});

function miniFeeds(height: number, width: number, t: number): Record<string, OrtTensor> {
  const random = new SeededRandom(height * 100 + width);
  return {
    sample: float32Tensor(random.normalArray(2 * 4 * height * width), [2, 4, height, width]),
    timestep: float32Tensor(new Float32Array([t, t]), [2]),
    encoder_hidden_states: float32Tensor(random.normalArray(2 * 3 * 6), [2, 3, 6]),
  };
}

async function run(model: ModelProto, feeds: Record<string, OrtTensor>): Promise<Float32Array> {
  const session = await createSession(encodeModel(model));
  try {
    return await runSession(session, feeds);
  } finally {
    await session.release();
  }
}
