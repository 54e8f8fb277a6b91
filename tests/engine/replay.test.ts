// Warm calls of the kernels engine replayed from a captured call (src/engine/replay.ts): the same
// numbers and launches as the graph walked again, over If branches and a Slice step that change
// with the timestep, device feeds (in one buffer or two) and kept outputs, pooled buffers held
// elsewhere, shapes made from feed values, and graphs it must never replay. On SwiftShader (f32).
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
    // The same launches by kernel as the walk made.
    for (const call of r.hostCalls) {
      expect(call.launches).toBeGreaterThan(0);
      expect(call.sameWork).toBe(true);
    }
    expect(r.walkedReplayed).toBe(false);
    // Device feeds are another signature (captured once), then replayed; every kept output is a
    // buffer of its own, untouched by the calls after it.
    expect(r.kept.map((c: { replayed: boolean }) => c.replayed)).toEqual([false, true, true]);
    expect(r.distinctBuffers).toBe(3);
    expect(r.heldDiff).toBe(0);
    // With the plan's pooled buffers held elsewhere the replay takes others, binding them anew
    // once; the next call replays on them with no new bind groups. Both right.
    expect(r.contended).toMatchObject({ replayed: true, diff: 0 });
    expect(r.contended.bindGroups).toBeGreaterThan(0);
    expect(r.after).toEqual({ replayed: true, bindGroups: 0, diff: 0 });
    // A Reshape whose shape is a feed: the value guards the plan, so the call with another shape
    // walks and the one with the same shape replays; right every call (a 4-term f32 dot product
    // against one in float64: a few units of f32 rounding).
    // Past four plans the oldest goes: shape 8 replays at the end, shape 4 walks again.
    expect(r.decided.map((c: { replayed: boolean }) => c.replayed)).toEqual([
      false,
      false,
      true,
      false,
      false,
      false,
      true,
      false,
    ]);
    for (const call of r.decided) expect(call.diff).toBeLessThan(1e-6);
    expect(r.decided.map((c: { dims: number[] }) => c.dims[0])).toEqual([4, 8, 8, 2, 3, 6, 8, 4]);
    // A replay times its passes as a walk does.
    expect(r.timed.map((c: { replayed: boolean }) => c.replayed)).toEqual([false, true]);
    for (const call of r.timed) {
      expect(call.passes).toBeGreaterThan(0);
      expect(call.busy).toBe(true);
    }
    // Two device feeds in one buffer are another signature than in two.
    expect(r.shared).toEqual([
      { replayed: false, diff: 0 },
      { replayed: false, diff: 0 },
      { replayed: true, diff: 0 },
    ]);
    // A shape made from a feed's value: the call whose shapes differ walks.
    expect(r.sliced).toEqual([
      { replayed: false, dims: [3, 4] },
      { replayed: false, dims: [5, 4] },
      { replayed: true, dims: [5, 4] },
    ]);
    // A Slice step chosen from the timestep: a plan per step, each replayed where it applies.
    expect(r.strided.map((c: { replayed: boolean }) => c.replayed)).toEqual([
      false,
      true,
      false,
      true,
      true,
    ]);
    expect(r.strided.map((c: { dims: number[] }) => c.dims[0])).toEqual([4, 4, 8, 8, 4]);
    for (const call of r.strided) expect(call.diff).toBe(0);
    // A feed's value handed through an If branch on the host: not replayed, right every call.
    expect(r.passed).toEqual(Array(4).fill({ replayed: false, diff: 0 }));
  }, 200_000);
});
