import { describe, expect, it } from "vitest";
import {
  type AttentionOp,
  attention,
  chooseOps,
  groupNorm,
  type LayerContext,
  linear,
  nearestResize,
  OP_CHOICES,
  transposeMatrix,
} from "../../src/models/layers.js";
import { GraphBuilder, MS_DOMAIN, type Value } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";
import { SeededRandom } from "../../src/util/random.js";
import { WeightTracker } from "../../src/weights/source.js";
import { maxAbsDiff } from "../fixtures.js";
import { memoryWeights } from "./component-weights.js";

const random = new SeededRandom(7);
function randn(n: number): Float32Array {
  return random.normalArray(n);
}

async function evaluate(
  g: GraphBuilder,
  feeds: Record<string, { data: Float32Array; dims: number[] }>,
) {
  const session = await createSession(buildModelBytes(g));
  const tensors = Object.fromEntries(
    Object.entries(feeds).map(([k, v]) => [k, float32Tensor(v.data, v.dims)]),
  );
  return runFloat32(session, tensors);
}

describe("operator choice", () => {
  it("maps each backend to its operators and lets single choices be overridden", () => {
    expect(chooseOps()).toEqual({
      attention: "MultiHeadAttention",
      groupNorm: "InstanceNormalization",
    });
    expect(chooseOps("webgpu").groupNorm).toBe("InstanceNormalization");
    expect(chooseOps("cuda").groupNorm).toBe("GroupNorm");
    expect(chooseOps("cuda", { attention: "MatMul" })).toEqual({
      attention: "MatMul",
      groupNorm: "GroupNorm",
    });
    expect(chooseOps("cpu", { attention: undefined }).attention).toBe("MultiHeadAttention");
    expect(Object.isFrozen(OP_CHOICES)).toBe(true);
    expect(Object.isFrozen(OP_CHOICES.cpu)).toBe(true);
    expect(() => chooseOps("tpu" as "cpu")).toThrow(
      'unknown backend "tpu"; expected one of cpu, wasm, webgpu, cuda',
    );
  });
});

