/**
 * The GPU context every kernel runs in: one adapter and device, what the adapter can do, a
 * pipeline cache, a buffer pool, upload and readback of tensors, and dispatch with optional GPU
 * timestamps. In Node the device comes from Dawn's binding, in a browser from navigator.gpu.
 */
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "../util/float16.js";
import { BUFFER_USAGE, BufferPool, checkBufferSize } from "./buffer-pool.js";
import { type ComputeKernelSource, PipelineCache } from "./pipeline-cache.js";
import { GpuTimer } from "./timer.js";
import {
  type GpuCapabilities,
  type MatrixShape,
  NO_ADAPTER_HINT,
  type StorageType,
  SUBGROUP_MATRIX_FEATURE,
  type SubgroupMatrixConfig,
} from "./types.js";

export interface GpuContextOptions {
  /** A `GPU` object to use (tests, or a browser's navigator.gpu); found automatically if absent. */
  readonly gpu?: GPU;
  /** Bench toggles in Node: no bounds clamps, exact timestamps. */
  readonly bench?: boolean;
  readonly powerPreference?: GPUPowerPreference;
}

/** A tensor in a GPU buffer: row-major, `shape` elements of `storage` type. */
export interface GpuTensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly storage: StorageType;
  /** Element count. */
  readonly size: number;
}

/**
 * Checks that a tensor handed to the kernel `label` has the size and storage type it reads;
 * launching on a wrong buffer would read garbage or out of bounds instead of failing.
 */
export function expectTensor(
  label: string,
  tensor: GpuTensor,
  elements: number,
  storage: StorageType,
  name: string,
): void {
  if (tensor.size !== elements)
    throw new Error(`${label}: ${name} has ${tensor.size} elements, expected ${elements}`);
  if (tensor.storage !== storage)
    throw new Error(
      `${label}: ${name} is stored as ${tensor.storage}, the kernel reads ${storage}`,
    );
}

/** One kernel dispatch: a pipeline, its buffers at bindings 0, 1, ... and the grid. */
export interface KernelLaunch {
  readonly pipeline: GPUComputePipeline;
  readonly buffers: readonly GPUBuffer[];
  readonly workgroups: readonly [number, number, number];
  /** The bind group of `buffers`, made beforehand by a caller that reuses it (`bindGroup`). */
  readonly bindGroup?: GPUBindGroup;
}

/** Features the device is asked for whenever the adapter has them. */
const WANTED_FEATURES = [
  "shader-f16",
  "subgroups",
  "subgroup-size-control",
  "timestamp-query",
  SUBGROUP_MATRIX_FEATURE,
];

export function bytesPerElement(storage: StorageType): number {
  return storage === "f16" ? 2 : 4;
}

