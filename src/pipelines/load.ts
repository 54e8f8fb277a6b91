/**
 * Loading a model source into a pipeline (Node): diffusers folders, single-file checkpoints,
 * Hugging Face Hub ids and `builtin:*` models are built into ONNX graphs (cached on disk);
 * diffusers ONNX export folders are loaded as they are.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { createKernelRunner } from "../engine/runner.js";
import { type Engine, type EngineChoice, resolveEngine } from "../engine/select.js";
import { downloadPipeline } from "../hub/download-pipeline.js";
import { isHubId } from "../hub/hub-id.js";
import type { LoraRequest } from "../lora/apply-loras.js";
import { parseClipTextConfig } from "../models/clip-config.js";
import { buildClipTextEncoder, type HiddenStateOutput } from "../models/clip-text.js";
import type { AttentionChunking, BuiltModel, OpBackend } from "../models/layers.js";
import {
  buildSamplerStep,
  SAMPLER_STEP_FORMAT,
  type SamplerStepOptions,
} from "../models/sampler-step.js";
import { buildUnet } from "../models/unet.js";
import { parseUnetConfig, type UnetConfig } from "../models/unet-config.js";
import { buildVaeDecoder, buildVaeEncoder } from "../models/vae.js";
import { parseVaeConfig, vaeDtype } from "../models/vae-config.js";
import type { GraphBuilder } from "../onnx/builder.js";
import { buildModelBytes, saveModel } from "../onnx/model-io.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { Device } from "../runtime/devices.js";
import type { SessionOptions, WebGpuTuning } from "../runtime/session.js";
import { createRunner } from "../runtime/session.js";
import type { ModelRunner } from "../runtime/types.js";
import { listSchedulerClasses } from "../schedulers/registry.js";
import { builtinClipTokenizerDir } from "../tokenizers/builtin-vocabulary.js";
import type { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import { loadClipTokenizer } from "../tokenizers/load-folder.js";
import { builtinName, openBuiltin } from "../weights/builtin.js";
import { type JsonObject, readConfigFile } from "../weights/config-json.js";
import { openDiffusersFolder } from "../weights/diffusers-folder.js";
import type { ComponentName, ModelFamily, ModelFiles } from "../weights/model-files.js";
import { openSingleFile } from "../weights/single-file.js";
import { type WeightSource, weightIdentity } from "../weights/source.js";
import type { TextEncoderRequest } from "./components.js";
import { loraVariants } from "./lora-variants.js";
import { type MemoryShape, memoryShapeFromConfigs, parameterCount } from "./memory-estimate.js";
import { defaultCacheDir, hashKey, ModelCache } from "./model-cache.js";
import { openOnnxFolder } from "./onnx-folder.js";
import { RunnerTextEncoder, RunnerUnet, RunnerVae } from "./runner-components.js";
import {
  type AdaptedModels,
  type PipelineParts,
  StableDiffusionPipeline,
} from "./stable-diffusion.js";

export type ModelDtype = "float32" | "float16";

export interface LoadOptions {
  /** Where models run (default cpu). */
  readonly device?: Device;
  /** Weights and activations of the UNet and text encoders (default float32 on cpu, float16 on GPUs). */
  readonly dtype?: ModelDtype;
  /** Folder of built models (default: $TODO_SD_CACHE, else ~/.cache/todo-sd); false builds in memory. */
  readonly cacheDir?: string | false;
  /** Hub ids: revision and weight variant (e.g. fp16), offline mode, download progress. */
  readonly revision?: string;
  readonly variant?: string;
  readonly offline?: boolean;
  readonly hubCacheDir?: string;
  readonly onDownloadProgress?: (file: string, received: number, total: number | undefined) => void;
  /** Single-file checkpoints: a diffusers folder to take configs, tokenizers and scheduler from. */
  readonly configFrom?: string;
  /** A tokenizer folder for sources that have none (single files, builtins). */
  readonly tokenizer?: string;
  /** Seed of `builtin:*` random weights. */
  readonly builtinSeed?: number;
  /** WebGPU backend settings for every session. */
  readonly webgpu?: WebGpuTuning;
  /** Which engine runs the models (default auto: onnxruntime, see engine/select.ts). */
  readonly engine?: EngineChoice;
  /** Called when a model is built rather than found in the cache. */
  readonly onBuild?: (component: string, path: string | undefined) => void;
  /** LoRAs merged into the UNet and text encoders (`generate` may ask for another set). */
  readonly loras?: readonly LoraRequest[];
  /** Told about LoRA keys that land on no weight (default: console.warn). */
  readonly onWarning?: (message: string) => void;
}

