/**
 * DDPM: Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020).
 * Ancestral sampling from the posterior q(x_prev | x_t, x0) of eqs. 6-7, with x0 estimated by
 * the model, between the (possibly skipped) timesteps of the schedule.
 */
import type { NoiseSource } from "../util/random.js";
import { checkSameLength } from "./base.js";
import {
  type ConfigOf,
  choiceField,
  clippingFields,
  scheduleFields,
  zeroSnrField,
} from "./config.js";
import { DiscreteScheduler } from "./discrete-base.js";
import { spacedTimesteps } from "./noise-schedule.js";
import { combine, toFloat32 } from "./tensor-ops.js";

export const DDPM_FIELDS = {
  ...scheduleFields({
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "leading",
  }),
  ...zeroSnrField(),
  ...clippingFields(true),
  /** The posterior variance: beta-tilde (small) or beta (large), optionally clipped in log space. */
  variance_type: choiceField("fixed_small", [
    "fixed_small",
    "fixed_small_log",
    "fixed_large",
    "fixed_large_log",
  ]),
};
export type DdpmConfig = ConfigOf<typeof DDPM_FIELDS>;

export class DdpmScheduler extends DiscreteScheduler<DdpmConfig> {
  protected computeTimesteps(steps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(
      c.timestep_spacing,
      c.num_train_timesteps,
      steps,
      c.steps_offset,
      "integer",
    );
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    noise: NoiseSource,
    dims: readonly number[],
  ): Float32Array {
    checkSameLength(this.name, sample, modelOutput, "model output");
    const c = this.config;
    const index = this.currentIndex(timestep);
    const prevTimestep = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : -1;
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.alphaBarOr(prevTimestep, 1);
    const alpha = alphaBar / alphaBarPrev; // of the whole (possibly skipped) step
    const beta = 1 - alpha;
    const { x0 } = this.estimates(modelOutput, sample, alphaBar, dims);
    // Eq. 7: the posterior mean.
    const terms: [number, Float64Array | Float32Array][] = [
      [(Math.sqrt(alphaBarPrev) * beta) / (1 - alphaBar), x0],
      [(Math.sqrt(alpha) * (1 - alphaBarPrev)) / (1 - alphaBar), sample],
    ];
    if (timestep > 0) {
      const small = Math.max(((1 - alphaBarPrev) / (1 - alphaBar)) * beta, 1e-20);
      const std = {
        fixed_small: Math.sqrt(small),
        fixed_small_log: Math.exp(0.5 * Math.log(small)),
        fixed_large: Math.sqrt(beta),
        fixed_large_log: Math.exp(0.5 * Math.log(beta)),
      }[c.variance_type];
      terms.push([std, noise.normal(dims)]);
    }
    this.stepIndex = index + 1;
    return toFloat32(combine(terms));
  }
}