describe("layers on onnxruntime", () => {
  it("linear: PyTorch [out, in] weights, also given as a 1x1 convolution", async () => {
    const w = randn(3 * 2);
    const b = randn(3);
    const x = randn(4 * 2);
    const expected = new Float32Array(4 * 3);
    for (let r = 0; r < 4; r++) {
      for (let o = 0; o < 3; o++)
        expected[r * 3 + o] = b[o] + x[r * 2] * w[o * 2] + x[r * 2 + 1] * w[o * 2 + 1];
    }
    for (const kernel1x1 of [false, true]) {
      const g = new GraphBuilder();
      const shape = kernel1x1 ? [3, 2, 1, 1] : [3, 2];
      const tracker = new WeightTracker(
        memoryWeights({ "l.weight": { shape, data: w }, "l.bias": { shape: [3], data: b } }),
      );
      const ctx: LayerContext = { g, weights: tracker, ops: chooseOps() };
      g.output(
        linear(ctx, "l", g.input("x", "float32", [4, 2]), 2, 3, { kernel1x1 }),
        "y",
        "float32",
      );
      tracker.assertAllUsed();
      const out = await evaluate(g, { x: { data: x, dims: [4, 2] } });
      expect(maxAbsDiff(out.y.data, expected)).toBeLessThan(1e-6);
    }
  });

  it("transposeMatrix swaps rows and columns", () => {
    expect([...transposeMatrix(Float32Array.of(1, 2, 3, 4, 5, 6), 2, 3)]).toEqual([
      1, 4, 2, 5, 3, 6,
    ]);
  });

  it.each(["float32", "float16"] as const)(
    "group norm with SiLU matches its definition (%s graph)",
    async (dtype) => {
      const [B, C, H, W, G] = [2, 6, 3, 4, 3];
      const x = randn(B * C * H * W);
      const gamma = randn(C);
      const beta = randn(C);
      const eps = 1e-5;
      const expected = new Float32Array(x.length);
      const per = (C / G) * H * W;
      for (let n = 0; n < B * G; n++) {
        const slice = x.subarray(n * per, (n + 1) * per);
        const mean = slice.reduce((a, v) => a + v, 0) / per;
        const variance = slice.reduce((a, v) => a + (v - mean) ** 2, 0) / per;
        for (let i = 0; i < per; i++) {
          const c = (n % G) * (C / G) + Math.floor(i / (H * W));
          const y = ((slice[i] - mean) / Math.sqrt(variance + eps)) * gamma[c] + beta[c];
          expected[n * per + i] = y / (1 + Math.exp(-y));
        }
      }
      const g = new GraphBuilder(dtype);
      const tracker = new WeightTracker(
        memoryWeights({
          "n.weight": { shape: [C], data: gamma },
          "n.bias": { shape: [C], data: beta },
        }),
      );
      const ctx: LayerContext = { g, weights: tracker, ops: chooseOps("cpu") };
      const y = groupNorm(ctx, "n", g.castToFloat(g.input("x", "float32", ["b", C, "h", "w"])), {
        channels: C,
        groups: G,
        eps,
        silu: true,
      });
      g.output(g.cast(y, "float32"), "y", "float32");
      const out = await evaluate(g, { x: { data: x, dims: [B, C, H, W] } });
      expect(maxAbsDiff(out.y.data, expected)).toBeLessThan(dtype === "float32" ? 1e-5 : 1e-2);
    },
  );

  it("group norm as com.microsoft.GroupNorm is channels-last with fused SiLU", () => {
    const g = new GraphBuilder();
    const C = 4;
    const tracker = new WeightTracker(
      memoryWeights({
        "n.weight": { shape: [C], data: randn(C) },
        "n.bias": { shape: [C], data: randn(C) },
      }),
    );
    groupNorm(
      { g, weights: tracker, ops: chooseOps("cuda") },
      "n",
      g.input("x", "float32", [1, C, 2, 2]),
      {
        channels: C,
        groups: 2,
        eps: 1e-6,
        silu: true,
      },
    );
    const nodes = g.toGraphProto().node;
    expect(nodes.map((n) => n.opType)).toEqual(["Transpose", "GroupNorm", "Transpose"]);
    const fused = nodes[1];
    expect(fused.domain).toBe(MS_DOMAIN);
    const attribute = (name: string) => fused.attribute?.find((a) => a.name === name)?.i;
    expect([attribute("activation"), attribute("groups"), attribute("channels_last")]).toEqual([
      1, 2, 1,
    ]);
  });

  it("rejects channels that the groups do not divide", () => {
    const g = new GraphBuilder();
    const tracker = new WeightTracker(memoryWeights({}));
    expect(() =>
      groupNorm(
        { g, weights: tracker, ops: chooseOps() },
        "n",
        g.input("x", "float32", [1, 6, 2, 2]),
        {
          channels: 6,
          groups: 4,
          eps: 1e-6,
        },
      ),
    ).toThrow("n: 6 channels are not divisible into 4 groups");
  });

  describe.each(["MultiHeadAttention", "MatMul"] as AttentionOp[])("attention (%s)", (op) => {
    const [B, Nq, Nk, heads, d] = [2, 3, 5, 2, 4];
    const C = heads * d;
    const q = randn(B * Nq * C);
    const k = randn(B * Nk * C);
    const v = randn(B * Nk * C);
    /** Softmax attention per batch and head, with an optional additive bias [Nq, Nk]. */
    function reference(bias?: Float32Array): Float32Array {
      const out = new Float32Array(B * Nq * C);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < heads; h++) {
          for (let i = 0; i < Nq; i++) {
            const scores = Array.from({ length: Nk }, (_, j) => {
              let s = 0;
              for (let e = 0; e < d; e++)
                s += q[(b * Nq + i) * C + h * d + e] * k[(b * Nk + j) * C + h * d + e];
              return s / Math.sqrt(d) + (bias ? bias[i * Nk + j] : 0);
            });
            const max = Math.max(...scores);
            const weights = scores.map((s) => Math.exp(s - max));
            const sum = weights.reduce((a, w) => a + w, 0);
            for (let e = 0; e < d; e++) {
              let acc = 0;
              for (let j = 0; j < Nk; j++)
                acc += (weights[j] / sum) * v[(b * Nk + j) * C + h * d + e];
              out[(b * Nq + i) * C + h * d + e] = acc;
            }
          }
        }
      }
      return out;
    }

    async function run(withBias: boolean, dtype: "float32" | "float16" = "float32") {
      const g = new GraphBuilder(dtype);
      const input = (name: string, n: number): Value =>
        g.castToFloat(g.input(name, "float32", ["b", n, C]));
      const bias = withBias ? g.castToFloat(g.input("bias", "float32", [1, 1, Nq, Nk])) : undefined;
      const y = attention(g, op, input("q", Nq), input("k", Nk), input("v", Nk), {
        heads,
        headDim: d,
        bias,
        upcast: true,
      });
      g.output(g.cast(y, "float32"), "y", "float32");
      const feeds: Record<string, { data: Float32Array; dims: number[] }> = {
        q: { data: q, dims: [B, Nq, C] },
        k: { data: k, dims: [B, Nk, C] },
        v: { data: v, dims: [B, Nk, C] },
      };
      // Query i sees keys 0..i+1 only, as a causal-style mask.
      const mask = Float32Array.from({ length: Nq * Nk }, (_, n) =>
        n % Nk <= Math.floor(n / Nk) + 1 ? 0 : -1e4,
      );
      if (withBias) feeds.bias = { data: mask, dims: [1, 1, Nq, Nk] };
      return { out: (await evaluate(g, feeds)).y.data, mask };
    }

    it("computes softmax(q k^T / sqrt(d)) v per head", async () => {
      const { out } = await run(false);
      expect(maxAbsDiff(out, reference())).toBeLessThan(1e-5);
    });

    it("adds a bias to the scores (masks)", async () => {
      const { out, mask } = await run(true);
      expect(maxAbsDiff(out, reference(mask))).toBeLessThan(1e-5);
    });

    it("runs in a float16 graph", async () => {
      const { out } = await run(false, "float16");
      expect(maxAbsDiff(out, reference())).toBeLessThan(1e-2);
    });
  });

  it("nearest resize follows PyTorch's floor rule, to 2x or to another tensor's size", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [1, 1, 3, 2]);
    const like = g.input("like", "float32", [1, 7, 5, 3]);
    g.output(nearestResize(g, x), "doubled", "float32");
    g.output(nearestResize(g, x, like), "sized", "float32");
    const data = Float32Array.of(1, 2, 3, 4, 5, 6);
    const out = await evaluate(g, {
      x: { data, dims: [1, 1, 3, 2] },
      like: { data: new Float32Array(7 * 5 * 3), dims: [1, 7, 5, 3] },
    });
    expect(out.doubled.dims).toEqual([1, 1, 6, 4]);
    expect([...out.doubled.data.subarray(0, 8)]).toEqual([1, 1, 2, 2, 1, 1, 2, 2]);
    // Rows: floor(i * 3/5) = 0,0,1,1,2; columns: floor(j * 2/3) = 0,0,1.
    expect(out.sized.dims).toEqual([1, 1, 5, 3]);
    expect([...out.sized.data]).toEqual([1, 1, 2, 1, 1, 2, 3, 3, 4, 3, 3, 4, 5, 5, 6]);
  });
});
