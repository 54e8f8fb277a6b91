/**
 * The web demo's protocol: what a client asks for (a comparison of a baseline and an accelerated
 * generation), how it is checked, and the events a job reports. Shared by the Node server and
 * the page's in-browser engine, so it imports nothing platform-specific.
 */
import type { ImageComparisonJson } from "../image/metrics.js";
import type { GenerateOptions, GenerateTimings } from "../pipelines/generate-options.js";
import {
  parseReductionOptions,
  type ReductionOptions,
  type ReductionOptionsInput,
  type ReductionSettings,
} from "../reduce/options.js";
import { createScheduler } from "../schedulers/registry.js";
import type { TokenizerFolderFiles } from "../tokenizers/clip-tokenizer.js";
import { MAX_SEED, randomSeed } from "../util/random.js";

/** The two generations of a job, in the order they run. */
export type Phase = "baseline" | "accelerated";

export type EngineName = "server" | "browser";

/** A request as the client sends it (JSON). */
export interface JobRequest {
  readonly prompt: string;
  readonly negativePrompt?: string;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly guidanceScale: number;
  /** A sampler name from the scheduler registry; absent or empty: the model's own. */
  readonly scheduler?: string;
  /** Absent: a random seed, reported back. Both generations use the same one. */
  readonly seed?: number;
  readonly clipSkip?: number;
  /** ToDo or ToMe, in the library's option names (method, factor, mode, ratio, ...). */
  readonly reduction: ReductionOptionsInput;
  /** LoRAs of the server's LoRA folder by name, at a weight (0: off). */
  readonly loras?: readonly JobLora[];
}

/** A LoRA of the server's LoRA folder, by name, at a weight. */
export interface JobLora {
  readonly name: string;
  readonly weight: number;
}

/** What both kinds of job ask for: the prompt, the image size and the sampling. */
interface SamplingParams {
  readonly prompt: string;
  readonly negativePrompt: string | null;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly guidanceScale: number;
  /** A sampler name from the scheduler registry; null: the model's own. */
  readonly scheduler: string | null;
  readonly seed: number;
  readonly clipSkip: number;
  /** LoRAs (the request's and the prompt's `<lora:name:weight>` tags), absent when none. */
  readonly loras?: readonly JobLora[];
}

/** The library's options for those fields (null and a clip skip of 0: the model's own). */
export function samplingOptions(params: SamplingParams): GenerateOptions {
  return {
    prompt: params.prompt,
    negativePrompt: params.negativePrompt ?? undefined,
    width: params.width,
    height: params.height,
    steps: params.steps,
    guidanceScale: params.guidanceScale,
    scheduler: params.scheduler ?? undefined,
    seed: params.seed,
    clipSkip: params.clipSkip || undefined,
  };
}

/** A checked request: every field present, the reduction resolved for the image size. */
export interface JobParams extends SamplingParams {
  readonly reduction: ReductionOptions;
  /** What the accelerated UNet is built with. */
  readonly settings: ReductionSettings;
}

export interface Limits {
  /** Largest width or height in pixels. */
  readonly maxSide: number;
  readonly minSide: number;
  readonly maxSteps: number;
  readonly maxPromptLength: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxSide: 4096,
  minSide: 64,
  maxSteps: 200,
  maxPromptLength: 2000,
});

/** What checking a request needs to know about the model. */
export interface ValidationContext {
  readonly limits: Limits;
  /** Image sides must be multiples of this (the VAE's downsampling). */
  readonly sizeMultiple: number;
  /** Text-encoder layers (clip skip must leave at least one). */
  readonly textEncoderLayers: number;
  /** The pipeline's own resolution: settings, or undefined when nothing would be reduced. */
  resolveReduction(
    options: ReductionOptions,
    width: number,
    height: number,
  ): ReductionSettings | undefined;
  /** Draws a seed for requests without one. */
  randomSeed?(): number;
  /**
   * Takes the `<lora:name:weight>` tags out of the prompt and checks every LoRA name against the
   * server's LoRA folder; throws one line on an unknown name or bad weight. Absent: no LoRAs.
   */
  resolveLoras?(prompt: string, loras: readonly JobLora[]): { prompt: string; loras: JobLora[] };
}

