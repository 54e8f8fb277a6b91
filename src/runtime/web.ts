/**
 * Model runners on onnxruntime-web (browsers): WebGPU where the browser offers an adapter, else
 * WebAssembly on the CPU. The only module of the project that imports onnxruntime-web. It uses
 * the package's default build, whose WebAssembly CPU kernels cover every element type the
 * built graphs use: the reduced UNets compare the timestep in float64 (kept off the GPU on
 * purpose) and ToMe counts merged tokens in float64, and the native-WebGPU build
 * (`onnxruntime-web/webgpu`) ships no float64 kernels, so those graphs fail to load there.
 */
import * as ort from "onnxruntime-web";
import type { ModelRunner, RunnerTensor } from "./types.js";

export type WebDevice = "webgpu" | "wasm";

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

interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

/** Whether this browser context has a WebGPU adapter (headless browsers often have none). */
export async function webgpuAvailable(): Promise<boolean> {
  const gpu = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

export interface WebRunnerOptions {
  readonly device: WebDevice;
  /** The weights file of a model saved with external data, under the name the model refers to. */
  readonly externalData?: { readonly path: string; readonly data: Uint8Array };
}

function toOrt(tensor: RunnerTensor): ort.Tensor {
  return new ort.Tensor(tensor.type, tensor.data, tensor.dims);
}

function fromOrt(name: string, tensor: ort.Tensor): RunnerTensor {
  if (tensor.type === "float32")
    return { type: "float32", data: tensor.data as Float32Array, dims: tensor.dims };
  if (tensor.type === "int64")
    return { type: "int64", data: tensor.data as BigInt64Array, dims: tensor.dims };
  throw new Error(`output "${name}" has type ${tensor.type}; only float32 and int64 are read back`);
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
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, sessionOptions);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`onnxruntime-web could not load the model: ${message.split("\n")[0]}`);
  }
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) ortFeeds[name] = toOrt(tensor);
      const results = await session.run(ortFeeds);
      const out: Record<string, RunnerTensor> = {};
      for (const [name, tensor] of Object.entries(results)) out[name] = fromOrt(name, tensor);
      return out;
    },
    release: () => session.release(),
  };
}
