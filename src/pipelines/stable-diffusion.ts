/**
 * The Stable Diffusion denoising pipelines (SD 1.x, 2.x and XL): prompt encoding with
 * classifier-free guidance (Ho and Salimans 2022), txt2img and img2img (SDEdit, Meng et al.
 * 2022), over components that hide where the models came from. The order of operations and of
 * random draws follows the reference pipelines, so recorded latents and noise reproduce their
 * images.
 */
import type { AppliedLora, LoraRequest } from "../lora/apply-loras.js";
import type { ReductionOptions, ReductionSettings } from "../reduce/options.js";
import { resolveReduction } from "../reduce/options.js";
import { type LinearTrace, traceLinearSampler } from "../schedulers/linear-trace.js";
import { createScheduler } from "../schedulers/registry.js";
import type { Scheduler } from "../schedulers/types.js";
import type { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import { type NoiseSource, recordedNoise, seededNoise } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type {
  DeviceUnet,
  HostTensor,
  TextEncoderComponent,
  UnetComponent,
  VaeComponent,
} from "./components.js";
import { runDeviceLoop } from "./device-loop.js";
import { firstNonFinite, likelyCause, NonFiniteError } from "./finite-check.js";
import type { MemoryShape } from "./memory-estimate.js";
import {
  AUTO_TILING_ABOVE,
  DEFAULT_VAE_TILING,
  decodeInTiles,
  type VaeTiling,
} from "./vae-tiling.js";

export type { ModelFamily };

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

/** The models a set of LoRAs changes: the text encoders and the UNet. */
export interface AdaptedModels {
  readonly loras: readonly AppliedLora[];
  readonly textEncoders: readonly TextEncoderComponent[];
  /** The UNet built for the given reduction (undefined: none); implementations cache them. */
  unet(reduction: ReductionSettings | undefined): Promise<UnetComponent>;
  /** Tells the owner that the call using these models is over, so it may free them later. */
  done?(): void;
}

/** What a loaded model gives the pipeline; its own models carry the LoRAs it was loaded with. */
export interface PipelineParts extends Omit<AdaptedModels, "loras" | "done"> {
  readonly family: ModelFamily;
  readonly label: string;
  readonly tokenizers: readonly ClipTokenizer[];
  /** The LoRAs merged into `textEncoders` and `unet` (none when absent). */
  readonly loras?: readonly AppliedLora[];
  /**
   * The models with another set of LoRAs (checked before anything is built); absent where a
   * source cannot change its LoRAs per call.
   */
  withLoras?(loras: readonly LoraRequest[]): Promise<AdaptedModels>;
  readonly vae: VaeComponent;
  /** The model's own scheduler_config.json (with `_class_name`). */
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** model_index.json's force_zeros_for_empty_prompt (SDXL). */
  readonly forceZerosForEmptyPrompt: boolean;
  readonly latentChannels: number;
  /** Spatial downsampling of the VAE (8 for every SD model). */
  readonly vaeScale: number;
  readonly defaultSize: number;
  /** The shapes a memory estimate needs, where the source has configs (see memory-estimate.ts). */
  readonly memoryShape?: MemoryShape;
  release?(): Promise<void>;
}

const DEFAULTS = Object.freeze({ steps: 30, guidanceScale: 7.5, imagesPerPrompt: 1 });

/** Checks the call before any model runs; every message is one line. */
export function validateGenerateOptions(
  options: GenerateOptions,
  parts: Pick<PipelineParts, "vaeScale" | "defaultSize"> &
    Partial<Pick<PipelineParts, "textEncoders">>,
): void {
  const prompts = typeof options.prompt === "string" ? [options.prompt] : options.prompt;
  if (prompts.length === 0) throw new Error("prompt: give at least one prompt");
  if (options.negativePrompt !== undefined && typeof options.negativePrompt !== "string") {
    if (options.negativePrompt.length !== prompts.length) {
      throw new Error(
        `negativePrompt: ${options.negativePrompt.length} negative prompts for ${prompts.length} prompts; give one, or one per prompt`,
      );
    }
  }
  const multiple = parts.vaeScale;
  for (const [name, value] of [
    ["width", options.width],
    ["height", options.height],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new Error(`${name} must be a positive multiple of ${multiple}; got ${value}`);
    }
  }
  if (options.steps !== undefined && (!Number.isInteger(options.steps) || options.steps < 1)) {
    throw new Error(`steps must be a whole number >= 1; got ${options.steps}`);
  }
  if (options.guidanceScale !== undefined && !Number.isFinite(options.guidanceScale)) {
    throw new Error(`guidanceScale must be a number; got ${options.guidanceScale}`);
  }
  if (
    options.imagesPerPrompt !== undefined &&
    (!Number.isInteger(options.imagesPerPrompt) || options.imagesPerPrompt < 1)
  ) {
    throw new Error(`imagesPerPrompt must be a whole number >= 1; got ${options.imagesPerPrompt}`);
  }
  if (
    options.clipSkip !== undefined &&
    (!Number.isInteger(options.clipSkip) || options.clipSkip < 0)
  ) {
    throw new Error(`clipSkip must be a whole number >= 0; got ${options.clipSkip}`);
  }
  const layers = Math.min(...(parts.textEncoders ?? []).map((encoder) => encoder.layers));
  if (options.clipSkip !== undefined && options.clipSkip >= layers)
    throw new Error(
      `clip skip ${options.clipSkip} is out of range: the model's text encoder has ${layers} layers, so 0 to ${layers - 1} may be skipped`,
    );
  if (options.seed !== undefined && (!Number.isSafeInteger(options.seed) || options.seed < 0)) {
    throw new Error(`seed must be a non-negative integer; got ${options.seed}`);
  }
  for (const lora of options.loras ?? []) {
    const weight = lora?.weight ?? 1;
    if (typeof lora?.path !== "string" || lora.path === "")
      throw new Error("loras: every LoRA needs a file path");
    if (typeof weight !== "number" || !Number.isFinite(weight))
      throw new Error(`LoRA ${lora.path}: weight must be a finite number; got ${weight}`);
  }
  if (options.strength !== undefined) {
    if (!(options.strength > 0 && options.strength <= 1)) {
      throw new Error(`strength must be in (0, 1]; got ${options.strength}`);
    }
    if (!options.image) throw new Error("strength is for img2img: give an init image too");
  }
  if (options.image && options.latents)
    throw new Error("latents are for txt2img; img2img starts from the init image");
  const onDevice = options.latentsOnDevice;
  if (onDevice !== undefined && onDevice !== "auto" && onDevice !== "on" && onDevice !== "off")
    throw new Error(
      `latentsOnDevice must be "auto", "on" or "off"; got ${JSON.stringify(onDevice)}`,
    );
}

function asList(value: string | readonly string[]): readonly string[] {
  return typeof value === "string" ? [value] : value;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const error = new Error("generation cancelled");
    error.name = "AbortError";
    throw error;
  }
}

