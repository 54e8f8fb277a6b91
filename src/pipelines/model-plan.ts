/**
 * The one path from opened model files to built components. A plan is made once from the model
 * files, the backend the graphs are built for and the element type; it owns what every consumer
 * of a model must agree on:
 * - which family the model is and which component classes it may have;
 * - parsing the UNet, VAE and text encoder configs, and the VAE rules (latents_mean/latents_std
 *   refused; an SDXL VAE that asks for force_upcast stays float32 in a float16 model);
 * - the cache key of each built component, and the builder call that makes it;
 * - what a pipeline needs beside the models (tokenizers, scheduler config, sizes, VAE scaling).
 * Node runners (load.ts), the server's model files for the browser (component-models.ts) and
 * `convert` (convert.ts) are thin adapters over it; ONNX export folders (onnx-folder.ts) have
 * their graphs already and share only the runner components.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type ClipTextConfig, parseClipTextConfig } from "../configs/clip-config.js";
import { readConfigFile } from "../configs/config-json.js";
import { parseUnetConfig, type UnetConfig } from "../configs/unet-config.js";
import { parseVaeConfig, type VaeConfig } from "../configs/vae-config.js";
import { buildClipTextEncoder, type HiddenStateOutput } from "../models/clip-text.js";
import type { AttentionChunking, BuiltModel } from "../models/layers.js";
import {
  buildSamplerStep,
  SAMPLER_STEP_FORMAT,
  type SamplerStepOptions,
} from "../models/sampler-step.js";
import { buildUnet } from "../models/unet.js";
import { buildVaeDecoder, buildVaeEncoder } from "../models/vae.js";
import type { ReductionSettings } from "../reduce/options.js";
import { listSchedulerClasses } from "../schedulers/registry.js";
import { builtinClipTokenizerDir } from "../tokenizers/builtin-vocabulary.js";
import { type Device, type ModelDtype, type ModelFamily, vaeDtype } from "../util/vocabulary.js";
import type { ComponentName, ModelFiles } from "../weights/model-files.js";
import { weightIdentity } from "../weights/source.js";
import type { TextEncoderRequest } from "./components.js";
import { type MemoryShape, memoryShapeFromConfigs, parameterCount } from "./memory-estimate.js";
import { defaultCacheDir } from "./model-cache.js";

/** The standard noise schedule of SD 1.x / 2.x / XL (facts of the released models' configs). */
/**
 * The built graphs' format, part of every component's cache key: raised when the builders change
 * the graphs they write (2: a resnet's shortcut comes before its convolutions), so a cache never
 * serves a graph an older build wrote.
 */
const GRAPH_FORMAT = 2;

const STANDARD_SCHEDULER: Readonly<Record<string, unknown>> = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  steps_offset: 1,
  set_alpha_to_one: false,
  clip_sample: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
});

const DEFAULT_SCHEDULER: Readonly<Record<ModelFamily, string>> = Object.freeze({
  sd1: "PNDMScheduler",
  sd2: "PNDMScheduler",
  sdxl: "EulerDiscreteScheduler",
});

/** The text encoders of each family, in the order the pipeline concatenates their states. */
export const TEXT_ENCODERS: Readonly<Record<ModelFamily, readonly TextEncoderName[]>> =
  Object.freeze({
    sd1: ["text_encoder"],
    sd2: ["text_encoder"],
    sdxl: ["text_encoder", "text_encoder_2"],
  });

export type TextEncoderName = "text_encoder" | "text_encoder_2";

/**
 * onnxruntime-node's WebGPU MultiHeadAttention has no flash kernel for the VAE's single head of
 * 512 channels and writes all its scores into one buffer: 8.6 GB in float16 at 2048 px, which
 * the device fails to allocate (BENCHMARKS.md). WebGPU VAE graphs split that attention over the
 * queries into slices of at most 1 GiB for two latents up to 256 x 256 (2048 px).
 */
export const WEBGPU_VAE_CHUNKING: AttentionChunking = Object.freeze({
  maxBindingBytes: 2 ** 30,
  maxLatentSide: 256,
  maxBatch: 2,
});

/** The model family, from the files or, failing that, from the components present. */
export function familyOf(files: ModelFiles): ModelFamily {
  if (files.family) return files.family;
  if (files.weights.text_encoder_2) return "sdxl";
  const textConfig = files.configs.text_encoder;
  return textConfig && textConfig.hidden_size === 1024 ? "sd2" : "sd1";
}

/** Where a tokenizer is read from, and the pad token to assume when its folder names none. */
export interface TokenizerSource {
  readonly dir: string;
  readonly padToken?: string;
}

/**
 * The tokenizer folders of a model: `tokenizer` when given, else its own, else the CLIP
 * vocabulary shipped with the package (every SD family uses it; only the pad token differs).
 */
