// The node patterns the tuned GEMM absorbs (a Linear's bias Add, the GEGLU after it), found in
// graphs built with the same builder calls as the models, and the near misses it must leave alone.
import { describe, expect, it } from "vitest";
import { topologicalOrder } from "../../src/engine/executor.js";
import { convResidualFusions, groupNormFusions, linearFusions } from "../../src/engine/fusions.js";
import { decodeTensorProto } from "../../src/engine/host-tensor.js";
import { chooseOps, groupNorm, type LayerContext, resnetBlock } from "../../src/models/layers.js";
import { GraphBuilder, type Value } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel } from "../../src/onnx/proto.js";
import { WeightTracker } from "../../src/weights/source.js";
import { memoryWeights } from "../models/component-weights.js";

function fusionsOf(
  build: (g: GraphBuilder, x: Value) => void,
  dtype: "float32" | "float16" = "float32",
) {
  const g = new GraphBuilder(dtype);
  build(g, g.input("x", dtype, [2, 5, 12]));
  const model = decodeModel(buildModelBytes(g));
  const initializers = new Map(
    (model.graph.initializer ?? []).map((t) => [t.name ?? "", decodeTensorProto(t)]),
  );
  const order = topologicalOrder(model.graph);
  const fusions = linearFusions(order, model.graph, initializers, (n) =>
    n.input.filter((name) => name !== ""),
  );
  return [...fusions.values()].map((f) => ({
    add: f.add.opType,
    bias: f.bias.dims,
    gelu: f.gelu && { nodes: f.gelu.nodes.map((n) => n.opType), output: f.gelu.output },
    geglu: f.geglu && {
      axis: f.geglu.axis,
      sizes: f.geglu.sizes,
      nodes: f.geglu.nodes.map((n) => n.opType),
      output: f.geglu.output,
    },
    residual: f.residual && { add: f.residual.add.output[0], input: f.residual.input },
    channelsFirst: f.channelsFirst && {
      nodes: [f.channelsFirst.transpose, f.channelsFirst.reshape, f.channelsFirst.add].map(
        (n) => n.opType,
      ),
      add: f.channelsFirst.add.output[0],
      input: f.channelsFirst.input,
    },
  }));
}

const linear = (g: GraphBuilder, x: Value, n: number) =>
  g.add(
    g.matMul(
      x,
      g.weight(`w${n}`, [12, n], () => new Float32Array(12 * n)),
    ),
    g.weight(`b${n}`, [n], () => new Float32Array(n)),
  );