/** Repeats each of `count` rows `times` times: [a, b] -> [a, a, b, b]. */
function repeatRows(tensor: HostTensor, times: number): HostTensor {
  if (times === 1) return tensor;
  const rows = tensor.dims[0];
  const rowSize = tensor.data.length / rows;
  const out = new Float32Array(tensor.data.length * times);
  for (let r = 0; r < rows; r++) {
    const row = tensor.data.subarray(r * rowSize, (r + 1) * rowSize);
    for (let k = 0; k < times; k++) out.set(row, (r * times + k) * rowSize);
  }
  return { data: out, dims: [rows * times, ...tensor.dims.slice(1)] };
}

function concatRows(a: HostTensor, b: HostTensor): HostTensor {
  const out = new Float32Array(a.data.length + b.data.length);
  out.set(a.data);
  out.set(b.data, a.data.length);
  return { data: out, dims: [a.dims[0] + b.dims[0], ...a.dims.slice(1)] };
}

function concatLastAxis(a: HostTensor, b: HostTensor): HostTensor {
  const ca = a.dims[a.dims.length - 1];
  const cb = b.dims[b.dims.length - 1];
  const rows = a.data.length / ca;
  const out = new Float32Array(rows * (ca + cb));
  for (let r = 0; r < rows; r++) {
    out.set(a.data.subarray(r * ca, (r + 1) * ca), r * (ca + cb));
    out.set(b.data.subarray(r * cb, (r + 1) * cb), r * (ca + cb) + ca);
  }
  return { data: out, dims: [...a.dims.slice(0, -1), ca + cb] };
}

