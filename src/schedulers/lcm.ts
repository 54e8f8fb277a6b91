/**
 * LCM: Luo et al., "Latent Consistency Models: Synthesizing High-Resolution Images with
 * Few-Step Inference" (2023), Algorithm 1 (multistep latent consistency sampling). The model's
 * clean-sample estimate goes through the consistency-model boundary condition of Song et al.,
 * "Consistency Models" (2023), eq. 8 (c_skip, c_out with sigma_data = 0.5), and is noised
 * again to the next timestep; timesteps are chosen among the `original_inference_steps` that
 * the model was distilled on.
 */
import type { StepInput } from "./base.js";
import {
  booleanField,
  type ConfigOf,
  clippingFields,
  integerField,
  numberField,
  scheduleFields,
  zeroSnrField,
} from "./config.js";
import { type DiscreteOptions, DiscreteScheduler, diffuseForward } from "./discrete-base.js";
import { combine } from "./tensor-ops.js";

/** The keys of LCM, shared by TCD. */
export function consistencyFields() {
  return {
    ...scheduleFields({
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      timestep_spacing: "leading",
    }),
    ...zeroSnrField(),
    ...clippingFields(false),
    set_alpha_to_one: booleanField(true),
    /** The length of the schedule the model was distilled with; inference picks from it. */
    original_inference_steps: integerField(50, 1),
    /** Timestep scale of the boundary condition. */
    timestep_scaling: numberField(10, 0),
  };
}

export const LCM_FIELDS = consistencyFields();
export type LcmConfig = ConfigOf<typeof LCM_FIELDS>;

interface ConsistencyOptions extends DiscreteOptions {
  readonly original_inference_steps: number;
}

/**
 * `steps` timesteps spread evenly over the distillation schedule k-1, 2k-1, ..., T-1
 * (k = T / original_inference_steps), largest first.
 */
export function consistencyTimesteps(name: string, c: ConsistencyOptions, steps: number): number[] {
  const original = c.original_inference_steps;
  if (original > c.num_train_timesteps) {
    throw new Error(
      `${name}: original_inference_steps ${original} exceeds num_train_timesteps ${c.num_train_timesteps}`,
    );
  }
  if (steps > original) {
    throw new Error(
      `${name}: ${steps} steps is more than the ${original} original_inference_steps the model was distilled with`,
    );
  }
  const k = Math.floor(c.num_train_timesteps / original);
  const candidates = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
  return Array.from({ length: steps }, (_, i) => candidates[Math.floor(i * (original / steps))]);
}

/** Samplers of consistency-distilled models (LCM, TCD), on the distillation schedule. */
export abstract class ConsistencyScheduler<
  C extends ConsistencyOptions,
> extends DiscreteScheduler<C> {
  protected override computeTimesteps(steps: number): void {
    this.timesteps = consistencyTimesteps(this.name, this.config, steps);
  }
}

export class LcmScheduler extends ConsistencyScheduler<LcmConfig> {
  protected advance(input: StepInput): Float64Array {
    const { modelOutput, timestep, sample, noise, dims, index } = input;
    const { x0 } = this.estimates(modelOutput, sample, this.schedule.alphaCumprod(timestep), dims);
    const scaled = timestep * this.config.timestep_scaling;
    const cSkip = 0.25 / (scaled * scaled + 0.25);
    const cOut = scaled / Math.sqrt(scaled * scaled + 0.25);
    const denoised = combine([
      [cOut, x0],
      [cSkip, sample],
    ]);
    if (index === this.timesteps.length - 1) return denoised;
    // Noised from the clean sample (alpha-bar 1) to the next timestep.
    const alphaBarNext = this.schedule.alphaCumprod(this.timesteps[index + 1]);
    return diffuseForward(denoised, alphaBarNext, noise.normal(dims));
  }
}
