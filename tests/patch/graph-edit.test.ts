// Splicing builder fragments into decoded models: name collisions, order, pruning, outputs and
// opset differences.
import { describe, expect, it } from "vitest";
import { attr, GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel, encodeModel, type ModelProto } from "../../src/onnx/proto.js";
import { GraphEdit } from "../../src/patch/graph-edit.js";
import { GraphIndex, tensorNumbers, topologicalSort } from "../../src/patch/graph-index.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";

/** y = (x + 1) * 3, with value names a fragment made by the builder would also pick. */
function smallModel(opset = 17): ModelProto {
  const g = new GraphBuilder();
  const x = g.input("x", "float32", [2, 3]);
  const added = g.add(x, g.float(1)); // named "Add"
  g.output(g.mul(added, g.float(3)), "y", "float32", [2, 3]); // "Mul"
  return decodeModel(buildModelBytes(g, { opset }), "small");
}

async function run(model: ModelProto, x: Float32Array) {
  const session = await createSession(encodeModel(model));
  try {
    return await runFloat32(session, { x: float32Tensor(x, [2, 3]) });
  } finally {
    await session.release();
  }
}

const input = Float32Array.from([1, 2, 3, 4, 5, 6]);

describe("GraphEdit", () => {
  it("renames fragment values that collide with the model's and rewires a node to them", async () => {
    const model = smallModel();
    const edit = new GraphEdit(model);
    const g = edit.builder;
    const mul = edit.graph.nodes.find((n) => n.opType === "Mul")!;
    const addOut = mul.input[0];
    // A fragment whose own nodes are named Add and Mul too: (Add * 2) replaces Mul's input.
    const doubled = g.mul(edit.external(addOut), g.float(2));
    expect(doubled.name).toBe("Mul");
    edit.rewireInput(mul, 0, doubled);
    edit.commit();
    const names = model.graph.node.flatMap((n) => n.output);
    expect(new Set(names).size).toBe(names.length);
    const { y } = await run(model, input);
    expect([...y.data]).toEqual([...input].map((v) => (v + 1) * 2 * 3));
  });

  it("sorts appended nodes before the nodes that now read them", () => {
    const model = smallModel();
    const edit = new GraphEdit(model);
    const add = edit.graph.nodes.find((n) => n.opType === "Add")!;
    const negated = edit.builder.op("Neg", [edit.external("x")]);
    edit.rewireInput(add, 0, negated);
    edit.commit();
    const order = model.graph.node.map((n) => n.opType);
    expect(order.indexOf("Neg")).toBeLessThan(order.indexOf("Add"));
  });

  it("adds, replaces and removes outputs; computation nothing reads is pruned", async () => {
    const model = smallModel();
    const edit = new GraphEdit(model);
    const add = edit.graph.nodes.find((n) => n.opType === "Add")!;
    edit.addOutput(edit.external(add.output[0]), "plus_one", "float32", [2, 3]);
    edit.replaceOutput("y", edit.builder.op("Neg", [edit.external("x")]), "float32", [2, 3]);
    edit.commit();
    expect(model.graph.output.map((o) => o.name)).toEqual(["y", "plus_one"]);
    expect(model.graph.node.some((n) => n.opType === "Mul")).toBe(false);
    const out = await run(model, input);
    expect([...out.y.data]).toEqual([...input].map((v) => -v));
    expect([...out.plus_one.data]).toEqual([...input].map((v) => v + 1));

    const removing = new GraphEdit(model);
    removing.removeOutput("plus_one");
    removing.commit();
    expect(model.graph.output.map((o) => o.name)).toEqual(["y"]);
    expect(model.graph.node.map((n) => n.opType)).toEqual(["Neg", "Identity"]);
    expect(model.graph.initializer).toEqual([]);
  });

  it("moves Reduce axes to an input in opset 18 models", async () => {
    const model = smallModel(18);
    const edit = new GraphEdit(model);
    const max = edit.builder.op("ReduceMax", [edit.external("x")], {
      axes: attr.ints([1]),
      keepdims: attr.int(0),
    });
    edit.addOutput(max, "row_max", "float32", [2]);
    edit.commit();
    const reduce = model.graph.node.find((n) => n.opType === "ReduceMax")!;
    expect(reduce.attribute?.map((a) => a.name)).toEqual(["keepdims"]);
    expect(reduce.input).toHaveLength(2);
    expect((await run(model, input)).row_max.data).toEqual(Float32Array.from([3, 6]));
  });

  it("refuses to add to models older than opset 13, leaving them as they were", () => {
    const model = smallModel(12);
    const before = encodeModel(model);
    const edit = new GraphEdit(model);
    edit.addOutput(edit.builder.unsqueeze(edit.external("x"), [0]), "wide", "float32");
    expect(() => edit.commit()).toThrow(
      "the model uses ONNX opset 12; adding to it needs opset 13 or newer (re-export it with a newer opset)",
    );
    expect(encodeModel(model)).toEqual(before);
  });

  it("refuses to redirect a graph output and to commit twice", () => {
    const model = smallModel();
    const edit = new GraphEdit(model);
    expect(() => edit.replaceUses("y", { name: "x" })).toThrow(/"y": it is a graph output/);
    edit.commit();
    expect(() => edit.commit()).toThrow(/already committed/);
  });
});

describe("GraphIndex", () => {
  it("tells parameters (constants, shapes) from computed tensors", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", ["n", 4]);
    const scale = g.op("Sqrt", [g.cast(g.shape(x, 1, 2), "float32")]);
    const scaled = g.mul(x, scale);
    g.output(scaled, "y", "float32");
    const index = new GraphIndex(decodeModel(buildModelBytes(g)).graph);
    expect(index.isParameter(scale.name)).toBe(true);
    expect(index.isParameter(x.name)).toBe(false);
    expect(index.isParameter(scaled.name)).toBe(false);
  });

  it("reads constants from initializers and Constant nodes", () => {
    expect(tensorNumbers({ dims: [2], dataType: 7, int64Data: [3, -1] })).toEqual([3, -1]);
    const raw = new Uint8Array(new Float32Array([0.5, 2]).buffer);
    expect(tensorNumbers({ dims: [2], dataType: 1, rawData: raw })).toEqual([0.5, 2]);
    const half = new Uint8Array(new Uint16Array([0x3c00]).buffer); // 1.0 in float16
    expect(tensorNumbers({ dims: [1], dataType: 10, rawData: half })).toEqual([1]);
  });

  it("detects cycles when sorting", () => {
    const a = { opType: "Neg", input: ["b"], output: ["a"], name: "a" };
    const b = { opType: "Neg", input: ["a"], output: ["b"], name: "b" };
    expect(() => topologicalSort([a, b], new Set())).toThrow(/cycle/);
  });
});
