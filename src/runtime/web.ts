/**
 * Model runners on onnxruntime-web (browsers): WebGPU where the browser offers an adapter, else
 * WebAssembly on the CPU. The only module of the project that imports onnxruntime-web. It uses
 * the package's default build, whose WebAssembly CPU kernels cover every element type the
 * built graphs use: the reduced UNets compare the timestep in float64 (kept off the GPU on
 * purpose) and ToMe counts merged tokens in float64, and the native-WebGPU build
 * (`onnxruntime-web/webgpu`) ships no float64 kernels, so those graphs fail to load there.
 */
import * as ort from "onnxruntime-web";
import type { WebDevice } from "../util/vocabulary.js";
import { type OrtBinding, ortRunner, residentTensor } from "./ort-runner.js";
import type { ModelRunner, ResidentTensor, RunnerTensor } from "./types.js";

/** The execution providers tried for a device, in order. */
export const WEB_EXECUTION_PROVIDERS: Readonly<Record<WebDevice, readonly string[]>> =
  Object.freeze({
    webgpu: ["webgpu", "wasm"],
    wasm: ["wasm"],
  });

export interface WebRuntimeSetup {
  /**
   * Where the runtime's WebAssembly files are served (a URL prefix ending in "/"): nothing is
   * fetched from elsewhere.
   */
  readonly wasmPrefix: string;
  /** Worker threads of the WASM backend (default: onnxruntime's choice; 1 without isolation). */
  readonly numThreads?: number;
}

/** The files `configureWebRuntime`'s prefix must serve (copied from onnxruntime-web's dist/). */
export const WEB_RUNTIME_FILES: readonly string[] = Object.freeze([
  "ort-wasm-simd-threaded.jsep.mjs",
  "ort-wasm-simd-threaded.jsep.wasm",
]);

/** Points onnxruntime-web at locally served files; call once before creating runners. */
export function configureWebRuntime(setup: WebRuntimeSetup): void {
  ort.env.wasm.wasmPaths = {
    mjs: `${setup.wasmPrefix}${WEB_RUNTIME_FILES[0]}`,
    wasm: `${setup.wasmPrefix}${WEB_RUNTIME_FILES[1]}`,
  };
  if (setup.numThreads !== undefined) ort.env.wasm.numThreads = setup.numThreads;
  ort.env.logLevel = "error";
}

interface AdapterLike {
  readonly features?: { has(name: string): boolean };
  readonly limits?: {
    readonly maxStorageBufferBindingSize: number;
    readonly maxBufferSize: number;
  };
}

interface GpuLike {
  requestAdapter(): Promise<AdapterLike | null>;
}

export interface WebGpuSupport {
  /** The browser context has a WebGPU adapter (headless browsers often have none). */
  readonly available: boolean;
  /**
   * The adapter offers `shader-f16`. Without it float16 graphs cannot run (their shaders fail
   * to compile), so the page asks the server for float32 ones.
   */
  readonly shaderF16: boolean;
  /**
   * The largest buffer a kernel may bind (the smaller of maxStorageBufferBindingSize and
   * maxBufferSize; onnxruntime-web asks for the adapter's own limits). 0 without an adapter.
   */
  readonly maxBindingBytes: number;
}

/** What WebGPU this browser context offers. */
export async function webgpuSupport(): Promise<WebGpuSupport> {
  const gpu = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
  const none = { available: false, shaderF16: false, maxBindingBytes: 0 };
  if (!gpu) return none;
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return none;
    // WebGPU's guaranteed minimums when an adapter reports no limits.
    const limits = adapter.limits ?? {
      maxStorageBufferBindingSize: 2 ** 27,
      maxBufferSize: 2 ** 28,
    };
    return {
      available: true,
      shaderF16: adapter.features?.has("shader-f16") === true,
      maxBindingBytes: Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize),
    };
  } catch {
    return none;
  }
}