function tokenizerSources(
  family: ModelFamily,
  folder: string | undefined,
  options: { readonly tokenizer?: string; readonly cacheDir?: string | false },
): TokenizerSource[] {
  const names = family === "sdxl" ? ["tokenizer", "tokenizer_2"] : ["tokenizer"];
  return names.map((name) => {
    const padToken = name === "tokenizer_2" || family === "sd2" ? "!" : undefined;
    if (options.tokenizer) return { dir: options.tokenizer, padToken };
    if (folder && existsSync(join(folder, name))) return { dir: join(folder, name) };
    const root = typeof options.cacheDir === "string" ? options.cacheDir : defaultCacheDir();
    return { dir: builtinClipTokenizerDir(root), padToken };
  });
}

/** The model's scheduler_config.json, else the standard schedule with the family's default sampler. */
export function schedulerConfig(
  family: ModelFamily,
  folder: string | undefined,
): Record<string, unknown> {
  const path = folder && join(folder, "scheduler", "scheduler_config.json");
  if (path && existsSync(path)) return readConfigFile(path);
  return { ...STANDARD_SCHEDULER, _class_name: DEFAULT_SCHEDULER[family] };
}

/** The classes each component of a pipeline may be, as `model_index.json` names them. */
const SUPPORTED_CLASSES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  unet: ["UNet2DConditionModel"],
  vae: ["AutoencoderKL"],
  text_encoder: ["CLIPTextModel", "CLIPTextModelWithProjection"],
  text_encoder_2: ["CLIPTextModelWithProjection", "CLIPTextModel"],
  tokenizer: ["CLIPTokenizer", "CLIPTokenizerFast"],
  tokenizer_2: ["CLIPTokenizer", "CLIPTokenizerFast"],
});

/** Rejects a model index whose components this toolkit cannot run, naming the first problem. */
function checkComponentClasses(files: ModelFiles, family: ModelFamily): void {
  const index = files.modelIndex;
  if (!index) return;
  const where = `${files.label}: model_index.json`;
  for (const [component, [, className]] of Object.entries(index.components)) {
    const supported =
      component === "scheduler" ? listSchedulerClasses() : SUPPORTED_CLASSES[component];
    if (!supported || className === null) continue;
    if (!supported.includes(className)) {
      throw new Error(
        `${where}: unsupported class ${className} for ${component} (supported: ${supported.join(", ")})`,
      );
    }
  }
  for (const component of ["unet", "vae", ...TEXT_ENCODERS[family]]) {
    const entry = index.components[component];
    if (!entry || entry[1] === null)
      throw new Error(
        `${where}: the pipeline has no ${component}; it is needed to generate images`,
      );
  }
}

/** The hidden-state outputs a text encoder graph needs for a request. */
export function textEncoderOutputs(request: TextEncoderRequest): HiddenStateOutput[] {
  const outputs: HiddenStateOutput[] = [
    { name: "last_hidden_state", index: -1, finalLayerNorm: true },
  ];
  if (request.hiddenStateFromEnd) {
    outputs.push({
      name: "skip_hidden_state",
      index: -request.hiddenStateFromEnd,
      finalLayerNorm: request.finalLayerNorm ?? false,
    });
  }
  return outputs;
}

/** What a memory estimate needs of opened model files: config shapes and weight sizes. */
export function modelMemoryShape(
  files: ModelFiles,
  unet: UnetConfig,
  vae: VaeConfig,
  dtype: ModelDtype,
): MemoryShape {
  const parameters = Object.values(files.weights).reduce(
    (sum, source) => sum + (source ? parameterCount(source) : 0),
    0,
  );
  return memoryShapeFromConfigs(unet, vae, parameters * (dtype === "float16" ? 2 : 4));
}

/** One component to build: its name, the description that keys the cache, and the builder call. */
export interface ComponentBuild {
  readonly component: string;
  readonly description: Record<string, unknown>;
  build(): BuiltModel;
}

export interface ModelPlan {
  readonly files: ModelFiles;
  /** The folder configs, tokenizers and scheduler come from, when there is one. */
  readonly folder: string | undefined;
  readonly family: ModelFamily;
  /** The backend the graphs use the fastest operators of. */
  readonly device: Device;
  /** The UNet's and text encoders' element type. */
  readonly dtype: ModelDtype;
  readonly unetConfig: UnetConfig;
  readonly vaeConfig: VaeConfig;
  /** The VAE's element type: `dtype`, unless an SDXL VAE asks for force_upcast. */
  readonly vaeDtype: ModelDtype;
  readonly textEncoders: readonly { name: TextEncoderName; config: ClipTextConfig }[];
  readonly latentChannels: number;
  /** Pixels per latent along each side. */
  readonly vaeScale: number;
  readonly defaultSize: number;
  readonly forceZerosForEmptyPrompt: boolean;
  schedulerConfig(): Record<string, unknown>;
  tokenizers(options: { tokenizer?: string; cacheDir?: string | false }): TokenizerSource[];
  memoryShape(): MemoryShape;
  /** `view`: the same model with LoRAs merged in (default: the files themselves). */
  unet(
    reduction: ReductionSettings | undefined,
    options?: { chunking?: AttentionChunking; view?: ModelFiles },
  ): ComponentBuild;
  /** `hiddenStates` undefined: the builder's default outputs (an export for other hosts). */
  textEncoder(
    name: TextEncoderName,
    hiddenStates: readonly HiddenStateOutput[] | undefined,
    view?: ModelFiles,
  ): ComponentBuild;
  vae(half: "decoder" | "encoder", chunking?: AttentionChunking): ComponentBuild;
  samplerStep(step: SamplerStepOptions): ComponentBuild;
}

