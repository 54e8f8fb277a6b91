/**
 * The built ONNX files of a model's components, for a runtime in another process (Node): the web
 * demo's browser engine fetches them from the local server and runs them on onnxruntime-web.
 * They are built by the same builders and cached under the same keys as `loadPipeline`'s, and a
 * manifest describes everything else the pipeline needs (family, sizes, VAE scaling, scheduler).
 */
import { existsSync } from "node:fs";
import { parseClipTextConfig } from "../configs/clip-config.js";
import { parseUnetConfig } from "../configs/unet-config.js";
import { parseVaeConfig, vaeDtype } from "../configs/vae-config.js";
import { type AppliedLora, applyLoras, type LoraRequest } from "../lora/apply-loras.js";
import { buildClipTextEncoder } from "../models/clip-text.js";
import type { AttentionChunking, BuiltModel } from "../models/layers.js";
import {
  buildSamplerStep,
  SAMPLER_STEP_FORMAT,
  type SamplerStepOptions,
} from "../models/sampler-step.js";
import { buildUnet } from "../models/unet.js";
import { buildVaeDecoder, buildVaeEncoder } from "../models/vae.js";
import type { GraphBuilder } from "../onnx/builder.js";
import { externalDataPath, saveModel } from "../onnx/model-io.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { ComponentName, ModelFamily, ModelFiles } from "../weights/model-files.js";
import type { TextEncoderRequest } from "./components.js";
import {
  buildDescription,
  classifySource,
  familyOf,
  type LoadOptions,
  type ModelDtype,
  modelIndexFlag,
  openModelFiles,
  resolveDtype,
  schedulerConfig,
  type TokenizerSource,
  textEncoderOutputs,
  tokenizerSources,
} from "./load.js";
import { defaultCacheDir, hashKey, ModelCache } from "./model-cache.js";

/** Where the served models will run. */
export type ComponentBackend = "wasm" | "webgpu";

export interface ComponentModelOptions
  extends Omit<LoadOptions, "device" | "cacheDir" | "onBuild"> {
  readonly backend: ComponentBackend;
  /** Folder of built models (default: the `loadPipeline` default). Files are served from it. */
  readonly cacheDir?: string;
  readonly onBuild?: (component: string, path: string) => void;
}

/** One built model on disk. */
export interface ComponentModelFile {
  /** The cache key: a hex hash of everything the graph depends on. */
  readonly key: string;
  readonly modelPath: string;
  /** `model.onnx_data`, for models too large to hold their weights inline. */
  readonly externalDataPath?: string;
}

/** What a pipeline needs beside the models; plain JSON. */
export interface PipelineManifest {
  readonly label: string;
  readonly family: ModelFamily;
  readonly backend: ComponentBackend;
  readonly dtype: ModelDtype;
  readonly latentChannels: number;
  readonly vaeScale: number;
  readonly defaultSize: number;
  readonly scalingFactor: number;
  readonly shiftFactor: number;
  readonly textEncoders: readonly { readonly hiddenSize: number; readonly layers: number }[];
  readonly forceZerosForEmptyPrompt: boolean;
  /** scheduler_config.json; non-finite numbers written as the strings "Infinity", "-Infinity", "NaN". */
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
}

/** The models a set of LoRAs changes, built with that set merged in. */
export interface LoraComponentModels {
  readonly loras: readonly AppliedLora[];
  textEncoder(index: number, request: TextEncoderRequest): Promise<ComponentModelFile>;
  unet(
    reduction: ReductionSettings | undefined,
    chunking?: AttentionChunking,
  ): Promise<ComponentModelFile>;
  /** Closes this set's LoRA files (its built models stay in the cache). */
  close(): void;
}

