/**
 * The kernel benchmark registry's contract: a family (one file: gemm.ts, conv.ts, ...) lists
 * cases at the UNet's real shapes; each case prepares our kernel on a GPU context and, where
 * onnxruntime has the same operator, builds a one-operator ONNX model to time beside it.
 */
import type { GpuContext, KernelLaunch } from "../../gpu/context.js";
import type { Tiling } from "../../gpu/kernels/matmul-wgsl.js";
import type { StorageType } from "../../gpu/types.js";
import type { KernelVariant } from "../../gpu/variants.js";

/** Our kernel, ready to launch, with the buffers it holds. */
export interface PreparedKernel {
  readonly launches: readonly KernelLaunch[];
  /** A description of the variant actually run (tiling etc.). */
  readonly detail: string;
  release(): void;
}

/** onnxruntime's same operator as a model whose only fed input is `bias` (float32 [1]). */
export interface OrtModel {
  readonly op: string;
  /** The model, computing in the storage type's float type. */
  build(storage: StorageType): Uint8Array;
}

export interface KernelBenchCase {
  readonly family: string;
  /** The shape, as printed in the table. */
  readonly name: string;
  /** Image size the shape belongs to (0: not tied to one). */
  readonly imageSize: number;
  /** Floating-point operations of one call (compute-bound kernels). */
  readonly flops?: number;
  /** Bytes moved by one call (memory-bound kernels). */
  readonly bytes?: number;
  prepare(ctx: GpuContext, variant: KernelVariant, tiling?: Tiling): Promise<PreparedKernel>;
  readonly ort?: OrtModel;
}

export interface KernelBench {
  readonly family: string;
  /** onnxruntime's operator this family is compared with. */
  readonly ortOp: string;
  cases(sizes: readonly number[]): KernelBenchCase[];
  /** Tilings to sweep (families built on the matmul generator). */
  tilings?(variant: KernelVariant): Tiling[];
}
