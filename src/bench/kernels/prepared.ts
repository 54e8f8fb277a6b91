/** What every kernel family's `prepare` hands back, and how a variant is described. */
import type { GpuContext, GpuTensor, KernelLaunch } from "../../gpu/context.js";
import { type MatmulKernel, tilingName } from "../../gpu/kernels/matmul-kernel.js";
import type { MatmulSpec } from "../../gpu/kernels/matmul-wgsl.js";
import type { KernelVariant } from "../../gpu/variants.js";
import type { PreparedKernel } from "./types.js";

/** `launches` over `tensors`, which `release` gives back to the context. */
export function prepared(
  ctx: GpuContext,
  launches: readonly KernelLaunch[],
  tensors: readonly GpuTensor[],
  detail: string,
): PreparedKernel {
  return {
    launches,
    detail,
    release: () => {
      for (const t of tensors) ctx.release(t);
    },
  };
}

/**
 * A matmul kernel prepared on its operand tensors (A, B, C, bias?, residual?), with the f32
 * scratch of its partial sums where it splits K (released with the operands).
 */
export function preparedMatmul(
  ctx: GpuContext,
  variant: KernelVariant,
  kernel: MatmulKernel,
  tensors: readonly GpuTensor[],
): PreparedKernel {
  const scratch = kernel.partials ? [ctx.allocate([kernel.partials], "f32", "partial sums")] : [];
  const launches = kernel.launches(
    tensors.map((t) => t.buffer),
    scratch[0]?.buffer,
  );
  return prepared(ctx, launches, [...tensors, ...scratch], matmulDetail(variant, kernel.spec));
}

/** Storage, path and subgroup-matrix shape of a variant: `f16 tensor-core 8x8x8`. */
export function variantName(v: KernelVariant): string {
  const matrix = v.matrix ? ` ${v.matrix.m}x${v.matrix.n}x${v.matrix.k}` : "";
  return `${v.storage} ${v.path}${matrix}`;
}

/** A matmul-generated kernel's variant, tiling and subgroup index source. */
export function matmulDetail(variant: KernelVariant, spec: MatmulSpec): string {
  const subgroup = spec.subgroupIndex ? ` sg:${spec.subgroupIndex} ${spec.matrixSpelling}` : "";
  const split = spec.splitK ? ` split-k ${spec.splitK}` : "";
  return `${variantName(variant)} ${tilingName(spec.tiling)}${split}${subgroup}`;
}