function zerosLike(t: HostTensor): HostTensor {
  return { data: new Float32Array(t.data.length), dims: t.dims };
}

/** Tokenizes prompts to [batch][77] ids, or, in chunk mode, concatenated 77-token chunks. */
function tokenize(
  tokenizer: ClipTokenizer,
  prompts: readonly string[],
  mode: "truncate" | "chunk",
): number[][][] {
  if (mode === "truncate") return [tokenizer.call([...prompts]).inputIds];
  const chunked = prompts.map((p) => tokenizer.encodeChunked(p));
  const count = Math.max(...chunked.map((c) => c.length));
  const padChunk = tokenizer.encodeChunked("")[0];
  // Chunk k of every prompt, padded with empty chunks so every prompt has `count` of them.
  return Array.from({ length: count }, (_, k) => chunked.map((c) => c[k] ?? padChunk));
}

export class StableDiffusionPipeline {
  constructor(readonly parts: PipelineParts) {}

  get family(): ModelFamily {
    return this.parts.family;
  }

  /** Frees the runtime sessions and open files; the pipeline cannot be used afterwards. */
  async release(): Promise<void> {
    await this.parts.release?.();
  }

  /** The scheduler a call would use: `name` (default: the config's class) over the model's config. */
  createScheduler(
    name?: string,
    overrides?: Readonly<Record<string, unknown>>,
    config: Readonly<Record<string, unknown>> = this.parts.schedulerConfig,
  ): Scheduler {
    return createScheduler(name ?? (config._class_name as string), config, overrides);
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const started = performance.now();
    const parts = this.parts;
    validateGenerateOptions(options, parts);
    const prompts = asList(options.prompt);
    // img2img keeps the init image's size unless told otherwise, as the reference does.
    const width = options.width ?? options.image?.width ?? parts.defaultSize;
    const height = options.height ?? options.image?.height ?? parts.defaultSize;
    const steps = options.steps ?? DEFAULTS.steps;
    const guidanceScale = options.guidanceScale ?? DEFAULTS.guidanceScale;
    const imagesPerPrompt = options.imagesPerPrompt ?? DEFAULTS.imagesPerPrompt;
    const longPrompts = options.longPrompts ?? "truncate";
    const guided = guidanceScale > 1;
    const reduction = this.resolveReductionFor(options.reduction, width, height);
    const scheduler = this.createScheduler(
      options.scheduler,
      options.schedulerOverrides,
      options.schedulerConfig,
    );
    const noise: NoiseSource = recordedNoise(
      options.noise ?? [],
      options.seed !== undefined ? seededNoise(options.seed) : seededNoise(randomSeed()),
    );
    const latentsNoise: NoiseSource = options.latents ? recordedNoise([options.latents]) : noise;
    throwIfAborted(options.signal);
    const models = await this.modelsFor(options.loras);
    try {
      return await this.run(options, models, started, {
        prompts,
        width,
        height,
        steps,
        guidanceScale,
        imagesPerPrompt,
        longPrompts,
        guided,
        reduction,
        scheduler,
        noise,
        latentsNoise,
      });
    } finally {
      models.done?.();
    }
  }

