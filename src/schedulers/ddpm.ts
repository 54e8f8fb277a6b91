/**
 * DDPM: Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020).
 * Ancestral sampling from the posterior q(x_prev | x_t, x0) of eqs. 6-7, with x0 estimated by
 * the model, between the (possibly skipped) timesteps of the schedule.
 */
import type { StepInput } from "./base.js";
import {
  type ConfigOf,
  choiceField,
  clippingFields,
  scheduleFields,
  zeroSnrField,
} from "./config.js";
import { DDPM_DEFAULTS, DiscreteScheduler } from "./discrete-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export const DDPM_FIELDS = {
  ...scheduleFields(DDPM_DEFAULTS),
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
  protected advance(input: StepInput): Float64Array {
    const { modelOutput, timestep, sample, noise, dims, index } = input;
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.alphaBarAt(this.nextTimestep(index));
    const alpha = alphaBar / alphaBarPrev; // of the whole (possibly skipped) step
    const beta = 1 - alpha;
    const { x0 } = this.estimates(modelOutput, sample, alphaBar, dims);
    // Eq. 7: the posterior mean.
    const terms: [number, Tensor][] = [
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
      }[this.config.variance_type];
      terms.push([std, noise.normal(dims)]);
    }
    return combine(terms);
  }
}
