/**
 * DPM-Solver and DPM-Solver++, singlestep: Lu et al., "DPM-Solver" (2022), Algorithm 1
 * (DPM-Solver-2), and "DPM-Solver++" (2022), Algorithm 1 (DPM-Solver++(2S)). The schedule is cut
 * into blocks of one or two steps; a second-order block evaluates the model at its start and at
 * an intermediate level, then steps from the block's start with both.
 */
import type { StepInput } from "./base.js";
import { type ConfigOf, choiceField, fixedField, numberField } from "./config.js";
import { type DpmAlgorithm, dpmUpdateTerms, isDataPrediction } from "./dpm-solver-multistep.js";
import {
  checkFinalSigma,
  finalSigmaField,
  noiseLevel,
  SolverScheduler,
  solverCoreFields,
} from "./solver-base.js";
import { combine } from "./tensor-ops.js";

export const DPM_SOLVER_SINGLESTEP_FIELDS = {
  ...solverCoreFields(2),
  ...finalSigmaField(),
  algorithm_type: choiceField<DpmAlgorithm>("dpmsolver++", [
    "dpmsolver++",
    "sde-dpmsolver++",
    "dpmsolver",
  ]),
  solver_type: choiceField("midpoint", ["midpoint", "heun"]),
  lambda_min_clipped: numberField(Number.NEGATIVE_INFINITY),
  variance_type: fixedField(null, "learned variances are not implemented"),
};
export type DpmSolverSinglestepConfig = ConfigOf<typeof DPM_SOLVER_SINGLESTEP_FIELDS>;

export class DpmSolverSinglestepScheduler extends SolverScheduler<DpmSolverSinglestepConfig> {
  /** The solver order of each step. */
  private orders: number[] = [];
  /** The sample at the start of the current block. */
  private blockStart: Float32Array | undefined;

  constructor(name: string, config: DpmSolverSinglestepConfig) {
    super(name, config);
    const algorithm = config.algorithm_type;
    checkFinalSigma(name, isDataPrediction(algorithm), algorithm, config.final_sigmas_type);
  }

  protected computeTimesteps(steps: number): void {
    const c = this.config;
    // This sampler has no spacing options: linspace, no offset.
    const lastTimestep = this.stepsAboveLambda(c.lambda_min_clipped);
    this.planSigmas(steps, this.finalSigma(c.final_sigmas_type), lastTimestep);
    // Blocks of [1, 2]. The step to sigma 0 has to be first order (its lambda is infinite), and
    // so does a lone leftover step: with lower_order_final an even count ends [..., 1, 2, 1, 1].
    const lowerFinal = c.lower_order_final || c.final_sigmas_type === "zero";
    this.orders = Array.from({ length: steps }, (_, i) =>
      c.solver_order === 2 && i % 2 === 1 ? 2 : 1,
    );
    if (lowerFinal && c.solver_order === 2 && steps % 2 === 0) this.orders[steps - 1] = 1;
  }

  protected override resetState(): void {
    super.resetState();
    this.blockStart = undefined;
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, noise, dims, index } = input;
    const c = this.config;
    const sigma = this.sigmas[index];
    const data = isDataPrediction(c.algorithm_type);
    this.remember(this.convertOutput(data, modelOutput, sample, sigma, dims));
    const z = c.algorithm_type === "sde-dpmsolver++" ? noise.normal(dims) : undefined;
    // A run that starts mid-block (img2img) has no earlier output: start a new block.
    let order = this.orders[index];
    if (order === 2 && (this.history.length < 2 || this.blockStart === undefined)) order = 1;
    if (order === 1) this.blockStart = sample;
    const start = this.blockStart as Float32Array;
    const h = this.history;
    const t = noiseLevel(this.sigmas[index + 1]);
    let terms: ReturnType<typeof dpmUpdateTerms>;
    if (order === 1) {
      terms = dpmUpdateTerms(
        c.algorithm_type,
        c.solver_type,
        { s: noiseLevel(sigma), t },
        start,
        h[h.length - 1],
        undefined,
        z,
      );
    } else {
      // From the block start s1 with the output there (m1) and at the intermediate level s0 (m0).
      const s1 = noiseLevel(this.sigmas[index - 1]);
      const s0 = noiseLevel(sigma);
      const r0 = (s0.lambda - s1.lambda) / (t.lambda - s1.lambda);
      const m0 = h[h.length - 1];
      const m1 = h[h.length - 2];
      const d1 = combine([
        [1 / r0, m0],
        [-1 / r0, m1],
      ]);
      terms = dpmUpdateTerms(c.algorithm_type, c.solver_type, { s: s1, t }, start, m1, d1, z);
    }
    return combine(terms);
  }
}
