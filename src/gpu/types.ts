/// <reference types="@webgpu/types" />
/**
 * The vocabulary of the WebGPU layer: storage types, kernel paths and what an adapter offers.
 * This folder and runtime/ are the only places that touch a GPU API.
 */

/** How tensors are stored in GPU buffers; arithmetic accumulates in f32 either way. */
export type StorageType = "f16" | "f32";

export const STORAGE_TYPES: readonly StorageType[] = Object.freeze(["f16", "f32"]);

/**
 * Which instructions a kernel is built on: the tensor cores through WebGPU's subgroup matrices,
 * or the ordinary cores (any adapter).
 */
export type KernelPath = "tensor-core" | "portable";

export const KERNEL_PATHS: readonly KernelPath[] = Object.freeze(["tensor-core", "portable"]);

/** A kernel path as asked for: `auto` takes the fastest the adapter has. */
export type PathRequest = KernelPath | "auto";

/** One subgroup-matrix shape the adapter multiplies natively: (M x K) * (K x N) -> M x N. */
export interface MatrixShape {
  readonly m: number;
  readonly n: number;
  readonly k: number;
}

/** What the kernels need to know about an adapter, read once when the device is made. */
export interface GpuCapabilities {
  readonly features: ReadonlySet<string>;
  /** f16 x f16 -> f32 subgroup-matrix shapes (empty without subgroup matrices). */
  readonly matrixShapes: readonly MatrixShape[];
  readonly subgroupMinSize: number;
  readonly subgroupMaxSize: number;
  readonly limits: {
    readonly maxStorageBufferBindingSize: number;
    readonly maxBufferSize: number;
    readonly maxComputeWorkgroupStorageSize: number;
    readonly maxComputeInvocationsPerWorkgroup: number;
    readonly maxComputeWorkgroupsPerDimension: number;
  };
  /** Adapter vendor and architecture, for reports. */
  readonly description: string;
  /**
   * A fallback adapter: WebGPU on a software driver that runs on the CPU (SwiftShader, WARP), as
   * the adapter reports it (`info.isFallbackAdapter`).
   */
  readonly fallbackAdapter: boolean;
}

/** Dawn's subgroup-matrix configuration, not yet in the WebGPU type definitions. */
export interface SubgroupMatrixConfig {
  readonly componentType: string;
  readonly resultComponentType: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

export const SUBGROUP_MATRIX_FEATURE = "chromium-experimental-subgroup-matrix";

/** An NHWC convolution with weights (KH, KW, Cin, Cout). */
export interface ConvShape {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** 3 or 1. */
  readonly kernel: number;
  readonly stride: number;
  /** 1 for 3x3, 0 for 1x1. */
  readonly padding: number;
}

/** The one-line hint given when no adapter is found in Node. */
export const NO_ADAPTER_HINT =
  "no WebGPU adapter found: Dawn needs a Vulkan driver; without a GPU, start Node with LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (Debian's chromium package ships SwiftShader)";
