// Bad shapes are refused with one-line errors before anything reaches a GPU (the checks run
// before the context is used, so a context that is never touched stands in for one).
import { describe, expect, it } from "vitest";
import { compareWithReference } from "../../src/gpu/check.js";
import type { GpuContext } from "../../src/gpu/context.js";
import { prepareAttention } from "../../src/gpu/kernels/attention.js";
import {
  prepareAvgPool,
  prepareElementwise,
  prepareTimestepEmbedding,
} from "../../src/gpu/kernels/elementwise.js";
import { prepareGroupNorm, prepareLayerNorm } from "../../src/gpu/kernels/norm.js";
import {
  GROUP_NORM_CASES,
  groupNormInputs,
  LAYER_NORM_CASES,
  layerNormInputs,
} from "../../src/gpu/kernels/norm-checks.js";
import { referenceKeyTokens } from "../../src/gpu/reference/attention.js";
import { referenceGroupNorm, referenceLayerNorm } from "../../src/gpu/reference/norm.js";
import type { KernelVariant } from "../../src/gpu/variants.js";
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "../../src/util/float16.js";

const ctx = {} as GpuContext;
const variant: KernelVariant = { path: "portable", storage: "f32" };
const base = { batch: 1, queries: 16, heads: 1, headDim: 40, kvTokens: 16 };

async function message(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return (error as Error).message;
  }
  return "no error";
}

describe("kernel shape checks", () => {
  it("refuses bad attention shapes in one line", async () => {
    const cases: [Promise<unknown>, RegExp][] = [
      [
        prepareAttention(ctx, variant, { ...base, headDim: 42 }),
        /head dim 42 is not a multiple of 4/,
      ],
      [
        prepareAttention(ctx, variant, { ...base, queries: 0 }),
        /queries must be a positive integer/,
      ],
      [
        prepareAttention(ctx, variant, { ...base, keyGrid: { height: 3, width: 4, factor: 2 } }),
        /key grid 3x4 does not hold the 16 K\/V tokens/,
      ],
      [
        prepareAttention(ctx, variant, { ...base, keyGrid: { height: 4, width: 4, factor: 5 } }),
        /factor 5 does not fit a 4x4 grid/,
      ],
    ];
    for (const [p, pattern] of cases) {
      const text = await message(p);
      expect(text).toMatch(pattern);
      expect(text).not.toContain("\n");
    }
  });

  it("refuses bad norm and elementwise shapes in one line", async () => {
    const norm = { batch: 1, pixels: 4, channels: 10, groups: 3, eps: 1e-5, silu: false };
    expect(await message(prepareGroupNorm(ctx, variant, norm))).toMatch(
      /10 channels do not split into 3 groups/,
    );
    expect(await message(prepareGroupNorm(ctx, variant, { ...norm, groups: 2, eps: 0 }))).toMatch(
      /eps must be positive/,
    );
    expect(
      await message(prepareLayerNorm(ctx, variant, { rows: 0, channels: 4, eps: 1e-5 })),
    ).toMatch(/rows must be a positive integer/);
    expect(await message(prepareElementwise(ctx, variant, "add", 0))).toMatch(
      /n must be a positive integer/,
    );
    expect(
      await message(
        prepareAvgPool(ctx, variant, { batch: 1, height: 2, width: 5, channels: 4, factor: 3 }),
      ),
    ).toMatch(/factor 3 leaves no token/);
    expect(await message(prepareTimestepEmbedding(ctx, variant, 2, 2, true, 1))).toMatch(
      /dim 2 is too small for frequency shift 1/,
    );
  });

  it("picks ToDo's nearest keys as torch does", () => {
    // Divisible: every other row and column from the top-left.
    expect(
      referenceKeyTokens({ ...base, kvTokens: 16, keyGrid: { height: 4, width: 4, factor: 2 } }),
    ).toEqual([0, 2, 8, 10]);
    // 5 rows into 2: scale 2.5, rows floor(0) = 0 and floor(2.5) = 2; 3 columns into 1: column 0.
    expect(
      referenceKeyTokens({ ...base, kvTokens: 15, keyGrid: { height: 5, width: 3, factor: 2 } }),
    ).toEqual([0, 6]);
  });

  it("gives the norm checks inputs that are exact in f16 (what the GPU reads is what the reference sees)", () => {
    const exact = (values: Float32Array) =>
      float16ArrayToFloat32(float32ArrayToFloat16(values)).every((v, i) => v === values[i]);
    for (const shape of GROUP_NORM_CASES) {
      const inputs = groupNormInputs(shape, "f16");
      // The offset mean is kept (the shift is not lost to the rounding).
      const mean = inputs.x.reduce((a, b) => a + b, 0) / inputs.x.length;
      expect(mean).toBeGreaterThan(0.3);
      for (const values of [inputs.x, inputs.gamma, inputs.beta]) expect(exact(values)).toBe(true);
    }
    for (const shape of LAYER_NORM_CASES) {
      const inputs = layerNormInputs(shape, "f16");
      expect(inputs.x.reduce((a, b) => a + b, 0) / inputs.x.length).toBeLessThan(-0.3);
      for (const values of [inputs.x, inputs.gamma, inputs.beta]) expect(exact(values)).toBe(true);
    }
  });

  it("lets an exact norm kernel with f16 storage pass its f16 check", () => {
    // The kernel emulated without f32 error: exact arithmetic on the inputs as the upload stores
    // them (rounded to f16), the result rounded to f16. With inputs the upload would round again, this exceeded the bound 10x to 68x.
    const f16 = (values: ArrayLike<number>) =>
      float16ArrayToFloat32(float32ArrayToFloat16(Float32Array.from(values)));
    for (const shape of GROUP_NORM_CASES) {
      const inputs = groupNormInputs(shape, "f16");
      const uploaded = { x: f16(inputs.x), gamma: f16(inputs.gamma), beta: f16(inputs.beta) };
      const kernel = f16(referenceGroupNorm(shape, uploaded, "f16").value);
      const check = referenceGroupNorm(shape, inputs, "f16");
      expect(compareWithReference(kernel, check).worstRatio).toBeLessThanOrEqual(1);
    }
    for (const shape of LAYER_NORM_CASES) {
      const inputs = layerNormInputs(shape, "f16");
      const uploaded = { x: f16(inputs.x), gamma: f16(inputs.gamma), beta: f16(inputs.beta) };
      const kernel = f16(referenceLayerNorm(shape, uploaded, "f16").value);
      const check = referenceLayerNorm(shape, inputs, "f16");
      expect(compareWithReference(kernel, check).worstRatio).toBeLessThanOrEqual(1);
    }
  });
});
