// Which tensor-core attention tiling each SD head dim gets without an explicit one: eight
// subgroups with double-staged K/V tiles where they fit the 48 KB of workgroup memory (head dim
// 40), the same with unpadded tile rows where only those fit (80), 16-key tiles at 160; the
// fallback when a device refuses a pipeline; and the shaders differ as they should.
import { describe, expect, it } from "vitest";
import {
  type AttentionTiling,
  DEFAULT_ATTENTION_TILINGS,
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
  it("double-stages K/V at head dims 40, 80 and 160 (160 with 16-key tiles)", async () => {
    const d40 = await defaultKernel(40);
    const d80 = await defaultKernel(80);
    const d160 = await defaultKernel(160);
    expect([d40.tiling.subgroups, d40.tiling.staging]).toEqual([8, "double"]);
    // At 80 the default's padded tile rows take 51,200 bytes; unpadded ones (kvPad 0) exactly
    // the 49,152 there are, with rows of 80 halves where the default's are 88.
    expect(d80.tiling).toEqual({ ...DEFAULT_ATTENTION_TILINGS.tensorCore, kvPad: 0 });
    expect(tensorCoreWorkgroupBytes(variant, 80, DEFAULT_ATTENTION_TILINGS.tensorCore)).toBe(51200);
    expect(tensorCoreWorkgroupBytes(variant, 80, d80.tiling)).toBe(49152);
    expect(d80.code).toContain(`kv_tile: array<f16, ${128 * 80}>`);
    expect(d40.code).toContain(`kv_tile: array<f16, ${128 * 56}>`);
    expect(d160.tiling).toEqual({
      keysPerTile: 16,
      subgroups: 4,
      rescale: "lazy",
      staging: "double",
      laneKeys: 2,
    });
    // The double-staged shader reads the tile at kv_cur and stores the next into the other half.
    expect(d40.code).toContain("let kv_cur = (kt & 1u)");
    expect(d160.code).toContain("let kv_cur = (kt & 1u)");
    // Double-staged 32-key tiles at 160 would need more than the adapter's 48 KB.
    expect(
      tensorCoreWorkgroupBytes(variant, 160, { ...d160.tiling, keysPerTile: 32 }),
    ).toBeGreaterThan(49152);
  });

  it("falls back to the next fitting tiling when the device refuses the first's pipeline", async () => {
    const shape = { batch: 2, queries: 100, heads: 2, headDim: 80, kvTokens: 100 };
    // A device that refuses the first fitting tiling at 80 (eight subgroups, double-staged, 128
    // unpadded tile rows of 80 halves: all 48 KB) at both matrix-load spellings: the next one
    // in the order that fits (four subgroups, double-staged) compiles.
    const refused = /kv_tile: array<f16, 10240>/;
    const sources: string[] = [];
    const kernel = await prepareAttention(capturingContext(sources, refused), variant, shape);
    expect([kernel.tiling.subgroups, kernel.tiling.staging, kernel.tiling.kvPad]).toEqual([
      4,
      "double",
      undefined,
    ]);
    expect(sources.filter((code) => refused.test(code)).length).toBe(2);
    // An explicit tiling is not replaced, and a refusal of the last candidate is the error.
    await expect(
      prepareAttention(capturingContext([], /kv_tile/), variant, shape, {
        keysPerTile: 32,
        subgroups: 4,
        rescale: "lazy",
      }),
    ).rejects.toThrow(/cannot create the pipeline \(refused\)$/);
    await expect(prepareAttention(capturingContext([], /kv_tile/), variant, shape)).rejects.toThrow(
      /cannot create the pipeline \(refused\)$/,
    );
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

  it("transposes the launch grid for headsFirst, reading the head from x and the query tile from y", async () => {
    const shape = { batch: 2, queries: 300, heads: 3, headDim: 40, kvTokens: 300 };
    const sources: string[] = [];
    const ctx = capturingContext(sources);
    const rowsFirst = await prepareAttention(
      ctx,
      variant,
      shape,
      DEFAULT_ATTENTION_TILINGS.tensorCore,
    );
    const headsFirst = await prepareAttention(ctx, variant, shape, {
      ...DEFAULT_ATTENTION_TILINGS.tensorCore,
      headsFirst: true,
    });
    // 300 queries in tiles of 128 rows (8 subgroups x 16), 2 x 3 heads.
    expect(rowsFirst.workgroups).toEqual([3, 6, 1]);
    expect(headsFirst.workgroups).toEqual([6, 3, 1]);
    expect(sources[0]).toContain("let bh = wg.y;");
    expect(sources[0]).toContain("let q0 = wg.x * 128u;");
    expect(sources[1]).toContain("let bh = wg.x;");
    expect(sources[1]).toContain("let q0 = wg.y * 128u;");
    expect(headsFirst.label).toMatch(/ heads-first$/);
  });

  it("pads the score rows, pairs the softmax lanes' keys and drops bounds checks on full tiles", async () => {
    const lazy = { keysPerTile: 32, subgroups: 8, rescale: "lazy", staging: "double" } as const;
    const shader = async (keys: number, tiling: AttentionTiling) => {
      const sources: string[] = [];
      const shape = { batch: 1, queries: 64, heads: 2, headDim: 40, kvTokens: keys };
      await prepareAttention(capturingContext(sources), variant, shape, tiling);
      return sources[0];
    };
    // 8 subgroups x 16 rows x (32 keys + 4 or 8 words of padding) f32 scores, less the last
    // row's padding.
    expect(await shader(64, lazy)).toContain(`s_buf: array<f32, ${8 * 16 * 36 - 4}>`);
    expect(await shader(64, { ...lazy, scorePad: 8 })).toContain(
      `s_buf: array<f32, ${8 * 16 * 40 - 8}>`,
    );
    expect(tensorCoreWorkgroupBytes(variant, 40, { ...lazy, scorePad: 8 })).toBe(
      tensorCoreWorkgroupBytes(variant, 40, lazy) + (8 * 16 * 4 - 4) * 4,
    );
    // Two lanes per row: one at a time interleaved (keys part, part + 2, ...), adjacent pairs
    // (2 part, 2 part + 1, 2 part + 4, ...) or runs of four (4 part, ..., 4 part + 3, 4 part + 8).
    const interleaved = await shader(64, lazy);
    const paired = await shader(64, { ...lazy, laneKeys: 2 });
    const quads = await shader(64, { ...lazy, laneKeys: 4 });
    expect(interleaved).toContain("let lane_key = part;");
    expect(interleaved).toContain("let x_1 = s_buf[s_at + 2u]");
    expect(paired).toContain("let lane_key = part * 2u;");
    expect(paired).toContain("let x_1 = s_buf[s_at + 1u]");
    expect(paired).toContain("let x_2 = s_buf[s_at + 4u]");
    expect(quads).toContain("let lane_key = part * 4u;");
    expect(quads).toContain("let x_3 = s_buf[s_at + 3u]");
    expect(quads).toContain("let x_4 = s_buf[s_at + 8u]");
    // 64 keys fill both tiles: no bounds check; 67 leave a partial one: every key checked.
    expect(interleaved).not.toContain("+ lane_key <");
    expect(await shader(67, lazy)).toContain("j0 + 2u + lane_key < 67u");
    await expect(
      prepareAttention(
        capturingContext([]),
        variant,
        { batch: 1, queries: 64, heads: 2, headDim: 40, kvTokens: 64 },
        {
          keysPerTile: 32,
          subgroups: 8,
          laneKeys: 2,
        },
      ),
    ).rejects.toThrow(
      /: softmax lanes on 2 adjacent keys need a lazy tiling and a multiple of 2 keys per lane$/,
    );
  });
});
