/**
 * DPM2 ancestral: DPM2 (Karras et al. 2022; Lu et al. 2022) stepping to sigma_down instead of
 * sigma_next, then adding fresh noise of standard deviation sigma_up, the ancestral split of
 * Euler ancestral. The midpoint lies between sigma_i and sigma_down.
 */
import type { StepInput } from "./base.js";
import { DPM2_FIELDS, Dpm2Base, type Dpm2Config, logMidpoint } from "./dpm2.js";
import { ancestralSplit } from "./euler-ancestral.js";
import { doubleAfterFirst } from "./sigma-base.js";
import { combine } from "./tensor-ops.js";

const f32 = Math.fround;

export const DPM2_ANCESTRAL_FIELDS = DPM2_FIELDS;

export class Dpm2AncestralScheduler extends Dpm2Base<Dpm2Config> {
  private ups: readonly number[] = [];
  private downs: readonly number[] = [];

  protected computeTimesteps(steps: number): void {
    const plan = this.planSigmas(steps, true);
    const levels = [...plan.sigmas, 0].map(f32);
    const splits = levels.map((s, k) =>
      k + 1 < levels.length ? ancestralSplit(s, levels[k + 1]) : { up: 0, down: 0 },
    );
    const downs = splits.map((split) => f32(split.down));
    // The last two midpoints lead to sigma = 0 and are not evaluated.
    const mids = levels.map((s, k) => (k >= levels.length - 2 ? 0 : logMidpoint(s, downs[k])));
    const midTimesteps = mids.slice(0, -2).map((s) => this.midpointTimestep(s));
    this.layOut(plan.timesteps, levels, mids, midTimesteps);
    this.ups = [...doubleAfterFirst(splits.map((split) => f32(split.up))), 0];
    this.downs = [...doubleAfterFirst(downs), 0];
  }

  protected override inputSigma(index: number): number {
    return this.firstHalf === undefined ? this.sigmas[index] : this.midpoints[index - 1];
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, noise, dims, index } = input;
    if (this.firstHalf === undefined) {
      return this.takeFirstHalf(modelOutput, sample, index, this.midpoints[index]);
    }
    const mid = this.midpoints[index - 1];
    const from = this.sigmas[index - 1];
    return combine([
      [1, this.takeSecondHalf(modelOutput, sample, mid, from, this.downs[index - 1])],
      [this.ups[index - 1], noise.normal(dims)],
    ]);
  }
}
