/**
 * Loading a model source into a pipeline (Node): diffusers folders, single-file checkpoints,
 * Hugging Face Hub ids and `builtin:*` models are built into ONNX graphs (cached on disk);
 * diffusers ONNX export folders are loaded as they are.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { downloadPipeline } from "../hub/download-pipeline.js";
import { isHubId } from "../hub/hub-id.js";
import type { LoraRequest } from "../lora/apply-loras.js";
import type { BuiltModel } from "../models/layers.js";
import type { SamplerStepOptions } from "../models/sampler-step.js";
import type { UnetConfig } from "../models/unet-config.js";
import type { GraphBuilder } from "../onnx/builder.js";
import { buildModelBytes, saveModel } from "../onnx/model-io.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { SessionOptions, WebGpuTuning } from "../runtime/session.js";
import { createRunner } from "../runtime/session.js";
import type { ModelRunner } from "../runtime/types.js";
import { loadClipTokenizer } from "../tokenizers/load-folder.js";
import { PromiseMemo } from "../util/promise-memo.js";
import { type Device, type ModelDtype, type ModelFamily, modelDtype } from "../util/vocabulary.js";
import { builtinName, openBuiltin } from "../weights/builtin.js";
import { type JsonObject, readConfigFile } from "../weights/config-json.js";
import { openDiffusersFolder } from "../weights/diffusers-folder.js";
import type { ComponentName, ModelFiles } from "../weights/model-files.js";
import { openSingleFile } from "../weights/single-file.js";
import { loraVariants } from "./lora-variants.js";
import { defaultCacheDir, hashKey, ModelCache } from "./model-cache.js";
import {
  type ComponentBuild,
  type ModelPlan,
  planModel,
  textEncoderOutputs,
  WEBGPU_VAE_CHUNKING,
} from "./model-plan.js";
import { openOnnxFolder } from "./onnx-folder.js";
import { RunnerTextEncoder, RunnerUnet, RunnerVae } from "./runner-components.js";
import {
  type AdaptedModels,
  type PipelineParts,
  StableDiffusionPipeline,
} from "./stable-diffusion.js";

export type { ModelDtype };

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
  /** Called when a model is built rather than found in the cache. */
  readonly onBuild?: (component: string, path: string | undefined) => void;
  /** LoRAs merged into the UNet and text encoders (`generate` may ask for another set). */
  readonly loras?: readonly LoraRequest[];
  /** Told about LoRA keys that land on no weight (default: console.warn). */
  readonly onWarning?: (message: string) => void;
}

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

/** A source opened once: an ONNX export folder as it is, or model files to build from. */
export type OpenedSource =
  | { readonly kind: "onnx-folder"; readonly dir: string }
  | {
      readonly kind: Exclude<SourceKind, "onnx-folder">;
      readonly files: ModelFiles;
      /** The folder configs, tokenizers and scheduler come from, when there is one. */
      readonly folder?: string;
    };

/** Classifies a source (once) and opens it. */
export async function openSource(source: string, options: LoadOptions = {}): Promise<OpenedSource> {
  const kind = classifySource(source);
  switch (kind) {
    case "onnx-folder":
      return { kind, dir: source };
    case "builtin":
      return { kind, files: openBuiltin(source, { seed: options.builtinSeed }) };
    case "diffusers-folder":
      return {
        kind,
        files: openDiffusersFolder(source, { variant: options.variant }),
        folder: source,
      };
    case "single-file": {
      const configs = options.configFrom ? readComponentConfigs(options.configFrom) : undefined;
      return { kind, files: openSingleFile(source, { configs }), folder: options.configFrom };
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
      return { kind, files: openDiffusersFolder(folder, { variant: options.variant }), folder };
    }
  }
}

/** Opens the weights of a source that is built from weights. */
export async function openModelFiles(
  source: string,
  options: LoadOptions = {},
): Promise<{ files: ModelFiles; folder?: string }> {
  const opened = await openSource(source, options);
  if (opened.kind === "onnx-folder")
    throw new Error(`${source} is an ONNX export; it is loaded as it is, not built from weights`);
  return opened;
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
  const opened = await openSource(source, options);
  if (opened.kind === "onnx-folder") {
    const cache =
      options.cacheDir === false ? false : new ModelCache(options.cacheDir ?? defaultCacheDir());
    return new StableDiffusionPipeline(
      await openOnnxFolder(opened.dir, {
        device: options.device,
        webgpu: options.webgpu,
        cache,
        loras: options.loras,
        onWarning: options.onWarning,
      }),
    );
  }
  const { files, folder } = opened;
  try {
    return new StableDiffusionPipeline(builtParts(runnerPlan(files, folder, options), options));
  } catch (error) {
    files.close();
    throw error;
  }
}

/** Everything needed to turn a builder into a runner, cached on disk when a cache is set. */
export class RunnerFactory {
  private readonly cache: ModelCache | undefined;

