/**
 * DPM-Solver and DPM-Solver++, multistep: Lu et al., "DPM-Solver: A Fast ODE Solver for
 * Diffusion Probabilistic Model Sampling in Around 10 Steps" (NeurIPS 2022), and "DPM-Solver++:
 * Fast Solver for Guided Sampling of Diffusion Probabilistic Models" (2022), Algorithms 1-2
 * and the multistep updates of its appendix; the SDE variants are the stochastic solvers of
 * DPM-Solver++ sec. 5 (as in "DPM++ 2M SDE"). Each step integrates the ODE exactly in
 * lambda = log(alpha / sigma) for a model output that is a polynomial (order 1-3) through the
 * last outputs.
 */
import type { StepInput } from "./base.js";
import { booleanField, type ConfigOf, choiceField, fixedField, numberField } from "./config.js";
import {
  checkFinalSigma,
  finalSigmaField,
  noiseLevel,
  SolverScheduler,
  solverFields,
} from "./solver-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export type DpmAlgorithm = "dpmsolver++" | "sde-dpmsolver++" | "dpmsolver" | "sde-dpmsolver";

export const DPM_SOLVER_MULTISTEP_FIELDS = {
  ...solverFields(3),
  ...finalSigmaField(),
  rescale_betas_zero_snr: booleanField(false),
  algorithm_type: choiceField<DpmAlgorithm>("dpmsolver++", [
    "dpmsolver++",
    "sde-dpmsolver++",
    "dpmsolver",
    "sde-dpmsolver",
  ]),
  /** How the second-order term is formed: midpoint or Heun (trapezoidal). */
  solver_type: choiceField("midpoint", ["midpoint", "heun"]),
  /** Take the last step with Euler (first order) whatever the schedule length. */
  euler_at_final: booleanField(false),
  /** Timesteps whose lambda is below this are not used (cosine schedules). */
  lambda_min_clipped: numberField(Number.NEGATIVE_INFINITY),
  variance_type: fixedField(null, "learned variances are not implemented"),
  use_lu_lambdas: fixedField(false, "Lu lambdas are not implemented"),
};
export type DpmSolverMultistepConfig = ConfigOf<typeof DPM_SOLVER_MULTISTEP_FIELDS>;

/** The coefficients of one exponential-integrator step from s to t. */
export interface StepEnds {
  readonly s: ReturnType<typeof noiseLevel>;
  readonly t: ReturnType<typeof noiseLevel>;
}

/**
 * Terms of a DPM-Solver(++) update of order 1-2 from `sample` at s to t: `d0` is the model
 * output (x0 or eps) at s, `d1` its first divided difference scaled to the step (zero for
 * first order). Returns the update as coefficient/tensor pairs.
 */
export function dpmUpdateTerms(
  algorithm: DpmAlgorithm,
  solverType: "midpoint" | "heun",
  { s, t }: StepEnds,
  sample: Tensor,
  d0: Tensor,
  d1: Tensor | undefined,
  noise: Tensor | undefined,
): [number, Tensor][] {
  const h = t.lambda - s.lambda;
  const terms: [number, Tensor][] = [];
  switch (algorithm) {
    case "dpmsolver++": {
      const phi = Math.expm1(-h); // e^-h - 1
      terms.push([t.sigma / s.sigma, sample], [-t.alpha * phi, d0]);
      if (d1)
        terms.push([
          solverType === "midpoint" ? -0.5 * t.alpha * phi : t.alpha * (phi / h + 1),
          d1,
        ]);
      break;
    }
    case "sde-dpmsolver++": {
      const phi = -Math.expm1(-2 * h); // 1 - e^-2h
      terms.push([(t.sigma / s.sigma) * Math.exp(-h), sample], [t.alpha * phi, d0]);
      if (d1)
        terms.push([
          solverType === "midpoint" ? 0.5 * t.alpha * phi : t.alpha * (phi / (-2 * h) + 1),
          d1,
        ]);
      terms.push([t.sigma * Math.sqrt(phi), noise as Tensor]);
      break;
    }
    case "dpmsolver": {
      const phi = Math.expm1(h); // e^h - 1
      terms.push([t.alpha / s.alpha, sample], [-t.sigma * phi, d0]);
      if (d1)
        terms.push([
          solverType === "midpoint" ? -0.5 * t.sigma * phi : -t.sigma * (phi / h - 1),
          d1,
        ]);
      break;
    }
    case "sde-dpmsolver": {
      const phi = Math.expm1(h);
      terms.push([t.alpha / s.alpha, sample], [-2 * t.sigma * phi, d0]);
      if (d1)
        terms.push([solverType === "midpoint" ? -t.sigma * phi : -2 * t.sigma * (phi / h - 1), d1]);
      terms.push([t.sigma * Math.sqrt(Math.expm1(2 * h)), noise as Tensor]);
      break;
    }
  }
  return terms;
}

