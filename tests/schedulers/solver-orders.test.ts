// Options the reference cases do not exercise, checked against each other: higher orders solve
// the same ODE more accurately, and degenerate settings reduce to simpler samplers exactly.
import { describe, expect, test } from "vitest";
import type { SchedulerConfigJson } from "../../src/schedulers/config.js";
import { createScheduler } from "../../src/schedulers/registry.js";
import { seededNoise } from "../../src/util/random.js";
import { readCaseJson } from "../fixtures.js";
import { relativeDiff, syntheticDenoiser } from "./scheduler-cases.js";

const BASE = readCaseJson<{ base_config: SchedulerConfigJson }>("schedulers").base_config;
const DIMS = [1, 4, 4, 4];

function finalSample(
  name: string,
  steps: number,
  overrides: SchedulerConfigJson = {},
  seed = 11,
): Float32Array {
  const scheduler = createScheduler(name, BASE, overrides);
  scheduler.setTimesteps(steps);
  const noise = seededNoise(seed);
  let x: Float32Array = noise.normal(DIMS).map((v) => v * scheduler.initNoiseSigma);
  for (const t of scheduler.timesteps) {
    x = scheduler.step(syntheticDenoiser(scheduler.scaleModelInput(x, t), t), t, x, noise, DIMS);
  }
  return x;
}

const SMOOTH_END = { lower_order_final: false, final_sigmas_type: "sigma_min" };

describe("higher orders converge faster to the same solution", () => {
  // The error against a fine solution shrinks faster with more steps for a higher order (by
  // about 2^order per doubling); at very few steps a multistep method of high order is not
  // necessarily better, so the rate is what is compared.
  test.each([
    [
      "DPMSolverMultistepScheduler",
      { ...SMOOTH_END, solver_order: 2 },
      { ...SMOOTH_END, solver_order: 3 },
    ],
    [
      "UniPCMultistepScheduler",
      { ...SMOOTH_END, solver_order: 2 },
      { ...SMOOTH_END, solver_order: 3 },
    ],
    [
      "DEISMultistepScheduler",
      { lower_order_final: false, solver_order: 2 },
      { lower_order_final: false, solver_order: 3 },
    ],
    [
      "DEISMultistepScheduler",
      { lower_order_final: false, solver_order: 1 },
      { lower_order_final: false, solver_order: 2 },
    ],
    ["LMSDiscreteScheduler", { lms_order: 1 }, { lms_order: 4 }],
    [
      "DPMSolverSinglestepScheduler",
      { ...SMOOTH_END, solver_order: 1 },
      { ...SMOOTH_END, solver_order: 2 },
    ],
  ])("%s %j vs %j", (name, lower, higher) => {
    const reference = finalSample(name, 600, higher);
    const rate = (overrides: SchedulerConfigJson) =>
      relativeDiff(finalSample(name, 20, overrides), reference) /
      relativeDiff(finalSample(name, 80, overrides), reference);
    expect(rate(higher)).toBeGreaterThan(rate(lower));
    expect(relativeDiff(finalSample(name, 200, lower), reference)).toBeLessThan(1e-2);
  });

  test("the DPM-Solver variants and solver types agree at many steps", () => {
    const reference = finalSample("DPMSolverMultistepScheduler", 200, {
      final_sigmas_type: "sigma_min",
    });
    for (const overrides of [
      { final_sigmas_type: "sigma_min", algorithm_type: "dpmsolver" },
      { final_sigmas_type: "sigma_min", algorithm_type: "dpmsolver", solver_type: "heun" },
      { final_sigmas_type: "sigma_min", solver_type: "heun" },
      { final_sigmas_type: "sigma_min", solver_order: 3, algorithm_type: "dpmsolver" },
    ]) {
      expect(
        relativeDiff(finalSample("DPMSolverMultistepScheduler", 200, overrides), reference),
      ).toBeLessThan(1e-3);
    }
    const unipc = finalSample("UniPCMultistepScheduler", 200, {
      final_sigmas_type: "sigma_min",
      predict_x0: false,
      solver_type: "bh1",
    });
    expect(relativeDiff(unipc, reference)).toBeLessThan(1e-3);
  });
});

describe("degenerate settings reduce to simpler samplers", () => {
  test("LMS of order 1 is Euler", () => {
    expect(
      relativeDiff(
        finalSample("LMSDiscreteScheduler", 12, { lms_order: 1 }),
        finalSample("Euler", 12),
      ),
    ).toBeLessThan(1e-6);
  });

  test("DPM-Solver singlestep and multistep of order 1 are the same", () => {
    const single = finalSample("DPMSolverSinglestepScheduler", 9, { solver_order: 1 });
    expect(
      relativeDiff(single, finalSample("DPMSolverMultistepScheduler", 9, { solver_order: 1 })),
    ).toBeLessThan(1e-6);
  });

  test("DDIM with eta = 1 draws noise each step and eta = 0 never", () => {
    let draws = 0;
    const scheduler = createScheduler("DDIM", BASE, { eta: 1 });
    scheduler.setTimesteps(5);
    const seeded = seededNoise(1);
    let x = seeded.normal(DIMS);
    for (const t of scheduler.timesteps) {
      x = scheduler.step(
        syntheticDenoiser(x, t),
        t,
        x,
        {
          normal(d) {
            draws++;
            return seeded.normal(d);
          },
        },
        DIMS,
      );
    }
    expect(draws).toBe(5);
    expect(x.every(Number.isFinite)).toBe(true);
  });

  test("Euler with leading spacing starts from sqrt(sigma_max^2 + 1) and ends at sigma_min if asked", () => {
    const leading = createScheduler("Euler", BASE, {
      timestep_spacing: "leading",
      final_sigmas_type: "sigma_min",
    });
    leading.setTimesteps(10);
    const sigmaMax = leading.sigmas?.[0] ?? 0;
    expect(leading.initNoiseSigma).toBeCloseTo(Math.sqrt(sigmaMax * sigmaMax + 1), 6);
    expect(leading.timesteps[0]).toBe(901);
    expect(leading.sigmas?.at(-1)).toBeCloseTo(0.0291675, 6);
  });

  test("Karras sigmas work for every sigma sampler", () => {
    for (const name of [
      "Heun Karras",
      "LMS Karras",
      "DPM2 Karras",
      "DPM2 a Karras",
      "DPM++ 2S Karras",
      "Euler Karras",
    ]) {
      const x = finalSample(name, 10);
      expect(x.every(Number.isFinite), name).toBe(true);
    }
  });

  test("UniPC with its corrector disabled everywhere is its predictor alone", () => {
    const all = Array.from({ length: 10 }, (_, i) => i);
    const predictorOnly = finalSample("UniPC", 10, { disable_corrector: all });
    expect(relativeDiff(predictorOnly, finalSample("UniPC", 10))).toBeGreaterThan(1e-6);
    expect(predictorOnly.every(Number.isFinite)).toBe(true);
  });
});
