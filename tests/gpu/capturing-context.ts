// Test helper: a GpuContext stand-in that records the WGSL of every pipeline asked of it (and
// compiles nothing), with the workgroup memory of the GPUs the kernels are tuned for.
import type { GpuContext } from "../../src/gpu/context.js";
import type { ComputeKernelSource } from "../../src/gpu/pipeline-cache.js";

// `refuse`: pipelines whose WGSL it matches are refused as a device refuses one.
export function capturingContext(sources: string[], refuse?: RegExp): GpuContext {
  const fake = {
    capabilities: { limits: { maxComputeWorkgroupStorageSize: 49152 } },
    checkSize() {},
    pipeline(source: ComputeKernelSource) {
      sources.push(source.code);
      if (refuse?.test(source.code))
        return Promise.reject(new Error(`${source.label}: cannot create the pipeline (refused)`));
      return Promise.resolve({} as GPUComputePipeline);
    },
  };
  return fake as unknown as GpuContext;
}
