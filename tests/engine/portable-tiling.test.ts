// Which tile the kernels engine gives the tuned GEMM and convolution on their portable path: a
// fallback (CPU) adapter gets the small tile, a hardware one src/gpu's default, and a tile asked
// for wins on either; the tensor-core path keeps its own per-shape choice.
import { describe, expect, it } from "vitest";
import { enginePortableTiling } from "../../src/engine/executor.js";
import { DEFAULT_TILINGS, SMALL_PORTABLE_TILING } from "../../src/gpu/kernels/matmul-kernel.js";
import type { KernelVariant } from "../../src/gpu/variants.js";

const PORTABLE: KernelVariant = { path: "portable", storage: "f32" };
const TENSOR_CORES: KernelVariant = {
  path: "tensor-core",
  storage: "f16",
  matrix: { m: 16, n: 16, k: 16 },
  subgroupSize: 32,
};

describe("the engine's portable tile", () => {
  it("is the small tile on a fallback adapter and the kernel's default on a hardware one", () => {
    expect(enginePortableTiling(PORTABLE, { fallbackAdapter: true }, undefined)).toBe(
      SMALL_PORTABLE_TILING,
    );
    expect(enginePortableTiling(PORTABLE, { fallbackAdapter: false }, undefined)).toBeUndefined();
  });

  it("is the tile asked for on either, and never set on the tensor-core path", () => {
    const asked = DEFAULT_TILINGS.portable;
    expect(enginePortableTiling(PORTABLE, { fallbackAdapter: true }, asked)).toBe(asked);
    expect(enginePortableTiling(PORTABLE, { fallbackAdapter: false }, asked)).toBe(asked);
    expect(enginePortableTiling(TENSOR_CORES, { fallbackAdapter: true }, asked)).toBeUndefined();
  });
});
