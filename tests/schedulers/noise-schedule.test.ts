import { describe, expect, test } from "vitest";
import { logFloat32 } from "../../src/schedulers/float32-log.js";
import {
  arange,
  karrasSigmas,
  linspaceFloat32,
  NoiseSchedule,
  roundHalfEven,
  spacedTimesteps,
  trainingBetas,
} from "../../src/schedulers/noise-schedule.js";
import {
  evaluate,
  integrate,
  integrateTimesExp,
  lagrangeBasis,
} from "../../src/schedulers/polynomial.js";
import { clipOrThreshold } from "../../src/schedulers/tensor-ops.js";

const SD = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null,
} as const;

describe("numeric helpers", () => {
  test("roundHalfEven and arange follow NumPy", () => {
    expect([0.5, 1.5, 2.5, 499.5, 249.75, -1.5].map(roundHalfEven)).toEqual([
      0, 2, 2, 500, 250, -2,
    ]);
    expect(Array.from(arange(1000, 0, -250))).toEqual([1000, 750, 500, 250]);
    expect(arange(1000, 0, -1000 / 7)).toHaveLength(7);
  });

  test("linspaceFloat32 hits both ends exactly", () => {
    const values = linspaceFloat32(0.1, 0.7, 11);
    expect(values[0]).toBe(Math.fround(0.1));
    expect(values[10]).toBe(Math.fround(0.7));
    expect(values[5]).toBeCloseTo(0.4, 6);
  });

  test("logFloat32 is within one float32 ulp of the true log", () => {
    for (const x of [1e-6, 0.0291675, 0.5, 1, 1.5, 2, 14.6146, 1e6]) {
      const exact = Math.log(x);
      expect(Math.abs(logFloat32(x) - exact)).toBeLessThanOrEqual(
        Math.abs(exact) * 2 ** -23 + 2 ** -40,
      );
    }
    expect(logFloat32(0)).toBe(Number.NEGATIVE_INFINITY);
  });

  test("Lagrange basis and exact integrals", () => {
    const nodes = [0.5, 1, 2];
    const basis = lagrangeBasis(nodes, 1);
    expect(nodes.map((x) => evaluate(basis, x))).toEqual([0, 1, 0]);
    // The basis polynomials sum to 1, so their integrals sum to the interval length.
    const total = nodes.reduce((sum, _, j) => sum + integrate(lagrangeBasis(nodes, j), 0, 3), 0);
    expect(total).toBeCloseTo(3, 12);
    // Integral of u e^u over [0, 1] is 1.
    expect(integrateTimesExp([0, 1], 0, 1)).toBeCloseTo(1, 12);
  });

  test("dynamic thresholding clamps each batch item at its percentile", () => {
    const x0 = Float64Array.from([0.5, -3, 2, 1, /* second item */ 0.1, 0.2, -0.3, 0.4]);
    clipOrThreshold(
      x0,
      { thresholding: true, dynamic_thresholding_ratio: 1, sample_max_value: 2.5 },
      [2, 4],
    );
    // First item: s = min(max(3, 1), 2.5) = 2.5; second: s = 1 (plain clipping, no-op).
    expect(Array.from(x0)).toEqual([0.2, -1, 0.8, 0.4, 0.1, 0.2, -0.3, 0.4]);
    const clipped = Float64Array.from([1.5, -2]);
    clipOrThreshold(clipped, { clip_sample: true, clip_sample_range: 1 }, [1, 2]);
    expect(Array.from(clipped)).toEqual([1, -1]);
  });
});

describe("training schedules", () => {
  test("beta schedules", () => {
    const linear = trainingBetas({ ...SD, beta_schedule: "linear" });
    expect(linear[0]).toBe(Math.fround(0.00085));
    expect(linear[999]).toBe(Math.fround(0.012));
    const scaled = trainingBetas(SD);
    expect(scaled[0]).toBeCloseTo(0.00085, 9);
    expect(scaled[999]).toBeCloseTo(0.012, 8);
    const cosine = trainingBetas({ ...SD, beta_schedule: "squaredcos_cap_v2" });
    expect(cosine[999]).toBeCloseTo(0.999, 6);
    expect(cosine[0]).toBeLessThan(1e-4);
    const trained = trainingBetas({
      ...SD,
      num_train_timesteps: 3,
      trained_betas: [0.1, 0.2, 0.3],
    });
    expect(Array.from(trained)).toEqual([0.1, 0.2, 0.3].map(Math.fround));
  });

  test("zero terminal SNR rescaling ends at alpha-bar 0, or 2^-24 for sigma samplers", () => {
    const rescaled = new NoiseSchedule({ ...SD, rescale_betas_zero_snr: true });
    expect(rescaled.alphasCumprod[999]).toBe(0);
    expect(rescaled.alphasCumprod[0]).toBeCloseTo(new NoiseSchedule(SD).alphasCumprod[0], 7);
    const floored = new NoiseSchedule({ ...SD, rescale_betas_zero_snr: true }, true);
    expect(floored.alphasCumprod[999]).toBe(2 ** -24);
    expect(Number.isFinite(floored.sigmas[999])).toBe(true);
  });

  test("timestep spacings (Lin et al. 2023, Table 2)", () => {
    expect(spacedTimesteps("leading", 1000, 4, 1, "integer")).toEqual([751, 501, 251, 1]);
    expect(spacedTimesteps("trailing", 1000, 4, 1, "integer")).toEqual([999, 749, 499, 249]);
    expect(spacedTimesteps("linspace", 1000, 4, 1, "integer")).toEqual([999, 666, 333, 0]);
    expect(spacedTimesteps("linspace", 1000, 3, 0, "fractional")).toEqual([999, 499.5, 0]);
    expect(spacedTimesteps("linspace", 1000, 4, 0, "solver")).toEqual([999, 749, 500, 250]);
    expect(spacedTimesteps("leading", 1000, 4, 1, "solver")).toEqual([801, 601, 401, 201]);
  });

  test("Karras sigmas run from sigma_max to sigma_min", () => {
    const sigmas = karrasSigmas(0.03, 14.6, 5);
    expect(sigmas[0]).toBeCloseTo(14.6, 10);
    expect(sigmas[4]).toBeCloseTo(0.03, 12);
    for (let i = 1; i < 5; i++) expect(sigmas[i]).toBeLessThan(sigmas[i - 1]);
  });

  test("timestepForSigma inverts sigmaAt", () => {
    const schedule = new NoiseSchedule(SD);
    for (const t of [0, 10.25, 500, 998.5])
      expect(schedule.timestepForSigma(schedule.sigmaAt(t))).toBeCloseTo(t, 2);
  });
});
