/**
 * Samplers that step between integer training timesteps with alpha-bar directly (DDPM, DDIM,
 * PNDM, LCM, TCD): the sample is x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps, the
 * initial noise has unit variance and the model input is the sample itself.
 */
import { checkSameLength, SchedulerBase } from "./base.js";
import type { PredictionType } from "./config.js";
import type { NoiseScheduleOptions } from "./noise-schedule.js";
import {
  type ClippingOptions,
  clipOrThreshold,
  combine,
  splitPrediction,
  type Tensor,
  toFloat32,
} from "./tensor-ops.js";

export interface DiscreteOptions extends NoiseScheduleOptions, ClippingOptions {
  readonly prediction_type: PredictionType;
}

export abstract class DiscreteScheduler<C extends DiscreteOptions> extends SchedulerBase<C> {
  get initNoiseSigma(): number {
    return 1;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(this.name, original, noise, "noise");
    const alphaBar = this.schedule.alphaCumprod(timestep);
    return toFloat32(
      combine([
        [Math.sqrt(alphaBar), original],
        [Math.sqrt(1 - alphaBar), noise],
      ]),
    );
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

  /** alpha-bar at `timestep`, or `final` below the start of the schedule. */
  protected alphaBarOr(timestep: number, final: number): number {
    return timestep >= 0 ? this.schedule.alphaCumprod(timestep) : final;
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
