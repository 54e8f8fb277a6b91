/**
 * Samplers that step between integer training timesteps with alpha-bar directly (DDPM, DDIM,
 * PNDM, LCM, TCD): the sample is x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps, the
 * initial noise has unit variance and the model input is the sample itself.
 */
import { SchedulerBase } from "./base.js";
import type { CommonDefaults, PredictionType } from "./config.js";
import {
  type NoiseScheduleOptions,
  spacedTimesteps,
  type TimestepSpacing,
} from "./noise-schedule.js";
import {
  type ClippingOptions,
  clipOrThreshold,
  combine,
  splitPrediction,
  type Tensor,
} from "./tensor-ops.js";

/** The training schedule of DDPM (Ho et al. 2020), the default of DDIM and PNDM too. */
export const DDPM_DEFAULTS: CommonDefaults = {
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  timestep_spacing: "leading",
};

export interface DiscreteOptions extends NoiseScheduleOptions, ClippingOptions {
  readonly prediction_type: PredictionType;
  readonly timestep_spacing: TimestepSpacing;
  readonly steps_offset: number;
  /** Whether the step past the last timestep lands on alpha-bar = 1 (else alpha-bar_0). */
  readonly set_alpha_to_one?: boolean;
}

export abstract class DiscreteScheduler<C extends DiscreteOptions> extends SchedulerBase<C> {
  get initNoiseSigma(): number {
    return 1;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  protected noiseScales(timestep: number): { signal: number; noiseScale: number } {
    const alphaBar = this.schedule.alphaCumprod(timestep);
    return { signal: Math.sqrt(alphaBar), noiseScale: Math.sqrt(1 - alphaBar) };
  }

  protected computeTimesteps(steps: number): void {
    this.timesteps = this.spacedTimesteps(steps);
  }

  /** `steps` integer timesteps spaced as the config asks. */
  protected spacedTimesteps(steps: number): number[] {
    const c = this.config;
    return spacedTimesteps(
      c.timestep_spacing,
      c.num_train_timesteps,
      steps,
      c.steps_offset,
      "integer",
    );
  }

  /** The timestep after the one at `index`, or -1 (below the schedule) after the last. */
  protected nextTimestep(index: number): number {
    return index + 1 < this.timesteps.length ? this.timesteps[index + 1] : -1;
  }

  /**
   * The clean-sample estimate (clipped or thresholded as configured) and the noise estimate from
   * a model output at alpha-bar `alphaBar`.
   */
  protected estimates(
    modelOutput: Tensor,
    sample: Tensor,
    alphaBar: number,
    dims: readonly number[],
  ): { x0: Float64Array; eps: Float64Array } {
    const type = this.config.prediction_type;
    const split = splitPrediction(
      type,
      modelOutput,
      sample,
      Math.sqrt(alphaBar),
      Math.sqrt(1 - alphaBar),
    );
    clipOrThreshold(split.x0, this.config, dims);
    return split;
  }

  /**
   * alpha-bar at `timestep`; below the start of the schedule (-1) 1, or alpha-bar_0 where
   * `set_alpha_to_one` is false.
   */
  protected alphaBarAt(timestep: number): number {
    if (timestep >= 0) return this.schedule.alphaCumprod(timestep);
    return this.config.set_alpha_to_one === false ? this.schedule.alphasCumprod[0] : 1;
  }
}

/**
 * The deterministic part of a DDIM update (Song et al., "Denoising Diffusion Implicit Models",
 * 2021, eq. 12): from the clean-sample and noise estimates, the sample at alpha-bar `alphaBarPrev`
 * with `noiseStd` of its variance left for fresh noise.
 */
export function ddimUpdate(
  x0: Float64Array,
  eps: Float64Array,
  alphaBarPrev: number,
  noiseStd = 0,
): Float64Array {
  const direction = Math.sqrt(Math.max(1 - alphaBarPrev - noiseStd * noiseStd, 0));
  return combine([
    [Math.sqrt(alphaBarPrev), x0],
    [direction, eps],
  ]);
}

/**
 * `sample` diffused forward with fresh `noise` by the alpha-bar ratio `kept` (the forward
 * process q(x_t | x_s) of Ho et al. 2020, eq. 4, between two noise levels).
 */
export function diffuseForward(sample: Tensor, kept: number, noise: Tensor): Float64Array {
  return combine([
    [Math.sqrt(kept), sample],
    [Math.sqrt(1 - kept), noise],
  ]);
}