const BACKEND_OF_DEVICE: Readonly<Record<Device, OpBackend>> = Object.freeze({
  cpu: "cpu",
  webgpu: "webgpu",
  cuda: "cuda",
  wasm: "wasm",
});

/** The standard noise schedule of SD 1.x / 2.x / XL (facts of the released models' configs). */
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

/** Which kind of source a string names. */
export type SourceKind = "builtin" | "diffusers-folder" | "onnx-folder" | "single-file" | "hub";

export function classifySource(source: string): SourceKind {
  if (builtinName(source) && source.startsWith("builtin:")) return "builtin";
  if (existsSync(source)) {
    const stat = statSync(source);
    if (stat.isDirectory()) {
      if (existsSync(join(source, "unet", "model.onnx"))) return "onnx-folder";
      if (existsSync(join(source, "model_index.json"))) return "diffusers-folder";
      throw new Error(`${source}: a folder without model_index.json is not a diffusers model`);
    }
    if (/\.safetensors$/i.test(source)) return "single-file";
    throw new Error(
      `${source}: unsupported model file; give a .safetensors checkpoint or a diffusers folder`,
    );
  }
  if (source.startsWith("builtin:")) throw new Error(`unknown builtin model "${source}"`);
  if (isHubId(source)) return "hub";
  throw new Error(`${source}: no such file or folder, and not a Hugging Face Hub id (org/name)`);
}

/** Opens the weights of a source that is built from weights. */
export async function openModelFiles(
  source: string,
  options: LoadOptions = {},
): Promise<{ files: ModelFiles; folder?: string }> {
  const kind = classifySource(source);
  switch (kind) {
    case "builtin":
      return { files: openBuiltin(source, { seed: options.builtinSeed }) };
    case "diffusers-folder":
      return { files: openDiffusersFolder(source, { variant: options.variant }), folder: source };
    case "single-file": {
      const configs = options.configFrom ? readComponentConfigs(options.configFrom) : undefined;
      return { files: openSingleFile(source, { configs }), folder: options.configFrom };
    }
    case "hub": {
      const folder = await downloadPipeline(source, {
        revision: options.revision,
        variant: options.variant,
        offline: options.offline,
        cacheDir: options.hubCacheDir,
        onProgress: options.onDownloadProgress,
        skipComponents: ["safety_checker", "feature_extractor", "image_encoder"],
      });
      return { files: openDiffusersFolder(folder, { variant: options.variant }), folder };
    }
    case "onnx-folder":
      throw new Error(`${source} is an ONNX export; it is loaded as it is, not built from weights`);
  }
}

function readComponentConfigs(folder: string): Partial<Record<ComponentName, JsonObject>> {
  const configs: Partial<Record<ComponentName, JsonObject>> = {};
  for (const component of ["unet", "vae", "text_encoder", "text_encoder_2"] as const) {
    const path = join(folder, component, "config.json");
    if (existsSync(path)) configs[component] = readConfigFile(path);
  }
  if (!configs.unet)
    throw new Error(`${folder}: --config-from needs a diffusers folder with unet/config.json`);
  return configs;
}

