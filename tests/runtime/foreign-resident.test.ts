// An onnxruntime runner fed a tensor another engine kept on its device (the kernels engine's,
// where one model of a pipeline fell back to onnxruntime): read back and used, not mistaken for
// onnxruntime's own tensor.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { createRunner } from "../../src/runtime/session.js";
import type { ResidentTensor } from "../../src/runtime/types.js";

describe("onnxruntime runner", () => {
  it("reads back a resident tensor of another engine before running", async () => {
    const g = new GraphBuilder("float32");
    const x = g.input("x", "float32", [3]);
    g.output(g.mul(x, g.float(2)), "y", "float32", [3]);
    const runner = await createRunner(buildModelBytes(g), { device: "cpu" });
    let reads = 0;
    const foreign: ResidentTensor = {
      type: "resident",
      dims: [3],
      handle: { engine: "kernels" },
      read: async () => {
        reads++;
        return Float32Array.of(1, -2, 3.5);
      },
      dispose() {},
    };
    try {
      const out = await runner.run({ x: foreign });
      expect(Array.from(out.y.data as Float32Array)).toEqual([2, -4, 7]);
      expect(reads).toBe(1);
    } finally {
      await runner.release();
    }
  });
});