/**
 * Plans a model: checks its component classes and parses the configs of every component a
 * pipeline needs now, so a model this toolkit cannot run fails before anything is built.
 */
export function planModel(
  files: ModelFiles,
  folder: string | undefined,
  settings: { device: Device; dtype: ModelDtype },
): ModelPlan {
  const family = familyOf(files);
  checkComponentClasses(files, family);
  const { device, dtype } = settings;
  const need = (component: ComponentName, from: ModelFiles = files) => {
    const config = from.configs[component];
    const weights = from.weights[component];
    if (!config || !weights) throw new Error(`${files.label}: the model has no ${component}`);
    return { config, weights };
  };
  const unetConfig = parseUnetConfig(need("unet").config, `${files.label} unet/config.json`);
  const vaeParts = need("vae");
  const vaeConfig = parseVaeConfig(vaeParts.config, `${files.label} vae/config.json`);
  if (vaeConfig.latentsMean || vaeConfig.latentsStd)
    throw new Error(`${files.label}: VAEs with latents_mean/latents_std are not supported`);
  const vaeType = vaeDtype(vaeConfig, dtype, family);
  const textEncoders = TEXT_ENCODERS[family].map((name) => ({
    name,
    config: parseClipTextConfig(need(name).config, `${files.label} ${name}/config.json`),
  }));
  const vaeScale = 2 ** (vaeConfig.blockOutChannels.length - 1);
  // What the cache key of a built component holds: weights, config, backend and build options.
  const describe = (
    component: ComponentName,
    extra: Record<string, unknown>,
    view: ModelFiles = files,
  ): Record<string, unknown> => {
    const { config, weights } = need(component, view);
    return {
      component,
      format: GRAPH_FORMAT,
      weights: weightIdentity(weights),
      config,
      device,
      ...extra,
    };
  };

  return {
    files,
    folder,
    family,
    device,
    dtype,
    unetConfig,
    vaeConfig,
    vaeDtype: vaeType,
    textEncoders,
    latentChannels: unetConfig.inChannels,
    vaeScale,
    defaultSize: (unetConfig.sampleSize ?? 64) * vaeScale,
    forceZerosForEmptyPrompt: files.modelIndex?.attributes.force_zeros_for_empty_prompt === true,
    schedulerConfig: () => schedulerConfig(family, folder),
    tokenizers: (options) => tokenizerSources(family, folder, options),
    memoryShape: () => modelMemoryShape(files, unetConfig, vaeConfig, dtype),
    unet(reduction, { chunking, view = files } = {}) {
      const { weights } = need("unet", view);
      // Unchunked builds have no `chunking` entry, so every consumer shares their files.
      const extra = { dtype, reduction: reduction ?? null, ...(chunking ? { chunking } : {}) };
      return {
        component: "unet",
        description: describe("unet", extra, view),
        build: () =>
          buildUnet(unetConfig, weights, {
            dtype,
            backend: device,
            reduction,
            attentionChunking: chunking,
          }),
      };
    },
    textEncoder(name, hiddenStates, view = files) {
      const encoder = textEncoders.find((e) => e.name === name);
      if (!encoder) throw new Error(`${files.label}: a ${family} model has no ${name}`);
      const { weights } = need(name, view);
      return {
        component: name,
        description: describe(name, { dtype, hiddenStates: hiddenStates ?? null }, view),
        build: () => ({
          builder: buildClipTextEncoder(encoder.config, weights, {
            dtype,
            hiddenStates,
            projection: name === "text_encoder_2" ? true : undefined,
          }),
          metadata: {},
        }),
      };
    },
    vae(half, chunking) {
      const build = half === "decoder" ? buildVaeDecoder : buildVaeEncoder;
      const extra = { half, dtype: vaeType, ...(chunking ? { chunking } : {}) };
      return {
        component: `vae_${half}`,
        description: describe("vae", extra),
        build: () =>
          build(vaeConfig, vaeParts.weights, {
            dtype: vaeType,
            backend: device,
            attentionChunking: chunking,
          }),
      };
    },
    samplerStep(step) {
      // The same graph for every model: float32 throughout, no weights.
      return {
        component: "sampler_step",
        description: { component: "sampler_step", format: SAMPLER_STEP_FORMAT, device, ...step },
        build: () => ({ builder: buildSamplerStep(step), metadata: {} }),
      };
    },
  };
}
