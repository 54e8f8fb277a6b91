/**
 * The kernels engine behind the same `ModelRunner` interface as runtime/: pipelines hand it the
 * ONNX model the builders emit and feed it the same tensors they would feed onnxruntime.
 */
import { GpuContext, type GpuContextOptions } from "../gpu/context.js";
import { attachExternalData } from "../onnx/external-data.js";
import type { ModelProto } from "../onnx/proto.js";
import { decodeModel } from "../onnx/proto.js";
import type { ModelRunner, ProfileSummary, RunnerFeed, RunnerTensor } from "../runtime/types.js";
import {
  type ExecutionStats,
  type ExecutorOptions,
  GraphExecutor,
  type KernelProfile,
} from "./executor.js";
import type { HostTensor } from "./host-tensor.js";

export interface KernelRunnerOptions {
  /** A context to share between models (not destroyed by `release`); made if absent. */
  readonly context?: GpuContext;
  readonly gpu?: GpuContextOptions;
  readonly executor?: ExecutorOptions;
  /** The bytes of the model's external data file, for models given as bytes (a browser's fetch). */
  readonly externalData?: { readonly path: string; readonly data: Uint8Array };
}

export interface KernelRunner extends ModelRunner {
  readonly engine: "kernels";
  /** What the last `run` did: compute passes, launches, host fallbacks. */
  readonly lastStats: ExecutionStats;
}

function toHost(name: string, feed: RunnerFeed): HostTensor {
  if (feed.type === "resident")
    throw new Error(
      `input "${name}": tensors resident in another engine cannot feed the kernels engine`,
    );
  const dims = [...feed.dims];
  if (feed.type === "float32") return { kind: "host", dtype: "float32", data: feed.data, dims };
  return { kind: "host", dtype: "int64", data: Float64Array.from(feed.data, Number), dims };
}

function toRunner(t: HostTensor): RunnerTensor {
  if (t.dtype === "float32" || t.dtype === "float64")
    return { type: "float32", data: Float32Array.from(t.data), dims: t.dims };
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
  return {
    engine: "kernels",
    inputNames: executor.inputNames,
    outputNames: executor.outputNames,
    kernelPath: executor.kernelPath,
    get lastStats() {
      return executor.stats;
    },
    async run(feeds) {
      const host = new Map<string, HostTensor>();
      for (const [name, feed] of Object.entries(feeds)) host.set(name, toHost(name, feed));
      const outputs = await executor.run(host);
      if (profiling) summary = summariseKernelProfile(await executor.profile());
      return Object.fromEntries([...outputs].map(([name, t]) => [name, toRunner(t)]));
    },
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
    },
  };
}
