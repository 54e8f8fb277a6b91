/**
 * TCD: Zheng et al., "Trajectory Consistency Distillation" (2024), Algorithm 4 (strategic
 * stochastic sampling): from the clean-sample and noise estimates the sample is moved to an
 * intermediate timestep s = floor((1 - gamma) * t_prev) along the trajectory, then noised
 * forward to t_prev; gamma (`eta`) = 0 is deterministic.
 */
import type { StepInput } from "./base.js";
import { type ConfigOf, numberField } from "./config.js";
import { ddimUpdate, diffuseForward } from "./discrete-base.js";
import { ConsistencyScheduler, consistencyFields } from "./lcm.js";

export const TCD_FIELDS = {
  ...consistencyFields(),
  /** The paper's gamma, the stochasticity of each step (a step argument elsewhere). */
  eta: numberField(0.3, 0),
};
export type TcdConfig = ConfigOf<typeof TCD_FIELDS>;

export class TcdScheduler extends ConsistencyScheduler<TcdConfig> {
  constructor(name: string, config: TcdConfig) {
    super(name, config);
    if (config.eta > 1)
      throw new Error(`${name}: eta (gamma) must be in [0, 1], got ${config.eta}`);
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, timestep, sample, noise, dims, index } = input;
    const eta = this.config.eta;
    const last = index === this.timesteps.length - 1;
    const prevTimestep = last ? 0 : this.timesteps[index + 1];
    const intermediate = Math.floor((1 - eta) * prevTimestep);
    const alphaBar = this.schedule.alphaCumprod(timestep);
    const alphaBarPrev = this.schedule.alphaCumprod(prevTimestep);
    const alphaBarS = this.schedule.alphaCumprod(intermediate);
    const { x0, eps } = this.estimates(modelOutput, sample, alphaBar, dims);
    const atIntermediate = ddimUpdate(x0, eps, alphaBarS);
    if (eta === 0 || last) return atIntermediate;
    return diffuseForward(atIntermediate, alphaBarPrev / alphaBarS, noise.normal(dims));
  }
}