  /** The pipeline's own models, or those of the call's LoRA set. */
  private async modelsFor(loras: readonly LoraRequest[] | undefined): Promise<AdaptedModels> {
    const parts = this.parts;
    if (loras === undefined) return { ...modelsOf(parts), loras: parts.loras ?? [] };
    if (!parts.withLoras)
      throw new Error(`${parts.label}: this model source cannot change its LoRAs per call`);
    return parts.withLoras(loras);
  }

  private async run(
    options: GenerateOptions,
    models: AdaptedModels,
    started: number,
    call: {
      prompts: readonly string[];
      width: number;
      height: number;
      steps: number;
      guidanceScale: number;
      imagesPerPrompt: number;
      longPrompts: "truncate" | "chunk";
      guided: boolean;
      reduction: ReductionSettings | undefined;
      scheduler: Scheduler;
      noise: NoiseSource;
      latentsNoise: NoiseSource;
    },
  ): Promise<GenerateResult> {
    const parts = this.parts;
    const { prompts, width, height, steps, guidanceScale, imagesPerPrompt, longPrompts } = call;
    const { guided, reduction, scheduler, noise, latentsNoise } = call;

    // Text conditioning.
    let textMs = performance.now();
    const conditioning = await this.encodePrompts(
      models.textEncoders,
      prompts,
      options.negativePrompt,
      guided,
      options.clipSkip,
      longPrompts,
      width,
      height,
      options,
    );
    textMs = performance.now() - textMs;
    const batch = prompts.length * imagesPerPrompt;
    const encoderHiddenStates = repeatBatchForGuidance(
      conditioning.hiddenStates,
      imagesPerPrompt,
      guided,
    );
    const textEmbeds =
      conditioning.pooled && repeatBatchForGuidance(conditioning.pooled, imagesPerPrompt, guided);
    const timeIds =
      conditioning.timeIds && repeatBatchForGuidance(conditioning.timeIds, imagesPerPrompt, guided);
    throwIfAborted(options.signal);

    // Initial latents and the schedule.
    const latentDims = [
      batch,
      parts.latentChannels,
      height / parts.vaeScale,
      width / parts.vaeScale,
    ];
    let vaeMs = 0;
    let latents: Float32Array;
    let timesteps: readonly number[];
    scheduler.setTimesteps(steps);
    if (options.image) {
      const vaeStart = performance.now();
      const init = await this.encodeInitImage(options.image, batch, width, height, noise);
      vaeMs += performance.now() - vaeStart;
      timesteps = scheduler.timestepsForStrength(options.strength ?? 0.8);
      if (timesteps.length === 0)
        throw new Error(
          `strength ${options.strength} with ${steps} steps leaves no step to run; raise either`,
        );
      latents = scheduler.addNoise(init, noise.normal(latentDims), timesteps[0]);
    } else {
      const initial = latentsNoise.normal(latentDims);
      latents = new Float32Array(initial.length);
      for (let i = 0; i < initial.length; i++) latents[i] = initial[i] * scheduler.initNoiseSigma;
      timesteps = scheduler.timesteps;
    }

    const cause = () =>
      likelyCause({
        guidanceScale,
        recordedLatents: options.latents !== undefined,
        recordedNoise: options.noise !== undefined,
      });
    if (firstNonFinite(latents) >= 0)
      throw new NonFiniteError(
        `the starting latents hold NaN or infinite values; ${options.latents ? "the given latents are broken" : cause()}`,
      );

    // Denoising loop.
    const unet = await models.unet(reduction);
    let unetMs = 0;
    let unetCalls = 0;
    const trace = this.traceForDevice(unet, options, steps, timesteps);
    if (trace) {
      const loopStart = performance.now();
      latents = await runDeviceLoop({
        trace,
        start: latents,
        latentDims,
        guidanceScale: guided ? guidanceScale : undefined,
        noise,
        unet: trace.device,
        conditioning: { encoderHiddenStates, textEmbeds, timeIds },
        checkAbort: () => throwIfAborted(options.signal),
        nonFiniteCause: cause,
        onStep: (index) => {
          unetCalls++;
          options.onProgress?.({
            step: index + 1,
            totalSteps: timesteps.length,
            timestep: timesteps[index],
            elapsedMs: performance.now() - started,
          });
        },
      });
      unetMs = performance.now() - loopStart;
      if (firstNonFinite(latents) >= 0)
        throw new NonFiniteError(
          `the latents became NaN or infinite during the denoising loop on the device (${timesteps.length} steps; --latents-on-device off finds the step); ${cause()}`,
        );
    }
    for (const [index, t] of (trace ? [] : timesteps).entries()) {
      throwIfAborted(options.signal);
      const scaled = scheduler.scaleModelInput(latents, t);
      const modelInput = guided ? duplicate(scaled) : scaled;
      const rows = guided ? batch * 2 : batch;
      const unetStart = performance.now();
      const prediction = await unet.predict({
        sample: { data: modelInput, dims: [rows, ...latentDims.slice(1)] },
        timestep: new Float32Array(rows).fill(t),
        encoderHiddenStates,
        textEmbeds,
        timeIds,
      });
      unetMs += performance.now() - unetStart;
      unetCalls++;
      const guidedPrediction = guided
        ? applyGuidance(prediction.data, guidanceScale)
        : prediction.data;
      latents = scheduler.step(guidedPrediction, t, latents, noise, latentDims);
      if (firstNonFinite(latents) >= 0)
        throw new NonFiniteError(
          `the latents became NaN or infinite at step ${index + 1} of ${timesteps.length}; ${cause()}`,
        );
      options.onProgress?.({
        step: index + 1,
        totalSteps: timesteps.length,
        timestep: t,
        latents: { data: latents, dims: latentDims },
        elapsedMs: performance.now() - started,
      });
    }
    throwIfAborted(options.signal);

    // Decode.
    const vaeStart = performance.now();
    const images = await this.decodeLatents(
      latents,
      latentDims,
      options.vaeTiling ?? "auto",
      cause,
    );
    vaeMs += performance.now() - vaeStart;
    return {
      images,
      timings: {
        totalMs: performance.now() - started,
        textEncoderMs: textMs,
        unetMs,
        vaeMs,
        unetCalls,
        denoisedOn: trace ? "device" : "host",
      },
      parameters: {
        prompt: prompts,
        negativePrompt:
          options.negativePrompt === undefined ? null : asList(options.negativePrompt),
        width,
        height,
        steps,
        guidanceScale,
        imagesPerPrompt,
        clipSkip: options.clipSkip ?? null,
        scheduler: scheduler.name,
        schedulerConfig: scheduler.config,
        seed: options.seed ?? null,
        strength: options.image ? (options.strength ?? 0.8) : null,
        reduction: reduction ?? null,
        longPrompts,
        family: parts.family,
        loras: models.loras,
      },
    };
  }

