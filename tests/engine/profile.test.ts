// The kernels engine's profile summary: GPU time per kernel averaged over the profiled calls, in
// the shape bench prints for onnxruntime's profiles, largest first.
import { describe, expect, it } from "vitest";
import { summariseKernelProfile } from "../../src/engine/runner.js";

describe("summariseKernelProfile", () => {
  it("averages each kernel's time and launches per call and sorts by time", () => {
    const summary = summariseKernelProfile({
      calls: 2,
      byKernel: new Map([
        ["copy", { ms: 3, launches: 40 }],
        ["tuned conv", { ms: 10, launches: 4 }],
      ]),
    });
    expect(summary).toEqual({
      byOpType: [
        { opType: "tuned conv", totalMs: 5, count: 2, providers: ["kernels"] },
        { opType: "copy", totalMs: 1.5, count: 20, providers: ["kernels"] },
      ],
      timeSource: "device",
      placement: {},
      runs: 2,
    });
  });

  it("sums shapes into their kind and lists each shape where labels carry one", () => {
    const summary = summariseKernelProfile({
      calls: 2,
      byKernel: new Map([
        ["tuned conv: conv3x3/1 2x64x64x320->320", { ms: 6, launches: 2 }],
        ["tuned conv: conv3x3/1 2x32x32x640->640", { ms: 8, launches: 2 }],
        ["copy", { ms: 2, launches: 10 }],
      ]),
    });
    expect(summary.byOpType).toEqual([
      { opType: "tuned conv", totalMs: 7, count: 2, providers: ["kernels"] },
      { opType: "copy", totalMs: 1, count: 5, providers: ["kernels"] },
    ]);
    expect(summary.byKernel?.map((o) => [o.opType, o.totalMs])).toEqual([
      ["tuned conv: conv3x3/1 2x32x32x640->640", 4],
      ["tuned conv: conv3x3/1 2x64x64x320->320", 3],
      ["copy", 1],
    ]);
  });

  it("reports no calls as zero runs without dividing by zero", () => {
    const summary = summariseKernelProfile({ calls: 0, byKernel: new Map() });
    expect(summary.runs).toBe(0);
    expect(summary.byOpType).toEqual([]);
  });
});
