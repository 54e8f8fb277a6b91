/** onnxruntime sessions for built or loaded models (Node). */
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../onnx/builder.js";
import { buildModelBytes } from "../onnx/model-io.js";
import { PromiseMemo } from "../util/promise-memo.js";
import type { Device } from "../util/vocabulary.js";
import { deviceUnavailableProbed, explainDeviceError } from "./device-check.js";
import { EXECUTION_PROVIDERS } from "./devices.js";
import { type OrtBinding, ortRunner, residentTensor } from "./ort-runner.js";
import type { Float32Feed, ModelRunner, ResidentTensor, RunnerTensor } from "./types.js";

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
  /**
   * WebGPU: leave every output in a GPU buffer, so the runner can hand it to the next run
   * (`runOnDevice`); `run` still reads them back.
   */
  readonly keepOutputsOnDevice?: boolean;
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
  if (device === "webgpu") {
    opts.enableMemPattern = tuning.memPattern ?? false;
    if (options.keepOutputsOnDevice) opts.preferredOutputLocation = "gpu-buffer";
  }
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
  const unavailable = options.device ? await deviceUnavailableProbed(options.device) : undefined;
  if (unavailable) throw new Error(unavailable);
  try {
    return typeof model === "string"
      ? await ort.InferenceSession.create(model, opts)
      : await ort.InferenceSession.create(model, opts);
  } catch (error) {
    const message = (error as Error).message;
    const explained = explainDeviceError(message);
    if (explained) throw new Error(explained);
    const where = typeof model === "string" ? model : "model";
    throw new Error(`onnxruntime could not load ${where}: ${firstLine(message)}`);
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

/**
 * Moves float32 tensors between the host and onnxruntime-node's WebGPU device. onnxruntime-node
 * hands out GPU-buffer outputs (sessions made with `preferredOutputLocation`) and takes them as
 * inputs, but can neither make one from host data nor read one back: an identity graph does
 * both, with its output on the device (upload) or on the host (read back). One pair of sessions
 * per tensor rank and WebGPU tuning, kept for the life of the process.
 */
class WebGpuTransfers {
  private readonly sessions = new PromiseMemo<string, OrtSession>();

  constructor(private readonly tuning: WebGpuTuning | undefined) {}

  private session(rank: number, toDevice: boolean): Promise<OrtSession> {
    const key = `${rank}/${toDevice}`;
    return this.sessions.get(key, () => {
      const g = new GraphBuilder("float32");
      const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
      g.output(g.op("Identity", [g.input("x", "float32", dims)]), "y", "float32", dims);
      return createSession(buildModelBytes(g), {
        device: "webgpu",
        webgpu: this.tuning,
        keepOutputsOnDevice: toDevice,
      });
    });
  }

  async toDevice(tensor: Float32Feed): Promise<ResidentTensor> {
    const session = await this.session(tensor.dims.length, true);
    const { y } = await session.run({ x: new ort.Tensor("float32", tensor.data, tensor.dims) });
    return residentOrt(y, this);
  }

  async toHost(tensor: OrtTensor): Promise<Float32Array> {
    if (tensor.location !== "gpu-buffer") return tensor.data as Float32Array;
    const session = await this.session(tensor.dims.length, false);
    const { y } = await session.run({ x: tensor });
    return y.data as Float32Array;
  }
}

const transfers = new Map<string, WebGpuTransfers>();
function webgpuTransfers(tuning: WebGpuTuning | undefined): WebGpuTransfers {
  const key = JSON.stringify(tuning ?? {});
  let found = transfers.get(key);
  if (!found) {
    found = new WebGpuTransfers(tuning);
    transfers.set(key, found);
  }
  return found;
}

function residentOrt(tensor: OrtTensor, moves: WebGpuTransfers): ResidentTensor {
  if (tensor.type !== "float32" || tensor.location !== "gpu-buffer")
    throw new Error(
      `expected a float32 tensor on the GPU, got ${tensor.type} on ${tensor.location}`,
    );
  return residentTensor(
    tensor.dims,
    tensor,
    () => moves.toHost(tensor),
    () => tensor.dispose(),
  );
}

/** An output on the host: one left on the GPU is read back and its buffer freed. */
async function fromOrt(
  name: string,
  tensor: OrtTensor,
  moves: WebGpuTransfers | undefined,
): Promise<RunnerTensor> {
  if (tensor.location === "gpu-buffer") {
    if (tensor.type !== "float32" || !moves) {
      tensor.dispose();
      throw new Error(
        `output "${name}" (${tensor.type}) stayed on the GPU and cannot be read back`,
      );
    }
    try {
      return { type: "float32", data: await moves.toHost(tensor), dims: tensor.dims };
    } finally {
      tensor.dispose();
    }
  }
  if (tensor.type === "float32")
    return { type: "float32", data: tensor.data as Float32Array, dims: tensor.dims };
  if (tensor.type === "int64")
    return { type: "int64", data: tensor.data as BigInt64Array, dims: tensor.dims };
  throw new Error(`output "${name}" has type ${tensor.type}; only float32 and int64 are read back`);
}

/**
 * A runner over an onnxruntime-node session. On WebGPU it can upload tensors that stay the same
 * over many runs, and with `keepOutputsOnDevice` keep outputs on the GPU for the next run.
 */
export async function createRunner(
  model: Uint8Array | string,
  options: SessionOptions = {},
): Promise<ModelRunner> {
  const session = await createSession(model, options);
  const moves = options.device === "webgpu" ? webgpuTransfers(options.webgpu) : undefined;
  const binding: OrtBinding<OrtTensor> = {
    Tensor: ort.Tensor,
    toHost: (name, tensor) => fromOrt(name, tensor, moves),
    resident: (tensor) => {
      // ortRunner keeps outputs on the device only where `device` below is set, which needs moves.
      if (!moves) throw new Error("outputs stay on the device only on WebGPU");
      return residentOrt(tensor, moves);
    },
  };
  const device = moves && {
    upload: (tensor: Float32Feed) => moves.toDevice(tensor),
    keepOutputs: options.keepOutputsOnDevice === true,
  };
  return { ...ortRunner(session, binding, device), endProfiling: () => session.endProfiling() };
}

/** The WebGPU provider's own options (the names onnxruntime-node passes on). */
function webgpuProviderOptions(tuning: WebGpuTuning): Record<string, string> {
  const out: Record<string, string> = {};
  if (tuning.preferredLayout) out.preferredLayout = tuning.preferredLayout;
  if (tuning.validationMode) out.validationMode = tuning.validationMode;
  out.storageBufferCacheMode = tuning.storageBufferCache ?? DEFAULT_STORAGE_BUFFER_CACHE;
  return out;
}
