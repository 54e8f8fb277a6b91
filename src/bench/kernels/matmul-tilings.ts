/** Tile shapes swept by `bench-kernels --sweep` for the GEMM and convolution families. */
import type { MatrixTiling, PortableTiling, Tiling } from "../../gpu/kernels/matmul-wgsl.js";
import type { KernelVariant } from "../../gpu/variants.js";

const tc = (
  tileM: number,
  tileN: number,
  tileK: number,
  subgroupsM: number,
  subgroupsN: number,
  pad: number,
): MatrixTiling => ({ kind: "tensor-core", tileM, tileN, tileK, subgroupsM, subgroupsN, pad });

const portable = (
  tileM: number,
  tileN: number,
  tileK: number,
  threadM: number,
  threadN: number,
): PortableTiling => ({ kind: "portable", tileM, tileN, tileK, threadM, threadN });

export function matmulTilings(variant: KernelVariant): Tiling[] {
  if (variant.path === "tensor-core")
    return [
      tc(128, 128, 32, 2, 4, 8),
      tc(128, 128, 32, 4, 2, 8),
      tc(128, 128, 32, 2, 4, 0),
      tc(128, 128, 16, 2, 4, 8),
      tc(64, 128, 32, 2, 2, 8),
      tc(128, 64, 32, 2, 2, 8),
      tc(128, 256, 16, 2, 4, 8),
      tc(256, 128, 16, 4, 2, 8),
      tc(64, 64, 32, 2, 2, 8),
      tc(128, 128, 32, 2, 2, 8),
      tc(128, 128, 32, 2, 2, 0),
      tc(128, 128, 16, 2, 2, 8),
      // 16 subgroups (32x32 or 64x32 per subgroup), wider padding, thin tiles for N = 320.
      tc(128, 128, 16, 4, 4, 8),
      tc(128, 256, 16, 2, 8, 8),
      tc(128, 128, 32, 2, 4, 16),
      tc(64, 256, 16, 2, 4, 8),
      tc(256, 64, 16, 4, 2, 8),
      tc(128, 64, 16, 4, 2, 8),
      // The GEMMs' default and the half-rows small-grid tile, on 8 subgroups of 32 x 32.
      tc(64, 128, 32, 2, 4, 8),
      // Ablations (wrong results, timing only): what the staging costs, and the instruction's own
      // ceiling, at the default tiling and at the widest one.
      { ...tc(128, 128, 32, 2, 4, 8), ablation: "no-global-loads" },
      { ...tc(128, 128, 32, 2, 4, 8), ablation: "mma-only" },
      { ...tc(128, 256, 16, 2, 4, 8), ablation: "no-global-loads" },
      { ...tc(128, 256, 16, 2, 4, 8), ablation: "mma-only" },
    ];
  return [
    portable(64, 64, 16, 4, 4),
    portable(128, 128, 16, 8, 8),
    portable(128, 64, 16, 8, 4),
    portable(64, 128, 16, 4, 8),
  ];
}
