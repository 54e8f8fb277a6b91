/**
 * Kernel checks against float64 references: random inputs (exact in the storage type), the
 * kernel's output compared element by element with the reference's error bound. The same checks
 * run in the tests (f32 on SwiftShader) and in `todo-sd bench-kernels --check` (every path on a
 * real GPU).
 */
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "../util/float16.js";
import { SeededRandom } from "../util/random.js";
import type { GpuContext, GpuTensor } from "./context.js";
import type { Reference } from "./reference/matmul.js";
import type { StorageType } from "./types.js";
import type { KernelVariant } from "./variants.js";

export interface CheckOutcome {
  readonly elements: number;
  readonly maxAbsError: number;
  /** Largest |kernel - reference| / bound: at most 1 when the kernel is right. */
  readonly worstRatio: number;
  /** Index of the worst element, for a report. */
  readonly worstIndex: number;
  readonly nonFinite: number;
}

export interface KernelCheck {
  /** Kernel family (gemm, conv, ...), for filters and reports. */
  readonly family: string;
  /** The case: shape and options. */
  readonly name: string;
  run(ctx: GpuContext, variant: KernelVariant): Promise<CheckOutcome>;
  /** Whether the check applies to a variant (every variant when left out). */
  appliesTo?(ctx: GpuContext, variant: KernelVariant): boolean;
}

/** Uniform values in [-1, 1) rounded to the storage type (so the reference sees what the GPU sees). */
export function randomValues(count: number, seed: number, storage: StorageType): Float32Array {
  const random = new SeededRandom(seed);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = 2 * random.uniform() - 1;
  return roundToStorage(values, storage);
}

/**
 * Values rounded to the storage type. Inputs derived from random values (shifted, scaled) must go
 * through this again: v + 0.5 of an f16 v is generally not an f16, and the upload would round it
 * where the reference does not.
 */
export function roundToStorage(values: Float32Array, storage: StorageType): Float32Array {
  return storage === "f16" ? float16ArrayToFloat32(float32ArrayToFloat16(values)) : values;
}

/** A check's inputs on the GPU: each array a flat tensor of the storage type, named by its key. */
export function uploadInputs<T extends Record<string, Float32Array | undefined>>(
  ctx: GpuContext,
  storage: StorageType,
  arrays: T,
): { [K in keyof T]: T[K] extends Float32Array ? GpuTensor : GpuTensor | undefined } {
  const tensors: Record<string, GpuTensor | undefined> = {};
  for (const [name, values] of Object.entries(arrays))
    tensors[name] = values && ctx.upload(values, [values.length], storage, name);
  return tensors as {
    [K in keyof T]: T[K] extends Float32Array ? GpuTensor : GpuTensor | undefined;
  };
}

/** Reads a kernel's output, gives it and the inputs back, and compares it with the reference. */
export async function readAndCompare(
  ctx: GpuContext,
  out: GpuTensor,
  inputs: Record<string, GpuTensor | undefined>,
  reference: Reference,
): Promise<CheckOutcome> {
  const got = await ctx.read(out);
  for (const t of [...Object.values(inputs), out]) if (t) ctx.release(t);
  return compareWithReference(got, reference);
}

/** Compares a kernel's output with a reference and its bound. */
export function compareWithReference(got: Float32Array, reference: Reference): CheckOutcome {
  if (got.length !== reference.value.length)
    throw new Error(`kernel gave ${got.length} values, the reference ${reference.value.length}`);
  let maxAbsError = 0;
  let worstRatio = 0;
  let worstIndex = 0;
  let nonFinite = 0;
  for (let i = 0; i < got.length; i++) {
    if (!Number.isFinite(got[i])) {
      nonFinite++;
      worstRatio = Number.POSITIVE_INFINITY;
      worstIndex = i;
      continue;
    }
    const error = Math.abs(got[i] - reference.value[i]);
    maxAbsError = Math.max(maxAbsError, error);
    const ratio = error / reference.bound[i];
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worstIndex = i;
    }
  }
  return { elements: got.length, maxAbsError, worstRatio, worstIndex, nonFinite };
}