  /**
   * The traced schedule for a loop on the device, or undefined to step on the host (see
   * `GenerateOptions.latentsOnDevice`). Traced on a fresh scheduler set up like the loop's.
   */
  private traceForDevice(
    unet: UnetComponent,
    options: GenerateOptions,
    steps: number,
    timesteps: readonly number[],
  ): (LinearTrace & { readonly device: DeviceUnet }) | undefined {
    const mode = options.latentsOnDevice ?? "auto";
    if (mode === "off") return undefined;
    if (!unet.device) {
      if (mode === "auto") return undefined;
      throw new Error(
        'latentsOnDevice "on": this runtime cannot keep tensors on its device (onnxruntime-web on WebGPU can); use "auto" or "off"',
      );
    }
    const scheduler = this.createScheduler(
      options.scheduler,
      options.schedulerOverrides,
      options.schedulerConfig,
    );
    scheduler.setTimesteps(steps);
    if (options.image) scheduler.timestepsForStrength(options.strength ?? 0.8);
    const outcome = traceLinearSampler(scheduler, timesteps);
    if (outcome.ok) return { ...outcome.trace, device: unet.device };
    if (mode === "auto") return undefined;
    throw new Error(`latentsOnDevice "on": ${outcome.reason}; use "auto" or "off"`);
  }

