// Node attributes as the engine reads them, through a real encode/decode of a built node: an
// integer attribute of 0 (keepdims = 0) survives serialization, where its value field is left out.
import { describe, expect, it } from "vitest";
import { attributesOf } from "../../src/engine/attributes.js";
import { attr, GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { type AttributeProto, decodeModel, type NodeProto } from "../../src/onnx/proto.js";

const node = (attribute: AttributeProto[]): NodeProto => ({
  input: ["x"],
  output: ["y"],
  opType: "ReduceMax",
  attribute,
});

describe("attributesOf", () => {
  it("reads keepdims = 0 of a built, encoded and decoded ReduceMax as 0", () => {
    const g = new GraphBuilder("float32");
    const x = g.input("x", "float32", [2, 3]);
    const y = g.op("ReduceMax", [x], { axes: attr.ints([-1]), keepdims: attr.int(0) });
    g.output(y, "y", "float32", [2]);
    const decoded = decodeModel(buildModelBytes(g)).graph.node.find(
      (n) => n.opType === "ReduceMax",
    );
    expect(decoded).toBeDefined();
    const a = attributesOf(decoded as NodeProto);
    expect(a.int("keepdims", 1)).toBe(0);
    expect(a.ints("axes")).toEqual([-1]);
  });

  it("reads a present INT attribute without its value field as 0, not as the fallback", () => {
    const a = attributesOf(node([{ name: "keepdims", type: 2 }]));
    expect(a.int("keepdims", 1)).toBe(0);
  });

  it("reads a present FLOAT attribute without its value field as 0", () => {
    expect(attributesOf(node([{ name: "alpha", type: 1 }])).float("alpha", 0.5)).toBe(0);
  });

  it("falls back only when the attribute is absent", () => {
    const a = attributesOf(node([{ name: "axis", type: 2, i: -1 }]));
    expect(a.int("axis", 0)).toBe(-1);
    expect(a.int("keepdims", 1)).toBe(1);
    expect(a.float("epsilon", 1e-5)).toBe(1e-5);
    expect(a.string("mode", "nearest")).toBe("nearest");
    expect(a.ints("axes")).toBeUndefined();
  });
});
