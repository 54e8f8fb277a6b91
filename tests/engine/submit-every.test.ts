// How often the kernels engine submits what it has recorded: every SUBMIT_EVERY launches on a
// hardware adapter (the GPU starts on a call while the host records the rest), once per call on
// a fallback (CPU) adapter, and the interval asked for on either. tuned.test.ts checks that the
// executor submits at the interval and that the outputs do not change.
import { describe, expect, it } from "vitest";
import { engineSubmitEvery, SUBMIT_EVERY, submitSpans } from "../../src/engine/executor.js";

describe("the engine's submit interval", () => {
  it("is SUBMIT_EVERY launches on a hardware adapter and the whole call on a fallback one", () => {
    expect(SUBMIT_EVERY).toBe(32);
    expect(engineSubmitEvery({ fallbackAdapter: false }, undefined)).toBe(SUBMIT_EVERY);
    expect(engineSubmitEvery({ fallbackAdapter: true }, undefined)).toBe(Number.POSITIVE_INFINITY);
  });

  it("is the interval asked for on either", () => {
    expect(engineSubmitEvery({ fallbackAdapter: true }, 8)).toBe(8);
    expect(engineSubmitEvery({ fallbackAdapter: false }, Number.POSITIVE_INFINITY)).toBe(
      Number.POSITIVE_INFINITY,
    );
  });
});

describe("the GPU's time on a call's timed passes (timeSubmits)", () => {
  it("sums the passes' own time and spans the first start to the last end", () => {
    // Two passes with 1.5 ms between them, during which the GPU waited for the host.
    const stats = submitSpans([
      { startMs: 0, endMs: 2 },
      { startMs: 3.5, endMs: 4.25 },
    ]);
    expect(stats).toEqual({ passes: 2, busyMs: 2.75, spanMs: 4.25 });
    expect(submitSpans([])).toEqual({ passes: 0, busyMs: 0, spanMs: 0 });
  });
});
