// Warm calls of the kernels engine replayed from a captured call (src/engine/replay.ts): the same
// numbers as the graph walked again, over If branches that change with the timestep, device feeds
// and kept outputs, a pooled buffer held elsewhere, and a graph whose feed values decide a
// launch (never replayed). On SwiftShader (f32).
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

describe("kernels engine: replaying warm calls", () => {
  it("replays only where the walk would record the same launches, with the walk's results", async () => {
    const r = JSON.parse(
      await runOnSwiftShader(join("tests", "engine", "replay.child.ts"), [], {
        timeout: 180_000,
      }),
    );
    // Same kernels on the same inputs: exactly the walked results.
    for (const call of [...r.hostCalls, ...r.kept]) expect(call.diff).toBe(0);
    // Timesteps 900 and 800 take the If's then branch, 100 and 50 its else branch, 700 and 20
    // each again: the first call of each branch is captured, the rest replay its plan.
    expect(r.hostCalls.map((c: { replayed: boolean }) => c.replayed)).toEqual([
      false,
      true,
      false,
      true,
      true,
      true,
    ]);
    expect(r.hostCalls.every((c: { launches: number }) => c.launches > 0)).toBe(true);
    expect(r.walkedReplayed).toBe(false);
    // Device feeds are another signature (captured once), then replayed; every kept output is a
    // buffer of its own, untouched by the calls after it.
    expect(r.kept.map((c: { replayed: boolean }) => c.replayed)).toEqual([false, true, true]);
    expect(r.distinctBuffers).toBe(3);
    expect(r.heldDiff).toBe(0);
    // With the plan's pooled buffers held elsewhere the call walks, right, and the next replays.
    expect(r.contendedReplayed).toBe(false);
    expect(r.contendedDiff).toBe(0);
    expect(r.afterRelease).toBe(true);
    // A Reshape whose shape is a feed: never replayed, right on every call (a 4-term f32 dot
    // product against one in float64: a few units of f32 rounding).
    for (const call of r.decided) {
      expect(call.replayed).toBe(false);
      expect(call.diff).toBeLessThan(1e-6);
    }
    expect(r.decided.map((c: { dims: number[] }) => c.dims)).toEqual([
      [4, 24],
      [8, 12],
      [8, 12],
    ]);
  }, 200_000);
});
