/**
 * Exponential-integrator solvers of the diffusion ODE in log-SNR time (DPM-Solver, DPM-Solver++,
 * UniPC, DEIS). They work with x_t = alpha_t x0 + sigma_t eps, alpha_t^2 + sigma_t^2 = 1, and
 * lambda_t = log(alpha_t / sigma_t); a noise level sigma = sigma_t / alpha_t gives
 * alpha_t = 1 / sqrt(sigma^2 + 1). The initial noise has unit variance and the model input is
 * the sample itself.
 */
import { SchedulerBase } from "./base.js";
import {
  booleanField,
  type CommonDefaults,
  choiceField,
  fixedField,
  integerField,
  numberField,
  type PredictionType,
  scheduleFields,
  sigmaRampFields,
  trainingFields,
} from "./config.js";
import {
  type NoiseScheduleOptions,
  spacedTimesteps,
  type TimestepSpacing,
} from "./noise-schedule.js";
import {
  type ClippingOptions,
  clipOrThreshold,
  splitPrediction,
  type Tensor,
} from "./tensor-ops.js";

const f32 = Math.fround;

const SOLVER_DEFAULTS: CommonDefaults = {
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  timestep_spacing: "linspace",
};

/** Keys the solvers share, without the timestep spacing ones (DPM-Solver singlestep has none). */
export function solverCoreFields(maxOrder: number) {
  return {
    ...trainingFields(SOLVER_DEFAULTS),
    ...sigmaRampFields(),
    solver_order: integerField(2, 1, maxOrder),
    /** Lower the order in the last steps of short (< 15 step) schedules, for stability. */
    lower_order_final: booleanField(true),
    thresholding: booleanField(false),
    dynamic_thresholding_ratio: numberField(0.995, 0),
    sample_max_value: numberField(1, 0),
    use_flow_sigmas: fixedField(false, "flow-matching sigmas are not implemented"),
    flow_shift: fixedField(1, "flow-matching sigmas are not implemented"),
    use_dynamic_shifting: fixedField(false, "dynamic shifting is not implemented"),
    time_shift_type: fixedField("exponential", "dynamic shifting is not implemented"),
  };
}

/** Keys the solvers share. */
export function solverFields(maxOrder: number) {
  return { ...solverCoreFields(maxOrder), ...scheduleFields(SOLVER_DEFAULTS) };
}

/** The final noise level: 0 (to the clean sample) or the smallest training sigma. */
export function finalSigmaField() {
  return { final_sigmas_type: choiceField("zero", ["zero", "sigma_min"]) };
}

export interface SolverOptions extends NoiseScheduleOptions, ClippingOptions {
  readonly prediction_type: PredictionType;
  readonly timestep_spacing?: TimestepSpacing;
  readonly steps_offset?: number;
  readonly use_karras_sigmas: boolean;
  readonly solver_order: number;
  readonly lower_order_final: boolean;
}

/** alpha_t, sigma_t and lambda_t of a noise level. */
export interface NoiseLevel {
  readonly alpha: number;
  readonly sigma: number;
  readonly lambda: number;
}

export function noiseLevel(sigma: number): NoiseLevel {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const sigmaT = sigma * alpha;
  return { alpha, sigma: sigmaT, lambda: Math.log(alpha) - Math.log(sigmaT) };
}

export abstract class SolverScheduler<C extends SolverOptions> extends SchedulerBase<C> {
  override sigmas: readonly number[] = [];
  /** Converted model outputs of the last steps, newest last. */
  protected history: Float64Array[] = [];
  /** How many steps have run since `setTimesteps`, capped at the solver order. */
  protected warmSteps = 0;

  constructor(name: string, config: C) {
    super(name, config, true);
  }

  get initNoiseSigma(): number {
    return 1;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this.currentIndex(timestep);
    return sample;
  }

  protected noiseScales(timestep: number): { signal: number; noiseScale: number } {
    const level = noiseLevel(this.sigmas[this.noiseIndex(timestep)]);
    return { signal: level.alpha, noiseScale: level.sigma };
  }

  protected override resetState(): void {
    this.history = [];
    this.warmSteps = 0;
  }

