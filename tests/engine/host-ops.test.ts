// Host operators the engine evaluates itself, against the ONNX definitions written out directly.
import { describe, expect, it } from "vitest";
import { gatherNd } from "../../src/engine/host-ops.js";
import { hostTensor } from "../../src/engine/host-tensor.js";

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
