/**
 * Every kernel family's reference checks, in one list (a family adds its checks here).
 */
import type { KernelCheck } from "./check.js";
import { attentionChecks } from "./kernels/attention-checks.js";
import { matmulChecks } from "./kernels/matmul-checks.js";
import type { PortableTiling } from "./kernels/matmul-wgsl.js";
import { normChecks } from "./kernels/norm-checks.js";

export interface CheckSelection {
  /** CI on a CPU driver: small portable tiles (fast to compile), no GPU-only cases. */
  readonly ci?: boolean;
}

/** A portable tiling small enough for SwiftShader to compile in about a second. */
export const CI_PORTABLE_TILING: PortableTiling = Object.freeze({
  kind: "portable",
  tileM: 32,
  tileN: 32,
  tileK: 8,
  threadM: 4,
  threadN: 4,
});

export function allKernelChecks(selection: CheckSelection = {}): KernelCheck[] {
  return [
    ...matmulChecks(selection.ci ? CI_PORTABLE_TILING : undefined, selection.ci),
    ...attentionChecks(undefined, selection.ci),
    ...normChecks(),
  ];
}