/** The `loras` field: a list of {name, weight}; weight 0 entries are dropped. */
export function parseJobLoras(value: unknown, field = "loras"): JobLora[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value))
    throw new RequestError(`${field}: a list such as [{"name": "style", "weight": 0.8}]`);
  const out: JobLora[] = [];
  for (const entry of value) {
    if (!isObject(entry) || typeof entry.name !== "string" || entry.name.trim() === "")
      throw new RequestError(`${field}: every entry needs a "name" (text)`);
    const weight = entry.weight ?? 1;
    if (typeof weight !== "number" || !Number.isFinite(weight))
      throw new RequestError(`${field}: the weight of ${entry.name} must be a finite number`);
    if (weight !== 0) out.push({ name: entry.name.trim(), weight });
  }
  return out;
}

/** The prompt without its LoRA tags and every LoRA of the job, or an error naming the field. */
export function resolveJobLoras(
  prompt: string,
  value: unknown,
  context: ValidationContext,
  field = "loras",
): { prompt: string; loras?: JobLora[] } {
  const asked = parseJobLoras(value, field);
  if (asked.length === 0 && !/<lora:/i.test(prompt)) return { prompt };
  if (!context.resolveLoras)
    throw new RequestError(`${field}: this server has no LoRA folder (serve --lora-dir)`);
  let resolved: { prompt: string; loras: JobLora[] };
  try {
    resolved = context.resolveLoras(prompt, asked);
  } catch (error) {
    throw new RequestError(firstLine(error));
  }
  if (resolved.prompt.trim() === "")
    throw new RequestError("prompt: type a prompt besides LoRA tags");
  return resolved.loras.length > 0 ? resolved : { prompt: resolved.prompt };
}

/** A bad request; the message is one line that says what to change. */
export class RequestError extends Error {
  override name = "RequestError";
}

const FIELDS: readonly (keyof JobRequest)[] = [
  "prompt",
  "negativePrompt",
  "width",
  "height",
  "steps",
  "guidanceScale",
  "scheduler",
  "seed",
  "clipSkip",
  "reduction",
  "loras",
];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A request body as an object of fields, or a RequestError. */
export function requestObject(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw new RequestError("the request must be a JSON object");
  return body;
}

export function isMissing(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}

/** How a field is named in messages: the name the client used (`cfg_scale`), else ours. */
type FieldName = (key: string) => string;

const ownName: FieldName = (key) => key;

/** A text field of at most `max` characters; null when left out, a RequestError when required. */
export function textField(
  fields: Readonly<Record<string, unknown>>,
  key: string,
  max: number,
  required: boolean,
  name: FieldName = ownName,
): string | null {
  const value = fields[key];
  if (isMissing(value)) {
    if (required) throw new RequestError(`${name(key)}: required`);
    return null;
  }
  if (typeof value !== "string") throw new RequestError(`${name(key)}: must be text`);
  if (value.length > max)
    throw new RequestError(`${name(key)}: ${value.length} characters; at most ${max}`);
  return value;
}

/** A whole-number field from min to max; `fallback` when left out, else a RequestError. */
export function wholeField(
  fields: Readonly<Record<string, unknown>>,
  key: string,
  min: number,
  max: number,
  fallback?: number,
  name: FieldName = ownName,
): number {
  const value = fields[key];
  if (isMissing(value)) {
    if (fallback !== undefined) return fallback;
    throw new RequestError(`${name(key)}: required`);
  }
  return checkWholeNumber(value, name(key), min, max);
}

/**
 * The prompt, negative prompt, size, steps and guidance scale every kind of job checks alike.
 * Without defaults, the size and the steps are required.
 */
