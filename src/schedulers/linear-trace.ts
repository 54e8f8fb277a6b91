/**
 * A sampler's whole schedule as linear combinations, worked out before the first model call,
 * so a runtime can keep the latents on its device and step them there.
 *
 * Every sampler here updates the sample elementwise and linearly: each new sample (and each
 * model input) is a weighted sum of the starting sample, the model outputs so far and the noise
 * drawn so far, with weights that depend on the schedule only. Running the sampler on
 * coefficient vectors instead of tensors (one element per source, a one-hot vector for each new
 * source) therefore yields those weights exactly: element p of every result is the weight of
 * source p. The trace checks the assumption as it goes: a few extra elements carry random
 * mixtures of the sources, and a sampler that is not linear (clipping, dynamic thresholding,
 * learned variance) gives them values the weights do not predict, and is refused.
 */
import type { NoiseSource } from "../util/random.js";
import type { Scheduler } from "./types.js";

/** One model evaluation of the schedule and the sampler step after it. */
export interface LinearStep {
  readonly timestep: number;
  /** Weights of the model input at this step over the sources (`LinearTrace.sources`). */
  readonly modelInput: Float64Array;
  /** The source this step's model output (after guidance) becomes. */
  readonly outputSource: number;
  /** The sources this step's noise draws become, in draw order. */
  readonly noiseSources: readonly number[];
  /** Weights of the sample after the step. */
  readonly sample: Float64Array;
}

export interface LinearTrace {
  /**
   * Number of sources: 0 is the starting sample, then each step's model output and noise draws
   * in the order they arise.
   */
  readonly sources: number;
  readonly steps: readonly LinearStep[];
}

export type TraceOutcome =
  | { readonly ok: true; readonly trace: LinearTrace }
  | { readonly ok: false; readonly reason: string };

/** Noise draws one step may make (DPM-Solver SDE and the ancestral samplers make one). */
const MAX_DRAWS_PER_STEP = 2;
/** Extra elements that carry random mixtures of the sources, to check linearity. */
const CHECKS = 3;
/** How far a checked element may sit from the weights' prediction, relative to its scale. */
const CHECK_TOLERANCE = 1e-4;

class NotLinear extends Error {}

/**
 * Traces `scheduler` over `timesteps` (its schedule from the current position: set the steps,
 * and the begin index for img2img, first). The scheduler's state is used up: give it a fresh
 * instance configured like the one the host loop would use.
 */
export function traceLinearSampler(
  scheduler: Scheduler,
  timesteps: readonly number[],
): TraceOutcome {
  const capacity = 1 + timesteps.length * (1 + MAX_DRAWS_PER_STEP);
  const width = capacity + CHECKS;
  // Deterministic mixing weights in +-[0.5, 1.5] (a 32-bit LCG is plenty for this).
  let state = 0x2545f491;
  const mix = Float64Array.from({ length: CHECKS * capacity }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const u = state / 2 ** 32;
    return u < 0.5 ? -(0.5 + 2 * u) : 0.5 + 2 * (u - 0.5);
  });
  let used = 0;

  const newSource = (): Float32Array => {
    if (used >= capacity)
      throw new NotLinear(`it draws more than ${MAX_DRAWS_PER_STEP} noise tensors in one step`);
    const p = used++;
    const v = new Float32Array(width);
    v[p] = 1;
    for (let q = 0; q < CHECKS; q++) v[capacity + q] = mix[q * capacity + p];
    return v;
  };

  const weights = (v: Float32Array, what: string): Float64Array => {
    if (v.length !== width) throw new NotLinear(`its ${what} changes the tensor's size`);
    for (let q = 0; q < CHECKS; q++) {
      let predicted = 0;
      let scale = Math.abs(v[capacity + q]);
      for (let p = 0; p < used; p++) {
        const term = mix[q * capacity + p] * v[p];
        predicted += term;
        scale += Math.abs(term);
      }
      const off = Math.abs(v[capacity + q] - predicted);
      if (!(off <= CHECK_TOLERANCE * scale))
        throw new NotLinear(`its ${what} is not a linear combination of its inputs`);
    }
    return Float64Array.from(v.subarray(0, used));
  };

  const steps: Omit<LinearStep, "modelInput" | "sample">[] = [];
  const rows: { modelInput: Float64Array; sample: Float64Array }[] = [];
  try {
    let sample = newSource();
    for (const timestep of timesteps) {
      const modelInput = weights(scheduler.scaleModelInput(sample, timestep), "model input");
      const output = newSource();
      const outputSource = used - 1;
      const noiseSources: number[] = [];
      const noise: NoiseSource = {
        normal: () => {
          const draw = newSource();
          noiseSources.push(used - 1);
          return draw;
        },
      };
      sample = scheduler.step(output, timestep, sample, noise, [1, width]);
      steps.push({ timestep, outputSource, noiseSources });
      rows.push({ modelInput, sample: weights(sample, "step") });
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, reason: `${scheduler.name} cannot be stepped on the device: ${message}` };
  }
  // Pad every row to the final number of sources.
  const pad = (row: Float64Array): Float64Array => {
    const out = new Float64Array(used);
    out.set(row);
    return out;
  };
  return {
    ok: true,
    trace: {
      sources: used,
      steps: steps.map((step, i) => ({
        ...step,
        modelInput: pad(rows[i].modelInput),
        sample: pad(rows[i].sample),
      })),
    },
  };
}

/** sum_p weights[p] * sources[p], in float64, rounded to float32. */
export function combineSources(
  weights: ArrayLike<number>,
  sources: readonly (ArrayLike<number> | undefined)[],
  length: number,
): Float32Array {
  const out = new Float64Array(length);
  for (let p = 0; p < weights.length; p++) {
    const w = weights[p];
    if (w === 0) continue;
    const source = sources[p];
    if (!source) throw new Error(`source ${p} is used before it exists`);
    for (let i = 0; i < length; i++) out[i] += w * source[i];
  }
  return Float32Array.from(out);
}
