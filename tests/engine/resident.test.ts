// Tensors kept on the device by the kernels engine (ModelRunner.upload and runOnDevice), handed
// between runners that share one GPU context, as a denoising loop with its latents on the device
// does: the same numbers as through the host, foreign feeds read back, dispose and the shared
// context's lifetime. On SwiftShader (f32).
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

describe("kernels engine: resident tensors between runners", () => {
  it("keeps outputs on the device, feeds them to another runner and back, as the host path computes", async () => {
    const r = JSON.parse(
      await runOnSwiftShader(join("tests", "engine", "resident.child.ts"), [], {
        timeout: 180_000,
      }),
    );
    expect(r.yKind).toBe("resident");
    expect(r.kinds).toEqual({
      bank_out: "resident",
      combined: "resident",
      finite_check: "float32",
    });
    // f32 on both paths, the same kernels: equal up to the order of nothing (exactly equal).
    expect(r.bankDiff).toBeLessThanOrEqual(1e-6);
    expect(r.combinedDiff).toBeLessThanOrEqual(1e-6);
    expect(r.roundTripDiff).toBeLessThanOrEqual(1e-6);
    expect(r.foreignDiff).toBeLessThanOrEqual(1e-6);
    expect(r.disposedError).toBe('input "x": a resident tensor used after dispose()');
    expect(r.uploadError).toBe("upload: 12 values for shape [2, 1, 2, 2]");
    // One context for both runners, destroyed with the last of them.
    expect([r.holdersOpen, r.holdersAfterOne, r.holdersAfter]).toEqual([2, 1, 0]);
  }, 200_000);
});
