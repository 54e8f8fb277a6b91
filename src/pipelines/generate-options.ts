/**
 * The library's generation API: the options of one call, what it returns, and the defaults
 * that fill what a call leaves out (one table, read by the pipeline, the CLI and the server).
 */
import type { AppliedLora, LoraRequest } from "../lora/apply-loras.js";
import type { ReductionOptions, ReductionSettings } from "../reduce/options.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { HostTensor } from "./components.js";
import type { VaeTiling } from "./vae-tiling.js";

/** What a call leaves out; the model's own size and sampler fill the rest. */
export const GENERATION_DEFAULTS = Object.freeze({
  steps: 30,
  guidanceScale: 7.5,
  imagesPerPrompt: 1,
  /** img2img: the share of the schedule run from the noised init image. */
  strength: 0.8,
  longPrompts: "truncate",
  vaeTiling: "auto",
  latentsOnDevice: "auto",
} as const);

/** A float image batch [batch, height, width, 3] with values in [0, 1]. */
export interface ImageBatch {
  readonly data: Float32Array;
  readonly count: number;
  readonly width: number;
  readonly height: number;
}

export interface ProgressInfo {
  readonly step: number;
  readonly totalSteps: number;
  readonly timestep: number;
  /**
   * The latents after this step (B, 4, H/8, W/8); absent when they stay on the device (see
   * `GenerateOptions.latentsOnDevice`).
   */
  readonly latents?: HostTensor;
  readonly elapsedMs: number;
}

export interface GenerateOptions {
  readonly prompt: string | readonly string[];
  /** One negative prompt, or one per prompt. SDXL with `force_zeros_for_empty_prompt` uses zero
   * embeddings when this is left out. */
  readonly negativePrompt?: string | readonly string[];
  readonly width?: number;
  readonly height?: number;
  readonly steps?: number;
  /** Classifier-free guidance scale; guidance is skipped when <= 1. */
  readonly guidanceScale?: number;
  readonly imagesPerPrompt?: number;
  /** Layers skipped from the end of the text encoder (1 = penultimate layer). */
  readonly clipSkip?: number;
  /** A registry name ("Euler a", "DPM++ 2M Karras", a diffusers class name); default: the model's. */
  readonly scheduler?: string;
  readonly schedulerOverrides?: Readonly<Record<string, unknown>>;
  /** A whole scheduler_config.json to use instead of the model's own (with `_class_name`). */
  readonly schedulerConfig?: Readonly<Record<string, unknown>>;
  readonly seed?: number;
  /** Initial latents (B, 4, H/8, W/8) instead of a draw (txt2img only). */
  readonly latents?: Float32Array;
  /** Every other random draw, in order; draws beyond them come from the seed. */
  readonly noise?: readonly Float32Array[];
  /** img2img: the init image [batch or 1, height, width, 3] in [0, 1]. */
  readonly image?: ImageBatch;
  /** img2img: how much of the schedule to run, in (0, 1]. */
  readonly strength?: number;
  /** Token reduction (ToDo / ToMe); undefined or a factor of 1 runs the plain UNet. */
  readonly reduction?: ReductionOptions;
  /**
   * LoRAs for this call instead of the ones the pipeline was loaded with ([] for none). Models
   * built for a set are kept for the next call with the same files and weights.
   */
  readonly loras?: readonly LoraRequest[];
  /** Prompts over 77 tokens: truncated (default) or encoded in 75-token chunks. */
  readonly longPrompts?: "truncate" | "chunk";
  /**
   * Decode the latents in overlapping tiles (`vae-tiling.ts`): `auto` (default) tiles images
   * over 1024 px, whose whole decode outgrows a GPU buffer at 2048 px; `off` never tiles.
   */
  readonly vaeTiling?: "auto" | "off" | VaeTiling;
  /**
   * Keep the latents on the device for the whole denoising loop, where the runtime can
   * (onnxruntime-web on WebGPU): guidance and the sampler step run there as a small graph and
   * only the final latents are read back. `auto` (default) does so when the runtime can and the
   * sampler is linear in its inputs (every sampler here, unless it clips or thresholds); `on`
   * insists (an error otherwise); `off` steps on the host, with the latents in every progress
   * report.
   */
  readonly latentsOnDevice?: "auto" | "on" | "off";
  /** SDXL micro-conditioning, in pixels. */
  readonly originalSize?: readonly [number, number];
  readonly cropsCoordsTopLeft?: readonly [number, number];
  readonly targetSize?: readonly [number, number];
  readonly onProgress?: (info: ProgressInfo) => void;
  readonly signal?: AbortSignal;
}

export interface GenerateTimings {
  readonly totalMs: number;
  readonly textEncoderMs: number;
  readonly unetMs: number;
  readonly vaeMs: number;
  readonly unetCalls: number;
  /**
   * Where the latents were stepped. On the device the UNet runs are not waited for one by one,
   * so `unetMs` is the whole denoising loop (UNet, guidance and sampler).
   */
  readonly denoisedOn: "host" | "device";
}

export interface GenerateResult {
  readonly images: ImageBatch;
  readonly timings: GenerateTimings;
  /** Everything needed to reproduce the images. */
  readonly parameters: GenerationParameters;
}

export interface GenerationParameters {
  readonly prompt: readonly string[];
  readonly negativePrompt: readonly string[] | null;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly guidanceScale: number;
  readonly imagesPerPrompt: number;
  readonly clipSkip: number | null;
  readonly scheduler: string;
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  readonly seed: number | null;
  readonly strength: number | null;
  readonly reduction: ReductionSettings | null;
  readonly longPrompts: "truncate" | "chunk";
  readonly family: ModelFamily;
  /** The LoRAs merged into the models, with their hashes and weights. */
  readonly loras: readonly AppliedLora[];
}
