/**
 * One call resolved once: the options checked, the defaults applied, the size, the token
 * reduction, the sampler and the seed fixed. The CLI prints a plan, the server checks requests
 * with the same rules, and the pipeline runs it; nothing downstream reads the raw options'
 * defaults again.
 */
import {
  type ReductionOptions,
  type ReductionSettings,
  resolveReduction,
} from "../reduce/options.js";
import { createScheduler } from "../schedulers/registry.js";
import type { Scheduler } from "../schedulers/types.js";
import { randomSeed } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { GENERATION_DEFAULTS, type GenerateOptions } from "./generate-options.js";
import type { PipelineParts } from "./pipeline-parts.js";
import { AUTO_TILING_ABOVE, DEFAULT_VAE_TILING, type VaeTiling } from "./vae-tiling.js";
import { validateGenerateOptions } from "./validate-options.js";

/** The parts of a model a plan reads. */
export type PlanningParts = Pick<
  PipelineParts,
  "family" | "defaultSize" | "vaeScale" | "latentChannels" | "schedulerConfig" | "textEncoders"
>;

export interface GenerationPlan {
  /** The call as given (callbacks, recorded draws, the init image, LoRAs). */
  readonly options: GenerateOptions;
  readonly prompts: readonly string[];
  /** One negative prompt per prompt, or undefined when none was given. */
  readonly negativePrompts: readonly string[] | undefined;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly guidanceScale: number;
  /** Classifier-free guidance runs (scale above 1): the UNet sees every row twice. */
  readonly guided: boolean;
  readonly imagesPerPrompt: number;
  /** Images made: prompts x imagesPerPrompt. */
  readonly batch: number;
  readonly clipSkip: number | undefined;
  readonly longPrompts: "truncate" | "chunk";
  /** The reduction for this size, or undefined when nothing would be reduced. */
  readonly reduction: ReductionSettings | undefined;
  /** The sampler's registry class name and resolved config. */
  readonly scheduler: string;
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** The seed of every draw not given in `options` (drawn at random when not asked). */
  readonly seed: number;
  /** img2img's strength, or undefined for txt2img. */
  readonly strength: number | undefined;
  /** The timesteps the loop runs (img2img: the tail the strength leaves). */
  readonly timesteps: readonly number[];
  /** (batch, channels, H/8, W/8). */
  readonly latentDims: readonly number[];
  /** Tiles to decode in, or undefined for one decode. */
  readonly vaeTiling: VaeTiling | undefined;
  readonly latentsOnDevice: "auto" | "on" | "off";
  /** A fresh sampler set up for `timesteps` (each loop, and each trace, needs its own). */
  newScheduler(): Scheduler;
}

/** Resolves a call against a model; throws one line on bad options, before any model runs. */
export function planGeneration(options: GenerateOptions, parts: PlanningParts): GenerationPlan {
  validateGenerateOptions(options, parts);
  const defaults = GENERATION_DEFAULTS;
  const prompts = asList(options.prompt);
  const negative = options.negativePrompt;
  // img2img keeps the init image's size unless told otherwise, as the reference does.
  const width = options.width ?? options.image?.width ?? parts.defaultSize;
  const height = options.height ?? options.image?.height ?? parts.defaultSize;
  const steps = options.steps ?? defaults.steps;
  const guidanceScale = options.guidanceScale ?? defaults.guidanceScale;
  const imagesPerPrompt = options.imagesPerPrompt ?? defaults.imagesPerPrompt;
  const batch = prompts.length * imagesPerPrompt;
  if (options.image) checkInitImage(options.image, batch, width, height);
  const reduction = reductionFor(parts.family, options.reduction, width, height);
  const strength = options.image ? (options.strength ?? defaults.strength) : undefined;
  const config = options.schedulerConfig ?? parts.schedulerConfig;
  const newScheduler = (): Scheduler => {
    const scheduler = createScheduler(
      options.scheduler ?? (config._class_name as string),
      config,
      options.schedulerOverrides,
    );
    scheduler.setTimesteps(steps);
    if (strength !== undefined) scheduler.timestepsForStrength(strength);
    return scheduler;
  };
  const scheduler = newScheduler();
  const timesteps =
    strength === undefined ? scheduler.timesteps : scheduler.timestepsForStrength(strength);
  if (timesteps.length === 0)
    throw new Error(
      `strength ${options.strength} with ${steps} steps leaves no step to run; raise either`,
    );
  return {
    options,
    prompts,
    negativePrompts:
      negative === undefined
        ? undefined
        : typeof negative === "string"
          ? prompts.map(() => negative)
          : negative,
    width,
    height,
    steps,
    guidanceScale,
    guided: guidanceScale > 1,
    imagesPerPrompt,
    batch,
    clipSkip: options.clipSkip,
    longPrompts: options.longPrompts ?? defaults.longPrompts,
    reduction,
    scheduler: scheduler.name,
    schedulerConfig: scheduler.config,
    seed: options.seed ?? randomSeed(),
    strength,
    timesteps,
    latentDims: [batch, parts.latentChannels, height / parts.vaeScale, width / parts.vaeScale],
    vaeTiling: tilesFor(options.vaeTiling ?? defaults.vaeTiling, width, height, parts.vaeScale),
    latentsOnDevice: options.latentsOnDevice ?? defaults.latentsOnDevice,
    newScheduler,
  };
}

/** Reduction settings for a size, or undefined when nothing would be reduced. */
export function reductionFor(
  family: ModelFamily,
  options: ReductionOptions | undefined,
  width: number,
  height: number,
): ReductionSettings | undefined {
  if (!options) return undefined;
  const settings = resolveReduction(options, { architecture: family, width, height });
  const reduces =
    settings.method === "todo"
      ? settings.factor > 1 || settings.factorLevel2 > 1
      : settings.ratio > 0 || settings.ratioLevel2 > 0;
  const secondary = settings.switchThreshold > 0 && settings.secondary !== "none";
  return reduces || secondary ? settings : undefined;
}

function asList(value: string | readonly string[]): readonly string[] {
  return typeof value === "string" ? [value] : value;
}

function checkInitImage(
  image: NonNullable<GenerateOptions["image"]>,
  batch: number,
  width: number,
  height: number,
): void {
  if (image.width !== width || image.height !== height)
    throw new Error(
      `init image is ${image.width}x${image.height} but the output is ${width}x${height}; resize it first`,
    );
  if (image.count !== 1 && image.count !== batch)
    throw new Error(`${image.count} init images for ${batch} outputs; give one, or one per output`);
}

/** `auto` tiles latents over AUTO_TILING_ABOVE a side (in latent pixels). */
function tilesFor(
  tiling: "auto" | "off" | VaeTiling,
  width: number,
  height: number,
  vaeScale: number,
): VaeTiling | undefined {
  if (tiling === "off") return undefined;
  if (tiling !== "auto") return tiling;
  return Math.max(width, height) / vaeScale > AUTO_TILING_ABOVE ? DEFAULT_VAE_TILING : undefined;
}
