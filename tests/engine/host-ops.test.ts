// Host operators the engine evaluates itself, against the ONNX definitions written out directly.
import { describe, expect, it } from "vitest";
import { attributesOf } from "../../src/engine/attributes.js";
import { gatherNd, runHostOp } from "../../src/engine/host-ops.js";
import { type HostTensor, hostTensor } from "../../src/engine/host-tensor.js";
import type { NodeProto } from "../../src/onnx/proto.js";

describe("GatherND", () => {
  const x = hostTensor(
    "float32",
    Array.from({ length: 24 }, (_, i) => i),
    [2, 3, 4],
  );
  const at = (b: number, r: number, c: number) => (b * 3 + r) * 4 + c;

  it("picks one row per batch entry with batch_dims 1 (the text encoder's pooled token)", () => {
    const out = gatherNd(x, hostTensor("int64", [1, -1], [2, 1]), 1);
    expect(out.dims).toEqual([2, 4]);
    const expected = [0, 1, 2, 3]
      .map((c) => at(0, 1, c))
      .concat([0, 1, 2, 3].map((c) => at(1, 2, c)));
    expect(Array.from(out.data)).toEqual(expected);
  });

  it("addresses single elements with full tuples and batch_dims 0", () => {
    const out = gatherNd(x, hostTensor("int64", [1, 2, 3, 0, 0, 1], [2, 3]), 0);
    expect(out.dims).toEqual([2]);
    expect(Array.from(out.data)).toEqual([at(1, 2, 3), at(0, 0, 1)]);
  });

  it("refuses an index out of range in one line", () => {
    expect(() => gatherNd(x, hostTensor("int64", [3, 0], [2, 1]), 1)).toThrow(
      /^GatherND: index 3 out of range for axis of 3$/,
    );
  });
});

describe("Cast", () => {
  const cast = (to: number, x: HostTensor) => {
    const node: NodeProto = {
      input: ["x"],
      output: ["y"],
      opType: "Cast",
      attribute: [{ name: "to", type: 2, i: to }],
    };
    const out = runHostOp(node, [x], attributesOf(node));
    if (!out) throw new Error("Cast has no host implementation");
    return out[0];
  };
  const x = hostTensor("float32", [1.5, -2.75, 0, 3e5], [2, 2]);

  it("copies floats into a new array of the target type, leaving the input as it was", () => {
    const y = cast(11, x);
    expect(y.dtype).toBe("float64");
    expect(y.data).toBeInstanceOf(Float64Array);
    expect(Array.from(y.data)).toEqual([1.5, -2.75, 0, 3e5]);
    const z = cast(1, x);
    expect(z.data).not.toBe(x.data);
    expect(z.dims).toEqual([2, 2]);
    expect(Array.from(z.data)).toEqual(Array.from(x.data));
  });

  it("truncates toward zero for integers and maps non-zero to 1 for bool", () => {
    expect(Array.from(cast(7, x).data)).toEqual([1, -2, 0, 3e5]);
    expect(Array.from(cast(9, x).data)).toEqual([1, 1, 0, 1]);
  });

  it("refuses a target type it lacks in one line", () => {
    expect(() => cast(3, x)).toThrow(
      /^Cast to ONNX type 3 is not supported by the kernels engine yet; use --engine onnxruntime$/,
    );
  });
});
