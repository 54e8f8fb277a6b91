/**
 * TCD: Zheng et al., "Trajectory Consistency Distillation" (2024), Algorithm 4 (strategic
 * stochastic sampling): from the clean-sample and noise estimates the sample is moved to an
 * intermediate timestep s = floor((1 - gamma) * t_prev) along the trajectory, then noised
 * forward to t_prev; gamma (`eta`) = 0 is deterministic.
 */
import type { NoiseSource } from "../util/random.js";
import { checkSameLength } from "./base.js";
import { type ConfigOf, numberField } from "./config.js";
import { DiscreteScheduler, ddimUpdate } from "./discrete-base.js";
import { consistencyFields, consistencyTimesteps } from "./lcm.js";
import { combine, toFloat32 } from "./tensor-ops.js";

export const TCD_FIELDS = {
  ...consistencyFields(),
  /** The paper's gamma, the stochasticity of each step (a step argument elsewhere). */
  eta: numberField(0.3, 0),
};
export type TcdConfig = ConfigOf<typeof TCD_FIELDS>;

export class TcdScheduler extends DiscreteScheduler<TcdConfig> {
  constructor(name: string, config: TcdConfig) {
    super(name, config);
    if (config.eta > 1)
      throw new Error(`${name}: eta (gamma) must be in [0, 1], got ${config.eta}`);
  }

  protected computeTimesteps(steps: number): void {
    this.timesteps = consistencyTimesteps(this.name, this.config, steps);
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
    const last = index === this.timesteps.length - 1;
    const prevTimestep = last ? 0 : this.timesteps[index + 1];
    const intermediate = Math.floor((1 - c.eta) * prevTimestep);
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.schedule.alphaCumprod(prevTimestep);
    const alphaBarS = this.schedule.alphaCumprod(intermediate);
    const { x0, eps } = this.estimates(modelOutput, sample, alphaBar, dims);
    const atIntermediate = ddimUpdate(x0, eps, alphaBarS);
    this.stepIndex = index + 1;
    if (c.eta === 0 || last) return toFloat32(atIntermediate);
    const ratio = alphaBarPrev / alphaBarS;
    return toFloat32(
      combine([
        [Math.sqrt(ratio), atIntermediate],
        [Math.sqrt(1 - ratio), noise.normal(dims)],
      ]),
    );
  }
}
