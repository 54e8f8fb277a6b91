// The traced schedule, evaluated as weighted sums of sources, reproduces every reference
// trajectory within the conformance tolerance; samplers that are not linear are refused.
import { describe, expect, test } from "vitest";
import { combineSources, traceLinearSampler } from "../../src/schedulers/linear-trace.js";
import { createScheduler } from "../../src/schedulers/registry.js";
import type { Scheduler } from "../../src/schedulers/types.js";
import { recordedNoise, seededNoise } from "../../src/util/random.js";
import {
  readSchedulerCases,
  relativeDiff,
  schedulerTensors,
  syntheticDenoiser,
} from "./scheduler-cases.js";

const TOLERANCE = 1e-5;
const cases = readSchedulerCases();

/** Runs a traced schedule with host tensors; returns the sample after every step. */
function runTraced(
  scheduler: Scheduler,
  timesteps: readonly number[],
  start: Float32Array,
  denoise: (input: Float32Array, t: number) => Float32Array,
  draw: () => Float32Array,
): { trajectory: Float32Array[]; draws: number } {
  const outcome = traceLinearSampler(scheduler, timesteps);
  if (!outcome.ok) throw new Error(outcome.reason);
  const { trace } = outcome;
  const sources: (Float32Array | undefined)[] = new Array(trace.sources);
  sources[0] = start;
  const trajectory: Float32Array[] = [];
  let draws = 0;
  for (const step of trace.steps) {
    const input = combineSources(step.modelInput, sources, start.length);
    sources[step.outputSource] = denoise(input, step.timestep);
    for (const slot of step.noiseSources) {
      sources[slot] = draw();
      draws++;
    }
    trajectory.push(combineSources(step.sample, sources, start.length));
  }
  return { trajectory, draws };
}

describe("linear trace of the samplers", () => {
  test.each(cases.map((c) => [c.key, c] as const))("%s matches the reference", (_key, c) => {
    const file = schedulerTensors();
    const x0 = file.readFloat32(`${c.key}.x0`);
    const draws = Array.from({ length: c.noise_draws }, (_, i) =>
      file.readFloat32(`${c.key}.noise.${i}`),
    );
    const replay = recordedNoise(draws);
    const dims = file.info(`${c.key}.x0`).shape;
    const scheduler = createScheduler(c.class, c.config);
    scheduler.setTimesteps(c.steps);
    const start = Float32Array.from(x0, (v) => v * scheduler.initNoiseSigma);
    const run = runTraced(scheduler, scheduler.timesteps, start, syntheticDenoiser, () =>
      replay.normal(dims),
    );
    const expected = file.readFloat32(`${c.key}.trajectory`);
    const size = expected.length / run.trajectory.length;
    expect(run.trajectory).toHaveLength(file.info(`${c.key}.trajectory`).shape[0]);
    run.trajectory.forEach((sample, i) => {
      const diff = relativeDiff(sample, expected.subarray(i * size, (i + 1) * size));
      expect(diff, `step ${i}`).toBeLessThanOrEqual(TOLERANCE);
    });
    expect(run.draws).toBe(c.noise_draws);
  });

  test("an img2img schedule that begins mid-way matches the host loop", () => {
    const dims = [1, 4, 8, 8];
    const denoise = (x: Float32Array, t: number) =>
      Float32Array.from(x, (v, i) => Math.tanh(0.4 * v) + 0.01 * Math.cos(i + t));
    for (const name of ["DPMSolverMultistepScheduler", "HeunDiscreteScheduler", "DDIMScheduler"]) {
      const host = createScheduler(name, { steps_offset: 1, clip_sample: false });
      host.setTimesteps(12);
      const timesteps = host.timestepsForStrength(0.6);
      const start = seededNoise(3).normal(dims);
      let x = start;
      for (const t of timesteps)
        x = host.step(denoise(host.scaleModelInput(x, t), t), t, x, seededNoise(0), dims);

      const traced = createScheduler(name, { steps_offset: 1, clip_sample: false });
      traced.setTimesteps(12);
      traced.timestepsForStrength(0.6);
      const run = runTraced(traced, timesteps, start, denoise, () => new Float32Array(0));
      expect(run.trajectory).toHaveLength(timesteps.length);
      expect(relativeDiff(run.trajectory.at(-1) ?? [], x), name).toBeLessThanOrEqual(TOLERANCE);
    }
  });

  test("the weights of a simple sampler are the textbook ones", () => {
    // Euler on an epsilon model: x' = x + (sigma' - sigma) * eps, model input x / sqrt(sigma^2 + 1).
    const scheduler = createScheduler("EulerDiscreteScheduler");
    scheduler.setTimesteps(3);
    const sigmas = scheduler.sigmas ?? [];
    const outcome = traceLinearSampler(scheduler, scheduler.timesteps);
    if (!outcome.ok) throw new Error(outcome.reason);
    const [first, second] = outcome.trace.steps;
    expect(outcome.trace.sources).toBe(4);
    expect(first.modelInput[0]).toBeCloseTo(1 / Math.sqrt(sigmas[0] ** 2 + 1), 6);
    expect(first.outputSource).toBe(1);
    expect(first.noiseSources).toEqual([]);
    expect(first.sample[0]).toBeCloseTo(1, 6);
    expect(first.sample[1]).toBeCloseTo(sigmas[1] - sigmas[0], 5);
    expect(second.sample[2]).toBeCloseTo(sigmas[2] - sigmas[1], 5);
  });

  test.each([
    ["DDIMScheduler", { clip_sample: true }],
    ["DDIMScheduler", { thresholding: true, sample_max_value: 1.5 }],
    ["DPMSolverMultistepScheduler", { thresholding: true }],
    ["DDPMScheduler", { clip_sample: true }],
  ] as const)("%s %j is refused", (name, overrides) => {
    const scheduler = createScheduler(name, {}, overrides);
    scheduler.setTimesteps(10);
    const outcome = traceLinearSampler(scheduler, scheduler.timesteps);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.reason).toMatch(new RegExp(`^${name} cannot be stepped`));
  });
});
