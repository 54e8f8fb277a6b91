/**
 * The kernels engine behind the same `ModelRunner` interface as runtime/: pipelines hand it the
 * ONNX model the builders emit and feed it the same tensors they would feed onnxruntime.
 */
import { GpuContext, type GpuContextOptions, type GpuTensor } from "../gpu/context.js";
import { summariseCompiles } from "../gpu/pipeline-cache.js";
import { attachExternalData } from "../onnx/external-data.js";
import type { ModelProto } from "../onnx/proto.js";
import { decodeModel } from "../onnx/proto.js";
import type {
  ModelRunner,
  ProfileSummary,
  ResidentTensor,
  RunnerFeed,
  RunnerTensor,
} from "../runtime/types.js";
import {
  type ExecutionStats,
  type ExecutorOptions,
  GraphExecutor,
  type KernelProfile,
  type ResidentBuffer,
} from "./executor.js";
import type { HostTensor } from "./host-tensor.js";

export interface KernelRunnerOptions {
  /** A context to share between models (not destroyed by `release`); made if absent. */
  readonly context?: GpuContext;
  readonly gpu?: GpuContextOptions;
  readonly executor?: ExecutorOptions;
  /** The bytes of the model's external data file, for models given as bytes (a browser's fetch). */
  readonly externalData?: { readonly path: string; readonly data: Uint8Array };
  /** Called once the runner is released (a shared context's lease ends there). */
  readonly onRelease?: () => void;
}

export interface KernelRunner extends ModelRunner {
  readonly engine: "kernels";
  /** What the last `run` did: compute passes, launches, host fallbacks. */
  readonly lastStats: ExecutionStats;
}

/**
 * What a kernels-engine `ResidentTensor` holds: its buffer (from the context's pool, in the
 * storage of the executor that made it) and the context, so that another runner on the same
 * context takes it as it is.
 */
class KernelResident {
  disposed = false;
  constructor(
    readonly ctx: GpuContext,
    readonly buffer: ResidentBuffer,
  ) {}
}

function residentTensor(ctx: GpuContext, buffer: ResidentBuffer): ResidentTensor {
  const handle = new KernelResident(ctx, buffer);
  const tensor = (): GpuTensor => {
    if (handle.disposed) throw new Error("a resident tensor used after dispose()");
    return {
      buffer: buffer.buffer,
      shape: buffer.dims,
      storage: buffer.storage,
      size: buffer.dims.reduce((a, b) => a * b, 1),
    };
  };
  return {
    type: "resident",
    dims: buffer.dims,
    handle,
    read: () => ctx.read(tensor()),
    dispose() {
      if (handle.disposed) return;
      ctx.release(tensor());
      handle.disposed = true;
    },
  };
}

/**
 * A feed for the executor: host tensors as they are; a resident tensor of this context by its
 * buffer; one of another runtime or context (a model that fell back to onnxruntime) read back.
 */
async function toFeed(
  ctx: GpuContext,
  name: string,
  feed: RunnerFeed,
): Promise<HostTensor | ResidentBuffer> {
  if (feed.type !== "resident") return toHost(feed);
  const handle = feed.handle;
  if (handle instanceof KernelResident && handle.ctx === ctx) {
    if (handle.disposed) throw new Error(`input "${name}": a resident tensor used after dispose()`);
    return handle.buffer;
  }
  return { kind: "host", dtype: "float32", data: await feed.read(), dims: [...feed.dims] };
}

function toHost(feed: Exclude<RunnerFeed, ResidentTensor>): HostTensor {
  const dims = [...feed.dims];
  if (feed.type === "float32") return { kind: "host", dtype: "float32", data: feed.data, dims };
  return { kind: "host", dtype: "int64", data: Float64Array.from(feed.data, Number), dims };
}

function toRunner(t: HostTensor): RunnerTensor {
  if (t.dtype === "float32" || t.dtype === "float64")
    return {
      type: "float32",
      // A copy (a replayed call may hand out a value it keeps), made natively where it can be.
      data: t.data instanceof Float32Array ? t.data.slice() : Float32Array.from(t.data),
      dims: t.dims,
    };
  return { type: "int64", data: BigInt64Array.from(t.data, (v) => BigInt(v)), dims: t.dims };
}