export function checkPromptAndSize(
  fields: Readonly<Record<string, unknown>>,
  context: ValidationContext,
  defaults?: { readonly size: number; readonly steps: number; readonly guidanceScale: number },
  name: FieldName = ownName,
) {
  const { limits, sizeMultiple } = context;
  const prompt = textField(fields, "prompt", limits.maxPromptLength, true, name)!;
  if (prompt.trim() === "") throw new RequestError(`${name("prompt")}: type a prompt`);
  const negativePrompt = textField(fields, "negativePrompt", limits.maxPromptLength, false, name);
  const side = (key: "width" | "height") => {
    const value = wholeField(fields, key, limits.minSide, limits.maxSide, defaults?.size, name);
    if (value % sizeMultiple !== 0)
      throw new RequestError(`${name(key)}: must be a multiple of ${sizeMultiple}; got ${value}`);
    return value;
  };
  const width = side("width");
  const height = side("height");
  const steps = wholeField(fields, "steps", 1, limits.maxSteps, defaults?.steps, name);
  const guidance = fields.guidanceScale;
  const guidanceScale = checkGuidance(
    isMissing(guidance) && defaults ? defaults.guidanceScale : guidance,
    name("guidanceScale"),
  );
  return { prompt, negativePrompt, width, height, steps, guidanceScale };
}

/** A whole number from min to max, or a RequestError naming the field. */
export function checkWholeNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value))
    throw new RequestError(`${field}: must be a whole number; got ${JSON.stringify(value)}`);
  if (value < min || value > max)
    throw new RequestError(`${field}: must be from ${min} to ${max}; got ${value}`);
  return value;
}

/** A guidance scale from 0 to 50, or a RequestError naming the field. */
export function checkGuidance(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 50)
    throw new RequestError(`${field}: must be a number from 0 to 50; got ${JSON.stringify(value)}`);
  return value;
}

/** A sampler name the registry knows (trimmed), null for the model's own, or a RequestError. */
export function checkSampler(name: string | null, field: string): string | null {
  const trimmed = name?.trim() || null;
  if (trimmed === null) return null;
  try {
    createScheduler(trimmed);
  } catch {
    throw new RequestError(`${field}: unknown sampler "${trimmed}"`);
  }
  return trimmed;
}

/** Checks a request body and fills in what was left out; throws RequestError. */
export function parseJobRequest(body: unknown, context: ValidationContext): JobParams {
  const fields = requestObject(body);
  for (const key of Object.keys(fields))
    if (!(FIELDS as readonly string[]).includes(key))
      throw new RequestError(`unknown field "${key}"; expected ${FIELDS.join(", ")}`);
  const { prompt, ...checked } = checkPromptAndSize(fields, context);
  const { width, height } = checked;
  const scheduler = checkSampler(textField(fields, "scheduler", 100, false), "scheduler");
  const seed = isMissing(fields.seed)
    ? (context.randomSeed?.() ?? randomSeed())
    : wholeField(fields, "seed", 0, MAX_SEED);
  const clipSkip = wholeField(fields, "clipSkip", 0, Math.max(0, context.textEncoderLayers - 2), 0);
  if (!isObject(fields.reduction))
    throw new RequestError('reduction: required, an object such as {"method": "todo"}');
  let reduction: ReductionOptions;
  let settings: ReductionSettings | undefined;
  try {
    reduction = parseReductionOptions(fields.reduction as ReductionOptionsInput);
    settings = context.resolveReduction(reduction, width, height);
  } catch (error) {
    throw new RequestError(`reduction: ${firstLine(error)}`);
  }
  if (!settings)
    throw new RequestError(
      `reduction: these settings reduce nothing at ${width}x${height} (auto ToDo is off at 768 px and below); choose a factor of 2 or more, or a ToMe ratio above 0`,
    );
  return {
    ...resolveJobLoras(prompt, fields.loras, context),
    ...checked,
    scheduler,
    seed,
    clipSkip,
    reduction,
    settings,
  };
}

export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0].trim();
}

/** A plain generation (the OpenAI and web-UI routes): `count` images, image i seeded `seed + i`. */
export interface GenerationParams extends SamplingParams {
  readonly count: number;
  /** Token reduction, or null for the plain UNet. */
  readonly reduction: ReductionOptions | null;
  /** img2img: the init image as base64 PNG (checked before queueing), or null. */
  readonly initImage: string | null;
  /** img2img: how much of the schedule runs, in (0, 1]; null without an init image. */
  readonly strength: number | null;
}

