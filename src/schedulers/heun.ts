/**
 * Heun: Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models"
 * (2022), Algorithm 1: an Euler step to the next noise level, then a second model evaluation
 * there and a step from the start with the mean of both slopes (trapezoidal rule). The last
 * step, to sigma = 0, is a plain Euler step. Each noise level but the first is listed twice in
 * `timesteps`, once per model evaluation.
 */
import type { StepInput } from "./base.js";
import { booleanField, type ConfigOf, numberField } from "./config.js";
import { doubleAfterFirst, odeSlope, SigmaScheduler, sigmaSamplerFields } from "./sigma-base.js";
import { clipOrThreshold, combine } from "./tensor-ops.js";

const f32 = Math.fround;

export const HEUN_FIELDS = {
  ...sigmaSamplerFields({
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
  }),
  clip_sample: booleanField(false),
  clip_sample_range: numberField(1, 0),
};
export type HeunConfig = ConfigOf<typeof HEUN_FIELDS>;

interface FirstHalf {
  readonly sample: Float32Array;
  readonly slope: Float64Array;
  readonly dt: number;
}

export class HeunScheduler extends SigmaScheduler<HeunConfig> {
  override readonly order = 2;
  private firstHalf: FirstHalf | undefined;

  protected computeTimesteps(steps: number): void {
    const plan = this.planSigmas(steps);
    const sigmas = plan.sigmas.map(f32);
    this.timesteps = doubleAfterFirst(plan.timesteps);
    this.sigmas = [...doubleAfterFirst(sigmas), 0];
  }

  protected override resetState(): void {
    this.firstHalf = undefined;
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, dims, index } = input;
    // The first half evaluates at sigma_i; the correction at the Euler step's end, sigma_{i+1},
    // which is listed again at `index`.
    const sigma = this.sigmas[index];
    const x0 = clipOrThreshold(this.denoised(modelOutput, sample, sigma), this.config, dims);
    const slope = odeSlope(sample, x0, sigma);
    const first = this.firstHalf;
    if (first === undefined) {
      const dt = this.sigmas[index + 1] - sigma;
      this.firstHalf = { sample, slope, dt };
      return combine([
        [1, sample],
        [dt, slope],
      ]);
    }
    this.firstHalf = undefined;
    return combine([
      [1, first.sample],
      [first.dt / 2, first.slope],
      [first.dt / 2, slope],
    ]);
  }
}