export interface WebRunnerOptions {
  readonly device: WebDevice;
  /** The weights file of a model saved with external data, under the name the model refers to. */
  readonly externalData?: { readonly path: string; readonly data: Uint8Array };
}

/** The parts of WebGPU's GPUDevice and GPUBuffer this module uses. */
interface GpuBufferLike {
  destroy(): void;
}
interface GpuDeviceLike {
  createBuffer(descriptor: { size: number; usage: number }): GpuBufferLike;
  readonly queue: { writeBuffer(buffer: GpuBufferLike, offset: number, data: Float32Array): void };
}

// GPUBufferUsage flags (WebGPU specification): what onnxruntime-web needs of an input buffer.
const BUFFER_STORAGE = 0x80;
const BUFFER_COPY_SRC = 0x04;
const BUFFER_COPY_DST = 0x08;

/**
 * A float32 tensor copied once into a GPU buffer on onnxruntime-web's own device, fed to later
 * runs as a `gpu-buffer` tensor: the data does not cross to the GPU again on each run.
 */
async function uploadToWebGpu(
  tensor: Extract<RunnerTensor, { type: "float32" }>,
): Promise<ResidentTensor> {
  const device = (await ort.env.webgpu.device) as unknown as GpuDeviceLike;
  // Buffer sizes are multiples of 4 bytes; float32 data always is.
  const buffer = device.createBuffer({
    size: tensor.data.byteLength,
    usage: BUFFER_STORAGE | BUFFER_COPY_SRC | BUFFER_COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, tensor.data);
  const handle = ort.Tensor.fromGpuBuffer(buffer as unknown as ort.Tensor.GpuBufferType, {
    dataType: "float32",
    dims: tensor.dims,
  });
  return residentTensor(
    tensor.dims,
    handle,
    async () => (await handle.getData()) as Float32Array,
    () => {
      handle.dispose();
      buffer.destroy();
    },
  );
}

/** An output on the host; one left in a GPU buffer is read back and its buffer freed. */
async function fromOrt(name: string, tensor: ort.Tensor): Promise<RunnerTensor> {
  if (tensor.type !== "float32" && tensor.type !== "int64") {
    tensor.dispose();
    throw new Error(
      `output "${name}" has type ${tensor.type}; only float32 and int64 are read back`,
    );
  }
  const data = tensor.location === "gpu-buffer" ? await tensor.getData(true) : tensor.data;
  return tensor.type === "float32"
    ? { type: "float32", data: data as Float32Array, dims: tensor.dims }
    : { type: "int64", data: data as BigInt64Array, dims: tensor.dims };
}

/** A runner over an onnxruntime-web session made from model bytes. */
export async function createWebRunner(
  model: Uint8Array,
  options: WebRunnerOptions,
): Promise<ModelRunner> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [...WEB_EXECUTION_PROVIDERS[options.device]],
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
  if (options.externalData) sessionOptions.externalData = [{ ...options.externalData }];
  // On WebGPU outputs stay in GPU buffers: `run` reads them back, `runOnDevice` may keep them.
  if (options.device === "webgpu") sessionOptions.preferredOutputLocation = "gpu-buffer";
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, sessionOptions);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`onnxruntime-web could not load the model: ${message.split("\n")[0]}`);
  }
  const binding: OrtBinding<ort.Tensor> = {
    Tensor: ort.Tensor,
    toHost: fromOrt,
    // An output left in a GPU buffer, kept there; disposing frees the buffer.
    resident: (tensor) =>
      residentTensor(
        tensor.dims,
        tensor,
        async () => (await tensor.getData()) as Float32Array,
        () => tensor.dispose(),
      ),
  };
  // On WebGPU, inputs that stay the same over many runs can live on the GPU, and outputs that
  // the next run takes (a denoising loop's latents) can stay there.
  const device =
    options.device === "webgpu" ? { upload: uploadToWebGpu, keepOutputs: true } : undefined;
  return ortRunner(session, binding, device);
}
