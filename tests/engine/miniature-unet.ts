// A miniature of the UNet's host work, for the engine's walk tests: a timestep feed whose
// embedding (sin) is made on the host and uploaded, a MatMul on the device, and an If on the
// timestep (as the reduction thresholds' stop/switch) that picks one of two device branches.
import { GraphBuilder, type Value } from "../../src/onnx/builder.js";
import { buildModelProto } from "../../src/onnx/model-io.js";
import type { ModelProto } from "../../src/onnx/proto.js";
import { ifElse } from "../../src/reduce/graph-helpers.js";

/** The miniature's x (and output z) dims. */
export const MINIATURE_DIMS = [2, 3, 4, 4];

/** The miniature's 4 x 4 MatMul weights (row-major). */
export const MINIATURE_WEIGHTS = Array.from({ length: 16 }, (_, i) => ((i * 7) % 5) / 4 - 0.5);

/** The miniature: inputs x (MINIATURE_DIMS) and t ([1]), output z; `last` wraps z at the end. */
export function miniatureUnet(last?: (g: GraphBuilder, z: Value) => Value): ModelProto {
  const g = new GraphBuilder("float32");
  const x = g.input("x", "float32", MINIATURE_DIMS);
  const t = g.input("t", "float32", [1]);
  const embedding = g.mul(g.op("Sin", [g.mul(t, g.float(0.01))]), g.float(3));
  // The MatMul runs on the device, so what follows it does too.
  const y = g.add(g.matMul(x, g.float(MINIATURE_WEIGHTS, [4, 4])), embedding);
  const late = g.op("Greater", [t, g.float(500)]);
  const [z] = ifElse(
    g,
    late,
    "stop",
    ["float32"],
    (b) => [b.mul(b.op("Sigmoid", [y]), b.float(3))],
    (b) => [b.sub(b.transpose(y, [0, 1, 3, 2]), b.float(1))],
  );
  g.output(last ? last(g, z) : z, "z", "float32", MINIATURE_DIMS);
  return buildModelProto(g);
}