/** Loads any source into a ready pipeline. */
export async function loadPipeline(
  source: string,
  options: LoadOptions = {},
): Promise<StableDiffusionPipeline> {
  const kind = classifySource(source);
  if (kind === "onnx-folder") {
    const cache =
      options.cacheDir === false ? false : new ModelCache(options.cacheDir ?? defaultCacheDir());
    return new StableDiffusionPipeline(
      await openOnnxFolder(source, {
        device: options.device,
        webgpu: options.webgpu,
        cache,
        loras: options.loras,
        onWarning: options.onWarning,
      }),
    );
  }
  const { files, folder } = await openModelFiles(source, options);
  try {
    return new StableDiffusionPipeline(await builtParts(files, folder, options));
  } catch (error) {
    files.close();
    throw error;
  }
}

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
 * The tokenizer folders of a model: the `tokenizer` option when given, else its own, else the
 * CLIP vocabulary shipped with the package (every SD family uses it; only the pad token differs).
 */
export function tokenizerSources(
  family: ModelFamily,
  folder: string | undefined,
  options: Pick<LoadOptions, "tokenizer" | "cacheDir">,
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

function loadTokenizers(
  family: ModelFamily,
  folder: string | undefined,
  options: LoadOptions,
): ClipTokenizer[] {
  return tokenizerSources(family, folder, options).map(({ dir, padToken }) =>
    loadClipTokenizer(dir, { padToken }),
  );
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

export function modelIndexFlag(files: ModelFiles, name: string): boolean {
  return files.modelIndex?.attributes[name] === true;
}

/** Everything needed to turn a builder into a runner, cached on disk when a cache is set. */
export class RunnerFactory {
  private readonly cache: ModelCache | undefined;

  constructor(
    private readonly device: Device,
    cacheDir: string | false | undefined,
    private readonly onBuild?: (component: string, path: string | undefined) => void,
    private readonly webgpu?: WebGpuTuning,
    private readonly engine: Engine = "onnxruntime",
  ) {
    this.cache = cacheDir === false ? undefined : new ModelCache(cacheDir ?? defaultCacheDir());
  }

  /** A runner for the model `build` makes; `description` keys the cache. */
  async runner(
    component: string,
    description: Record<string, unknown>,
    build: () => BuiltModel | GraphBuilder,
    session: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice"> = {},
  ): Promise<ModelRunner> {
    const options = { device: this.device, webgpu: this.webgpu, ...session };
    if (this.engine === "kernels") {
      // The kernels engine reads the model in memory (no external data files to load yet).
      this.onBuild?.(component, undefined);
      const { builder, metadata } = builtParts0(build());
      return createKernelRunner(buildModelBytes(builder, { metadata }));
    }
    if (!this.cache) {
      this.onBuild?.(component, undefined);
      const { builder, metadata } = builtParts0(build());
      return createRunner(buildModelBytes(builder, { metadata }), options);
    }
    return this.cache.open(
      hashKey(description),
      description,
      (path) => {
        this.onBuild?.(component, path);
        const { builder, metadata } = builtParts0(build());
        saveModel(builder, path, { metadata });
      },
      (entry) => createRunner(entry.modelPath, options),
    );
  }
}

function builtParts0(built: BuiltModel | GraphBuilder): BuiltModel {
  return "builder" in built ? built : { builder: built, metadata: {} };
}

/** The element type of the UNet and text encoders: as asked, else float32 on CPUs, float16 on GPUs. */
export function resolveDtype(device: Device, dtype: ModelDtype | undefined): ModelDtype {
  return dtype ?? (device === "cpu" || device === "wasm" ? "float32" : "float16");
}

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

/** What the cache key of a built component holds: weights, config, backend and build options. */
export function buildDescription(
  files: ModelFiles,
  component: ComponentName,
  device: Device,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const weights = files.weights[component];
  if (!weights) throw new Error(`${files.label}: the model has no ${component}`);
  return {
    component,
    format: 1,
    weights: weightIdentity(weights),
    config: files.configs[component],
    device: BACKEND_OF_DEVICE[device],
    ...extra,
  };
}

export interface UnetBuilds {
  readonly config: UnetConfig;
  readonly family: ModelFamily;
  /** A runner of the UNet built for `reduction` (cached on disk per settings). */
  runner(
    reduction: ReductionSettings | undefined,
    session?: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice">,
  ): Promise<ModelRunner>;
}

/** The UNet of opened model files, built per reduction setting. */
export function unetBuilds(
  files: ModelFiles,
  options: LoadOptions = {},
  factory?: RunnerFactory,
): UnetBuilds {
  const device = options.device ?? "cpu";
  const dtype = resolveDtype(device, options.dtype);
  const backend = BACKEND_OF_DEVICE[device];
  const builds =
    factory ??
    new RunnerFactory(
      device,
      options.cacheDir,
      options.onBuild,
      options.webgpu,
      resolveEngine(options.engine ?? "auto", { device, dtype }),
    );
  const weights = files.weights.unet;
  const json = files.configs.unet;
  if (!weights || !json) throw new Error(`${files.label}: the model has no unet`);
  const config = parseUnetConfig(json, `${files.label} unet/config.json`);
  return {
    config,
    family: familyOf(files),
    runner: (reduction, session) =>
      builds.runner(
        "unet",
        buildDescription(files, "unet", device, { dtype, reduction: reduction ?? null }),
        () => buildUnet(config, weights, { dtype, backend, reduction }),
        session,
      ),
  };
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
export function checkComponentClasses(files: ModelFiles, family: ModelFamily): void {
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
  const required =
    family === "sdxl"
      ? ["unet", "vae", "text_encoder", "text_encoder_2"]
      : ["unet", "vae", "text_encoder"];
  for (const component of required) {
    const entry = index.components[component];
    if (!entry || entry[1] === null)
      throw new Error(
        `${where}: the pipeline has no ${component}; it is needed to generate images`,
      );
  }
}

async function builtParts(
  files: ModelFiles,
  folder: string | undefined,
  options: LoadOptions,
): Promise<PipelineParts> {
  checkComponentClasses(files, familyOf(files));
  const device = options.device ?? "cpu";
  const backend = BACKEND_OF_DEVICE[device];
  const dtype = resolveDtype(device, options.dtype);
  const family = familyOf(files);
  const engine = resolveEngine(options.engine ?? "auto", { device, dtype });
  const factory = new RunnerFactory(
    device,
    options.cacheDir,
    options.onBuild,
    options.webgpu,
    engine,
  );
  const need = (
    component: ComponentName,
    from: ModelFiles = files,
  ): { config: Record<string, unknown>; weights: WeightSource } => {
    const config = from.configs[component];
    const weights = from.weights[component];
    if (!config || !weights) throw new Error(`${files.label}: the model has no ${component}`);
    return { config, weights };
  };
  const describe = (
    component: ComponentName,
    extra: Record<string, unknown>,
    from: ModelFiles = files,
  ) => buildDescription(from, component, device, extra);
  const unetConfig = unetBuilds(files, options, factory).config;
  const vaeParts = need("vae");
  const vaeConfig = parseVaeConfig(vaeParts.config, `${files.label} vae/config.json`);
  if (vaeConfig.latentsMean || vaeConfig.latentsStd) {
    throw new Error(`${files.label}: VAEs with latents_mean/latents_std are not supported`);
  }
  const vaeType = vaeDtype(vaeConfig, dtype);

  const encoderNames: ComponentName[] =
    family === "sdxl" ? ["text_encoder", "text_encoder_2"] : ["text_encoder"];

  // On WebGPU the UNet's output stays on the GPU and the sampler step runs there as a graph, so
  // a denoising loop keeps its latents on the device (GenerateOptions.latentsOnDevice).
  // (The kernels engine reads and returns host tensors so far.)
  const onWebGpu = device === "webgpu" && engine === "onnxruntime";
  const steppers = new Map<string, Promise<ModelRunner>>();
  const samplerStep = (step: SamplerStepOptions) => {
    const key = JSON.stringify(step);
    let stepper = steppers.get(key);
    if (!stepper) {
      const description = {
        component: "sampler_step",
        format: SAMPLER_STEP_FORMAT,
        device,
        ...step,
      };
      stepper = factory.runner("sampler_step", description, () => buildSamplerStep(step), {
        keepOutputsOnDevice: true,
      });
      steppers.set(key, stepper);
      stepper.catch(() => steppers.delete(key));
    }
    return stepper;
  };
  // The text encoders and UNet of model files with (or without) a set of LoRAs merged in.
  const adaptedModels = (view: ModelFiles) => {
    const textEncoders = encoderNames.map((name) => {
      const { config, weights } = need(name, view);
      const clipConfig = parseClipTextConfig(config, `${files.label} ${name}/config.json`);
      return new RunnerTextEncoder(clipConfig.hiddenSize, clipConfig.numHiddenLayers, (request) => {
        const hiddenStates = textEncoderOutputs(request);
        return factory.runner(name, describe(name, { dtype, hiddenStates }, view), () =>
          buildClipTextEncoder(clipConfig, weights, {
            dtype,
            hiddenStates,
            projection: name === "text_encoder_2" ? true : undefined,
          }),
        );
      });
    });
    const unetBuild = unetBuilds(view, options, factory);
    const unets = new Map<string, Promise<RunnerUnet>>();
    return {
      textEncoders,
      unet(reduction: ReductionSettings | undefined) {
        const key = JSON.stringify(reduction ?? null);
        let unet = unets.get(key);
        if (!unet) {
          unet = unetBuild
            .runner(reduction, { keepOutputsOnDevice: onWebGpu })
            .then((runner) => new RunnerUnet(runner, onWebGpu ? samplerStep : undefined));
          unets.set(key, unet);
          unet.catch(() => unets.delete(key));
        }
        return unet;
      },
      async release() {
        for (const encoder of textEncoders) await encoder.release();
        for (const unet of unets.values()) await (await unet).release();
        unets.clear();
      },
    } satisfies Omit<AdaptedModels, "loras"> & { release(): Promise<void> };
  };
  const loras = loraVariants(files, family, options, adaptedModels);
  const own = loras.own;
  const vaeChunking = backend === "webgpu" ? WEBGPU_VAE_CHUNKING : undefined;
  const vaeBuild = { dtype: vaeType, backend, attentionChunking: vaeChunking };
  const vaeKey = (half: string) =>
    describe("vae", { half, dtype: vaeType, ...(vaeChunking ? { chunking: vaeChunking } : {}) });
  const vae = new RunnerVae(
    vaeConfig.scalingFactor,
    vaeConfig.shiftFactor ?? 0,
    () =>
      factory.runner("vae_decoder", vaeKey("decoder"), () =>
        buildVaeDecoder(vaeConfig, vaeParts.weights, vaeBuild),
      ),
    () =>
      factory.runner("vae_encoder", vaeKey("encoder"), () =>
        buildVaeEncoder(vaeConfig, vaeParts.weights, vaeBuild),
      ),
  );
  return {
    family,
    label: files.label,
    tokenizers: loadTokenizers(family, folder, options),
    textEncoders: own.textEncoders,
    unet: (reduction) => own.unet(reduction),
    loras: own.loras,
    withLoras: (requests) => loras.withLoras(requests),
    vae,
    schedulerConfig: schedulerConfig(family, folder),
    forceZerosForEmptyPrompt: modelIndexFlag(files, "force_zeros_for_empty_prompt"),
    latentChannels: unetConfig.inChannels,
    vaeScale: 2 ** (vaeConfig.blockOutChannels.length - 1),
    defaultSize: (unetConfig.sampleSize ?? 64) * 2 ** (vaeConfig.blockOutChannels.length - 1),
    memoryShape: modelMemoryShape(files, unetConfig, vaeConfig, dtype),
    async release() {
      await loras.release();
      for (const stepper of steppers.values()) await (await stepper).release();
      await vae.release();
      files.close();
    },
  };
}

/** What a memory estimate needs of opened model files: config shapes and weight sizes. */
export function modelMemoryShape(
  files: ModelFiles,
  unet: UnetConfig,
  vae: ReturnType<typeof parseVaeConfig>,
  dtype: ModelDtype,
): MemoryShape {
  const parameters = Object.values(files.weights).reduce(
    (sum, source) => sum + (source ? parameterCount(source) : 0),
    0,
  );
  return memoryShapeFromConfigs(unet, vae, parameters * (dtype === "float16" ? 2 : 4));
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