  /** Reduction settings for this call's size, or undefined when nothing would be reduced. */
  resolveReductionFor(
    options: ReductionOptions | undefined,
    width: number,
    height: number,
  ): ReductionSettings | undefined {
    if (!options) return undefined;
    const architecture = this.parts.family;
    const settings = resolveReduction(options, { architecture, width, height });
    const reduces =
      settings.method === "todo"
        ? settings.factor > 1 || settings.factorLevel2 > 1
        : settings.ratio > 0 || settings.ratioLevel2 > 0;
    const secondary = settings.switchThreshold > 0 && settings.secondary !== "none";
    return reduces || secondary ? settings : undefined;
  }

  private async encodePrompts(
    encoders: readonly TextEncoderComponent[],
    prompts: readonly string[],
    negative: string | readonly string[] | undefined,
    guided: boolean,
    clipSkip: number | undefined,
    longPrompts: "truncate" | "chunk",
    width: number,
    height: number,
    options: GenerateOptions,
  ): Promise<{
    hiddenStates: { positive: HostTensor; negative?: HostTensor };
    pooled?: { positive: HostTensor; negative?: HostTensor };
    timeIds?: { positive: HostTensor; negative?: HostTensor };
  }> {
    const parts = this.parts;
    const negatives =
      negative === undefined
        ? undefined
        : typeof negative === "string"
          ? prompts.map(() => negative)
          : negative;
    if (parts.family !== "sdxl") {
      const positive = await this.encodeSd(encoders, prompts, clipSkip, longPrompts);
      if (!guided) return { hiddenStates: { positive } };
      // The reference applies clip skip to the prompt only, not to the negative prompt.
      const negativeStates = await this.encodeSd(
        encoders,
        negatives ?? prompts.map(() => ""),
        undefined,
        longPrompts,
        positive.dims[1],
      );
      return { hiddenStates: { positive, negative: negativeStates } };
    }
    const positive = await this.encodeSdxl(encoders, prompts, clipSkip, longPrompts);
    const timeIdsRow = [
      ...(options.originalSize ?? [height, width]),
      ...(options.cropsCoordsTopLeft ?? [0, 0]),
      ...(options.targetSize ?? [height, width]),
    ];
    const timeIds = {
      data: Float32Array.from(prompts.flatMap(() => timeIdsRow)),
      dims: [prompts.length, 6],
    };
    if (!guided)
      return {
        hiddenStates: { positive: positive.hiddenStates },
        pooled: { positive: positive.pooled },
        timeIds: { positive: timeIds },
      };
    let negativeStates: HostTensor;
    let negativePooled: HostTensor;
    if (negatives === undefined && parts.forceZerosForEmptyPrompt) {
      negativeStates = zerosLike(positive.hiddenStates);
      negativePooled = zerosLike(positive.pooled);
    } else {
      const encoded = await this.encodeSdxl(
        encoders,
        negatives ?? prompts.map(() => ""),
        clipSkip,
        longPrompts,
        positive.hiddenStates.dims[1],
      );
      negativeStates = encoded.hiddenStates;
      negativePooled = encoded.pooled;
    }
    return {
      hiddenStates: { positive: positive.hiddenStates, negative: negativeStates },
      pooled: { positive: positive.pooled, negative: negativePooled },
      timeIds: { positive: timeIds, negative: timeIds },
    };
  }

