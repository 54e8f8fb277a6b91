/**
 * Attention microbenchmarks: the same scaled-dot-product attention built several ways, timed on
 * one device, to choose how the model builders express attention for each backend.
 */
import { attr, GraphBuilder, MS_DOMAIN, type Value } from "../onnx/builder.js";
import { buildModelBytes } from "../onnx/model-io.js";
import { type Device, parseDevice } from "../util/vocabulary.js";
import { probeOutput, timeProbe } from "./probe-output.js";

export type AttentionVariant =
  | "matmul-softmax"
  | "mha"
  | "mha-present"
  | "mha-split-batch"
  | "mha-split-batch-present";

export const ATTENTION_VARIANTS: readonly AttentionVariant[] = [
  "matmul-softmax",
  "mha",
  "mha-present",
  "mha-split-batch",
  "mha-split-batch-present",
];

export interface AttentionShape {
  readonly batch: number;
  readonly queries: number;
  readonly keys: number;
  readonly heads: number;
  readonly headDim: number;
}

function randomValues(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2;
  }
  return out;
}

/**
 * Builds q/k/v as weights (so no upload per run; each passes through one Add with a graph input,
 * which keeps onnxruntime from folding the whole graph at load) and outputs a sample of the result.
 */
export function buildAttentionProbe(
  variant: AttentionVariant,
  shape: AttentionShape,
  dtype: "float32" | "float16",
): Uint8Array {
  const g = new GraphBuilder(dtype);
  const hidden = shape.heads * shape.headDim;
  const bias = g.castToFloat(g.input("bias", "float32", [1]));
  const tokens = (name: string, count: number, seed: number) =>
    g.add(
      g.weight(name, [shape.batch, count, hidden], () =>
        randomValues(shape.batch * count * hidden, seed),
      ),
      bias,
    );
  const q = tokens("q", shape.queries, 1);
  const k = tokens("k", shape.keys, 2);
  const v = tokens("v", shape.keys, 3);
  const scale = 1 / Math.sqrt(shape.headDim);
  const mha = (qq: Value, kk: Value, vv: Value, present: boolean): Value =>
    g.opN(
      "MultiHeadAttention",
      [qq, kk, vv],
      present ? 3 : 1,
      { num_heads: attr.int(shape.heads), scale: attr.float(scale) },
      { domain: MS_DOMAIN },
    )[0];
  let out: Value;
  switch (variant) {
    case "matmul-softmax": {
      const heads = (x: Value, n: number) =>
        g.transpose(g.reshape(x, [shape.batch, n, shape.heads, shape.headDim]), [0, 2, 1, 3]);
      const scores = g.mul(
        g.matMul(heads(q, shape.queries), g.transpose(heads(k, shape.keys), [0, 1, 3, 2])),
        g.float(scale),
      );
      const context = g.matMul(g.softmax(scores), heads(v, shape.keys));
      out = g.reshape(g.transpose(context, [0, 2, 1, 3]), [shape.batch, shape.queries, hidden]);
      break;
    }
    case "mha":
    case "mha-present":
      out = mha(q, k, v, variant === "mha-present");
      break;
    case "mha-split-batch":
    case "mha-split-batch-present": {
      const sizes = Array.from({ length: shape.batch }, () => 1);
      const qs = g.split(q, sizes, 0);
      const ks = g.split(k, sizes, 0);
      const vs = g.split(v, sizes, 0);
      out = g.concat(
        qs.map((qq, i) => mha(qq, ks[i], vs[i], variant === "mha-split-batch-present")),
        0,
      );
      break;
    }
  }
  probeOutput(g, out, shape.batch * shape.queries * hidden);
  return buildModelBytes(g);
}

export interface ProbeResult {
  readonly variant: AttentionVariant;
  readonly shape: AttentionShape;
  readonly dtype: string;
  readonly medianMs: number;
  readonly minMs: number;
  readonly error?: string;
}

export async function runAttentionProbe(
  variant: AttentionVariant,
  shape: AttentionShape,
  dtype: "float32" | "float16",
  device: Device,
  repeats = 10,
): Promise<ProbeResult> {
  let timing: Pick<ProbeResult, "medianMs" | "minMs" | "error">;
  try {
    const times = await timeProbe(buildAttentionProbe(variant, shape, dtype), device, repeats);
    timing = { medianMs: times[Math.floor(times.length / 2)], minMs: times[0] };
  } catch (error) {
    timing = {
      medianMs: Number.NaN,
      minMs: Number.NaN,
      error: (error as Error).message.split("\n")[0],
    };
  }
  return { variant, shape, dtype, ...timing };
}

const PROBE_SHAPES: readonly AttentionShape[] = [
  { batch: 2, queries: 4096, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 16384, keys: 16384, heads: 8, headDim: 40 },
  { batch: 2, queries: 16384, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 36864, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 65536, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 65536, keys: 65536, heads: 8, headDim: 40 },
];

/** Every variant at SD 1.5's level-1 shapes (512 to 2048 px, with and without ToDo), as JSON lines. */
export async function* runAttentionProbes(deviceName: string): AsyncGenerator<string> {
  const device = parseDevice(deviceName);
  for (const shape of PROBE_SHAPES) {
    for (const variant of ATTENTION_VARIANTS) {
      if (variant === "matmul-softmax" && shape.queries * shape.keys > 16384 * 16384) continue;
      const r = await runAttentionProbe(variant, shape, "float16", device);
      yield JSON.stringify({
        queries: shape.queries,
        keys: shape.keys,
        batch: shape.batch,
        variant,
        medianMs: Number(r.medianMs.toFixed(2)),
        minMs: Number(r.minMs.toFixed(2)),
        error: r.error,
      });
    }
  }
}