  /**
   * Timesteps spaced over [0, lastTimestep) and their sigmas, then `finalSigma`. With
   * `use_karras_sigmas` the sigmas follow the Karras ramp over the whole training range and the
   * timesteps are the nearest integers.
   */
  protected planSigmas(
    steps: number,
    finalSigma: number,
    lastTimestep = this.config.num_train_timesteps,
  ): void {
    const c = this.config;
    const schedule = this.schedule;
    const spacing = c.timestep_spacing ?? "linspace";
    let timesteps = spacedTimesteps(
      spacing,
      c.num_train_timesteps,
      steps,
      c.steps_offset ?? 0,
      "solver",
      lastTimestep,
    );
    let sigmas: number[];
    if (c.use_karras_sigmas) {
      const last = schedule.sigmas[schedule.trainSteps - 1];
      ({ timesteps, sigmas } = schedule.karrasPlan(schedule.sigmas[0], last, steps, true));
    } else {
      sigmas = timesteps.map((t) => schedule.sigmaAt(t));
    }
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, finalSigma].map(f32);
  }

  /** The model output as a clean-sample estimate (data prediction), thresholded if asked. */
  protected dataPrediction(
    modelOutput: Tensor,
    sample: Tensor,
    sigma: number,
    dims: readonly number[],
  ): Float64Array {
    const level = noiseLevel(sigma);
    const { x0 } = splitPrediction(
      this.config.prediction_type,
      modelOutput,
      sample,
      level.alpha,
      level.sigma,
    );
    return clipOrThreshold(x0, this.config, dims);
  }

  /** The model output as a noise estimate (noise prediction). */
  protected noisePrediction(modelOutput: Tensor, sample: Tensor, sigma: number): Float64Array {
    const level = noiseLevel(sigma);
    return splitPrediction(
      this.config.prediction_type,
      modelOutput,
      sample,
      level.alpha,
      level.sigma,
    ).eps;
  }

  /** The model output as the clean-sample estimate (`data`) or as the noise estimate. */
  protected convertOutput(
    data: boolean,
    modelOutput: Tensor,
    sample: Tensor,
    sigma: number,
    dims: readonly number[],
  ): Float64Array {
    return data
      ? this.dataPrediction(modelOutput, sample, sigma, dims)
      : this.noisePrediction(modelOutput, sample, sigma);
  }

  /** Counts a finished step towards the solver order (the first steps run at lower order). */
  protected warmUp(): void {
    this.warmSteps = Math.min(this.warmSteps + 1, this.config.solver_order);
  }

  /** Keeps the newest `solver_order` entries. */
  protected remember(converted: Float64Array): void {
    this.history.push(converted);
    if (this.history.length > this.config.solver_order) this.history.shift();
  }

  /**
   * How many training timesteps, from 0 up, have lambda >= `lambdaMin`: the schedule is cut
   * where the log-SNR gets too low, which cosine schedules need.
   */
  protected stepsAboveLambda(lambdaMin: number): number {
    const ac = this.schedule.alphasCumprod;
    let end = ac.length;
    while (end > 0 && 0.5 * Math.log(ac[end - 1] / (1 - ac[end - 1])) < lambdaMin) end--;
    return end;
  }

  /** The smallest training sigma, the last level of `final_sigmas_type: "sigma_min"`. */
  protected get smallestSigma(): number {
    return this.schedule.sigmas[0];
  }

  /** The last noise level `final_sigmas_type` asks for. */
  protected finalSigma(type: "zero" | "sigma_min"): number {
    return type === "zero" ? 0 : this.smallestSigma;
  }
}

/**
 * A noise-prediction solver steps with e^h in lambda, which is infinite at sigma 0; refuses that
 * combination at construction.
 */
export function checkFinalSigma(
  name: string,
  dataPrediction: boolean,
  algorithm: string,
  finalSigmasType: "zero" | "sigma_min",
): void {
  if (!dataPrediction && finalSigmasType === "zero") {
    throw new Error(
      `${name}: algorithm_type ${algorithm} cannot step to sigma 0; set final_sigmas_type to "sigma_min"`,
    );
  }
}
