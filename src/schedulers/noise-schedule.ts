/**
 * The pieces every sampler shares: the training noise schedule (betas, cumulative alphas,
 * sigmas), the choice of inference timesteps, sigma-to-timestep interpolation and the
 * Karras et al. (2022) sigma ramp.
 *
 * Models were trained, and reference runs made, with these tables in float32. Where a value
 * ends up in a timestep that must match a reference exactly, the float32 roundings are
 * reproduced with `Math.fround` at the places where the reference rounds; everything else is
 * computed in float64.
 */

import { logFloat32 } from "./float32-log.js";

const f32 = Math.fround;

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export const BETA_SCHEDULES: readonly BetaSchedule[] = [
  "linear",
  "scaled_linear",
  "squaredcos_cap_v2",
];

export type TimestepSpacing = "leading" | "trailing" | "linspace";
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["leading", "trailing", "linspace"];

export interface NoiseScheduleOptions {
  readonly [key: string]: unknown;
  readonly num_train_timesteps: number;
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  readonly trained_betas: readonly number[] | null;
  readonly rescale_betas_zero_snr?: boolean;
}

/**
 * Evenly spaced float32 values the way the reference's CPU `linspace` makes them: the step is
 * computed in float32, the first half counts up from `start` and the second half down from
 * `end` (so both ends are exact), and each value is start + i * step rounded once (a fused
 * multiply-add). Rounding the product separately moves some betas by one float32 ulp, which
 * moves interpolated sigmas and timesteps by one ulp too.
 */
export function linspaceFloat32(start: number, end: number, count: number): Float32Array {
  const out = new Float32Array(count);
  if (count === 1) {
    out[0] = start;
    return out;
  }
  const first = f32(start);
  const last = f32(end);
  const step = f32(f32(last - first) / (count - 1));
  const halfway = Math.floor(count / 2);
  // The product of a float32 and a small integer is exact in float64: one rounding, as an FMA.
  for (let i = 0; i < count; i++)
    out[i] = i < halfway ? first + step * i : last - step * (count - i - 1);
  return out;
}

/** Evenly spaced float64 values with the end point exact (NumPy's `linspace`). */
export function linspace(start: number, end: number, count: number): Float64Array {
  const out = new Float64Array(count);
  if (count === 1) {
    out[0] = start;
    return out;
  }
  const step = (end - start) / (count - 1);
  for (let i = 0; i < count; i++) out[i] = i * step + start;
  out[count - 1] = end;
  return out;
}

/** `start, start + step, ...` up to but excluding `stop` (NumPy's `arange` with a float step). */
export function arange(start: number, stop: number, step: number): Float64Array {
  const count = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(count);
  if (count === 0) return out;
  out[0] = start;
  // NumPy derives the increment back from the first two values, which can differ in the last bit.
  const delta = start + step - start;
  for (let i = 1; i < count; i++) out[i] = start + i * delta;
  return out;
}

/** Rounds halves to the even neighbour, as NumPy's `round` does. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The cosine schedule of Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic
 * Models" (2021), eq. 17: betas from the ratio of consecutive alpha-bars, capped at 0.999.
 */
function cosineBetas(count: number): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), 0.999);
  }
  return betas;
}

/** Training betas, float32, as the options describe them. */
export function trainingBetas(options: NoiseScheduleOptions): Float32Array {
  const count = options.num_train_timesteps;
  let betas: Float32Array;
  if (options.trained_betas !== null) {
    if (options.trained_betas.length !== count) {
      throw new Error(
        `trained_betas has ${options.trained_betas.length} values but num_train_timesteps is ${count}`,
      );
    }
    betas = Float32Array.from(options.trained_betas);
  } else if (options.beta_schedule === "linear") {
    betas = linspaceFloat32(options.beta_start, options.beta_end, count);
  } else if (options.beta_schedule === "scaled_linear") {
    // Latent diffusion's schedule: linear in sqrt(beta).
    betas = linspaceFloat32(Math.sqrt(options.beta_start), Math.sqrt(options.beta_end), count);
    for (let i = 0; i < count; i++) betas[i] = betas[i] * betas[i];
  } else {
    betas = cosineBetas(count);
  }
  return options.rescale_betas_zero_snr === true ? rescaleZeroTerminalSnr(betas) : betas;
}

/** Running product of `1 - beta`, accumulated in float64 and stored in float32. */
function cumulativeAlphas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= f32(1 - betas[i]);
    out[i] = product;
  }
  return out;
}

/**
 * Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (2023),
 * Algorithm 1: shift and scale sqrt(alpha-bar) so the last training step has zero SNR while
 * the first keeps its value.
 */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const alphaBarSqrt = cumulativeAlphas(betas).map(Math.sqrt);
  const first = alphaBarSqrt[0];
  const last = alphaBarSqrt[alphaBarSqrt.length - 1];
  const scale = f32(first / f32(first - last));
  const alphaBar = alphaBarSqrt.map((v) => {
    const shifted = f32(f32(v - last) * scale);
    return shifted * shifted;
  });
  const out = new Float32Array(betas.length);
  out[0] = 1 - alphaBar[0];
  for (let i = 1; i < out.length; i++) out[i] = 1 - f32(alphaBar[i] / alphaBar[i - 1]);
  return out;
}

/** The training schedule as the samplers use it. */
export class NoiseSchedule {
  readonly trainSteps: number;
  /** alpha-bar_t for t = 0 .. trainSteps - 1, float32 values. */
  readonly alphasCumprod: Float32Array;
  /** sigma_t = sqrt((1 - alpha-bar_t) / alpha-bar_t), float32 values, ascending in t. */
  readonly sigmas: Float32Array;
  /** log(sigma_t), float32 values. */
  readonly logSigmas: Float32Array;

