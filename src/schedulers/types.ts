import type { NoiseSource } from "../util/random.js";

/**
 * One sampler. The denoising loop is
 *
 * ```ts
 * scheduler.setTimesteps(steps);
 * let x = initialNoise.map((v) => v * scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const eps = unet(scheduler.scaleModelInput(x, t), t);
 *   x = scheduler.step(eps, t, x, noise, dims);
 * }
 * ```
 *
 * Samples are row-major float32 tensors of shape `dims` (batch first). The sampler keeps state
 * between `step` calls (its position in the schedule, earlier model outputs), so a schedule is
 * walked once per `setTimesteps`.
 */
export interface Scheduler {
  /** The class name the sampler is registered under (`EulerDiscreteScheduler`, ...). */
  readonly name: string;
  /** The resolved configuration, every key with its value. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Model evaluations per inference step: 2 for Heun and DPM2, 1 otherwise. */
  readonly order: number;
  /** Standard deviation of the initial noise; multiply unit noise by it. */
  readonly initNoiseSigma: number;
  /** The steps asked for in the last `setTimesteps`. */
  readonly numInferenceSteps: number;
  /** The timesteps to evaluate the model at, in order (one `step` each); set by `setTimesteps`. */
  readonly timesteps: readonly number[];
  /**
   * The noise levels of samplers that work in sigma, as the reference lists them (one per
   * timestep plus the final level; DPM2 interleaves its levels differently), else undefined.
   */
  readonly sigmas: readonly number[] | undefined;

  /** Chooses the timesteps for `steps` inference steps and resets the sampler's state. */
  setTimesteps(steps: number): void;
  /**
   * Starts the next `step` at `timesteps[index]` instead of the first one (img2img). Call after
   * `setTimesteps`.
   */
  setBeginIndex(index: number): void;
  /**
   * For img2img: sets the begin index where a `strength` in (0, 1] of the schedule remains and
   * returns the timesteps left to run (the first one is where `addNoise` noises the image).
   */
  timestepsForStrength(strength: number): readonly number[];
  /**
   * The model input for `sample` at `timestep` (sigma samplers divide by sqrt(sigma^2 + 1));
   * samplers that need no scaling return `sample` itself.
   */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /**
   * One step back in the diffusion: from `sample` at `timestep` and the model's output there,
   * the sample at the next timestep. Stochastic samplers draw from `noise`, a tensor of shape
   * `dims` per draw.
   */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    noise: NoiseSource,
    dims: readonly number[],
  ): Float32Array;
  /** `original` noised with `noise` to the level of `timestep` (img2img's starting point). */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}