  /** SD 1.x / 2.x: last hidden state, or with clip skip the earlier state through the final norm. */
  private async encodeSd(
    encoders: readonly TextEncoderComponent[],
    prompts: readonly string[],
    clipSkip: number | undefined,
    longPrompts: "truncate" | "chunk",
    tokens?: number,
  ): Promise<HostTensor> {
    const [tokenizer] = this.parts.tokenizers;
    const [encoder] = encoders;
    const chunks = padChunkCount(tokenize(tokenizer, prompts, longPrompts), tokens, tokenizer);
    let result: HostTensor | undefined;
    for (const ids of chunks) {
      const out = await encoder.encode(
        ids,
        clipSkip ? { hiddenStateFromEnd: clipSkip + 1, finalLayerNorm: true } : {},
      );
      const states = clipSkip ? out.skipHiddenState! : out.lastHiddenState;
      result = result ? concatAxis1(result, states) : states;
    }
    return result!;
  }

  /** SDXL: penultimate (or clip-skipped) states of both encoders side by side, pooled from the second. */
  private async encodeSdxl(
    encoders: readonly TextEncoderComponent[],
    prompts: readonly string[],
    clipSkip: number | undefined,
    longPrompts: "truncate" | "chunk",
    tokens?: number,
  ): Promise<{ hiddenStates: HostTensor; pooled: HostTensor }> {
    const request = { hiddenStateFromEnd: (clipSkip ?? 0) + 2, finalLayerNorm: false };
    const states: HostTensor[] = [];
    let pooled: HostTensor | undefined;
    for (const [i, encoder] of encoders.entries()) {
      const tokenizer = this.parts.tokenizers[i];
      const chunks = padChunkCount(tokenize(tokenizer, prompts, longPrompts), tokens, tokenizer);
      let joined: HostTensor | undefined;
      for (const [k, ids] of chunks.entries()) {
        const out = await encoder.encode(ids, request);
        joined = joined ? concatAxis1(joined, out.skipHiddenState!) : out.skipHiddenState!;
        if (i === encoders.length - 1 && k === 0) pooled = out.pooled;
      }
      states.push(joined!);
    }
    if (!pooled) throw new Error("the second SDXL text encoder gave no pooled text embeddings");
    return { hiddenStates: concatLastAxis(states[0], states[1]), pooled };
  }