/** The capabilities of an adapter (pure: reads only the adapter's reported values). */
export function readCapabilities(adapter: GPUAdapter): GpuCapabilities {
  const info = adapter.info as GPUAdapterInfo & {
    isFallbackAdapter?: boolean;
    subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  const features = new Set<string>(adapter.features as ReadonlySet<string>);
  const matrixShapes: MatrixShape[] = features.has(SUBGROUP_MATRIX_FEATURE)
    ? (info.subgroupMatrixConfigs ?? [])
        .filter((c) => c.componentType === "f16" && c.resultComponentType === "f32")
        .map((c) => ({ m: c.M, n: c.N, k: c.K }))
    : [];
  const limits = adapter.limits;
  return {
    features,
    matrixShapes,
    subgroupMinSize: info.subgroupMinSize ?? 0,
    subgroupMaxSize: info.subgroupMaxSize ?? 0,
    limits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
    },
    description:
      [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") ||
      "unknown adapter",
    // Where the spec has it now, and on the adapter where older browsers put it.
    fallbackAdapter:
      info.isFallbackAdapter === true ||
      (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true,
  };
}

/** Dawn's binding in Node, loaded only where no `GPU` is given and the platform has none. */
const NODE_GPU_MODULE = "./node-gpu.js";

async function findGpu(options: GpuContextOptions): Promise<GPU> {
  if (options.gpu) return options.gpu;
  const browserGpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (browserGpu) return browserGpu;
  // A specifier in a variable: bundlers for the browser do not follow it into Dawn's Node binding.
  const { nodeGpu } = (await import(NODE_GPU_MODULE)) as typeof import("./node-gpu.js");
  return nodeGpu({ bench: options.bench });
}

export class GpuContext {
  readonly pipelines: PipelineCache;
  private readonly layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  readonly buffers: BufferPool;
  /** Why the device was lost, once it has been. */
  private lostError: Error | undefined;
  /** Rejections of the waits in flight, called when the device is lost. */
  private readonly waits = new Set<(error: Error) => void>();

  private constructor(
    // dawn.node tears its instance down when the GPU object is collected, even with a device
    // alive: the context holds the GPU and adapter for as long as it lives.
    readonly gpu: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    readonly capabilities: GpuCapabilities,
  ) {
    this.pipelines = new PipelineCache(device);
    this.buffers = new BufferPool(device, capabilities.limits);
    device.lost.then((info) => {
      const message = (info.message ?? "").split("\n")[0];
      this.lostError = new Error(
        `the GPU device was lost (${info.reason ?? "unknown"}${message ? `: ${message}` : ""})`,
      );
      for (const reject of this.waits) reject(this.lostError);
      this.waits.clear();
    });
  }

  /**
   * `work`, or the device's loss if that comes first: a wait on the GPU (a readback, the queue
   * finishing) whose device is lost may otherwise never settle, and a caller would hang instead
   * of failing with the reason.
   */
  async whileAlive<T>(work: Promise<T>): Promise<T> {
    if (this.lostError) throw this.lostError;
    let registered!: (error: Error) => void;
    const lost = new Promise<never>((_, fail) => {
      registered = fail;
    });
    this.waits.add(registered);
    try {
      return await Promise.race([work, lost]);
    } finally {
      // Only this call's rejection is kept, and only while it waits.
      this.waits.delete(registered);
    }
  }

  /** A device on the first adapter, with every feature the kernels can use that it has. */
  static async create(options: GpuContextOptions = {}): Promise<GpuContext> {
    const gpu = await findGpu(options);
    const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
    if (!adapter)
      throw new Error(
        typeof process !== "undefined" && !options.gpu
          ? NO_ADAPTER_HINT
          : "no WebGPU adapter found: this browser or machine offers none",
      );
    const capabilities = readCapabilities(adapter);
    const requiredFeatures = WANTED_FEATURES.filter((f) =>
      capabilities.features.has(f),
    ) as GPUFeatureName[];
    const l = capabilities.limits;
    const device = await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: adapter.limits.maxComputeWorkgroupSizeX,
        maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
      },
    });
    return new GpuContext(gpu, adapter, device, capabilities);
  }

  get hasTimestamps(): boolean {
    return this.capabilities.features.has("timestamp-query");
  }

  /** A timer for `passes` timed passes (needs `timestamp-query`). */
  createTimer(passes = 64): GpuTimer {
    if (!this.hasTimestamps)
      throw new Error(
        `GPU timestamps asked for, but this adapter (${this.capabilities.description}) has no timestamp-query`,
      );
    return new GpuTimer(this.device, passes);
  }

  pipeline(source: ComputeKernelSource): Promise<GPUComputePipeline> {
    return this.pipelines.get(source);
  }

  /** The bind group of `buffers` at bindings 0, 1, ... of a pipeline's group 0. */
  bindGroup(pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]): GPUBindGroup {
    // getBindGroupLayout makes a new object on every call: once per pipeline is enough.
    let layout = this.layouts.get(pipeline);
    if (!layout) {
      layout = pipeline.getBindGroupLayout(0);
      this.layouts.set(pipeline, layout);
    }
    return this.device.createBindGroup({
      layout,
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  /** An uninitialised tensor from the pool. */
  allocate(shape: readonly number[], storage: StorageType, label = "tensor"): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const buffer = this.buffers.acquire(Math.max(4, size * bytesPerElement(storage)), label);
    return { buffer, shape: [...shape], storage, size };
  }

  /** A tensor holding `values`, converted to the storage type. */
  upload(
    values: Float32Array,
    shape: readonly number[],
    storage: StorageType,
    label = "tensor",
  ): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (values.length !== size)
      throw new Error(`${label}: ${values.length} values for shape [${shape.join(", ")}]`);
    const tensor = this.allocate(shape, storage, label);
    const bytes = storage === "f16" ? float32ArrayToFloat16(values) : new Float32Array(values);
    // writeBuffer copies whole 4-byte words: an odd f16 count gets one padding element.
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    this.device.queue.writeBuffer(tensor.buffer, 0, padded);
    return tensor;
  }

  /** A tensor's values as float32 (waits for the queue). */
  async read(tensor: GpuTensor): Promise<Float32Array> {
    const byteLength = Math.ceil((tensor.size * bytesPerElement(tensor.storage)) / 4) * 4;
    const staging = this.device.createBuffer({ size: byteLength, usage: BUFFER_USAGE.readback });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(tensor.buffer, 0, staging, 0, byteLength);
    this.device.queue.submit([encoder.finish()]);
    await this.whileAlive(staging.mapAsync(0x0001));
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return tensor.storage === "f16"
      ? float16ArrayToFloat32(new Uint16Array(copy, 0, tensor.size))
      : new Float32Array(copy, 0, tensor.size);
  }

  /** Returns a tensor's buffer to the pool. */
  release(tensor: GpuTensor): void {
    this.buffers.release(tensor.buffer);
  }

  /** Checks that a tensor of `elements` fits the adapter's limits (one-line error otherwise). */
  checkSize(elements: number, storage: StorageType, label: string): void {
    checkBufferSize(elements * bytesPerElement(storage), this.capabilities.limits, label);
  }

  /**
   * Records the launches in one compute pass, `repeat` times over, and submits them. With a
   * timer the pass is timed under `label`.
   */
  dispatch(
    launches: readonly KernelLaunch[],
    options: {
      readonly timer?: GpuTimer;
      readonly label?: string;
      readonly repeat?: number;
      /** Leave the timer's timestamps unresolved (resolveTimer later, once for many passes). */
      readonly deferResolve?: boolean;
    } = {},
  ): void {
    if (this.lostError) throw this.lostError;
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass({
      timestampWrites: options.timer?.pass(options.label ?? "pass"),
    });
    const groups = launches.map(
      (launch) => launch.bindGroup ?? this.bindGroup(launch.pipeline, launch.buffers),
    );
    const limit = this.capabilities.limits.maxComputeWorkgroupsPerDimension;
    for (let r = 0; r < (options.repeat ?? 1); r++) {
      launches.forEach((launch, i) => {
        const [x, y, z] = launch.workgroups;
        if (x > limit || y > limit || z > limit)
          throw new Error(
            `a dispatch of ${x} x ${y} x ${z} workgroups exceeds this adapter's ${limit} per dimension`,
          );
        pass.setPipeline(launch.pipeline);
        pass.setBindGroup(0, groups[i]);
        pass.dispatchWorkgroups(x, y, z);
      });
    }
    pass.end();
    if (!options.deferResolve) options.timer?.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
  }

  /** Resolves a timer's passes so far in a submit of its own (after deferResolve dispatches). */
  resolveTimer(timer: GpuTimer): void {
    const encoder = this.device.createCommandEncoder();
    timer.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
  }

  /** Waits until the GPU has finished everything submitted so far. */
  finish(): Promise<void> {
    return this.whileAlive(this.device.queue.onSubmittedWorkDone());
  }

  destroy(): void {
    this.buffers.trim();
    this.device.destroy();
  }
}
