/**
 * Batched GEMM with a fused epilogue.
 *
 * Shape contract (row-major, storage type T of the variant):
 *   a: (batch, M, K)            one A per batch entry
 *   b: (K, N') or (batch, K, N') N' = N, or 2N for GEGLU (hidden columns, then gate columns)
 *   bias: (N')                  optional
 *   residual: (batch, M, N)     optional, added last
 *   c: (batch, M, N) = residual + act(a @ b + bias), act = identity, GELU, or GEGLU's
 *      hidden * GELU(gate)
 * With `planeSize` (batch 1 only), C and the residual are channels-first instead: (M / planeSize,
 * N, planeSize), row r of the product being position r % planeSize of image r / planeSize (a
 * transformer's tokens written back into its NCHW map).
 * Launch: ceil(N / (tileN or tileN/2 for GEGLU)) x ceil(M / tileM) x batch workgroups; with
 * split-K, x batch x splits, then the reduction (matmul-wgsl.ts).
 */
import type { GpuContext, GpuTensor } from "../context.js";
import type { KernelVariant } from "../variants.js";
import { checkPositiveSizes, u32Literal as u } from "../wgsl.js";
import { defaultTiling, MatmulKernel, matmulSpec, runMatmul } from "./matmul-kernel.js";
import type { Epilogue, MatmulSpec, OperandA, Tiling } from "./matmul-wgsl.js";

export interface GemmShape {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** One B for every batch entry (weights), or one per entry. */
  readonly sharedB: boolean;
}

export interface GemmOptions {
  readonly bias?: boolean;
  readonly epilogue?: Epilogue;
  readonly residual?: boolean;
  /** A tile shape other than the default (benchmarks sweep them). */
  readonly tiling?: Tiling;
  /** Workgroups sharing K (split-K; default: defaultSplitK's choice for the problem). */
  readonly splitK?: number;
  /**
   * Rows per image of a channels-first C (see the shape contract); M must be a whole number of
   * images and the GEMM unbatched. Left out: row-major C.
   */
  readonly planeSize?: number;
}

/** A read as a plain row-major (batch, M, K) matrix. */
export function matrixOperand(m: number, k: number): OperandA {
  const width = k % 4 === 0 ? 4 : 1;
  return {
    vectorWidth: width,
    declarations: "",
    rowSetup: (j) =>
      `let a_ok_${j} = row_${j} < ${u(m)};\n  let a_base_${j} = batch * ${u(m * k)} + row_${j} * ${u(k)};`,
    load: (j, kExpr) =>
      `if (a_ok_${j} && ${kExpr} < ${u(k)}) { a_${j} = a[(a_base_${j} + ${kExpr}) / ${u(width)}]; }`,
  };
}

export function gemmSpec(
  variant: KernelVariant,
  shape: GemmShape,
  options: GemmOptions = {},
): MatmulSpec {
  checkPositiveSizes("gemm", { batch: shape.batch, m: shape.m, n: shape.n, k: shape.k });
  const epilogue = options.epilogue ?? "none";
  const plane = options.planeSize;
  if (
    plane !== undefined &&
    (shape.batch !== 1 || !Number.isInteger(plane) || plane < 1 || shape.m % plane !== 0)
  )
    throw new Error(
      `gemm: a channels-first output needs batch 1 and M (${shape.m}) a whole number of planes of ${plane}`,
    );
  // The tile spans B's columns: for GEGLU, the hidden and gate halves together.
  const tiling =
    options.tiling ??
    defaultTiling(variant, {
      rows: shape.m,
      columns: epilogue === "geglu" ? 2 * shape.n : shape.n,
      batch: shape.batch,
    });
  return matmulSpec(
    `gemm ${shape.batch}x${shape.m}x${shape.n}x${shape.k}`,
    variant,
    tiling,
    options,
    {
      batch: shape.batch,
      m: shape.m,
      n: shape.n,
      k: shape.k,
      a: matrixOperand(shape.m, shape.k),
      bBatchStride: shape.sharedB ? 0 : shape.k * (epilogue === "geglu" ? 2 : 1) * shape.n,
      epilogue,
      ...(plane === undefined ? {} : { planeSize: plane }),
    },
  );
}

/** Compiles (or reuses) the GEMM kernel for a shape, after checking its buffers fit. */
export function prepareGemm(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: GemmShape,
  options: GemmOptions = {},
): Promise<MatmulKernel> {
  const spec = gemmSpec(variant, shape, options);
  const bCols = spec.epilogue === "geglu" ? 2 * shape.n : shape.n;
  ctx.checkSize(shape.batch * shape.m * shape.k, variant.storage, `${spec.label}: A`);
  ctx.checkSize(
    (shape.sharedB ? 1 : shape.batch) * shape.k * bCols,
    variant.storage,
    `${spec.label}: B`,
  );
  ctx.checkSize(shape.batch * shape.m * shape.n, variant.storage, `${spec.label}: C`);
  return MatmulKernel.prepare(ctx, spec);
}

export interface GemmInputs {
  readonly a: GpuTensor;
  readonly b: GpuTensor;
  readonly bias?: GpuTensor;
  readonly residual?: GpuTensor;
}

/** Runs a prepared GEMM into a new tensor (batch, M, N). */
export function runGemm(ctx: GpuContext, kernel: MatmulKernel, inputs: GemmInputs): GpuTensor {
  const { spec } = kernel;
  const bCols = spec.epilogue === "geglu" ? 2 * spec.n : spec.n;
  return runMatmul(ctx, kernel, {
    a: { tensor: inputs.a, size: spec.batch * spec.m * spec.k, name: "A" },
    b: {
      tensor: inputs.b,
      size: (spec.bBatchStride === 0 ? 1 : spec.batch) * spec.k * bCols,
      name: "B",
    },
    bias: inputs.bias,
    biasSize: bCols,
    residual: inputs.residual,
    outShape: [spec.batch, spec.m, spec.n],
    outLabel: "gemm output",
  });
}
