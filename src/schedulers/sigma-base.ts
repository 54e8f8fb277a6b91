/**
 * Samplers in the parametrisation of Karras et al., "Elucidating the Design Space of
 * Diffusion-Based Generative Models" (2022): the sample is x = x0 + sigma * eps with
 * sigma = sqrt((1 - alpha-bar) / alpha-bar), the model sees x / sqrt(sigma^2 + 1), and the
 * sampler integrates dx/dsigma = (x - x0) / sigma (eq. 3) from sigma_max down to 0
 * (Euler, Euler ancestral, Heun, LMS, DPM2).
 */
import { SchedulerBase } from "./base.js";
import type { CommonDefaults, PredictionType } from "./config.js";
import { scheduleFields, sigmaRampFields } from "./config.js";
import {
  type NoiseScheduleOptions,
  spacedTimesteps,
  type TimestepSpacing,
} from "./noise-schedule.js";
import { combine, denoised, type Tensor } from "./tensor-ops.js";

const f32 = Math.fround;

/** The keys every sigma sampler has. */
export function sigmaSamplerFields(defaults: CommonDefaults) {
  return { ...scheduleFields(defaults), ...sigmaRampFields() };
}

export interface SigmaSamplerOptions extends NoiseScheduleOptions {
  readonly prediction_type: PredictionType;
  readonly timestep_spacing: TimestepSpacing;
  readonly steps_offset: number;
  readonly use_karras_sigmas?: boolean;
}

/** Noise levels for the inference steps, before the final sigma is appended. */
export interface SigmaPlan {
  readonly timesteps: number[];
  readonly sigmas: number[];
}

export abstract class SigmaScheduler<C extends SigmaSamplerOptions> extends SchedulerBase<C> {
  override sigmas: readonly number[] = [];

  constructor(name: string, config: C) {
    super(name, config, true);
  }

  get initNoiseSigma(): number {
    const max = Math.max(...(this.sigmas.length > 0 ? this.sigmas : this.schedule.sigmas));
    const spacing = this.config.timestep_spacing;
    return spacing === "linspace" || spacing === "trailing" ? max : Math.sqrt(max * max + 1);
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.inputSigma(this.currentIndex(timestep));
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    return Float32Array.from(sample, (v) => v * scale);
  }

  /** The sigma the model is evaluated at for the step at `index`. */
  protected inputSigma(index: number): number {
    return this.sigmas[index];
  }

  protected noiseScales(timestep: number): { signal: number; noiseScale: number } {
    return { signal: 1, noiseScale: this.sigmas[this.noiseIndex(timestep)] };
  }

  /** The clean-sample estimate from a model output at noise level `sigma`. */
  protected denoised(modelOutput: Tensor, sample: Tensor, sigma: number): Float64Array {
    return denoised(this.config.prediction_type, modelOutput, sample, sigma);
  }

  /** Takes a plan's timesteps and its sigmas, in float32, with `final` appended. */
  protected adoptPlan(plan: SigmaPlan, final = 0): void {
    this.timesteps = plan.timesteps;
    this.sigmas = [...plan.sigmas, final].map(f32);
  }

  /**
   * Timesteps spaced per the config and their sigmas; with `use_karras_sigmas` the sigmas
   * follow the Karras ramp between `sigmaMin` and `sigmaMax` (default: the training range) and
   * the timesteps are mapped back from them (rounded when `roundKarrasTimesteps`).
   */
  protected planSigmas(
    steps: number,
    roundKarrasTimesteps = false,
    sigmaMin?: number,
    sigmaMax?: number,
  ): SigmaPlan {
    const c = this.config;
    const schedule = this.schedule;
    const timesteps = spacedTimesteps(
      c.timestep_spacing,
      c.num_train_timesteps,
      steps,
      c.steps_offset,
      "fractional",
    );
    if (c.use_karras_sigmas !== true) {
      return { timesteps: timesteps.map(f32), sigmas: timesteps.map((t) => schedule.sigmaAt(t)) };
    }
    const karras = schedule.karrasPlan(
      sigmaMin ?? schedule.sigmaAt(timesteps[timesteps.length - 1]),
      sigmaMax ?? schedule.sigmaAt(timesteps[0]),
      steps,
      roundKarrasTimesteps,
    );
    return { timesteps: karras.timesteps.map(f32), sigmas: karras.sigmas };
  }
}

/** The probability-flow ODE's slope dx/dsigma = (x - x0) / sigma (Karras et al. 2022, eq. 3). */
export function odeSlope(sample: Tensor, x0: Tensor, sigma: number): Float64Array {
  return combine([
    [1 / sigma, sample],
    [-1 / sigma, x0],
  ]);
}

/** One Euler step of that ODE from `sigma` to `target`: x + (target - sigma) * slope. */
export function eulerStep(sample: Tensor, x0: Tensor, sigma: number, target: number): Float64Array {
  const ratio = (target - sigma) / sigma;
  return combine([
    [1 + ratio, sample],
    [-ratio, x0],
  ]);
}

/** Every entry after the first twice: [a, b, c] -> [a, b, b, c, c] (two model calls per step). */
export function doubleAfterFirst<T>(values: readonly T[]): T[] {
  const out = [values[0]];
  for (let i = 1; i < values.length; i++) out.push(values[i], values[i]);
  return out;
}
