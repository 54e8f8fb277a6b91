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
 * Launch: ceil(N / (tileN or tileN/2 for GEGLU)) x ceil(M / tileM) x batch workgroups.
 */
import type { GpuContext, GpuTensor } from "../context.js";
import type { KernelVariant } from "../variants.js";
import { u32Literal as u } from "../wgsl.js";
import { defaultTiling, MatmulKernel, tilingName } from "./matmul-kernel.js";
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
}

/** A read as a plain row-major (batch, M, K) matrix. */
export function matrixOperand(m: number, k: number): OperandA {
  const width = k % 4 === 0 ? 4 : 1;
  const kExact = true;
  void kExact;
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
  for (const [name, value] of Object.entries({
    batch: shape.batch,
    m: shape.m,
    n: shape.n,
    k: shape.k,
  }))
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`gemm: ${name} must be a positive integer, got ${value}`);
  const epilogue = options.epilogue ?? "none";
  // The tile spans B's columns: for GEGLU, the hidden and gate halves together.
  const tiling =
    options.tiling ?? defaultTiling(variant, epilogue === "geglu" ? 2 * shape.n : shape.n);
  const parts = [
    `gemm ${shape.batch}x${shape.m}x${shape.n}x${shape.k}`,
    variant.storage,
    variant.path,
    tilingName(tiling),
    epilogue,
    options.bias ? "bias" : "",
    options.residual ? "residual" : "",
  ];
  return {
    label: parts.filter(Boolean).join(" "),
    variant,
    tiling,
    batch: shape.batch,
    m: shape.m,
    n: shape.n,
    k: shape.k,
    a: matrixOperand(shape.m, shape.k),
    bBatchStride: shape.sharedB ? 0 : shape.k * (epilogue === "geglu" ? 2 : 1) * shape.n,
    bias: options.bias ?? false,
    epilogue,
    residual: options.residual ?? false,
  };
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
  expectSize(inputs.a, spec.batch * spec.m * spec.k, "A", spec);
  expectSize(inputs.b, (spec.bBatchStride === 0 ? 1 : spec.batch) * spec.k * bCols, "B", spec);
  if (spec.bias !== (inputs.bias !== undefined))
    throw new Error(`${spec.label}: bias ${spec.bias ? "missing" : "not expected"}`);
  if (inputs.bias) expectSize(inputs.bias, bCols, "bias", spec);
  if (spec.residual !== (inputs.residual !== undefined))
    throw new Error(`${spec.label}: residual ${spec.residual ? "missing" : "not expected"}`);
  if (inputs.residual) expectSize(inputs.residual, spec.batch * spec.m * spec.n, "residual", spec);
  const c = ctx.allocate([spec.batch, spec.m, spec.n], spec.variant.storage, "gemm output");
  const buffers = [inputs.a.buffer, inputs.b.buffer, c.buffer];
  if (inputs.bias) buffers.push(inputs.bias.buffer);
  if (inputs.residual) buffers.push(inputs.residual.buffer);
  ctx.dispatch([kernel.launch(buffers)]);
  return c;
}

export function expectSize(
  tensor: GpuTensor,
  elements: number,
  name: string,
  spec: MatmulSpec,
): void {
  if (tensor.size !== elements)
    throw new Error(`${spec.label}: ${name} has ${tensor.size} elements, expected ${elements}`);
  if (tensor.storage !== spec.variant.storage)
    throw new Error(
      `${spec.label}: ${name} is stored as ${tensor.storage}, the kernel reads ${spec.variant.storage}`,
    );
}
