// Host operators the engine evaluates itself, against the ONNX definitions written out directly.
import { describe, expect, it } from "vitest";
import { attributesOf } from "../../src/engine/attributes.js";
import { gatherNd, runHostOp } from "../../src/engine/host-ops.js";
import { decodeTensorProto, type HostTensor, hostTensor } from "../../src/engine/host-tensor.js";
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

describe("decodeTensorProto", () => {
  it("keeps a float16 initializer's bits and widens them only when its values are read", () => {
    // 1, -2, 0.5 and the smallest subnormal, as float16 bits, at an odd byte offset.
    const bits = [0x3c00, 0xc000, 0x3800, 0x0001];
    const bytes = new Uint8Array(1 + 2 * bits.length);
    bits.forEach((b, i) => {
      bytes[1 + 2 * i] = b & 0xff;
      bytes[2 + 2 * i] = b >> 8;
    });
    const t = decodeTensorProto({
      name: "w",
      dims: [2, 2],
      dataType: 10,
      rawData: bytes.subarray(1),
    });
    expect(Array.from(t.float16Bits ?? [])).toEqual(bits);
    expect(t.dtype).toBe("float32");
    expect(Array.from(t.data)).toEqual([1, -2, 0.5, 2 ** -24]);
    expect(t.data).toBe(t.data); // widened once
  });

  it("views float32 bytes as they are, aligned or not, in a Node Buffer as decoding gives them", () => {
    const values = Float32Array.from([1.5, -3, 1e-30]);
    for (const offset of [0, 3]) {
      // A Buffer's slice is a view of its pool: the unaligned copy must not go through it.
      const bytes = Buffer.alloc(offset + values.byteLength);
      bytes.set(new Uint8Array(values.buffer), offset);
      const rawData = bytes.subarray(offset);
      const t = decodeTensorProto({ name: "b", dims: [3], dataType: 1, rawData });
      expect(t.data, `offset ${offset}`).toEqual(values);
    }
  });
});
