/**
 * Per-step control inside one graph: the reference compares t/1000 with a threshold in double
 * precision (`t / 1000 > threshold`). The graph compares the float32 timestep with a float32
 * cutoff instead, chosen so that both tests agree on every float32 timestep.
 */
import type { GraphBuilder, Value } from "../onnx/builder.js";
import { TensorDataType } from "../onnx/proto.js";
import { castTo, oncePerGraph } from "./graph-helpers.js";

const scratch = new Float32Array(1);
const scratchBits = new Int32Array(scratch.buffer);

/** The float32 neighbour of a float32 value `x` towards +Infinity (up) or -Infinity. */
function nextFloat32(x: number, up: boolean): number {
  scratch[0] = x;
  if (x === 0) scratchBits[0] = up ? 1 : 0x80000001 | 0;
  else if (x > 0 === up) scratchBits[0] += 1;
  else scratchBits[0] -= 1;
  return scratch[0];
}

/**
 * The largest float32 t with t / 1000 <= threshold in double arithmetic, so that for every
 * float32 timestep `t > cutoff` (float32) equals the reference's `t / 1000 > threshold`.
 */
export function timestepCutoff(threshold: number): number {
  if (!Number.isFinite(threshold)) throw new Error(`threshold must be finite; got ${threshold}`);
  let cutoff = Math.fround(threshold * 1000);
  while (cutoff / 1000 > threshold) cutoff = nextFloat32(cutoff, false);
  for (let next = nextFloat32(cutoff, true); next / 1000 <= threshold; ) {
    cutoff = next;
    next = nextFloat32(cutoff, true);
  }
  return cutoff;
}

/**
 * A bool scalar, true when the first timestep of the batch is above `cutoff` (one timestep per
 * call, as in the reference). Built once per graph, timestep and cutoff, and shared by sites.
 */
export function timestepAbove(g: GraphBuilder, timestep: Value, cutoff: number): Value {
  return oncePerGraph(g, `${timestep.name}>${cutoff}`, () => {
    // The condition feeds `If` nodes, whose condition lives in host memory. Computing it in
    // float64, which GPU backends do not run, keeps the chain on the CPU beside the timestep
    // input, so no GPU-to-host copy (and wait) happens per reduced block. float32 values and the
    // float32 cutoff are exact in float64, so the comparison is unchanged.
    const t64 = g.gather(
      g.reshape(castTo(g, timestep, TensorDataType.DOUBLE), [-1]),
      g.int64([0], []),
      0,
    );
    const cutoff64 = castTo(g, g.float(cutoff, [], "float32"), TensorDataType.DOUBLE);
    return g.op("Greater", [t64, cutoff64], {}, { name: "TimestepAbove" });
  });
}

/**
 * timestep[0] as a float32 scalar (the timestep may be float16 in a float16 graph, and a
 * scalar rather than [B] in graphs exported elsewhere).
 */
export function firstTimestep(g: GraphBuilder, timestep: Value): Value {
  return g.cast(g.gather(g.reshape(timestep, [-1]), g.int64([0], []), 0), "float32");
}