export function isDataPrediction(algorithm: DpmAlgorithm): boolean {
  return algorithm === "dpmsolver++" || algorithm === "sde-dpmsolver++";
}

export class DpmSolverMultistepScheduler extends SolverScheduler<DpmSolverMultistepConfig> {
  constructor(name: string, config: DpmSolverMultistepConfig) {
    super(name, config);
    const algorithm = config.algorithm_type;
    checkFinalSigma(name, isDataPrediction(algorithm), algorithm, config.final_sigmas_type);
    if (algorithm.startsWith("sde-") && config.solver_order > 2) {
      throw new Error(
        `${name}: ${config.algorithm_type} supports solver_order 1 or 2, got ${config.solver_order}`,
      );
    }
  }

  protected computeTimesteps(steps: number): void {
    const c = this.config;
    const lastTimestep = this.stepsAboveLambda(c.lambda_min_clipped);
    this.planSigmas(steps, this.finalSigma(c.final_sigmas_type), lastTimestep);
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, noise, dims, index } = input;
    const c = this.config;
    const count = this.timesteps.length;
    const short = c.lower_order_final && count < 15;
    const lowerFinal =
      index === count - 1 && (c.euler_at_final || short || c.final_sigmas_type === "zero");
    const lowerSecond = index === count - 2 && short;
    const data = isDataPrediction(c.algorithm_type);
    this.remember(this.convertOutput(data, modelOutput, sample, this.sigmas[index], dims));
    const z = c.algorithm_type.startsWith("sde-") ? noise.normal(dims) : undefined;
    let order = 3;
    if (c.solver_order === 1 || this.warmSteps < 1 || lowerFinal) order = 1;
    else if (c.solver_order === 2 || this.warmSteps < 2 || lowerSecond) order = 2;
    const prev = this.update(order, index, sample, z);
    this.warmUp();
    return prev;
  }

  private update(
    order: number,
    index: number,
    sample: Tensor,
    z: Tensor | undefined,
  ): Float64Array {
    const c = this.config;
    const h = this.history;
    const level = (i: number) => noiseLevel(this.sigmas[i]);
    const ends = { s: level(index), t: level(index + 1) };
    const m0 = h[h.length - 1];
    if (order === 1) {
      return combine(
        dpmUpdateTerms(c.algorithm_type, c.solver_type, ends, sample, m0, undefined, z),
      );
    }
    const stepH = ends.t.lambda - ends.s.lambda;
    const s1 = level(index - 1);
    const r0 = (ends.s.lambda - s1.lambda) / stepH;
    const d1First = combine([
      [1 / r0, m0],
      [-1 / r0, h[h.length - 2]],
    ]);
    if (order === 2) {
      return combine(dpmUpdateTerms(c.algorithm_type, c.solver_type, ends, sample, m0, d1First, z));
    }
    // Third order (ODE solvers only): second divided differences through three outputs.
    const s2 = level(index - 2);
    const r1 = (s1.lambda - s2.lambda) / stepH;
    const d1Second = combine([
      [1 / r1, h[h.length - 2]],
      [-1 / r1, h[h.length - 3]],
    ]);
    const d1 = combine([
      [1 + r0 / (r0 + r1), d1First],
      [-r0 / (r0 + r1), d1Second],
    ]);
    const d2 = combine([
      [1 / (r0 + r1), d1First],
      [-1 / (r0 + r1), d1Second],
    ]);
    const { s, t } = ends;
    if (c.algorithm_type === "dpmsolver++") {
      const phi = Math.expm1(-stepH);
      return combine([
        [t.sigma / s.sigma, sample],
        [-t.alpha * phi, m0],
        [t.alpha * (phi / stepH + 1), d1],
        [-t.alpha * ((phi + stepH) / (stepH * stepH) - 0.5), d2],
      ]);
    }
    const phi = Math.expm1(stepH);
    return combine([
      [t.alpha / s.alpha, sample],
      [-t.sigma * phi, m0],
      [-t.sigma * (phi / stepH - 1), d1],
      [-t.sigma * ((phi - stepH) / (stepH * stepH) - 0.5), d2],
    ]);
  }
}