/**
 * The GPU time per kernel, per call, in the summary onnxruntime's profiles are read into: by kind
 * (a label's text before `: `), and by shape where labels carry one (tuned kernels do).
 */
export function summariseKernelProfile(profile: KernelProfile): ProfileSummary {
  const runs = Math.max(1, profile.calls);
  const rows = (entries: Iterable<[string, { ms: number; launches: number }]>) =>
    [...entries]
      .map(([opType, { ms, launches }]) => ({
        opType,
        totalMs: ms / runs,
        count: Math.round(launches / runs),
        providers: ["kernels"],
      }))
      .sort((a, b) => b.totalMs - a.totalMs);
  const kinds = new Map<string, { ms: number; launches: number }>();
  for (const [label, { ms, launches }] of profile.byKernel) {
    const kind = label.split(": ")[0];
    const entry = kinds.get(kind) ?? { ms: 0, launches: 0 };
    kinds.set(kind, { ms: entry.ms + ms, launches: entry.launches + launches });
  }
  const detailed = [...profile.byKernel.keys()].some((label) => label.includes(": "));
  return {
    byOpType: rows(kinds),
    ...(detailed ? { byKernel: rows(profile.byKernel) } : {}),
    timeSource: "device",
    placement: {},
    runs: profile.calls,
  };
}

/** A runner for `model` (a ModelProto or its bytes) on our WebGPU kernels. */
export async function createKernelRunner(
  model: ModelProto | Uint8Array,
  options: KernelRunnerOptions = {},
): Promise<KernelRunner> {
  const proto = model instanceof Uint8Array ? decodeModel(model) : model;
  if (options.externalData) attachExternalData(proto, options.externalData);
  const owned = !options.context;
  const profiling = options.executor?.profile === true;
  // Profiles need exact timestamps (Dawn rounds them unless told not to).
  const ctx =
    options.context ??
    (await GpuContext.create({ ...options.gpu, bench: options.gpu?.bench ?? profiling }));
  let summary: ProfileSummary | undefined;
  let executor: GraphExecutor;
  try {
    executor = new GraphExecutor(ctx, proto, options.executor);
  } catch (error) {
    if (owned) ctx.destroy();
    throw error;
  }
  // Pipelines compiled before the runner was made (another runner's on a shared context) are not its own.
  const compiledBefore = ctx.pipelines.compiles.length;
  const runKeeping = async (
    feeds: Readonly<Record<string, RunnerFeed>>,
    keep: readonly string[],
  ): Promise<Map<string, HostTensor | ResidentBuffer>> => {
    const inputs = new Map<string, HostTensor | ResidentBuffer>();
    for (const [name, feed] of Object.entries(feeds))
      inputs.set(name, await toFeed(ctx, name, feed));
    const outputs = await executor.runKeeping(inputs, new Set(keep));
    if (profiling) summary = summariseKernelProfile(await executor.profile());
    return outputs;
  };
  return {
    engine: "kernels",
    inputNames: executor.inputNames,
    outputNames: executor.outputNames,
    kernelPath: executor.kernelPath,
    get lastStats() {
      return executor.stats;
    },
    async run(feeds) {
      const outputs = await runKeeping(feeds, []);
      return Object.fromEntries([...outputs].map(([name, t]) => [name, toRunner(t as HostTensor)]));
    },
    async upload(tensor) {
      // ctx.upload refuses data that does not fill the shape, before anything is allocated.
      const storage = executor.storageType;
      const g = ctx.upload(tensor.data, tensor.dims, storage, "upload");
      return residentTensor(ctx, { buffer: g.buffer, dims: [...tensor.dims], storage });
    },
    async runOnDevice(feeds, keep) {
      const outputs = await runKeeping(feeds, keep);
      return Object.fromEntries(
        [...outputs].map(([name, t]) => [
          name,
          "buffer" in t ? residentTensor(ctx, t) : toRunner(t),
        ]),
      );
    },
    compileSummary: () => summariseCompiles(ctx.pipelines.compiles.slice(compiledBefore)),
    ...(profiling
      ? {
          profileSummary: () => {
            if (!summary) throw new Error("no profiled run yet");
            return summary;
          },
        }
      : {}),
    async release() {
      executor.destroy();
      if (owned) ctx.destroy();
      options.onRelease?.();
    },
  };
}
