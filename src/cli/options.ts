/** Flag definitions and parsers shared by the commands. */
import { type Command, InvalidArgumentError, Option } from "commander";
import { type EngineChoice, parseEngine, parseKernelPath } from "../engine/select.js";
import type { PathRequest } from "../gpu/types.js";
import {
  type Device,
  type ModelDtype,
  parseDevice,
  parseDtype,
  type ReductionOptions,
  WEBGPU_BUFFER_CACHE_MODES,
  type WebGpuBufferCache,
  type WebGpuTuning,
} from "../index.js";
import { parseReductionFlags, type ReductionFlags } from "./reduction-flags.js";

/** Plain decimal digits only: `0x10`, `1e3`, `0b1` and `+5` are not whole numbers a user types. */
const PLAIN_INTEGER = /^\d+$/;
/** Decimal numbers with an optional exponent; no hex, binary, octal or Infinity. */
const PLAIN_NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;

export function intArg(name: string, min = 1): (value: string) => number {
  return (value) => {
    const n = PLAIN_INTEGER.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
    return n;
  };
}

export function floatArg(name: string): (value: string) => number {
  return (value) => {
    const n = PLAIN_NUMBER.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
}

/** A library parser as commander takes one: its error, as commander's, keeps its message. */
function commanderArg<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

export const deviceArg = commanderArg(parseDevice);
export const engineArg = commanderArg(parseEngine);
const kernelPathArg = commanderArg(parseKernelPath);

export function dtypeArg(value: string): ModelDtype {
  try {
    return parseDtype(value);
  } catch {
    throw new InvalidArgumentError(`expected fp32 or fp16, got "${value}"`);
  }
}

/** The VAE of every Stable Diffusion model halves the image three times. */
const PIXEL_MULTIPLE = 8;

/** An image side in pixels: a positive multiple of 8. */
export function pixelsArg(name: string): (value: string) => number {
  return (value) => {
    const n = PLAIN_INTEGER.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isInteger(n) || n <= 0 || n % PIXEL_MULTIPLE !== 0)
      throw new InvalidArgumentError(`${name} must be a positive multiple of ${PIXEL_MULTIPLE}`);
    return n;
  };
}

