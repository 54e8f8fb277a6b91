/** Every kernel family's benchmarks (a family adds its file here). */
import { ATTENTION_BENCH } from "./attention.js";
import { CONV_BENCH } from "./conv.js";
import { GEMM_BENCH } from "./gemm.js";
import { ELEMENTWISE_BENCH, GROUP_NORM_BENCH, LAYER_NORM_BENCH, UPSAMPLE_BENCH } from "./norm.js";
import type { KernelBench } from "./types.js";

export const KERNEL_BENCHES: readonly KernelBench[] = Object.freeze([
  GEMM_BENCH,
  CONV_BENCH,
  ATTENTION_BENCH,
  GROUP_NORM_BENCH,
  LAYER_NORM_BENCH,
  ELEMENTWISE_BENCH,
  UPSAMPLE_BENCH,
]);
