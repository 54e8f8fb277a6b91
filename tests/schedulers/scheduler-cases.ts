// Reads the scheduler reference cases and drives a sampler with the cases' synthetic denoiser.
import type { SchedulerConfigJson } from "../../src/schedulers/config.js";
import { createScheduler } from "../../src/schedulers/registry.js";
import type { Scheduler } from "../../src/schedulers/types.js";
import { recordedNoise } from "../../src/util/random.js";
import type { SafetensorsFile } from "../../src/weights/safetensors.js";
import { openCaseTensors, readCaseJson } from "../fixtures.js";

export interface SchedulerCase {
  readonly name: string;
  readonly class: string;
  readonly steps: number;
  readonly config: SchedulerConfigJson;
  readonly init_noise_sigma: number;
  readonly noise_draws: number;
  readonly key: string;
}

export function readSchedulerCases(): SchedulerCase[] {
  return readCaseJson<{ cases: SchedulerCase[] }>("schedulers").cases;
}

let tensors: SafetensorsFile | undefined;
export function schedulerTensors(): SafetensorsFile {
  tensors ??= openCaseTensors("schedulers");
  return tensors;
}

const f32 = Math.fround;

/** The cases' stand-in for a UNet: eps = 0.3 * x_in + 0.1 * sin(0.01 * t). */
export function syntheticDenoiser(modelInput: Float32Array, timestep: number): Float32Array {
  const offset = f32(0.1 * Math.sin(0.01 * timestep));
  return Float32Array.from(modelInput, (v) => f32(0.3 * v) + offset);
}

export interface CaseRun {
  readonly scheduler: Scheduler;
  /** The sample after each step. */
  readonly trajectory: Float32Array[];
  readonly drawsUsed: number;
}

/** Runs one case: the case's config, its x0 and its recorded noise draws. */
export function runCase(c: SchedulerCase): CaseRun {
  const file = schedulerTensors();
  const x0 = file.readFloat32(`${c.key}.x0`);
  const dims = file.info(`${c.key}.x0`).shape;
  const draws = Array.from({ length: c.noise_draws }, (_, i) =>
    file.readFloat32(`${c.key}.noise.${i}`),
  );
  let drawsUsed = 0;
  const replay = recordedNoise(draws);
  const noise = {
    normal(shape: readonly number[]) {
      drawsUsed++;
      return replay.normal(shape);
    },
  };
  const scheduler = createScheduler(c.class, c.config);
  scheduler.setTimesteps(c.steps);
  let x: Float32Array = Float32Array.from(x0, (v) => v * scheduler.initNoiseSigma);
  const trajectory: Float32Array[] = [];
  for (const t of scheduler.timesteps) {
    const eps = syntheticDenoiser(scheduler.scaleModelInput(x, t), t);
    x = scheduler.step(eps, t, x, noise, dims);
    trajectory.push(x);
  }
  return { scheduler, trajectory, drawsUsed };
}

/** max |a - b| over max |b|: the error relative to the reference's scale. */
export function relativeDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length)
    throw new Error(`length ${actual.length} vs ${expected.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? diff : diff / scale;
}
