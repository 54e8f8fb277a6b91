/**
 * DDIM: Song, Meng and Ermon, "Denoising Diffusion Implicit Models" (ICLR 2021).
 * Eq. 12 steps from x_t to x_prev along the non-Markovian process with variance
 * sigma_t(eta)^2 of eq. 16; eta = 0 (the default) is deterministic.
 */
import type { StepInput } from "./base.js";
import {
  booleanField,
  type ConfigOf,
  clippingFields,
  numberField,
  scheduleFields,
  zeroSnrField,
} from "./config.js";
import { DDPM_DEFAULTS, DiscreteScheduler, ddimUpdate } from "./discrete-base.js";
import { combine } from "./tensor-ops.js";

export const DDIM_FIELDS = {
  ...scheduleFields(DDPM_DEFAULTS),
  ...zeroSnrField(),
  ...clippingFields(true),
  set_alpha_to_one: booleanField(true),
  /** DDIM's eta: 0 deterministic, 1 as much noise as DDPM. A step argument in other tools. */
  eta: numberField(0, 0),
};
export type DdimConfig = ConfigOf<typeof DDIM_FIELDS>;

export class DdimScheduler extends DiscreteScheduler<DdimConfig> {
  protected advance(input: StepInput): Float64Array {
    const { modelOutput, timestep, sample, noise, dims, index } = input;
    const eta = this.config.eta;
    // The paper steps along the chosen sub-sequence: the previous timestep is the next one listed.
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.alphaBarAt(this.nextTimestep(index));
    const { x0, eps } = this.estimates(modelOutput, sample, alphaBar, dims);
    const variance = ((1 - alphaBarPrev) / (1 - alphaBar)) * (1 - alphaBar / alphaBarPrev);
    const noiseStd = eta * Math.sqrt(variance);
    const prev = ddimUpdate(x0, eps, alphaBarPrev, noiseStd);
    if (eta === 0) return prev;
    return combine([
      [1, prev],
      [noiseStd, noise.normal(dims)],
    ]);
  }
}
