/**
 * Runtime-neutral tensors and model runners. Node (onnxruntime-node) and the browser
 * (onnxruntime-web) each implement `ModelRunner` in a thin entry point; everything above the
 * runtime talks to this interface only.
 */
import type { CompileSummary } from "../gpu/pipeline-cache.js";

export type RunnerTensor =
  | { readonly type: "float32"; readonly data: Float32Array; readonly dims: readonly number[] }
  | { readonly type: "int64"; readonly data: BigInt64Array; readonly dims: readonly number[] };

/**
 * A float32 tensor the runtime keeps on its device (a GPU buffer), made by `ModelRunner.upload`
 * or kept there by `ModelRunner.runOnDevice`, and fed to later runs without crossing to the
 * device again. Dispose it when done.
 */
export interface ResidentTensor {
  readonly type: "resident";
  readonly dims: readonly number[];
  /** The runtime's own tensor object. */
  readonly handle: unknown;
  /** Copies the data back to the host (the tensor stays usable). */
  read(): Promise<Float32Array>;
  dispose(): void;
}

export type RunnerFeed = RunnerTensor | ResidentTensor;

export interface ModelRunner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Readonly<Record<string, RunnerFeed>>): Promise<Record<string, RunnerTensor>>;
  /**
   * Copies a float32 tensor to the device once, for feeds that stay the same over many runs
   * (the text conditioning of a denoising loop). Present only where the runtime can take
   * device-resident inputs (onnxruntime on WebGPU, and the kernels engine). A runner given
   * another runtime's resident tensor reads it back first.
   */
  upload?(tensor: Float32Feed): Promise<ResidentTensor>;
  /**
   * Like `run`, but the float32 outputs named in `keep` stay on the device (the next run's
   * inputs, say); the others are read back. Present where `upload` is.
   */
  runOnDevice?(
    feeds: Readonly<Record<string, RunnerFeed>>,
    keep: readonly string[],
  ): Promise<Record<string, RunnerFeed>>;
  release(): Promise<void>;
  /**
   * Where the kernels engine runs the model's heavy operators: `tensor cores, f16` (subgroup
   * matrices), `portable, f16` or `portable, f32`. Absent on onnxruntime.
   */
  readonly kernelPath?: string;
  /** Ends profiling (sessions made with a profile prefix) and writes the trace file. */
  endProfiling?(): void;
  /**
   * Runners that time their kernels themselves (the kernels engine, made with a profile
   * prefix): the GPU time per kernel of the runs so far, instead of a trace file.
   */
  profileSummary?(): ProfileSummary;
  /**
   * Runners that compile their own GPU pipelines (the kernels engine): the pipelines compiled
   * since the runner was made, and how long each kind took.
   */
  compileSummary?(): CompileSummary;
}

export interface OpTypeTime {
  readonly opType: string;
  readonly totalMs: number;
  /** Nodes of this type (host events) or GPU programs run for them (device events), per run. */
  readonly count: number;
  readonly providers: readonly string[];
}

export interface ProfileSummary {
  /** Kernel time per operator type, per run (averaged over the profiled runs). */
  readonly byOpType: readonly OpTypeTime[];
  /** The kernels engine: time per kernel shape (`kind: shape and tile`), largest first. */
  readonly byKernel?: readonly OpTypeTime[];
  /** `device`: GPU timestamps of each program; `host`: each kernel's call on the host. */
  readonly timeSource: "device" | "host";
  /** Node count per execution provider (one run). */
  readonly placement: Readonly<Record<string, number>>;
  readonly runs: number;
}

export type Float32Feed = Extract<RunnerTensor, { readonly type: "float32" }>;

export function float32(data: Float32Array, dims: readonly number[]): Float32Feed {
  return { type: "float32", data, dims };
}

export function int64(data: BigInt64Array, dims: readonly number[]): RunnerTensor {
  return { type: "int64", data, dims };
}

/** The float32 output `name`, or an error naming what the model gave instead. */
export function floatOutput(
  outputs: Readonly<Record<string, RunnerTensor>>,
  name: string,
): { data: Float32Array; dims: readonly number[] } {
  const tensor = outputs[name];
  if (!tensor)
    throw new Error(
      `the model has no output "${name}" (it has ${Object.keys(outputs).join(", ")})`,
    );
  if (tensor.type !== "float32")
    throw new Error(`output "${name}" is ${tensor.type}, expected float32`);
  return tensor;
}
