// Spatial levels of exported UNets, found from the graph's structure, and the UNet inputs.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel } from "../../src/onnx/proto.js";
import { ATTENTION_RULES, findSelfAttention } from "../../src/patch/apply-rules.js";
import { GraphIndex } from "../../src/patch/graph-index.js";
import {
  countDownBlocks,
  levelFromName,
  modulePath,
  spatialLevels,
  unetSignature,
} from "../../src/patch/unet-levels.js";
import { builtUnet, readExport } from "./helpers.js";

function levelsByBlock(file: string) {
  const model = readExport(file);
  const graph = new GraphIndex(model.graph);
  const signature = unetSignature(model.graph, file);
  const structural = spatialLevels(graph, signature.sample);
  const downBlocks = countDownBlocks(graph);
  const out: Record<string, [number | undefined, number | undefined]> = {};
  for (const block of findSelfAttention(graph, ATTENTION_RULES, signature).accepted) {
    if (typeof block.match.traced === "string") continue;
    const byStructure = structural.get(block.match.traced.query.tokens);
    const key = block.name.replace(/\.transformer_blocks\.\d+\.attn1$/, "");
    out[key] = [byStructure, levelFromName(block.name, downBlocks)];
  }
  return out;
}

describe("spatial levels", () => {
  it("follow the structure of the SD 1.5 export, and agree with its module names", () => {
    const found = levelsByBlock("onnx/sd15-tiny/unet/model.onnx");
    const expected: Record<string, number> = {
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
    };
    expect(found).toEqual(
      Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, [v, v]])),
    );
  });

  it("put SDXL's first attention at level 2 (its module names start with u.)", () => {
    const found = levelsByBlock("onnx/sdxl-tiny-unet/model.onnx");
    expect(found["down_blocks.1.attentions.0"]).toEqual([2, 2]);
    expect(found["down_blocks.2.attentions.1"]).toEqual([3, 3]);
    expect(found["mid_block.attentions.0"]).toEqual([3, 3]);
    expect(found["up_blocks.0.attentions.2"]).toEqual([3, 3]);
    expect(found["up_blocks.1.attentions.0"]).toEqual([2, 2]);
    expect(Object.values(found).every(([s, n]) => s === n)).toBe(true);
  });

  it("need no names: this project's UNet has none and gets the same levels", () => {
    const model = builtUnet("sd15-tiny");
    const graph = new GraphIndex(model.graph);
    const signature = unetSignature(model.graph, "built");
    expect(countDownBlocks(graph)).toBe(0);
    const levels = findSelfAttention(graph, ATTENTION_RULES, signature).accepted.map(
      (a) => a.level,
    );
    expect(levels).toEqual([1, 1, 2, 2, 3, 3, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1]);
  });

  it("mark values whose inputs come from different levels as conflicts", () => {
    const g = new GraphBuilder();
    const sample = g.input("sample", "float32", [1, 1, 4, 4]);
    g.input("timestep", "float32", [1]);
    const w = g.float(Array(9).fill(1), [1, 1, 3, 3]);
    const half = g.op("Conv", [sample, w], {});
    const strided = g.conv(sample, w, undefined, { kernel: 3, stride: 2, padding: 1 });
    const mixed = g.add(half, strided);
    g.output(mixed, "out", "float32");
    const model = decodeModel(buildModelBytes(g));
    const levels = spatialLevels(new GraphIndex(model.graph), "sample");
    expect(levels.get(half.name)).toBe(1);
    expect(levels.get(strided.name)).toBe(2);
    expect(levels.get(mixed.name)).toBe(-1);
  });

  it("read diffusers module paths from node names", () => {
    expect(modulePath("/u/down_blocks.1/attentions.0/transformer_blocks.1/attn1/to_k/MatMul")).toBe(
      "down_blocks.1.attentions.0.transformer_blocks.1.attn1",
    );
    expect(modulePath("MatMul_12")).toBeUndefined();
    expect(levelFromName("/mid_block/attentions.0/transformer_blocks.0/attn1/Softmax", 4)).toBe(4);
    expect(levelFromName("/up_blocks.3/attentions.0/x", 4)).toBe(1);
    expect(levelFromName("/mid_block/attentions.0/x", 0)).toBeUndefined();
  });
});

describe("UNet inputs", () => {
  it("finds sample and timestep, and notes SDXL's text_time conditioning", () => {
    const sdxl = readExport("onnx/sdxl-tiny-unet/model.onnx");
    expect(unetSignature(sdxl.graph, "sdxl")).toEqual({
      sample: "sample",
      timestep: "timestep",
      textTime: true,
      staticSize: undefined,
    });
  });

  it("explains what is missing from a model that is not a UNet", () => {
    const text = readExport("onnx/sd15-tiny/text_encoder/model.onnx");
    expect(() => unetSignature(text.graph, "text_encoder/model.onnx")).toThrow(
      "text_encoder/model.onnx is not a UNet: it needs a 4-D sample input and a timestep input (its inputs: input_ids)",
    );
  });
});
