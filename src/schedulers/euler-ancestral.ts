/**
 * Euler ancestral: an Euler step of the probability-flow ODE of Karras et al. (2022) down to
 * sigma_down, then fresh noise of standard deviation sigma_up, with
 * sigma_up^2 + sigma_down^2 = sigma_next^2 chosen so the step has the marginal of DDPM's
 * ancestral sampling (Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", 2020).
 */
import type { StepInput } from "./base.js";
import { type ConfigOf, scheduleFields, zeroSnrField } from "./config.js";
import { eulerStep, SigmaScheduler } from "./sigma-base.js";
import { combine } from "./tensor-ops.js";

const f32 = Math.fround;

export const EULER_ANCESTRAL_FIELDS = {
  ...scheduleFields({
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
  }),
  ...zeroSnrField(),
};
export type EulerAncestralConfig = ConfigOf<typeof EULER_ANCESTRAL_FIELDS>;

/**
 * The split of a step from `sigma` to `sigmaNext` into a deterministic part (to `down`) and
 * fresh noise (`up`), in float32 like the reference's schedule tables.
 */
export function ancestralSplit(sigma: number, sigmaNext: number): { up: number; down: number } {
  const sigma2 = f32(sigma * sigma);
  const next2 = f32(sigmaNext * sigmaNext);
  const up = f32(Math.sqrt(f32(f32(next2 * f32(sigma2 - next2)) / sigma2)));
  return { up, down: f32(Math.sqrt(f32(next2 - f32(up * up)))) };
}

export class EulerAncestralScheduler extends SigmaScheduler<EulerAncestralConfig> {
  protected computeTimesteps(steps: number): void {
    this.adoptPlan(this.planSigmas(steps));
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, noise, dims, index } = input;
    const sigma = this.sigmas[index];
    const x0 = this.denoised(modelOutput, sample, sigma);
    const { up, down } = ancestralSplit(sigma, this.sigmas[index + 1]);
    return combine([
      [1, eulerStep(sample, x0, sigma, down)],
      [up, noise.normal(dims)],
    ]);
  }
}
