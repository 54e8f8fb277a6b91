// Which tensor-core attention tiling each SD head dim gets without an explicit one: the
// double-staged K/V tiles where both fit the 48 KB of workgroup memory (head dims 40 and 80),
// single staging where they do not (160), and the two shaders differ as they should.
import { describe, expect, it } from "vitest";
import { prepareAttention, tensorCoreWorkgroupBytes } from "../../src/gpu/kernels/attention.js";
import type { KernelVariant } from "../../src/gpu/variants.js";
import { capturingContext } from "./capturing-context.js";

const variant: KernelVariant = {
  path: "tensor-core",
  storage: "f16",
  matrix: { m: 16, n: 16, k: 16 },
  subgroupSize: 32,
};

async function defaultKernel(headDim: number) {
  const sources: string[] = [];
  const kernel = await prepareAttention(capturingContext(sources), variant, {
    batch: 2,
    queries: 100,
    heads: 2,
    headDim,
    kvTokens: 100,
  });
  return { tiling: kernel.tiling, code: sources[0] };
}

describe("tensor-core attention tilings", () => {
  it("double-stages K/V at head dims 40 and 80, single-stages at 160", async () => {
    const d40 = await defaultKernel(40);
    const d80 = await defaultKernel(80);
    const d160 = await defaultKernel(160);
    expect([d40.tiling.subgroups, d40.tiling.staging]).toEqual([8, "double"]);
    expect([d80.tiling.subgroups, d80.tiling.staging]).toEqual([4, "double"]);
    expect(d160.tiling.staging).toBeUndefined();
    // The double-staged shader reads the tile at kv_cur and stores the next into the other half.
    expect(d40.code).toContain("let kv_cur = (kt & 1u)");
    expect(d160.code).not.toContain("(kt & 1u)");
    // Double staging at 160 would need more than the adapter's 48 KB.
    expect(
      tensorCoreWorkgroupBytes(variant, 160, { ...d160.tiling, staging: "double" }),
    ).toBeGreaterThan(49152);
  });
});
