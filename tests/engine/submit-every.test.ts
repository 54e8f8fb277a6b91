// How often the kernels engine submits what it has recorded: every SUBMIT_EVERY launches on a
// hardware adapter (the GPU starts on a call while the host records the rest), once per call on
// a fallback (CPU) adapter, and the interval asked for on either. tuned.test.ts checks that the
// executor submits at the interval and that the outputs do not change.
import { describe, expect, it } from "vitest";
import { engineSubmitEvery, SUBMIT_EVERY } from "../../src/engine/executor.js";

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
