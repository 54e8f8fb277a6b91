/** Every kernel family's benchmarks (a family adds its file here). */
import { CONV_BENCH } from "./conv.js";
import { GEMM_BENCH } from "./gemm.js";
import type { KernelBench } from "./types.js";

export const KERNEL_BENCHES: readonly KernelBench[] = Object.freeze([GEMM_BENCH, CONV_BENCH]);
