// Command-line driver for the attention microbenchmarks: node dist/bench/probe-main.js <device>
import { parseDevice } from "../runtime/devices.js";
import { ATTENTION_VARIANTS, type AttentionShape, runAttentionProbe } from "./attention-probe.js";

const device = parseDevice(process.argv[2] ?? "cpu");
const shapes: AttentionShape[] = [
  { batch: 2, queries: 4096, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 16384, keys: 16384, heads: 8, headDim: 40 },
  { batch: 2, queries: 16384, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 36864, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 65536, keys: 4096, heads: 8, headDim: 40 },
  { batch: 2, queries: 65536, keys: 65536, heads: 8, headDim: 40 },
];
for (const shape of shapes) {
  for (const variant of ATTENTION_VARIANTS) {
    if (variant === "matmul-softmax" && shape.queries * shape.keys > 16384 * 16384) continue;
    const r = await runAttentionProbe(variant, shape, "float16", device);
    process.stdout.write(
      `${JSON.stringify({ q: shape.queries, k: shape.keys, b: shape.batch, variant, median: Number(r.medianMs.toFixed(2)), min: Number(r.minMs.toFixed(2)), error: r.error })}\n`,
    );
  }
}