  constructor(options: NoiseScheduleOptions, zeroSnrFloor = false) {
    this.trainSteps = options.num_train_timesteps;
    this.alphasCumprod = cumulativeAlphas(trainingBetas(options));
    if (zeroSnrFloor && options.rescale_betas_zero_snr === true) {
      // A zero-SNR schedule ends at alpha-bar = 0, an infinite sigma; samplers that work in sigma
      // use the smallest positive float16 instead.
      this.alphasCumprod[this.trainSteps - 1] = 2 ** -24;
    }
    this.sigmas = this.alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
    this.logSigmas = this.sigmas.map(logFloat32);
  }

  /** alpha-bar at an integer training timestep. */
  alphaCumprod(timestep: number): number {
    const index = Math.round(timestep);
    if (index < 0 || index >= this.trainSteps) {
      throw new Error(
        `timestep ${timestep} is outside the training schedule 0..${this.trainSteps - 1}`,
      );
    }
    return this.alphasCumprod[index];
  }

  /** sigma at a (possibly fractional) training timestep, linearly interpolated. */
  sigmaAt(timestep: number): number {
    const n = this.trainSteps;
    if (timestep <= 0) return this.sigmas[0];
    if (timestep >= n - 1) return this.sigmas[n - 1];
    const lo = Math.floor(timestep);
    if (lo === timestep) return this.sigmas[lo];
    return (this.sigmas[lo + 1] - this.sigmas[lo]) * (timestep - lo) + this.sigmas[lo];
  }

  /**
   * The fractional training timestep whose sigma is `sigma`, by linear interpolation in
   * log-sigma between the two neighbouring training steps (float32 differences, as the
   * reference computes them). `float32Math` does all of it in float32, as the reference does
   * for sigmas that are themselves float32 tensors.
   */
  timestepForSigma(sigma: number, float32Math = false): number {
    const logs = this.logSigmas;
    const logSigma = float32Math
      ? logFloat32(Math.max(sigma, f32(1e-10)))
      : Math.log(Math.max(sigma, 1e-10));
    let low = 0;
    for (let i = 0; i < logs.length; i++) if (logSigma - logs[i] >= 0) low = i;
    low = Math.min(low, logs.length - 2);
    const high = low + 1;
    let w: number;
    if (float32Math) {
      w = f32(f32(logs[low] - logSigma) / f32(logs[low] - logs[high]));
    } else {
      w = (logs[low] - logSigma) / f32(logs[low] - logs[high]);
    }
    w = Math.min(Math.max(w, 0), 1);
    if (float32Math) return f32(f32(f32(1 - w) * low) + f32(w * high));
    return (1 - w) * low + w * high;
  }

  /**
   * Karras et al.'s (2022) sigmas from `sigmaMax` down to `sigmaMin` and the training timesteps
   * that have them: fractional, or rounded half to even for samplers that index by timestep.
   */
  karrasPlan(
    sigmaMin: number,
    sigmaMax: number,
    steps: number,
    round: boolean,
  ): { timesteps: number[]; sigmas: number[] } {
    const sigmas = karrasSigmas(sigmaMin, sigmaMax, steps);
    const timesteps = sigmas.map((s) => {
      const t = this.timestepForSigma(s);
      return round ? roundHalfEven(t) : t;
    });
    return { timesteps, sigmas };
  }
}

/** Which rounding of the spaced timesteps a family of samplers uses. */
export type SpacingStyle =
  /** Integer timesteps, `n` of them (DDIM, DDPM, PNDM). */
  | "integer"
  /** Fractional `linspace` timesteps, `n` of them (the sigma samplers). */
  | "fractional"
  /** `n + 1` integer points of which the last is dropped (DPM-Solver, UniPC, DEIS). */
  | "solver";

/**
 * Inference timesteps, descending, per Table 2 of Lin et al. (2023): `leading` starts from
 * multiples of floor(T/n) plus `steps_offset`, `trailing` counts down from T, `linspace`
 * spreads n points over [0, T-1].
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  trainSteps: number,
  steps: number,
  stepsOffset: number,
  style: SpacingStyle,
  lastTimestep = trainSteps,
): number[] {
  const points = style === "solver" ? steps + 1 : steps;
  if (spacing === "trailing") {
    // Counts down from the end in steps of T/n (descending already).
    return Array.from(arange(lastTimestep, 0, -trainSteps / steps), (t) => roundHalfEven(t) - 1);
  }
  let ascending: number[];
  if (spacing === "linspace") {
    const values = Array.from(linspace(0, lastTimestep - 1, points));
    ascending = style === "fractional" ? values : values.map(roundHalfEven);
  } else {
    const ratio = Math.floor(lastTimestep / points);
    ascending = Array.from({ length: points }, (_, i) => i * ratio + stepsOffset);
  }
  // The solver styles make one point too many and drop the lowest.
  return (style === "solver" ? ascending.slice(1) : ascending).reverse();
}

/**
 * The noise levels of Karras et al., "Elucidating the Design Space of Diffusion-Based
 * Generative Models" (2022), eq. 5: evenly spaced in sigma^(1/rho), rho = 7.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return Array.from(linspace(0, 1, steps), (r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Timesteps must lie in the training schedule; steps must be a positive integer. */
export function checkStepCount(name: string, steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`${name}: the number of inference steps must be an integer >= 1, got ${steps}`);
  }
  if (steps > trainSteps) {
    throw new Error(
      `${name}: ${steps} inference steps is more than the ${trainSteps} steps of the training schedule`,
    );
  }
}