/** `768`, `768x512` (width x height), each side a positive multiple of 8. */
export function sizeArg(value: string): { width: number; height: number } {
  const match = /^(\d+)(?:x(\d+))?$/i.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected WIDTH or WIDTHxHEIGHT, got "${value}"`);
  const width = Number(match[1]);
  const height = Number(match[2] ?? match[1]);
  if ([width, height].some((side) => side <= 0 || side % PIXEL_MULTIPLE !== 0))
    throw new InvalidArgumentError(
      `${width}x${height}: each side must be a positive multiple of ${PIXEL_MULTIPLE}`,
    );
  return { width, height };
}

export function listArg<T>(parse: (value: string) => T): (value: string) => T[] {
  return (value) => value.split(",").map((v) => parse(v.trim()));
}

/** The ToDo/ToMe flags of DESIGN.md's vocabulary table. */
export function addReductionFlags(command: Command): Command {
  return command
    .option(
      "--todo <factor>",
      "ToDo key/value downsampling factor at level 1 (1 = off, auto = by image size)",
    )
    .option("--todo-level2 <factor>", "ToDo factor at level 2 (half resolution)")
    .addOption(
      new Option("--todo-mode <mode>", "downsampling mode").choices([
        "nearest",
        "nearest-exact",
        "avg",
        "max",
        "bilinear",
        "bicubic",
        "area",
      ]),
    )
    .addOption(
      new Option(
        "--merge-target <target>",
        "reduce keys/values only, or all tokens and restore after",
      ).choices(["kv", "all"]),
    )
    .option(
      "--tome <ratio>",
      "ToMe (token merging by similarity) at level 1 with this ratio instead of ToDo",
    )
    .option("--tome-level2 <ratio>", "ToMe ratio at level 2")
    .option("--tome-stride <SXxSY>", "ToMe destination grid, e.g. 2x2")
    .option("--tome-random [seed]", "ToMe: random destination in each cell (seeded)")
    .option("--todo-stop <t>", "no reduction once t/1000 <= t")
    .option("--todo-switch <t>", "switch to the secondary method once t/1000 <= t")
    .addOption(
      new Option("--todo-secondary <method>", "method after the switch").choices([
        "tome",
        "todo",
        "none",
      ]),
    );
}

const REDUCTION_FLAG_KEYS: readonly (keyof ReductionFlags)[] = Object.freeze([
  "todo",
  "todoLevel2",
  "todoMode",
  "mergeTarget",
  "tome",
  "tomeLevel2",
  "tomeStride",
  "tomeRandom",
  "todoStop",
  "todoSwitch",
  "todoSecondary",
]);

/** The reduction the flags ask for; `auto` ToDo when none is given and `defaultAuto` is set. */
export function reductionFromFlags(flags: ReductionFlags, defaultAuto: true): ReductionOptions;
export function reductionFromFlags(
  flags: ReductionFlags,
  defaultAuto: boolean,
): ReductionOptions | undefined;
export function reductionFromFlags(
  flags: ReductionFlags,
  defaultAuto: boolean,
): ReductionOptions | undefined {
  // Commands hand over all their flags; only the reduction flags count as asking for one.
  const given = REDUCTION_FLAG_KEYS.some((key) => flags[key] !== undefined);
  if (!given && !defaultAuto) return undefined;
  return parseReductionFlags(flags);
}

/** Options shared by the commands that load a model. */
export function addModelFlags(command: Command): Command {
  return command
    .requiredOption(
      "-m, --model <source>",
      "diffusers folder, .safetensors checkpoint, ONNX folder, Hub id (org/name) or builtin:sd15|sd21|sdxl",
    )
    .option("--device <device>", "cpu, webgpu or cuda", deviceArg, "cpu" as Device)
    .option("--dtype <dtype>", "fp32 or fp16 (default: fp32 on cpu, fp16 on GPUs)", dtypeArg)
    .option(
      "--engine <engine>",
      "auto, kernels (our WebGPU kernels) or onnxruntime (default auto: kernels for fp16 on WebGPU with shader-f16, else onnxruntime)",
      engineArg,
    )
    .option(
      "--kernel-path <path>",
      "kernels engine: auto, tensor-core or portable (default auto: the tensor cores where the adapter has subgroup matrices; portable runs what browsers without them run)",
      kernelPathArg,
    )
    .option("--cache-dir <dir>", "where built models are cached")
    .option("--no-cache", "build models in memory, cache nothing")
    .option(
      "--config-from <folder>",
      "single-file checkpoints: a diffusers folder to take configs, tokenizers and scheduler from",
    )
    .option(
      "--tokenizer <folder>",
      "a CLIP tokenizer folder to use instead of the model's (default: its own, else the shipped CLIP vocabulary)",
    )
    .option("--variant <name>", "weight variant, e.g. fp16")
    .option("--revision <rev>", "Hub revision (branch, tag or commit)")
    .option("--offline", "never use the network; Hub models must be in the cache")
    .addOption(
      new Option(
        "--webgpu-layout <layout>",
        "WebGPU: layout of Conv and other layout-sensitive ops",
      ).choices(["NCHW", "NHWC"]),
    )
    .addOption(
      new Option(
        "--webgpu-validation <mode>",
        "WebGPU: Dawn validation (disabled is fastest)",
      ).choices(["disabled", "wgpuOnly", "basic", "full"]),
    )
    .addOption(
      new Option(
        "--webgpu-mem-pattern <on|off>",
        "WebGPU: onnxruntime's planned memory blocks per run (default off)",
      ).choices(["on", "off"]),
    )
    .addOption(
      new Option(
        "--webgpu-buffer-cache <mode>",
        "WebGPU: how storage buffers are kept between runs (default simple)",
      ).choices([...WEBGPU_BUFFER_CACHE_MODES]),
    );
}

export interface ModelFlagValues {
  readonly model: string;
  readonly device: Device;
  readonly dtype?: ModelDtype;
  readonly engine?: EngineChoice;
  readonly kernelPath?: PathRequest;
  readonly cacheDir?: string;
  readonly cache: boolean;
  readonly configFrom?: string;
  readonly tokenizer?: string;
  readonly variant?: string;
  readonly revision?: string;
  readonly offline?: boolean;
  readonly webgpuLayout?: "NCHW" | "NHWC";
  readonly webgpuValidation?: "disabled" | "wgpuOnly" | "basic" | "full";
  readonly webgpuMemPattern?: "on" | "off";
  readonly webgpuBufferCache?: WebGpuBufferCache;
}

export function loadOptionsFromFlags(flags: ModelFlagValues) {
  return {
    device: flags.device,
    dtype: flags.dtype,
    engine: flags.engine,
    kernelPath: flags.kernelPath,
    cacheDir: flags.cache === false ? (false as const) : flags.cacheDir,
    configFrom: flags.configFrom,
    tokenizer: flags.tokenizer,
    variant: flags.variant,
    revision: flags.revision,
    offline: flags.offline,
    webgpu: webgpuTuningFromFlags(flags),
  };
}

function webgpuTuningFromFlags(flags: ModelFlagValues): WebGpuTuning | undefined {
  const tuning: WebGpuTuning = {
    preferredLayout: flags.webgpuLayout,
    validationMode: flags.webgpuValidation,
    memPattern: flags.webgpuMemPattern === undefined ? undefined : flags.webgpuMemPattern === "on",
    storageBufferCache: flags.webgpuBufferCache,
  };
  return Object.values(tuning).some((v) => v !== undefined) ? tuning : undefined;
}
