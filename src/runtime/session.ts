/** onnxruntime sessions for built or loaded models (Node). */
import * as ort from "onnxruntime-node";
import { type Device, EXECUTION_PROVIDERS } from "./devices.js";
import type { ModelRunner, RunnerFeed, RunnerTensor } from "./types.js";

export type OrtSession = ort.InferenceSession;
export type OrtTensor = ort.Tensor;
export { ort };

/** Settings of onnxruntime's WebGPU backend that affect speed (see BENCHMARKS.md). */
export interface WebGpuTuning {
  /** Layout of layout-sensitive operators (Conv, ...): onnxruntime inserts transposes for NHWC. */
  readonly preferredLayout?: "NCHW" | "NHWC";
  /** How much Dawn validates each command; `disabled` is fastest, `basic` is onnxruntime's default. */
  readonly validationMode?: "disabled" | "wgpuOnly" | "basic" | "full";
  /**
   * onnxruntime's memory pattern (one planned block per run). Off by default on WebGPU, as
   * onnxruntime-web does: with it on, every run allocates its planned blocks as new GPU buffers,
   * which costs about 100 ms per UNet call at 1536 px (BENCHMARKS.md).
   */
  readonly memPattern?: boolean;
  /**
   * How the backend keeps storage buffers between runs. onnxruntime's default, `bucket`, keeps
   * only buffers up to its largest bucket, so every run of a large UNet creates (and the driver
   * zero-fills) its big activation buffers anew: about 150 ms per call at 1536 px. `simple` keeps
   * every buffer for reuse by size, and is the default here (BENCHMARKS.md).
   */
  readonly storageBufferCache?: WebGpuBufferCache;
}

export const WEBGPU_BUFFER_CACHE_MODES = ["disabled", "lazyRelease", "simple", "bucket"] as const;
export type WebGpuBufferCache = (typeof WEBGPU_BUFFER_CACHE_MODES)[number];
const DEFAULT_STORAGE_BUFFER_CACHE: WebGpuBufferCache = "simple";

export interface SessionOptions {
  readonly device?: Device;
  readonly webgpu?: WebGpuTuning;
  readonly intraOpThreads?: number;
  /** Path prefix of onnxruntime's profile file; profiling is on when set. */
  readonly profilePrefix?: string;
  readonly graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
}

/** onnxruntime-node's session options for `options` (exported for tests). */
export function sessionOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  const device = options.device ?? "cpu";
  if (device === "wasm")
    throw new Error("the wasm device runs in the browser only; use cpu in Node");
  const tuning = options.webgpu ?? {};
  const providers = EXECUTION_PROVIDERS[device].map(
    (name): ort.InferenceSession.ExecutionProviderConfig =>
      name === "webgpu" ? { name: "webgpu", ...webgpuProviderOptions(tuning) } : name,
  );
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: providers,
    graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
    logSeverityLevel: 3,
  };
  if (device === "webgpu") opts.enableMemPattern = tuning.memPattern ?? false;
  // onnxruntime-node rejects keys that are present but undefined.
  if (options.intraOpThreads !== undefined) opts.intraOpNumThreads = options.intraOpThreads;
  if (options.profilePrefix) {
    opts.enableProfiling = true;
    opts.profileFilePrefix = options.profilePrefix;
  }
  return opts;
}

/** A session from model bytes (small models) or a file path (models with external data). */
export async function createSession(
  model: Uint8Array | string,
  options: SessionOptions = {},
): Promise<OrtSession> {
  const opts = sessionOptions(options);
  try {
    return typeof model === "string"
      ? await ort.InferenceSession.create(model, opts)
      : await ort.InferenceSession.create(model, opts);
  } catch (error) {
    const where = typeof model === "string" ? model : "model";
    throw new Error(`onnxruntime could not load ${where}: ${firstLine((error as Error).message)}`);
  }
}

export function float32Tensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor("float32", data, dims);
}

export function int64Tensor(data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor("int64", data, dims);
}

/** Runs a session and returns its outputs as float32 arrays. */
export async function runFloat32(
  session: OrtSession,
  feeds: Readonly<Record<string, OrtTensor>>,
): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
  const results = await session.run(feeds);
  const out: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
  for (const [name, tensor] of Object.entries(results)) {
    if (tensor.type !== "float32")
      throw new Error(`output ${name} is ${tensor.type}, expected float32`);
    out[name] = { data: tensor.data as Float32Array, dims: tensor.dims };
  }
  return out;
}

function firstLine(text: string): string {
  return text.split("\n")[0].trim();
}

function toOrt(tensor: RunnerFeed): OrtTensor {
  // onnxruntime-node takes host tensors only, and its runners offer no `upload`.
  if (tensor.type === "resident")
    throw new Error("onnxruntime-node cannot take device-resident inputs");
  return new ort.Tensor(tensor.type, tensor.data, tensor.dims);
}

function fromOrt(name: string, tensor: OrtTensor): RunnerTensor {
  if (tensor.type === "float32")
    return { type: "float32", data: tensor.data as Float32Array, dims: tensor.dims };
  if (tensor.type === "int64")
    return { type: "int64", data: tensor.data as BigInt64Array, dims: tensor.dims };
  throw new Error(`output "${name}" has type ${tensor.type}; only float32 and int64 are read back`);
}

/** A runner over an onnxruntime-node session. */
export async function createRunner(
  model: Uint8Array | string,
  options: SessionOptions = {},
): Promise<ModelRunner> {
  const session = await createSession(model, options);
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds) {
      const ortFeeds: Record<string, OrtTensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) ortFeeds[name] = toOrt(tensor);
      const results = await session.run(ortFeeds);
      const out: Record<string, RunnerTensor> = {};
      for (const [name, tensor] of Object.entries(results)) out[name] = fromOrt(name, tensor);
      return out;
    },
    release: () => session.release(),
    endProfiling: () => session.endProfiling(),
  };
}

/** The WebGPU provider's own options (the names onnxruntime-node passes on). */
function webgpuProviderOptions(tuning: WebGpuTuning): Record<string, string> {
  const out: Record<string, string> = {};
  if (tuning.preferredLayout) out.preferredLayout = tuning.preferredLayout;
  if (tuning.validationMode) out.validationMode = tuning.validationMode;
  out.storageBufferCacheMode = tuning.storageBufferCache ?? DEFAULT_STORAGE_BUFFER_CACHE;
  return out;
}