export interface ComponentModels {
  readonly manifest: PipelineManifest;
  /** One per text encoder, in order. */
  readonly tokenizers: readonly TokenizerSource[];
  /** The LoRAs merged into `textEncoder` and `unet` (the `loras` option). */
  readonly loras: readonly AppliedLora[];
  /**
   * The text encoders and UNet with another set of LoRAs (checked before anything is built;
   * one line for bad input). Close it when its models have been fetched.
   */
  withLoras(loras: readonly LoraRequest[]): LoraComponentModels;
  textEncoder(index: number, request: TextEncoderRequest): Promise<ComponentModelFile>;
  /**
   * The UNet built for resolved reduction settings (undefined: none); with `chunking`, its
   * attention is split over the queries to fit a device's binding limit (onnxruntime-web).
   */
  unet(
    reduction: ReductionSettings | undefined,
    chunking?: AttentionChunking,
  ): Promise<ComponentModelFile>;
  vaeDecoder(chunking?: AttentionChunking): Promise<ComponentModelFile>;
  vaeEncoder(chunking?: AttentionChunking): Promise<ComponentModelFile>;
  /** The sampler-step graph of denoising loops that keep the latents on the device. */
  samplerStep(options: SamplerStepOptions): Promise<ComponentModelFile>;
  close(): void;
}

/** JSON has no non-finite numbers; write them as the strings the scheduler configs accept. */
function jsonSafe(value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonSafe(v)]));
  return value;
}

/** Opens a source and builds its components on demand into the model cache. */
export async function openComponentModels(
  source: string,
  options: ComponentModelOptions,
): Promise<ComponentModels> {
  if (classifySource(source) === "onnx-folder")
    throw new Error(`${source}: ONNX export folders are not supported yet`);
  const { files, folder } = await openModelFiles(source, { ...options, onBuild: undefined });
  let initial: ReturnType<typeof applyLoras> | undefined;
  try {
    const family = familyOf(files);
    if (options.loras && options.loras.length > 0)
      initial = applyLoras(files, options.loras, { family, onWarning: options.onWarning });
    return componentModels(files, folder, options, initial);
  } catch (error) {
    initial?.close();
    files.close();
    throw error;
  }
}