  constructor(
    private readonly device: Device,
    cacheDir: string | false | undefined,
    private readonly onBuild?: (component: string, path: string | undefined) => void,
    private readonly webgpu?: WebGpuTuning,
  ) {
    this.cache = cacheDir === false ? undefined : new ModelCache(cacheDir ?? defaultCacheDir());
  }

  /** A runner of a planned component; its description keys the cache. */
  async runner(
    { component, description, build }: ComponentBuild,
    session: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice"> = {},
  ): Promise<ModelRunner> {
    const options = { device: this.device, webgpu: this.webgpu, ...session };
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

/** The UNet of a model plan, built per reduction setting. */
export interface UnetBuilds {
  readonly config: UnetConfig;
  readonly family: ModelFamily;
  /** A runner of the UNet built for `reduction` (cached on disk per settings). */
  runner(
    reduction: ReductionSettings | undefined,
    session?: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice">,
  ): Promise<ModelRunner>;
}

/** The model plan of opened files for Node runners on `options.device`. */
export function runnerPlan(
  files: ModelFiles,
  folder: string | undefined,
  options: LoadOptions,
): ModelPlan {
  const device = options.device ?? "cpu";
  return planModel(files, folder, { device, dtype: modelDtype(device, options.dtype) });
}

/** The UNet of opened model files, built per reduction setting. */
export function unetBuilds(files: ModelFiles, options: LoadOptions = {}): UnetBuilds {
  const plan = runnerPlan(files, undefined, options);
  const factory = runnerFactory(options);
  return {
    config: plan.unetConfig,
    family: plan.family,
    runner: (reduction, session) => factory.runner(plan.unet(reduction), session),
  };
}

function runnerFactory(options: LoadOptions): RunnerFactory {
  return new RunnerFactory(
    options.device ?? "cpu",
    options.cacheDir,
    options.onBuild,
    options.webgpu,
  );
}

/** A model plan as pipeline parts of Node runners. */
function builtParts(plan: ModelPlan, options: LoadOptions): PipelineParts {
  const { files, family, device } = plan;
  const factory = runnerFactory(options);
  // On WebGPU the UNet's output stays on the GPU and the sampler step runs there as a graph, so
  // a denoising loop keeps its latents on the device (GenerateOptions.latentsOnDevice).
  const onWebGpu = device === "webgpu";
  const steppers = new PromiseMemo<string, ModelRunner>();
  const samplerStep = (step: SamplerStepOptions) =>
    steppers.get(JSON.stringify(step), () =>
      factory.runner(plan.samplerStep(step), { keepOutputsOnDevice: true }),
    );
  // The text encoders and UNet of model files with (or without) a set of LoRAs merged in.
  const adaptedModels = (view: ModelFiles) => {
    const textEncoders = plan.textEncoders.map(
      ({ name, config }) =>
        new RunnerTextEncoder(config.hiddenSize, config.numHiddenLayers, (request) =>
          factory.runner(plan.textEncoder(name, textEncoderOutputs(request), view)),
        ),
    );
    const unets = new PromiseMemo<string, RunnerUnet>();
    return {
      textEncoders,
      unet: (reduction: ReductionSettings | undefined) =>
        unets.get(JSON.stringify(reduction ?? null), () =>
          factory
            .runner(plan.unet(reduction, { view }), { keepOutputsOnDevice: onWebGpu })
            .then((runner) => new RunnerUnet(runner, onWebGpu ? samplerStep : undefined)),
        ),
      async release() {
        for (const encoder of textEncoders) await encoder.release();
        await unets.releaseAll((unet) => unet.release());
      },
    } satisfies Omit<AdaptedModels, "loras"> & { release(): Promise<void> };
  };
  const loras = loraVariants(files, family, options, adaptedModels);
  const own = loras.own;
  const chunking = onWebGpu ? WEBGPU_VAE_CHUNKING : undefined;
  const vae = new RunnerVae(
    plan.vaeConfig.scalingFactor,
    plan.vaeConfig.shiftFactor ?? 0,
    () => factory.runner(plan.vae("decoder", chunking)),
    () => factory.runner(plan.vae("encoder", chunking)),
  );
  return {
    family,
    label: files.label,
    tokenizers: plan
      .tokenizers(options)
      .map(({ dir, padToken }) => loadClipTokenizer(dir, { padToken })),
    textEncoders: own.textEncoders,
    unet: (reduction) => own.unet(reduction),
    loras: own.loras,
    withLoras: (requests) => loras.withLoras(requests),
    vae,
    schedulerConfig: plan.schedulerConfig(),
    forceZerosForEmptyPrompt: plan.forceZerosForEmptyPrompt,
    latentChannels: plan.latentChannels,
    vaeScale: plan.vaeScale,
    defaultSize: plan.defaultSize,
    memoryShape: plan.memoryShape(),
    async release() {
      await loras.release();
      await steppers.releaseAll((stepper) => stepper.release());
      await vae.release();
      files.close();
    },
  };
}
