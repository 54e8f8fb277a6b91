/**
 * LMS: the linear multistep method on the probability-flow ODE dx/dsigma = (x - x0) / sigma
 * of Karras et al. (2022), as used by Crowson's k-diffusion: the slope is integrated over
 * [sigma_i, sigma_{i+1}] as the polynomial through the last `lms_order` slopes (an
 * Adams-Bashforth method on a non-uniform sigma grid).
 */
import type { StepInput } from "./base.js";
import { type ConfigOf, integerField } from "./config.js";
import { integrate, lagrangeBasis } from "./polynomial.js";
import { odeSlope, SigmaScheduler, sigmaSamplerFields } from "./sigma-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export const LMS_FIELDS = {
  ...sigmaSamplerFields({
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
  }),
  /** How many earlier slopes the multistep polynomial goes through (a step argument elsewhere). */
  lms_order: integerField(4, 1, 4),
};
export type LmsConfig = ConfigOf<typeof LMS_FIELDS>;

export class LmsScheduler extends SigmaScheduler<LmsConfig> {
  /** Slopes of the last steps, newest last. */
  private slopes: Float64Array[] = [];

  protected computeTimesteps(steps: number): void {
    this.adoptPlan(this.planSigmas(steps));
  }

  protected override resetState(): void {
    this.slopes = [];
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, index } = input;
    const sigma = this.sigmas[index];
    this.slopes.push(odeSlope(sample, this.denoised(modelOutput, sample, sigma), sigma));
    if (this.slopes.length > this.config.lms_order) this.slopes.shift();
    // Node k is the sigma of the slope k steps back.
    const order = this.slopes.length;
    const nodes = Array.from({ length: order }, (_, k) => this.sigmas[index - k]);
    const terms: [number, Tensor][] = [[1, sample]];
    for (let k = 0; k < order; k++) {
      const weight = integrate(lagrangeBasis(nodes, k), sigma, this.sigmas[index + 1]);
      terms.push([weight, this.slopes[order - 1 - k]]);
    }
    return combine(terms);
  }
}
