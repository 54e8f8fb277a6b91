// The compile-ahead walk (ExecutorOptions.compileAhead): a first call starts every kernel's
// compile before it awaits any, dispatches nothing more than a call without it, and gives the
// same results.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";

describe("compile-ahead walk", () => {
  it("has the first call's compiles in flight together, and changes nothing else", async () => {
    const r = JSON.parse(
      await runOnSwiftShader(join("tests", "engine", "compile-ahead.child.ts"), [], {
        timeout: 180_000,
      }),
    );
    // The first call's five kernels: all asked for before any was awaited, against one at a
    // time without the walk ahead.
    expect(r.most).toEqual({ ahead: 5, plain: 1 });
    // The walk ahead records nothing: both calls dispatch the same launches.
    expect(r.launches.ahead).toBe(r.launches.plain);
    expect(r.firstDiff).toBe(0);
    // The If's other branch under the same signature is walked (its two kernels compiled then),
    // with the same results, and no walk ahead failed.
    expect(r.secondCompiles).toBe(2);
    expect(r.secondDiff).toBe(0);
    expect(r.errors).toEqual([]);
  }, 240_000);
});
