// The contract every sampler keeps, run against each registered class with the Stable Diffusion
// base configuration of the reference cases.
import { describe, expect, test } from "vitest";
import type { SchedulerConfigJson } from "../../src/schedulers/config.js";
import { createScheduler, listSchedulerClasses } from "../../src/schedulers/registry.js";
import type { Scheduler } from "../../src/schedulers/types.js";
import { type NoiseSource, seededNoise } from "../../src/util/random.js";
import { readCaseJson } from "../fixtures.js";
import { syntheticDenoiser } from "./scheduler-cases.js";

const BASE = readCaseJson<{ base_config: SchedulerConfigJson }>("schedulers").base_config;
const DIMS = [2, 4, 8, 8];
const SIZE = DIMS.reduce((a, b) => a * b);

function sample(scheduler: Scheduler, noise: NoiseSource, from = 0): Float32Array[] {
  let x: Float32Array = noise.normal(DIMS).map((v) => v * scheduler.initNoiseSigma);
  const out: Float32Array[] = [];
  for (const t of scheduler.timesteps.slice(from)) {
    x = scheduler.step(syntheticDenoiser(scheduler.scaleModelInput(x, t), t), t, x, noise, DIMS);
    out.push(x);
  }
  return out;
}

function std(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum / values.length);
}

describe.each(listSchedulerClasses())("%s", (className) => {
  const make = (steps = 10) => {
    const scheduler = createScheduler(className, BASE);
    scheduler.setTimesteps(steps);
    return scheduler;
  };

  test("timesteps descend inside the training range; repeats only for two-call steps", () => {
    for (const steps of [1, 2, 7, 10, 30]) {
      const { timesteps, order, numInferenceSteps } = make(steps);
      expect(numInferenceSteps).toBe(steps);
      expect(timesteps.length).toBeGreaterThanOrEqual(steps);
      timesteps.forEach((t, i) => {
        expect(Number.isFinite(t) && t >= 0 && t < 1000).toBe(true);
        if (i === 0) return;
        // Heun lists each level twice; PLMS repeats its second timestep.
        const repeatAllowed = order === 2 || className === "PNDMScheduler";
        if (repeatAllowed) expect(t).toBeLessThanOrEqual(timesteps[i - 1]);
        else expect(t).toBeLessThan(timesteps[i - 1]);
      });
    }
  });

  test("keeps the sample's shape and stays finite", () => {
    for (const x of sample(make(), seededNoise(1))) {
      expect(x).toBeInstanceOf(Float32Array);
      expect(x).toHaveLength(SIZE);
      expect(x.every(Number.isFinite)).toBe(true);
    }
  });

  test("scaleModelInput brings initial noise to about unit variance", () => {
    const scheduler = make();
    const unit = seededNoise(2).normal(DIMS);
    const x = unit.map((v) => v * scheduler.initNoiseSigma);
    const ratio = std(scheduler.scaleModelInput(x, scheduler.timesteps[0])) / std(unit);
    expect(ratio).toBeGreaterThan(0.99);
    expect(ratio).toBeLessThan(1.0001);
  });

  test("is deterministic for a seed", () => {
    const a = sample(make(), seededNoise(7));
    const b = sample(make(), seededNoise(7));
    expect(a.at(-1)).toEqual(b.at(-1));
  });

  test("setTimesteps resets the state of a previous run", () => {
    const scheduler = make();
    const first = sample(scheduler, seededNoise(3));
    scheduler.setTimesteps(10);
    expect(sample(scheduler, seededNoise(3)).at(-1)).toEqual(first.at(-1));
  });

  test("runs from the begin index given by a strength (img2img)", () => {
    const scheduler = make(10);
    const tail = scheduler.timestepsForStrength(0.6);
    const begin = scheduler.timesteps.length - tail.length;
    expect(begin).toBe((10 - 6) * scheduler.order);
    const noise = seededNoise(4);
    const clean = noise.normal(DIMS);
    let x = scheduler.addNoise(clean, noise.normal(DIMS), tail[0]);
    expect(x).toHaveLength(SIZE);
    for (const t of tail)
      x = scheduler.step(syntheticDenoiser(scheduler.scaleModelInput(x, t), t), t, x, noise, DIMS);
    expect(x.every(Number.isFinite)).toBe(true);
  });

  test("a step with a mismatched model output is a clear error", () => {
    const scheduler = make();
    const t = scheduler.timesteps[0];
    expect(() =>
      scheduler.step(new Float32Array(3), t, new Float32Array(SIZE), seededNoise(0), DIMS),
    ).toThrow(/model output has 3 values but the sample has 512/);
  });

  test("steps < 1 and steps beyond the training schedule are clear errors", () => {
    const scheduler = createScheduler(className, BASE);
    expect(() => scheduler.setTimesteps(0)).toThrow(/must be an integer >= 1, got 0/);
    expect(() => scheduler.setTimesteps(2.5)).toThrow(/must be an integer >= 1/);
    expect(() => scheduler.setTimesteps(1001)).toThrow(
      /more than the 1000 steps of the training schedule/,
    );
  });

  test("stepping before setTimesteps is a clear error", () => {
    const scheduler = createScheduler(className, BASE);
    expect(() =>
      scheduler.step(new Float32Array(4), 999, new Float32Array(4), seededNoise(0), [4]),
    ).toThrow(/call setTimesteps\(steps\) before sampling/);
  });
});

test("stochastic samplers draw noise, the others never do", () => {
  const stochastic = new Set([
    "DDPMScheduler",
    "EulerAncestralDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "LCMScheduler",
    "TCDScheduler",
  ]);
  for (const className of listSchedulerClasses()) {
    const scheduler = createScheduler(className, BASE);
    scheduler.setTimesteps(6);
    const seeded = seededNoise(5);
    let draws = 0;
    sample(scheduler, {
      normal(dims) {
        draws++;
        return seeded.normal(dims);
      },
    });
    // One draw is the initial noise.
    if (stochastic.has(className)) expect(draws, className).toBeGreaterThan(1);
    else expect(draws, className).toBe(1);
  }
});