  private async encodeInitImage(
    image: ImageBatch,
    batch: number,
    width: number,
    height: number,
    noise: NoiseSource,
  ): Promise<Float32Array> {
    if (image.width !== width || image.height !== height) {
      throw new Error(
        `init image is ${image.width}x${image.height} but the output is ${width}x${height}; resize it first`,
      );
    }
    if (image.count !== 1 && image.count !== batch) {
      throw new Error(
        `${image.count} init images for ${batch} outputs; give one, or one per output`,
      );
    }
    // [N, H, W, 3] in [0, 1] -> [N, 3, H, W] in [-1, 1].
    const plane = width * height;
    const nchw = new Float32Array(image.count * 3 * plane);
    for (let n = 0; n < image.count; n++) {
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++)
          nchw[(n * 3 + c) * plane + p] = image.data[(n * plane + p) * 3 + c] * 2 - 1;
      }
    }
    const { mean, logvar } = await this.parts.vae.encode({
      data: nchw,
      dims: [image.count, 3, height, width],
    });
    const draw = noise.normal(mean.dims);
    const sample = new Float32Array(mean.data.length);
    const { scalingFactor, shiftFactor } = this.parts.vae;
    for (let i = 0; i < sample.length; i++) {
      const clamped = Math.min(Math.max(logvar.data[i], -30), 20);
      sample[i] = (mean.data[i] + Math.exp(0.5 * clamped) * draw[i] - shiftFactor) * scalingFactor;
    }
    return image.count === batch
      ? sample
      : repeatRows({ data: sample, dims: mean.dims }, batch).data;
  }

  private async decodeLatents(
    latents: Float32Array,
    dims: readonly number[],
    tiling: "auto" | "off" | VaeTiling = "off",
    cause: () => string = () => "the VAE's weights may overflow in float16; try --dtype fp32",
  ): Promise<ImageBatch> {
    const { scalingFactor, shiftFactor } = this.parts.vae;
    const scaled = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / scalingFactor + shiftFactor;
    const vae = this.parts.vae;
    const tiles =
      tiling === "off"
        ? undefined
        : tiling === "auto"
          ? Math.max(dims[2], dims[3]) > AUTO_TILING_ABOVE
            ? DEFAULT_VAE_TILING
            : undefined
          : tiling;
    const decoded = tiles
      ? await decodeInTiles((t) => vae.decode(t), { data: scaled, dims }, tiles)
      : await vae.decode({ data: scaled, dims });
    if (firstNonFinite(decoded.data) >= 0) {
      let largest = 0;
      for (const v of latents) largest = Math.max(largest, Math.abs(v));
      throw new NonFiniteError(
        `the VAE decoded NaN or infinite values from latents as large as ${largest.toPrecision(3)}; ${cause()}`,
      );
    }
    const [count, , height, width] = decoded.dims;
    const plane = width * height;
    const out = new Float32Array(count * plane * 3);
    for (let n = 0; n < count; n++) {
      for (let c = 0; c < 3; c++) {
        const base = (n * 3 + c) * plane;
        for (let p = 0; p < plane; p++) {
          const v = decoded.data[base + p] / 2 + 0.5;
          out[(n * plane + p) * 3 + c] = v < 0 ? 0 : Math.min(v, 1);
        }
      }
    }
    return { data: out, count, width, height };
  }
}

/** The pipeline's own text encoders and UNet. */
function modelsOf(parts: PipelineParts): Omit<AdaptedModels, "loras"> {
  return { textEncoders: parts.textEncoders, unet: (reduction) => parts.unet(reduction) };
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

function duplicate(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length * 2);
  out.set(x);
  out.set(x, x.length);
  return out;
}

/** noise = uncond + scale * (text - uncond), with the unconditional half first. */
function applyGuidance(prediction: Float32Array, scale: number): Float32Array {
  const half = prediction.length / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const uncond = prediction[i];
    out[i] = uncond + scale * (prediction[half + i] - uncond);
  }
  return out;
}

function repeatBatchForGuidance(
  pair: { positive: HostTensor; negative?: HostTensor },
  imagesPerPrompt: number,
  guided: boolean,
): HostTensor {
  const positive = repeatRows(pair.positive, imagesPerPrompt);
  if (!guided) return positive;
  return concatRows(repeatRows(pair.negative!, imagesPerPrompt), positive);
}

function concatAxis1(a: HostTensor, b: HostTensor): HostTensor {
  const [batch, sa, c] = a.dims;
  const sb = b.dims[1];
  const out = new Float32Array(batch * (sa + sb) * c);
  for (let n = 0; n < batch; n++) {
    out.set(a.data.subarray(n * sa * c, (n + 1) * sa * c), n * (sa + sb) * c);
    out.set(b.data.subarray(n * sb * c, (n + 1) * sb * c), n * (sa + sb) * c + sa * c);
  }
  return { data: out, dims: [batch, sa + sb, c] };
}

/** Negative prompts get as many chunks as the prompt, so both embeddings have one length. */
function padChunkCount(
  chunks: number[][][],
  tokens: number | undefined,
  tokenizer: ClipTokenizer,
): number[][][] {
  if (tokens === undefined) return chunks;
  const wanted = Math.max(1, Math.round(tokens / tokenizer.modelMaxLength));
  if (chunks.length > wanted) return chunks.slice(0, wanted);
  const empty = tokenizer.call([""]).inputIds[0];
  while (chunks.length < wanted) chunks.push(chunks[0].map(() => empty));
  return chunks;
}
