/**
 * DPM2: the second-order sampler of Karras et al. (2022), sec. 3, as in Crowson's k-diffusion:
 * a midpoint method in log sigma (DPM-Solver-2 of Lu et al., "DPM-Solver: A Fast ODE Solver
 * for Diffusion Probabilistic Model Sampling", 2022). Each step takes an Euler step to the
 * geometric mean of sigma_i and sigma_{i+1}, evaluates the model there, and steps from sigma_i
 * to sigma_{i+1} with that slope. The last step, to 0, is a single Euler step.
 */
import type { StepInput } from "./base.js";
import type { ConfigOf } from "./config.js";
import {
  doubleAfterFirst,
  eulerStep,
  type SigmaSamplerOptions,
  SigmaScheduler,
  sigmaSamplerFields,
} from "./sigma-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

const f32 = Math.fround;

export const DPM2_FIELDS = sigmaSamplerFields({
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear",
  timestep_spacing: "linspace",
});
export type Dpm2Config = ConfigOf<typeof DPM2_FIELDS>;

/** exp of the float32 midpoint of log a and log b: the geometric mean, 0 if either is 0. */
export function logMidpoint(a: number, b: number): number {
  const start = f32(Math.log(a));
  const end = f32(Math.log(b));
  return f32(Math.exp(f32(end - f32(f32(end - start) * 0.5))));
}

/**
 * The two-evaluation structure both DPM2 variants share. `timesteps` interleave the levels with
 * the midpoints: [t(sigma_0), t(mid_0), t(sigma_1), t(mid_1), ..., t(sigma_{n-1})].
 */
export abstract class Dpm2Base<C extends SigmaSamplerOptions> extends SigmaScheduler<C> {
  override readonly order = 2;
  /** The midpoint sigmas, interleaved like `sigmas`. */
  protected midpoints: readonly number[] = [];
  /** The sample the current step started from, between its two model calls. */
  protected firstHalf: Float32Array | undefined;

  protected override resetState(): void {
    this.firstHalf = undefined;
  }

  /** Lays out levels (with the final 0 last) and per-level midpoints and their timesteps. */
  protected layOut(
    levelTimesteps: readonly number[],
    levels: readonly number[],
    mids: readonly number[],
    midTimesteps: readonly number[],
  ): void {
    this.sigmas = [...doubleAfterFirst(levels), levels[levels.length - 1]];
    this.midpoints = [...doubleAfterFirst(mids), mids[mids.length - 1]];
    const timesteps = [levelTimesteps[0]];
    for (let i = 1; i < levelTimesteps.length; i++)
      timesteps.push(midTimesteps[i - 1], levelTimesteps[i]);
    this.timesteps = timesteps;
  }

  /** The timestep of a float32 sigma, computed in float32 as the reference does for these. */
  protected midpointTimestep(sigma: number): number {
    return this.schedule.timestepForSigma(sigma, true);
  }

  /** An Euler step from the level at `index` to the midpoint `target`, remembering the start. */
  protected takeFirstHalf(
    modelOutput: Tensor,
    sample: Float32Array,
    index: number,
    target: number,
  ): Float64Array {
    const sigma = this.sigmas[index];
    this.firstHalf = sample;
    return eulerStep(sample, this.denoised(modelOutput, sample, sigma), sigma, target);
  }

  /** From the step's starting sample to `to`, with the slope (x - x0) / mid at the midpoint. */
  protected takeSecondHalf(
    modelOutput: Tensor,
    sample: Float32Array,
    mid: number,
    from: number,
    to: number,
  ): Float64Array {
    const x0 = this.denoised(modelOutput, sample, mid);
    const start = this.firstHalf as Float32Array;
    this.firstHalf = undefined;
    const scale = (to - from) / mid;
    return combine([
      [1, start],
      [scale, sample],
      [-scale, x0],
    ]);
  }
}

export class Dpm2Scheduler extends Dpm2Base<Dpm2Config> {
  protected computeTimesteps(steps: number): void {
    const plan = this.planSigmas(steps, true);
    const levels = [...plan.sigmas, 0].map(f32);
    // mids[k] lies between levels[k - 1] and levels[k]; mids[0] is unused.
    const mids = levels.map((s, k) => (k === 0 ? Number.NaN : logMidpoint(s, levels[k - 1])));
    const midTimesteps = mids.slice(1, -1).map((s) => this.midpointTimestep(s));
    this.layOut(plan.timesteps, levels, mids, midTimesteps);
  }

  protected override inputSigma(index: number): number {
    return this.firstHalf === undefined ? this.sigmas[index] : this.midpoints[index];
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, index } = input;
    if (this.firstHalf === undefined) {
      return this.takeFirstHalf(modelOutput, sample, index, this.midpoints[index + 1]);
    }
    const mid = this.midpoints[index];
    return this.takeSecondHalf(
      modelOutput,
      sample,
      mid,
      this.sigmas[index - 1],
      this.sigmas[index],
    );
  }
}