/** One image of a finished generation. */
export interface GeneratedImage {
  /** Where its PNG can be fetched (relative to the server). */
  readonly url: string;
  readonly seed: number;
}

/** What a finished plain generation returns. */
export interface GenerationResult {
  readonly kind: "generation";
  readonly id: string;
  readonly createdAt: string;
  readonly model: string;
  /** Where it ran: the worker's name and device. */
  readonly device: string;
  /** The parameters, an init image replaced by its length. */
  readonly params: GenerationParams;
  readonly images: readonly GeneratedImage[];
  /** One entry per image. */
  readonly timings: readonly GenerateTimings[];
}

export function isGenerationResult(
  result: JobResult | GenerationResult,
): result is GenerationResult {
  return (result as GenerationResult).kind === "generation";
}

/** One generation's outcome. */
export interface PhaseResult {
  /** Where its PNG (with the parameters embedded) can be fetched. */
  readonly url: string;
  readonly timings: GenerateTimings;
}

export interface JobResult {
  readonly id: string;
  readonly engine: EngineName;
  /** Where it ran: the server's device (cpu, cuda, webgpu) or the browser's (webgpu, wasm). */
  readonly device: string;
  /** ISO time the job was submitted. */
  readonly createdAt: string;
  readonly model: string;
  readonly params: JobParams;
  /** The accelerated run's reduction in words. */
  readonly reductionLabel: string;
  readonly baseline: PhaseResult;
  readonly accelerated: PhaseResult;
  /** Baseline time over accelerated time: whole generation, and the UNet alone. */
  readonly speedup: { readonly total: number; readonly unet: number };
  /** The accelerated image against the baseline (MSE, PSNR, SSIM, max abs diff). */
  readonly metrics: ImageComparisonJson;
}

/** What a job reports, in order; `done`, `error` and `cancelled` end it. */
export type JobEvent =
  /** Waiting for the device; `ahead` jobs (the running one included) go first. */
  | { readonly type: "queued"; readonly ahead: number }
  | { readonly type: "started" }
  /** Models being built, fetched or warmed up before the timed runs. */
  | { readonly type: "preparing"; readonly what: string }
  | {
      readonly type: "progress";
      /** The comparison's run, or `generation` for a plain generation job. */
      readonly phase: Phase | "generation";
      /** Plain generations: which image (from 0) of how many. */
      readonly image?: number;
      readonly images?: number;
      readonly step: number;
      readonly totalSteps: number;
      readonly elapsedMs: number;
    }
  | {
      readonly type: "image";
      readonly phase: Phase;
      readonly url: string;
      readonly timings: GenerateTimings;
    }
  /** A comparison's JobResult, or a plain generation's GenerationResult. */
  | { readonly type: "done"; readonly result: JobResult | GenerationResult }
  | { readonly type: "error"; readonly message: string }
  | { readonly type: "cancelled" };

export function isFinalEvent(event: JobEvent): boolean {
  return event.type === "done" || event.type === "error" || event.type === "cancelled";
}

/** GET /api/info: the model and what the form may offer. */
export interface ServerInfo {
  readonly model: string;
  readonly family: string;
  readonly device: string;
  readonly defaultSize: number;
  readonly sizeMultiple: number;
  readonly limits: Limits;
  readonly schedulers: readonly string[];
  /** The model's own sampler (its scheduler config's class). */
  readonly defaultScheduler: string;
  readonly textEncoderLayers: number;
  /** Whether the browser engine can fetch this model's components. */
  readonly browserEngine: boolean;
  /** The LoRAs of the server's LoRA folder made for this model's family (server engine only). */
  readonly loras: readonly { name: string; hash: string; families: readonly string[] }[];
}

/** GET /api/model/tokenizers/:index: a tokenizer folder's files, as text. */
export type TokenizerPayload = TokenizerFolderFiles;

/** GET /api/model/{text-encoders/:i, unet, vae-decoder, vae-encoder}: where a built model is. */
export interface ModelLinks {
  readonly model: string;
  /** The weights file of models too large to hold them inline, else null. */
  readonly externalData: string | null;
}
