// Which tensor-core attention tiling each SD head dim gets without an explicit one: the
// double-staged K/V tiles where both fit the 48 KB of workgroup memory (head dims 40 and 80),
// single staging where they do not (160), and the two shaders differ as they should.
import { describe, expect, it } from "vitest";
import {
  prepareAttention,
  tensorCoreRows,
  tensorCoreWorkgroupBytes,
} from "../../src/gpu/kernels/attention.js";
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

  it("gives each subgroup two blocks of query rows when the tiling asks for them", async () => {
    const shape = { batch: 2, queries: 300, heads: 2, headDim: 40, kvTokens: 300 };
    const one = { keysPerTile: 32, subgroups: 4, rescale: "lazy" } as const;
    const two = { ...one, rowBlocks: 2 } as const;
    expect(tensorCoreRows(variant, one)).toBe(64);
    expect(tensorCoreRows(variant, two)).toBe(128);
    const sources: string[] = [];
    const kernel = await prepareAttention(capturingContext(sources), variant, shape, two);
    // 300 queries in workgroups of 128 rows; the second block's Q fragments and outputs exist.
    expect(kernel.workgroups).toEqual([3, 4, 1]);
    expect(sources[0]).toContain("let qf_1_0");
    expect(sources[0]).toContain("1.0 / l_1");
    // The scores and probabilities of both blocks take workgroup memory.
    expect(tensorCoreWorkgroupBytes(variant, 40, two)).toBeGreaterThan(
      tensorCoreWorkgroupBytes(variant, 40, one),
    );
    await expect(
      prepareAttention(capturingContext([]), variant, shape, {
        ...one,
        rowBlocks: 3 as unknown as 2,
      }),
    ).rejects.toThrow(/3 row blocks per subgroup \(1 or 2\)$/);
  });
});
