// Test helper: a tiny UNet-shaped graph (sample, timestep, encoder_hidden_states -> out_sample)
// with one attention at level 1, one at level 2 (after a stride-2 convolution) and one back at
// level 1 (after a 2x Resize), in a chosen attention pattern. Built with or without reduction,
// so a patched plain graph can be compared with the same graph built with reduction.
import { attr, GraphBuilder, MS_DOMAIN, type Value } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel, type ModelProto } from "../../src/onnx/proto.js";
import { levelGrid, type ReductionSettings } from "../../src/reduce/options.js";
import { selfAttentionWithReduction } from "../../src/reduce/self-attention.js";
import { SeededRandom } from "../../src/util/random.js";

/**
 * `classic`: MatMul(q, kᵀ) then a scale, heads folded into the batch; `sdpa`: √scale on q and
 * on kᵀ before the MatMul; `mha`: com.microsoft.MultiHeadAttention; `static`: classic with
 * reshapes to fixed sizes (as a static-shape export has).
 */
export type MiniPattern = "classic" | "sdpa" | "mha" | "static";

export interface MiniOptions {
  readonly pattern: MiniPattern;
  /** Which blocks attend to encoder_hidden_states instead of themselves. */
  readonly cross?: boolean;
  readonly reduction?: ReductionSettings;
  /** Fixed sample size (a static export); dynamic when absent. */
  readonly staticSize?: { height: number; width: number };
  /** Node names with diffusers module paths (`/down_blocks.0/...`). */
  readonly names?: boolean;
}

const C = 8;
const HEADS = 2;
const CONTEXT = 6;

export function miniUnet(options: MiniOptions): ModelProto {
  const g = new GraphBuilder("float32");
  const random = new SeededRandom(7);
  const weight = (name: string, dims: number[], scale = 0.3) => {
    const values = random.normalArray(dims.reduce((a, b) => a * b, 1)).map((v) => v * scale);
    return g.weight(name, dims, () => values);
  };
  const size = options.staticSize;
  const sample = g.input("sample", "float32", [
    2,
    4,
    size?.height ?? "height",
    size?.width ?? "width",
  ]);
  const timestep = g.input("timestep", "float32", ["batch"]);
  const context = g.input("encoder_hidden_states", "float32", ["batch", 3, CONTEXT]);
  const conv = (name: string, x: Value, out: number, inC: number, stride = 1, kernel = 3) =>
    g.op(
      "Conv",
      [x, weight(`${name}.weight`, [out, inC, kernel, kernel]), weight(`${name}.bias`, [out], 0.1)],
      {
        kernel_shape: attr.ints([kernel, kernel]),
        strides: attr.ints([stride, stride]),
        pads: attr.ints(Array(4).fill(kernel === 3 ? 1 : 0)),
      },
    );

  const block = (name: string, x: Value, level: number) =>
    g.scope(options.names ? `/${name}` : `b${level}`, () => {
      const shape = g.shape(x);
      const height = g.gather(shape, g.int64([2], []));
      const width = g.gather(shape, g.int64([3], []));
      const tokens = g.transpose(g.reshape(x, [0, 0, -1]), [0, 2, 1]); // (B, N, C)
      const grid = size && levelGrid(size.height, size.width, level);
      const fixedTokens = grid ? grid.height * grid.width : undefined;
      const normed = g.layerNorm(
        tokens,
        weight(`${name}.norm.w`, [C], 0.1),
        weight(`${name}.norm.b`, [C], 0.1),
        1e-5,
      );
      const wq = weight(`${name}.q`, [C, C]);
      const wk = weight(`${name}.k`, [options.cross ? CONTEXT : C, C]);
      const wv = weight(`${name}.v`, [options.cross ? CONTEXT : C, C]);
      const wo = weight(`${name}.o`, [C, C]);
      const attend = (b: GraphBuilder, q: Value, kv: Value) => {
        const source = options.cross ? context : kv;
        const named = <T>(n: string, f: () => T) => (options.names ? b.scope(n, f) : f());
        const qp = named("to_q", () => b.matMul(q, wq));
        const kp = named("to_k", () => b.matMul(source, wk));
        const vp = named("to_v", () => b.matMul(source, wv));
        return b.matMul(attentionCore(b, options.pattern, qp, kp, vp, fixedTokens), wo);
      };
      const site = { level, height, width, timestep, name: `${name}.attn1` };
      const attended = options.cross
        ? attend(g, normed, normed)
        : selfAttentionWithReduction(g, normed, site, options.reduction, attend);
      const out = g.add(attended, tokens);
      return g.reshape(g.transpose(out, [0, 2, 1]), shape);
    });

  let h = conv("conv_in", sample, C, 4);
  h = block("down_blocks.0.attentions.0.transformer_blocks.0", h, 1);
  h = conv("down", h, C, C, 2);
  h = block("down_blocks.1.attentions.0.transformer_blocks.0", h, 2);
  h = g.op("Resize", [h, "", g.float([1, 1, 2, 2], [4], "float32")], {
    mode: attr.string("nearest"),
  });
  h = block("up_blocks.1.attentions.0.transformer_blocks.0", h, 1);
  g.output(conv("conv_out", h, 4, C, 1, 1), "out_sample", "float32");
  return decodeModel(buildModelBytes(g), "mini-unet");
}

function attentionCore(
  g: GraphBuilder,
  pattern: MiniPattern,
  q: Value,
  k: Value,
  v: Value,
  fixedTokens?: number,
): Value {
  const d = C / HEADS;
  const scale = 1 / Math.sqrt(d);
  if (pattern === "mha")
    return g.op(
      "MultiHeadAttention",
      [q, k, v],
      { num_heads: attr.int(HEADS), scale: attr.float(scale) },
      { domain: MS_DOMAIN },
    );
  if (pattern === "sdpa") {
    const heads = (x: Value, perm: number[]) => g.transpose(g.reshape(x, [0, 0, HEADS, d]), perm);
    const root = g.float(Math.sqrt(scale));
    const scores = g.matMul(
      g.mul(heads(q, [0, 2, 1, 3]), root),
      g.mul(heads(k, [0, 2, 3, 1]), root),
    );
    const out = g.matMul(g.softmax(scores), heads(v, [0, 2, 1, 3])); // (B, h, N, d)
    return g.reshape(g.transpose(out, [0, 2, 1, 3]), [0, 0, C]);
  }
  // classic: (B, N, C) -> (B * h, N, d), scores scaled after the MatMul
  const fixed = pattern === "static" && fixedTokens ? fixedTokens : -1;
  const fold = (x: Value) =>
    g.reshape(g.transpose(g.reshape(x, [2, fixed, HEADS, d]), [0, 2, 1, 3]), [2 * HEADS, fixed, d]);
  const scores = g.mul(g.matMul(fold(q), g.transpose(fold(k), [0, 2, 1])), g.float(scale));
  const out = g.matMul(g.softmax(scores), fold(v)); // (B * h, N, d)
  const unfolded = g.transpose(g.reshape(out, [2, HEADS, -1, d]), [0, 2, 1, 3]);
  return g.reshape(unfolded, [2, -1, C]);
}
