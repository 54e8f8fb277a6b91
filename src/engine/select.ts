/**
 * Which engine runs the models: onnxruntime (every device) or our WebGPU kernels. A frozen table
 * of choices and one pure function, like runtime/devices.ts. `auto` picks the kernels for float16
 * models on WebGPU adapters with shader-f16 (measured faster than onnxruntime at 512 to 2048 px on
 * an H100, BENCHMARKS.md), and onnxruntime everywhere else.
 */
import type { PathRequest } from "../gpu/types.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";

export type EngineChoice = "auto" | "kernels" | "onnxruntime";
export type Engine = Exclude<EngineChoice, "auto">;

export const ENGINE_CHOICES: readonly EngineChoice[] = Object.freeze([
  "auto",
  "kernels",
  "onnxruntime",
]);

/** A parser of a CLI or API value among `choices`, else a one-line error listing them. */
function choiceParser<T extends string>(what: string, choices: readonly T[]): (text: string) => T {
  return (text) => {
    if ((choices as readonly string[]).includes(text)) return text as T;
    throw new Error(`unknown ${what} "${text}": use one of ${choices.join(", ")}`);
  };
}

export const parseEngine = choiceParser("engine", ENGINE_CHOICES);

/**
 * What the engine choice depends on. (A float16 model runs in f16 storage, which needs the
 * adapter's shader-f16: the executor checks that when it meets the adapter.)
 */
export interface EngineRequest {
  readonly device: Device;
  /** The models' weights and activations. */
  readonly dtype?: ModelDtype;
  /** Whether the WebGPU adapter has shader-f16 (undefined: not probed). */
  readonly shaderF16?: boolean;
}

/**
 * The engine for a request: `auto` is the kernels for float16 on WebGPU with shader-f16, else
 * onnxruntime; `kernels` on anything but WebGPU is a one-line error that says what to use.
 */
export function resolveEngine(choice: EngineChoice, request: EngineRequest): Engine {
  if (choice === "auto")
    return request.device === "webgpu" && request.dtype === "float16" && request.shaderF16 === true
      ? "kernels"
      : "onnxruntime";
  if (choice === "onnxruntime") return "onnxruntime";
  if (request.device !== "webgpu")
    throw new Error(
      `the kernels engine runs on WebGPU only, not on device ${request.device}: use --device webgpu, or --engine onnxruntime`,
    );
  return "kernels";
}

/**
 * Which of the kernels' paths runs: `auto` takes the tensor cores where the adapter has subgroup
 * matrices, else the portable kernels; `portable` runs what a browser without subgroup matrices
 * runs (and steps around a driver's subgroup-matrix problems); `tensor-core` refuses an adapter
 * without them.
 */
export const KERNEL_PATH_CHOICES: readonly PathRequest[] = Object.freeze([
  "auto",
  "tensor-core",
  "portable",
]);

export const parseKernelPath = choiceParser("kernel path", KERNEL_PATH_CHOICES);

/** A kernel path asked of an engine that is not the kernels: a one-line error. */
export function checkKernelPath(engine: Engine, path: PathRequest | undefined): void {
  if (path !== undefined && path !== "auto" && engine !== "kernels")
    throw new Error(
      `a kernel path (${path}) applies to the kernels engine, and ${engine} runs these models: use --engine kernels`,
    );
}
