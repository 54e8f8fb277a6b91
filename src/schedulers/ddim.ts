/**
 * DDIM: Song, Meng and Ermon, "Denoising Diffusion Implicit Models" (ICLR 2021).
 * Eq. 12 steps from x_t to x_prev along the non-Markovian process with variance
 * sigma_t(eta)^2 of eq. 16; eta = 0 (the default) is deterministic.
 */
import type { NoiseSource } from "../util/random.js";
import { checkSameLength } from "./base.js";
import {
  booleanField,
  type ConfigOf,
  clippingFields,
  numberField,
  scheduleFields,
  zeroSnrField,
} from "./config.js";
import { DiscreteScheduler, ddimUpdate } from "./discrete-base.js";
import { spacedTimesteps } from "./noise-schedule.js";
import { combine, toFloat32 } from "./tensor-ops.js";

export const DDIM_FIELDS = {
  ...scheduleFields({
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "leading",
  }),
  ...zeroSnrField(),
  ...clippingFields(true),
  /** Whether the step past the last timestep lands on alpha-bar = 1 (else alpha-bar_0). */
  set_alpha_to_one: booleanField(true),
  /** DDIM's eta: 0 deterministic, 1 as much noise as DDPM. A step argument in other tools. */
  eta: numberField(0, 0),
};
export type DdimConfig = ConfigOf<typeof DDIM_FIELDS>;

export class DdimScheduler extends DiscreteScheduler<DdimConfig> {
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
    const index = this.currentIndex(timestep);
    const c = this.config;
    // The paper steps along the chosen sub-sequence: the previous timestep is the next one listed.
    const prevTimestep = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : -1;
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.alphaBarOr(
      prevTimestep,
      c.set_alpha_to_one ? 1 : this.schedule.alphasCumprod[0],
    );
    const { x0, eps } = this.estimates(modelOutput, sample, alphaBar, dims);
    const variance = ((1 - alphaBarPrev) / (1 - alphaBar)) * (1 - alphaBar / alphaBarPrev);
    const noiseStd = c.eta * Math.sqrt(variance);
    let prev = ddimUpdate(x0, eps, alphaBarPrev, noiseStd);
    if (c.eta > 0)
      prev = combine([
        [1, prev],
        [noiseStd, noise.normal(dims)],
      ]);
    this.stepIndex = index + 1;
    return toFloat32(prev);
  }
}