describe("linearFusions", () => {
  it("finds a Linear and the GEGLU after it, as the UNet's feed-forward builds them", () => {
    let product = "";
    const found = fusionsOf((g, x) => {
      const [hidden, gate] = g.split(linear(g, x, 16), [8, 8], -1);
      const y = g.mul(hidden, g.gelu(gate));
      product = y.name;
      g.output(y, "y", "float32");
    });
    expect(found).toEqual([
      {
        add: "Add",
        bias: [16],
        gelu: undefined,
        geglu: {
          axis: -1,
          sizes: [8, 8],
          nodes: ["Split", "Div", "Mul", "Erf", "Add", "Mul", "Mul"],
          output: product,
        },
      },
    ]);
  });

  it("finds the GEGLU in a float16 graph, whose constants (1 / sqrt 2's divisor) are f16", () => {
    const found = fusionsOf((g, x) => {
      const [hidden, gate] = g.split(linear(g, x, 16), [8, 8], -1);
      g.output(g.mul(hidden, g.gelu(gate)), "y", "float16");
    }, "float16");
    expect(found.map((f) => f.geglu?.nodes)).toEqual([
      ["Split", "Div", "Mul", "Erf", "Add", "Mul", "Mul"],
    ]);
  });

  it("finds a GELU after a Linear (a transformer MLP), and a Linear alone", () => {
    let gelu = "";
    expect(
      fusionsOf((g, x) => {
        const y = g.gelu(linear(g, x, 8));
        gelu = y.name;
        g.output(y, "y", "float32");
      }),
    ).toEqual([
      {
        add: "Add",
        bias: [8],
        gelu: { nodes: ["Div", "Mul", "Erf", "Add", "Mul"], output: gelu },
        geglu: undefined,
      },
    ]);
    // CLIP's quick GELU is not the epilogue's erf GELU: the Linear alone.
    expect(
      fusionsOf((g, x) => g.output(g.quickGelu(linear(g, x, 8)), "y", "float32")).map((f) => [
        f.gelu,
        f.geglu,
      ]),
    ).toEqual([[undefined, undefined]]);
  });

  it("leaves a Linear whose output is also read elsewhere, or added to a computed value", () => {
    // The product read twice (the Add and an output), or added to a computed value.
    expect(
      fusionsOf((g, x) => {
        const p = g.matMul(
          x,
          g.weight("w", [12, 8], () => new Float32Array(96)),
        );
        g.output(
          g.add(
            p,
            g.weight("b", [8], () => new Float32Array(8)),
          ),
          "y",
          "float32",
        );
        g.output(p, "p", "float32");
      }),
    ).toEqual([]);
    expect(
      fusionsOf((g, x) => {
        const p = g.matMul(
          x,
          g.weight("w", [12, 12], () => new Float32Array(144)),
        );
        g.output(g.add(p, x), "y", "float32");
      }),
    ).toEqual([]);
  });

  it("finds the residual Add after a Linear (x + Linear(h)) whose other operand is ready first", () => {
    let sum = "";
    expect(
      fusionsOf((g, x) => {
        const y = g.add(x, linear(g, x, 12));
        sum = y.name;
        g.output(y, "y", "float32");
      }).map((f) => f.residual),
    ).toEqual([{ add: sum, input: "x" }]);
    // Not with a GELU before it, nor where the other operand is a weight or computed after the
    // MatMul (it would not exist yet where the GEMM runs).
    expect(
      fusionsOf((g, x) => g.output(g.add(x, g.gelu(linear(g, x, 12))), "y", "float32")).map((f) => [
        Boolean(f.gelu),
        f.residual,
      ]),
    ).toEqual([[true, undefined]]);
    expect(
      fusionsOf((g, x) =>
        g.output(
          g.add(
            linear(g, x, 12),
            g.weight("r", [12], () => new Float32Array(12)),
          ),
          "y",
          "float32",
        ),
      ).map((f) => f.residual),
    ).toEqual([undefined]);
    expect(
      fusionsOf((g, x) => {
        const h = linear(g, x, 12);
        g.output(g.add(h, g.sigmoid(x)), "y", "float32");
      }).map((f) => f.residual),
    ).toEqual([undefined]);
  });

  it("finds a transformer's proj_out going back into its map and the map's residual Add", () => {
    // As spatialTransformer builds it: the map (B, C, H, W) as tokens, a Linear, the tokens
    // transposed and reshaped to the map's own shape, the map added.
    const transformer = (
      finish: (g: GraphBuilder, map: Value, tokens: Value) => void,
      perm = [0, 2, 1],
    ) =>
      fusionsOf((g) => {
        const map = g.input("map", "float32", [2, 12, 1, 5]);
        const tokens = g.transpose(g.reshape(map, [0, 0, -1]), [0, 2, 1]);
        const shape = g.shape(map);
        const out = g.reshape(g.transpose(linear(g, tokens, 12), perm), shape);
        finish(g, map, out);
      }).map((f) => f.channelsFirst);
    let sum = "";
    expect(
      transformer((g, map, out) => {
        const y = g.add(out, map);
        sum = y.name;
        g.output(y, "y", "float32");
      }),
    ).toEqual([{ nodes: ["Transpose", "Reshape", "Add"], add: sum, input: "map" }]);
    // Not where the map made of the tokens is also a graph output, the permutation is another,
    // or the value added or the Reshape's shape is computed after the MatMul.
    expect(
      transformer((g, map, out) => {
        g.output(g.add(out, map), "y", "float32");
        g.output(out, "out", "float32");
      }),
    ).toEqual([undefined]);
    expect(
      transformer((g, map, out) => g.output(g.add(out, map), "y", "float32"), [1, 0, 2]),
    ).toEqual([undefined]);
    expect(
      transformer((g, map, out) => g.output(g.add(out, g.sigmoid(map)), "y", "float32")),
    ).toEqual([undefined]);
    expect(
      fusionsOf((g) => {
        const map = g.input("map", "float32", [2, 12, 1, 5]);
        const tokens = g.transpose(g.reshape(map, [0, 0, -1]), [0, 2, 1]);
        const product = g.transpose(linear(g, tokens, 12), [0, 2, 1]);
        g.output(g.add(g.reshape(product, g.shape(map)), map), "y", "float32");
      }).map((f) => f.channelsFirst),
    ).toEqual([undefined]);
  });

  it("leaves the GEGLU apart where the gate or hidden half has another reader or the GELU differs", () => {
    const gegluOf = (build: (g: GraphBuilder, hidden: Value, gate: Value) => void) =>
      fusionsOf((g, x) => {
        const [hidden, gate] = g.split(linear(g, x, 16), [8, 8], -1);
        build(g, hidden, gate);
      }).map((f) => f.geglu);
    expect(
      gegluOf((g, hidden, gate) => {
        g.output(g.mul(hidden, g.gelu(gate)), "y", "float32");
        g.output(gate, "gate", "float32");
      }),
    ).toEqual([undefined]);
    expect(
      gegluOf((g, hidden, gate) => {
        g.output(g.mul(hidden, g.gelu(gate)), "y", "float32");
        g.output(g.add(hidden, hidden), "z", "float32");
      }),
    ).toEqual([undefined]);
    // CLIP's quick GELU is not the epilogue's erf GELU.
    expect(
      gegluOf((g, hidden, gate) => g.output(g.mul(hidden, g.quickGelu(gate)), "y", "float32")),
    ).toEqual([undefined]);
  });
});

