/**
 * What the microbenchmark graphs share: their output and how they are timed. The output is 64
 * values sampled evenly from the result. A probe must not end in a reduction over the whole
 * result (a full ReduceSum costs as much as a small convolution on the WebGPU backend and would
 * be timed with it), and a sample still lets tests check that the variants of one probe compute
 * the same thing.
 */
import type { GraphBuilder, Value } from "../onnx/builder.js";
import { createSession, float32Tensor } from "../runtime/session.js";
import type { Device } from "../util/vocabulary.js";

export const PROBE_SAMPLES = 64;

export function probeOutput(g: GraphBuilder, result: Value, elements: number): void {
  const step = Math.max(1, Math.floor(elements / PROBE_SAMPLES));
  const flat = g.reshape(result, [-1]);
  const sample = g.slice(flat, [0], [step * PROBE_SAMPLES], [0], [step]);
  g.output(g.cast(sample, "float32"), "sample", "float32", [Math.min(PROBE_SAMPLES, elements)]);
}

/** Runs a probe (its one input is `bias`) three times, then times `repeats` runs: ms, sorted. */
export async function timeProbe(
  model: Uint8Array,
  device: Device,
  repeats = 10,
): Promise<number[]> {
  const session = await createSession(model, { device });
  const feeds = { bias: float32Tensor(Float32Array.from([0]), [1]) };
  for (let i = 0; i < 3; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await session.run(feeds);
    times.push(performance.now() - start);
  }
  await session.release();
  return times.sort((a, b) => a - b);
}
