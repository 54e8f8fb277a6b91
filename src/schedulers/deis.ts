/**
 * DEIS: Zhang and Chen, "Fast Sampling of Diffusion Models with Exponential Integrator"
 * (ICLR 2023), the multistep "logrho" variant: in rho = sigma_t / alpha_t the ODE is
 * d(x / alpha) = eps d rho, and eps is extrapolated by the polynomial in log rho through the
 * last `solver_order` noise estimates, whose integrals against d rho = e^u du (u = log rho)
 * are exact.
 */
import type { StepInput } from "./base.js";
import { type ConfigOf, fixedField } from "./config.js";
import { integrateTimesExp, lagrangeBasis } from "./polynomial.js";
import { noiseLevel, SolverScheduler, solverFields } from "./solver-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export const DEIS_FIELDS = {
  ...solverFields(3),
  algorithm_type: fixedField("deis", "only the DEIS algorithm is implemented"),
  solver_type: fixedField("logrho", "only the logrho variant is implemented"),
};
export type DeisConfig = ConfigOf<typeof DEIS_FIELDS>;

export class DeisScheduler extends SolverScheduler<DeisConfig> {
  protected computeTimesteps(steps: number): void {
    // log rho is unbounded at sigma = 0, so the schedule ends at the smallest training sigma.
    this.planSigmas(steps, this.smallestSigma);
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, dims, index } = input;
    const c = this.config;
    const count = this.timesteps.length;
    const short = c.lower_order_final && count < 15;
    const s = noiseLevel(this.sigmas[index]);
    // The clean-sample estimate (thresholded if asked) back as a noise estimate.
    const x0 = this.dataPrediction(modelOutput, sample, this.sigmas[index], dims);
    this.remember(
      combine([
        [1 / s.sigma, sample],
        [-s.alpha / s.sigma, x0],
      ]),
    );
    let order = Math.min(c.solver_order, this.warmSteps + 1);
    if (short && index === count - 1) order = 1;
    if (short && index === count - 2) order = Math.min(order, 2);
    const t = noiseLevel(this.sigmas[index + 1]);
    const logRho = (i: number) =>
      Math.log(noiseLevel(this.sigmas[i]).sigma / noiseLevel(this.sigmas[i]).alpha);
    const nodes = Array.from({ length: order }, (_, k) => logRho(index - k));
    const terms: [number, Tensor][] = [[t.alpha / s.alpha, sample]];
    for (let k = 0; k < order; k++) {
      const weight = integrateTimesExp(
        lagrangeBasis(nodes, k),
        nodes[0],
        Math.log(t.sigma / t.alpha),
      );
      terms.push([t.alpha * weight, this.history[this.history.length - 1 - k]]);
    }
    this.warmUp();
    return combine(terms);
  }
}
