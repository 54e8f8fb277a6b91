/**
 * State and bookkeeping every sampler shares: the timestep list, the position in it, img2img's
 * begin index and the training schedule, and the frame of `step` and `addNoise` around the
 * algorithm (argument checks, the position in the schedule, float32 results).
 */
import type { NoiseSource } from "../util/random.js";
import { checkStepCount, NoiseSchedule, type NoiseScheduleOptions } from "./noise-schedule.js";
import { combine } from "./tensor-ops.js";
import type { Scheduler } from "./types.js";

/** One `step` call as a sampler's algorithm sees it. */
export interface StepInput {
  readonly modelOutput: Float32Array;
  readonly timestep: number;
  readonly sample: Float32Array;
  readonly noise: NoiseSource;
  readonly dims: readonly number[];
  /** Index into `timesteps` of this step. */
  readonly index: number;
}

export abstract class SchedulerBase<C extends NoiseScheduleOptions> implements Scheduler {
  readonly order: number = 1;
  readonly schedule: NoiseSchedule;
  numInferenceSteps = 0;
  timesteps: readonly number[] = [];
  sigmas: readonly number[] | undefined = undefined;
  /** Index into `timesteps` of the next `step`; undefined until the first call. */
  protected stepIndex: number | undefined = undefined;
  protected beginIndex: number | undefined = undefined;

  constructor(
    readonly name: string,
    readonly config: C,
    zeroSnrFloor = false,
  ) {
    this.schedule = new NoiseSchedule(config, zeroSnrFloor);
  }

  abstract get initNoiseSigma(): number;

  setTimesteps(steps: number): void {
    checkStepCount(this.name, steps, this.config.num_train_timesteps);
    this.numInferenceSteps = steps;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
    this.computeTimesteps(steps);
    this.resetState();
  }

  /** Fills `timesteps` (and `sigmas`) for `steps` inference steps. */
  protected abstract computeTimesteps(steps: number): void;

  /** Forgets what earlier steps left behind (multistep histories, half-done steps). */
  protected resetState(): void {}

  setBeginIndex(index: number): void {
    this.requireTimesteps();
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) {
      throw new Error(
        `${this.name}: begin index must be an integer in 0..${this.timesteps.length - 1}, got ${index}`,
      );
    }
    this.beginIndex = index;
    this.stepIndex = undefined;
  }

  timestepsForStrength(strength: number): readonly number[] {
    this.requireTimesteps();
    if (!(strength > 0 && strength <= 1)) {
      throw new Error(`${this.name}: strength must be in (0, 1], got ${strength}`);
    }
    const steps = this.numInferenceSteps;
    const kept = Math.min(Math.floor(steps * strength), steps);
    if (kept < 1) {
      throw new Error(
        `${this.name}: strength ${strength} of ${steps} steps leaves no step to run; raise either`,
      );
    }
    const begin = (steps - kept) * this.order;
    this.setBeginIndex(begin);
    return this.timesteps.slice(begin);
  }

  abstract scaleModelInput(sample: Float32Array, timestep: number): Float32Array;

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    noise: NoiseSource,
    dims: readonly number[],
  ): Float32Array {
    checkSameLength(this.name, sample, modelOutput, "model output");
    const index = this.currentIndex(timestep);
    const next = this.advance({ modelOutput, timestep, sample, noise, dims, index });
    this.stepIndex = index + 1;
    return Float32Array.from(next);
  }

  /**
   * The algorithm of one step: the sample after the step at `input.index`, in float64 (`step`
   * rounds it to float32 once, at the end).
   */
  protected abstract advance(input: StepInput): Float64Array;

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(this.name, original, noise, "noise");
    const { signal, noiseScale } = this.noiseScales(timestep);
    return Float32Array.from(
      combine([
        [signal, original],
        [noiseScale, noise],
      ]),
    );
  }

  /** How a clean sample x0 and unit noise eps mix at `timestep`: signal * x0 + noiseScale * eps. */
  protected abstract noiseScales(timestep: number): { signal: number; noiseScale: number };

  protected requireTimesteps(): void {
    if (this.timesteps.length === 0) {
      throw new Error(`${this.name}: call setTimesteps(steps) before sampling`);
    }
  }

  /**
   * Where `timestep` is in the schedule. A timestep listed twice (Heun, DPM2, PLMS) is taken at
   * its second place, so a run that starts mid-schedule does not skip a noise level.
   */
  protected indexForTimestep(timestep: number): number {
    const matches: number[] = [];
    this.timesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) {
      throw new Error(
        `${this.name}: timestep ${timestep} is not in the schedule [${this.timesteps.join(", ")}]`,
      );
    }
    return matches.length > 1 ? matches[1] : matches[0];
  }

  /** The index of the step about to run, fixed at the first call after `setTimesteps`. */
  protected currentIndex(timestep: number): number {
    this.requireTimesteps();
    if (this.stepIndex === undefined)
      this.stepIndex = this.beginIndex ?? this.indexForTimestep(timestep);
    if (this.stepIndex >= this.timesteps.length) {
      throw new Error(
        `${this.name}: all ${this.timesteps.length} steps have run; call setTimesteps again`,
      );
    }
    return this.stepIndex;
  }

  /** Index of the step for `addNoise`: where img2img begins, else where `timestep` is. */
  protected noiseIndex(timestep: number): number {
    this.requireTimesteps();
    return this.stepIndex ?? this.beginIndex ?? this.indexForTimestep(timestep);
  }
}

/** Clear error for a sample/model-output/noise length mismatch. */
export function checkSameLength(
  name: string,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  what: string,
): void {
  if (a.length !== b.length) {
    throw new Error(`${name}: ${what} has ${b.length} values but the sample has ${a.length}`);
  }
}
