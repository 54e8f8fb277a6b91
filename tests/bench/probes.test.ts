// The microbenchmark graphs behind bench-conv and bench-attention: every variant of a probe must
// compute the same thing (or the timings compare different work), and a probe outputs a sample of
// its result rather than a reduction that would be timed with it.
import { describe, expect, it } from "vitest";
import {
  ATTENTION_VARIANTS,
  type AttentionShape,
  buildAttentionProbe,
  runAttentionProbe,
} from "../../src/bench/attention-probe.js";
import { buildConvProbe, type ConvShape, runConvProbes } from "../../src/bench/conv-probe.js";
import { PROBE_SAMPLES } from "../../src/bench/probe-output.js";
import { createSession, float32Tensor } from "../../src/runtime/session.js";
import { maxAbsDiff } from "../fixtures.js";

async function sample(model: Uint8Array): Promise<Float32Array> {
  const session = await createSession(model);
  const result = await session.run({ bias: float32Tensor(Float32Array.from([0]), [1]) });
  await session.release();
  return result.sample.data as Float32Array;
}

/** The probe's input pattern, as conv-probe.ts fills x and w. */
function pattern(count: number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  return out;
}

/** A direct 3x3 convolution with padding 1, NCHW, in float64. */
function referenceConv(shape: ConvShape): Float64Array {
  const { batch: b, channels: c, outChannels: o, size: s } = shape;
  const x = pattern(b * c * s * s);
  const w = pattern(o * c * 9);
  const out = new Float64Array(b * o * s * s);
  for (let bb = 0; bb < b; bb++)
    for (let oo = 0; oo < o; oo++)
      for (let y = 0; y < s; y++)
        for (let xx = 0; xx < s; xx++) {
          let sum = 0;
          for (let ch = 0; ch < c; ch++)
            for (let dy = 0; dy < 3; dy++)
              for (let dx = 0; dx < 3; dx++) {
                const yy = y + dy - 1;
                const xi = xx + dx - 1;
                if (yy < 0 || yy >= s || xi < 0 || xi >= s) continue;
                sum += x[((bb * c + ch) * s + yy) * s + xi] * w[((oo * c + ch) * 3 + dy) * 3 + dx];
              }
          out[((bb * o + oo) * s + y) * s + xx] = sum;
        }
  return out;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) {
  expect(maxAbsDiff(actual, expected)).toBeLessThan(tolerance);
}

describe("convolution probe", () => {
  // 32 outputs: the sample is the whole result.
  const shape: ConvShape = { batch: 1, channels: 3, outChannels: 2, size: 4 };

  it("builds Conv and both im2col forms of the same convolution", async () => {
    const expected = referenceConv(shape);
    expectClose(await sample(buildConvProbe("conv", shape)), expected, 2e-2);
    expectClose(await sample(buildConvProbe("im2col-nchw", shape)), expected, 2e-2);
    // Channels-last output: reorder (B, H, W, O) to (B, O, H, W).
    const nhwc = await sample(buildConvProbe("im2col-nhwc", shape));
    const hw = shape.size * shape.size;
    const reordered = Array.from(expected, (_, i) => {
      const o = Math.floor(i / hw);
      return nhwc[(i % hw) * shape.outChannels + o];
    });
    expectClose(reordered, expected, 2e-2);
  });

  it("times every variant and reports TFLOP/s as JSON lines", async () => {
    const lines: string[] = [];
    for await (const line of runConvProbes("cpu", [shape])) lines.push(line);
    const rows = lines.map((l) => JSON.parse(l) as { variant: string; medianMs: number });
    expect(rows.map((r) => r.variant)).toEqual([
      "conv",
      "im2col-nchw",
      "im2col-nhwc",
      "matmul-only",
    ]);
    for (const row of rows) expect(row.medianMs).toBeGreaterThan(0);
  });
});

describe("attention probe", () => {
  // 2 x 9 x 8 = 144 outputs: the sample is every second value.
  const shape: AttentionShape = { batch: 2, queries: 9, keys: 6, heads: 2, headDim: 4 };

  it("builds every variant of the same attention, sampled across the whole output", async () => {
    const samples = await Promise.all(
      ATTENTION_VARIANTS.map((variant) => sample(buildAttentionProbe(variant, shape, "float32"))),
    );
    expect(samples[0].length).toBe(PROBE_SAMPLES);
    for (const other of samples.slice(1)) expectClose(other, samples[0], 1e-5);
    // The sample spans both batch entries: its two halves differ.
    expect(samples[0].slice(0, 8)).not.toEqual(samples[0].slice(PROBE_SAMPLES - 8));
  });

  it("reports a device it cannot use as the row's error", async () => {
    const row = await runAttentionProbe("mha", shape, "float32", "cuda", 1);
    expect(row.medianMs).toBeNaN();
    // Without the CUDA binaries the row says how to install them; with them, onnxruntime's error.
    expect(row.error).toMatch(
      /^(onnxruntime could not load model: |onnxruntime-node's CUDA binaries are not installed; )/,
    );
  });
});
