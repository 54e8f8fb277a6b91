/**
 * The output of a microbenchmark graph: 64 values sampled evenly from the result. A probe must
 * not end in a reduction over the whole result (a full ReduceSum costs as much as a small
 * convolution on the WebGPU backend and would be timed with it), and a sample still lets tests
 * check that the variants of one probe compute the same thing.
 */
import type { GraphBuilder, Value } from "../onnx/builder.js";

export const PROBE_SAMPLES = 64;

export function probeOutput(g: GraphBuilder, result: Value, elements: number): void {
  const step = Math.max(1, Math.floor(elements / PROBE_SAMPLES));
  const flat = g.reshape(result, [-1]);
  const sample = g.slice(flat, [0], [step * PROBE_SAMPLES], [0], [step]);
  g.output(g.cast(sample, "float32"), "sample", "float32", [Math.min(PROBE_SAMPLES, elements)]);
}
