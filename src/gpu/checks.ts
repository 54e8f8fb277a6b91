/**
 * Every kernel family's reference checks, in one list (a family adds its checks here).
 */
import type { KernelCheck } from "./check.js";
import { attentionChecks } from "./kernels/attention-checks.js";
import { matmulChecks } from "./kernels/matmul-checks.js";
import {
  DEFAULT_TILINGS,
  SMALL_GRID_TILINGS,
  SMALL_PORTABLE_TILING,
  tilingName,
} from "./kernels/matmul-kernel.js";
import type { MatrixTiling } from "./kernels/matmul-wgsl.js";
import { normChecks } from "./kernels/norm-checks.js";

export interface CheckSelection {
  /** CI on a CPU driver: small portable tiles (fast to compile), no GPU-only cases. */
  readonly ci?: boolean;
}

/**
 * The tensor-core tiles a problem may get by default (its grid decides which), each checked on
 * every case: the check cases are small, so without a tile named they take the smallest.
 */
const CHECKED_MATMUL_TILINGS: readonly MatrixTiling[] = Object.freeze([
  ...new Set([
    DEFAULT_TILINGS.tensorCore,
    DEFAULT_TILINGS.gemm,
    DEFAULT_TILINGS.wideGemm,
    ...SMALL_GRID_TILINGS,
  ]),
]);

export function allKernelChecks(selection: CheckSelection = {}): KernelCheck[] {
  const tensorCoreTiles = selection.ci
    ? []
    : CHECKED_MATMUL_TILINGS.flatMap((tiling) =>
        matmulChecks(tiling).map(
          (check): KernelCheck => ({
            ...check,
            name: `${check.name} ${tilingName(tiling)}`,
            appliesTo: (_ctx, variant) => variant.path === "tensor-core",
          }),
        ),
      );
  return [
    ...matmulChecks(selection.ci ? SMALL_PORTABLE_TILING : undefined, selection.ci),
    ...tensorCoreTiles,
    ...attentionChecks(undefined, selection.ci),
    ...normChecks(),
  ];
}