function componentModels(
  files: ModelFiles,
  folder: string | undefined,
  options: ComponentModelOptions,
  initial: ReturnType<typeof applyLoras> | undefined,
): ComponentModels {
  const { backend } = options;
  const dtype = resolveDtype(backend, options.dtype);
  const family = familyOf(files);
  const cache = new ModelCache(options.cacheDir ?? defaultCacheDir());
  const pending = new Map<string, Promise<ComponentModelFile>>();

  const need = (component: ComponentName) => {
    const config = files.configs[component];
    const weights = files.weights[component];
    if (!config || !weights) throw new Error(`${files.label}: the model has no ${component}`);
    return { config, weights };
  };
  // loadPipeline's own cache keys, so a Node session on the same backend shares the entries.
  const describe = (
    component: ComponentName,
    extra: Record<string, unknown>,
    view: ModelFiles = files,
  ) => buildDescription(view, component, backend, extra);
  const built = (
    name: string,
    description: Record<string, unknown>,
    build: () => BuiltModel | GraphBuilder,
  ): Promise<ComponentModelFile> => {
    const key = hashKey(description);
    let file = pending.get(key);
    if (!file) {
      file = cache
        .getOrBuild(key, description, (path) => {
          options.onBuild?.(name, path);
          const made = build();
          const { builder, metadata } =
            "builder" in made ? made : { builder: made, metadata: {} as Record<string, string> };
          saveModel(builder, path, { metadata });
        })
        .then((entry) => {
          const data = externalDataPath(entry.modelPath);
          return {
            key,
            modelPath: entry.modelPath,
            externalDataPath: existsSync(data) ? data : undefined,
          };
        });
      pending.set(key, file);
      file.catch(() => pending.delete(key));
    }
    return file;
  };

  const unetParts = need("unet");
  const unetConfig = parseUnetConfig(unetParts.config, `${files.label} unet/config.json`);
  const vaeParts = need("vae");
  const vaeConfig = parseVaeConfig(vaeParts.config, `${files.label} vae/config.json`);
  if (vaeConfig.latentsMean || vaeConfig.latentsStd)
    throw new Error(`${files.label}: VAEs with latents_mean/latents_std are not supported`);
  const vaeType = vaeDtype(vaeConfig, dtype);
  const encoderNames: ComponentName[] =
    family === "sdxl" ? ["text_encoder", "text_encoder_2"] : ["text_encoder"];
  const encoders = encoderNames.map((name) => {
    const { config } = need(name);
    return { name, config: parseClipTextConfig(config, `${files.label} ${name}/config.json`) };
  });
  // The text encoders and UNet of the model files with (or without) a set of LoRAs merged in.
  const adapted = (view: ModelFiles) => ({
    textEncoder(index: number, request: TextEncoderRequest): Promise<ComponentModelFile> {
      const encoder = encoders[index];
      if (!encoder)
        return Promise.reject(
          new Error(`text encoder ${index} does not exist; the model has ${encoders.length}`),
        );
      const weights = view.weights[encoder.name]!;
      const hiddenStates = textEncoderOutputs(request);
      return built(encoder.name, describe(encoder.name, { dtype, hiddenStates }, view), () =>
        buildClipTextEncoder(encoder.config, weights, {
          dtype,
          hiddenStates,
          projection: encoder.name === "text_encoder_2" ? true : undefined,
        }),
      );
    },
    unet(
      reduction: ReductionSettings | undefined,
      chunking?: AttentionChunking,
    ): Promise<ComponentModelFile> {
      // Unchunked builds keep loadPipeline's keys (no `chunking` entry), so both share files.
      const extra = { dtype, reduction: reduction ?? null, ...(chunking ? { chunking } : {}) };
      return built("unet", describe("unet", extra, view), () =>
        buildUnet(unetConfig, view.weights.unet!, {
          dtype,
          backend,
          reduction,
          attentionChunking: chunking,
        }),
      );
    },
  });
  const own = adapted(initial?.files ?? files);
  const vaeScale = 2 ** (vaeConfig.blockOutChannels.length - 1);

  const vaeHalf = (half: "decoder" | "encoder", chunking: AttentionChunking | undefined) => {
    const build = half === "decoder" ? buildVaeDecoder : buildVaeEncoder;
    const extra = { half, dtype: vaeType, ...(chunking ? { chunking } : {}) };
    return built(`vae_${half}`, describe("vae", extra), () =>
      build(vaeConfig, vaeParts.weights, { dtype: vaeType, backend, attentionChunking: chunking }),
    );
  };

  return {
    manifest: {
      label: files.label,
      family,
      backend,
      dtype,
      latentChannels: unetConfig.inChannels,
      vaeScale,
      defaultSize: (unetConfig.sampleSize ?? 64) * vaeScale,
      scalingFactor: vaeConfig.scalingFactor,
      shiftFactor: vaeConfig.shiftFactor ?? 0,
      textEncoders: encoders.map((e) => ({
        hiddenSize: e.config.hiddenSize,
        layers: e.config.numHiddenLayers,
      })),
      forceZerosForEmptyPrompt: modelIndexFlag(files, "force_zeros_for_empty_prompt"),
      schedulerConfig: jsonSafe(schedulerConfig(family, folder)) as Record<string, unknown>,
    },
    tokenizers: tokenizerSources(family, folder, options),
    loras: initial?.loras ?? [],
    withLoras(requests) {
      const application = applyLoras(files, requests, { family, onWarning: options.onWarning });
      return { ...adapted(application.files), loras: application.loras, close: application.close };
    },
    textEncoder: (index, request) => own.textEncoder(index, request),
    unet: (reduction, chunking) => own.unet(reduction, chunking),
    vaeDecoder: (chunking) => vaeHalf("decoder", chunking),
    vaeEncoder: (chunking) => vaeHalf("encoder", chunking),
    samplerStep: (step) =>
      // The same graph for every model: float32 throughout, no weights.
      built(
        "sampler_step",
        { component: "sampler_step", format: SAMPLER_STEP_FORMAT, backend, ...step },
        () => buildSamplerStep(step),
      ),
    close() {
      initial?.close();
      files.close();
    },
  };
}
