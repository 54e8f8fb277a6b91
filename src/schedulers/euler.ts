/**
 * Euler: Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models"
 * (2022), Algorithm 2 without churn: one Euler step of dx/dsigma = (x - x0) / sigma per noise
 * level.
 */
import type { StepInput } from "./base.js";
import {
  type ConfigOf,
  choiceField,
  fixedField,
  nullableNumberField,
  zeroSnrField,
} from "./config.js";
import { eulerStep, SigmaScheduler, sigmaSamplerFields } from "./sigma-base.js";

export const EULER_FIELDS = {
  ...sigmaSamplerFields({
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
  }),
  ...zeroSnrField(),
  /** Karras ramp bounds; null takes them from the training schedule. */
  sigma_min: nullableNumberField(null),
  sigma_max: nullableNumberField(null),
  /** The last noise level: 0, or the smallest training sigma. */
  final_sigmas_type: choiceField("zero", ["zero", "sigma_min"]),
  interpolation_type: fixedField("linear", "sigmas are interpolated linearly in t"),
  timestep_type: fixedField("discrete", "only discrete timesteps are implemented"),
};
export type EulerConfig = ConfigOf<typeof EULER_FIELDS>;

export class EulerScheduler extends SigmaScheduler<EulerConfig> {
  protected computeTimesteps(steps: number): void {
    const c = this.config;
    const plan = this.planSigmas(steps, false, c.sigma_min ?? undefined, c.sigma_max ?? undefined);
    this.adoptPlan(plan, c.final_sigmas_type === "zero" ? 0 : this.schedule.sigmas[0]);
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, index } = input;
    const sigma = this.sigmas[index];
    const x0 = this.denoised(modelOutput, sample, sigma);
    return eulerStep(sample, x0, sigma, this.sigmas[index + 1]);
  }
}