describe("groupNormFusions", () => {
  /** The group norms found in a graph of `dtype` built by `build`, described. */
  function groupNormsOf(
    dtype: "float32" | "float16",
    build: (ctx: LayerContext, x: Value) => void,
  ) {
    const g = new GraphBuilder(dtype);
    const ctx: LayerContext = {
      g,
      weights: new WeightTracker(
        memoryWeights({
          "n.weight": { shape: [6], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
          "n.bias": { shape: [6], data: new Float32Array(6) },
          "m.weight": { shape: [6], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
          "m.bias": { shape: [6], data: new Float32Array(6) },
        }),
      ),
      ops: chooseOps("webgpu"),
    };
    build(ctx, g.castToFloat(g.input("x", "float32", ["b", 6, "h", "w"])));
    const model = decodeModel(buildModelBytes(g));
    const initializers = new Map(
      (model.graph.initializer ?? []).map((t) => [t.name ?? "", decodeTensorProto(t)]),
    );
    const found = groupNormFusions(topologicalOrder(model.graph), model.graph, initializers, (n) =>
      n.input.filter((name) => name !== ""),
    );
    return [...found.entries()].map(([node, f]) => ({
      first: node.opType,
      nodes: f.nodes.map((n) => n.opType),
      gamma: Array.from(f.gamma.data),
      epsilon: f.epsilon,
      silu: f.silu,
      shapeFromValue: "of" in f.shape,
      channelsLast: f.channelsLastReader?.kind,
    }));
  }

  for (const dtype of ["float32", "float16"] as const)
    it(`finds group norm with and without SiLU as the models build it (${dtype})`, () => {
      const found = groupNormsOf(dtype, (ctx, x) => {
        const spec = { channels: 6, groups: 3, eps: 1e-6 };
        const a = groupNorm(ctx, "n", x, { ...spec, silu: true });
        const b = groupNorm(ctx, "m", a, { ...spec, silu: false });
        ctx.g.output(b, "y", "float32");
      });
      const cast = dtype === "float16" ? ["Cast"] : [];
      const common = {
        first: "InstanceNormalization",
        gamma: [1, 2, 3, 4, 5, 6],
        epsilon: Math.fround(1e-6),
        shapeFromValue: true,
      };
      expect(found).toEqual([
        { ...common, nodes: ["Reshape", ...cast, "Mul", "Add", "Sigmoid", "Mul"], silu: true },
        { ...common, nodes: ["Reshape", ...cast, "Mul", "Add"], silu: false },
      ]);
    });

  it("marks the readers that take a channels-last result: a Conv, or a transformer's tokens", () => {
    const found = groupNormsOf("float32", (ctx, x) => {
      const { g } = ctx;
      const spec = { channels: 6, groups: 3, eps: 1e-6 };
      const w = g.weight("w", [2, 6, 1, 1], () => new Float32Array(12));
      // Read by a Conv alone; by a Reshape to (B, C, H W) and a Transpose; (below) by two readers.
      const a = groupNorm(ctx, "n", x, { ...spec, silu: true });
      g.output(g.op("Conv", [a, w]), "conv", "float32");
      const b = groupNorm(ctx, "m", x, { ...spec, silu: false });
      g.output(g.transpose(g.reshape(b, [0, 0, -1]), [0, 2, 1]), "tokens", "float32");
    });
    expect(found.map((f) => f.channelsLast)).toEqual(["conv", "tokens"]);
    const shared = groupNormsOf("float32", (ctx, x) => {
      const { g } = ctx;
      const w = g.weight("w", [2, 6, 1, 1], () => new Float32Array(12));
      const c = groupNorm(ctx, "n", x, { channels: 6, groups: 3, eps: 1e-6, silu: false });
      g.output(g.add(g.op("Conv", [c, w]), c), "both", "float32");
    });
    expect(shared.map((f) => f.channelsLast)).toEqual([undefined]);
  });

  it("leaves alone a SiLU whose input is read elsewhere, and instance norms with a scale", () => {
    const found = groupNormsOf("float32", (ctx, x) => {
      const y = groupNorm(ctx, "n", x, { channels: 6, groups: 3, eps: 1e-5, silu: false });
      // y * Sigmoid(y) plus a residual read of y: SiLU is not fused, the affine still is.
      ctx.g.output(ctx.g.add(ctx.g.silu(y), y), "y", "float32");
      const scaled = ctx.g.op("InstanceNormalization", [
        ctx.g.reshape(x, [0, 3, -1]),
        ctx.g.float([1, 2, 3], [3]),
        ctx.g.float([0, 0, 0], [3]),
      ]);
      ctx.g.output(scaled, "z", "float32");
    });
    expect(found).toEqual([
      {
        first: "InstanceNormalization",
        nodes: ["Reshape", "Mul", "Add"],
        gamma: [1, 2, 3, 4, 5, 6],
        epsilon: Math.fround(1e-5),
        silu: false,
        shapeFromValue: true,
      },
    ]);
  });
});

describe("convResidualFusions", () => {
  it("finds each resnet's conv2 and its shortcut, identity or convolved, and leaves the other convolutions", () => {
    const shapes: Record<string, readonly number[]> = {};
    for (const [key, cin, cout] of [
      ["a", 4, 4],
      ["b", 4, 8],
    ] as const) {
      shapes[`${key}.norm1.weight`] = [cin];
      shapes[`${key}.norm1.bias`] = [cin];
      shapes[`${key}.conv1.weight`] = [cout, cin, 3, 3];
      shapes[`${key}.conv1.bias`] = [cout];
      shapes[`${key}.norm2.weight`] = [cout];
      shapes[`${key}.norm2.bias`] = [cout];
      shapes[`${key}.conv2.weight`] = [cout, cout, 3, 3];
      shapes[`${key}.conv2.bias`] = [cout];
      if (cin !== cout) {
        shapes[`${key}.conv_shortcut.weight`] = [cout, cin, 1, 1];
        shapes[`${key}.conv_shortcut.bias`] = [cout];
      }
    }
    const g = new GraphBuilder("float32");
    const ctx: LayerContext = {
      g,
      weights: new WeightTracker(
        memoryWeights(
          Object.fromEntries(
            Object.entries(shapes).map(([key, shape]) => [
              key,
              { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1) },
            ]),
          ),
        ),
      ),
      ops: chooseOps("webgpu"),
    };
    const x = g.input("x", "float32", [1, 4, 6, 6]);
    const a = resnetBlock(ctx, "a", x, undefined, {
      inChannels: 4,
      outChannels: 4,
      groups: 2,
      eps: 1e-6,
    });
    const b = resnetBlock(ctx, "b", a, undefined, {
      inChannels: 4,
      outChannels: 8,
      groups: 2,
      eps: 1e-6,
    });
    g.output(b, "y", "float32");
    const model = decodeModel(buildModelBytes(g));
    const initializers = new Map(
      (model.graph.initializer ?? []).map((t) => [t.name ?? "", decodeTensorProto(t)]),
    );
    const order = topologicalOrder(model.graph);
    const found = convResidualFusions(order, model.graph, initializers, (n) =>
      n.input.filter((name) => name !== ""),
    );
    const convs = order.filter((n) => n.opType === "Conv");
    const shortcut = convs.find((n) => n.input[1].includes("conv_shortcut"));
    expect(convs).toHaveLength(5);
    expect(
      [...found.entries()].map(([conv, f]) => ({
        conv: conv.input[1],
        add: f.add.opType,
        input: f.input,
        output: f.add.output[0],
      })),
    ).toEqual([
      { conv: "a.conv2.weight", add: "Add", input: "x", output: a.name },
      {
        conv: "b.conv2.weight",
        add: "Add",
        input: shortcut?.output[0],
        output: b.name,
      },
    ]);
  });
});
