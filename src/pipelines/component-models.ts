/**
 * The built ONNX files of a model's components, for a runtime in another process (Node): the web
 * demo's browser engine fetches them from the local server and runs them on onnxruntime-web.
 * They are built by the same builders and cached under the same keys as `loadPipeline`'s, and a
 * manifest describes everything else the pipeline needs (family, sizes, VAE scaling, scheduler).
 */
import { existsSync } from "node:fs";
import { jsonNumbers } from "../image/parameters.js";
import { type AppliedLora, applyLoras, type LoraRequest } from "../lora/apply-loras.js";
import type { AttentionChunking } from "../models/layers.js";
import type { SamplerStepOptions } from "../models/sampler-step.js";
import { externalDataPath, saveModel } from "../onnx/model-io.js";
import type { ReductionSettings } from "../reduce/options.js";
import { PromiseMemo } from "../util/promise-memo.js";
import {
  type ModelDtype,
  type ModelFamily,
  modelDtype,
  type WebDevice,
} from "../util/vocabulary.js";
import type { ModelFiles } from "../weights/model-files.js";
import type { TextEncoderRequest } from "./components.js";
import { type LoadOptions, type OpenedSource, openSource, reopenSource } from "./load.js";
import { defaultCacheDir, hashKey, ModelCache } from "./model-cache.js";
import {
  type ComponentBuild,
  type ModelPlan,
  planModel,
  type TokenizerSource,
  textEncoderOutputs,
} from "./model-plan.js";

export interface ComponentModelOptions
  extends Omit<LoadOptions, "device" | "cacheDir" | "onBuild"> {
  readonly backend: WebDevice;
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
  readonly backend: WebDevice;
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
  /** The LoRAs merged into `textEncoder` and `unet`. */
  readonly loras: readonly AppliedLora[];
  textEncoder(index: number, request: TextEncoderRequest): Promise<ComponentModelFile>;
  /**
   * The UNet built for resolved reduction settings (undefined: none); with `chunking`, its
   * attention is split over the queries to fit a device's binding limit (onnxruntime-web).
   */
  unet(
    reduction: ReductionSettings | undefined,
    chunking?: AttentionChunking,
  ): Promise<ComponentModelFile>;
  /** Closes this set's LoRA files (its built models stay in the cache). */
  close(): void;
}

/** The models of the set the source was opened with (the `loras` option), and the rest. */
export interface ComponentModels extends LoraComponentModels {
  readonly manifest: PipelineManifest;
  /** One per text encoder, in order. */
  readonly tokenizers: readonly TokenizerSource[];
  /**
   * The text encoders and UNet with another set of LoRAs (checked before anything is built;
   * one line for bad input). Close it when its models have been fetched.
   */
  withLoras(loras: readonly LoraRequest[]): LoraComponentModels;
  vaeDecoder(chunking?: AttentionChunking): Promise<ComponentModelFile>;
  vaeEncoder(chunking?: AttentionChunking): Promise<ComponentModelFile>;
  /** The sampler-step graph of denoising loops that keep the latents on the device. */
  samplerStep(options: SamplerStepOptions): Promise<ComponentModelFile>;
  /** Closes the model files, and the LoRA files of the set it was opened with. */
  close(): void;
}

/**
 * Opens a source (or the files of one opened already, with handles of its own) and builds its
 * components on demand into the model cache.
 */
export async function openComponentModels(
  source: string | OpenedSource,
  options: ComponentModelOptions,
): Promise<ComponentModels> {
  const openOptions = { ...options, onBuild: undefined };
  const opened =
    typeof source === "string"
      ? await openSource(source, openOptions)
      : await reopenSource(source, openOptions);
  if (opened.kind === "onnx-folder")
    throw new Error(`${opened.source}: ONNX export folders are not supported yet`);
  const { files, folder } = opened;
  let initial: ReturnType<typeof applyLoras> | undefined;
  try {
    const plan = planModel(files, folder, {
      device: options.backend,
      dtype: modelDtype(options.backend, options.dtype),
    });
    if (options.loras && options.loras.length > 0)
      initial = applyLoras(files, options.loras, {
        family: plan.family,
        onWarning: options.onWarning,
      });
    return componentModels(plan, options, initial);
  } catch (error) {
    initial?.close();
    files.close();
    throw error;
  }
}

function componentModels(
  plan: ModelPlan,
  options: ComponentModelOptions,
  initial: ReturnType<typeof applyLoras> | undefined,
): ComponentModels {
  const { files, family, vaeConfig } = plan;
  const cache = new ModelCache(options.cacheDir ?? defaultCacheDir());
  const pending = new PromiseMemo<string, ComponentModelFile>();
  // loadPipeline's own cache keys, so a Node session on the same backend shares the entries.
  const built = ({ component, description, build }: ComponentBuild) => {
    const key = hashKey(description);
    return pending.get(key, async () => {
      const entry = await cache.getOrBuild(key, description, (path) => {
        options.onBuild?.(component, path);
        const { builder, metadata } = build();
        saveModel(builder, path, { metadata });
      });
      const data = externalDataPath(entry.modelPath);
      return {
        key,
        modelPath: entry.modelPath,
        externalDataPath: existsSync(data) ? data : undefined,
      };
    });
  };
  // The text encoders and UNet of the model files with (or without) a set of LoRAs merged in.
  const adapted = (view: ModelFiles) => ({
    textEncoder(index: number, request: TextEncoderRequest): Promise<ComponentModelFile> {
      const encoder = plan.textEncoders[index];
      if (!encoder)
        return Promise.reject(
          new Error(
            `text encoder ${index} does not exist; the model has ${plan.textEncoders.length}`,
          ),
        );
      return built(plan.textEncoder(encoder.name, textEncoderOutputs(request), view));
    },
    unet(
      reduction: ReductionSettings | undefined,
      chunking?: AttentionChunking,
    ): Promise<ComponentModelFile> {
      return built(plan.unet(reduction, { chunking, view }));
    },
  });
  const own = adapted(initial?.files ?? files);

  return {
    manifest: {
      label: files.label,
      family,
      backend: options.backend,
      dtype: plan.dtype,
      latentChannels: plan.latentChannels,
      vaeScale: plan.vaeScale,
      defaultSize: plan.defaultSize,
      scalingFactor: vaeConfig.scalingFactor,
      shiftFactor: vaeConfig.shiftFactor ?? 0,
      textEncoders: plan.textEncoders.map((e) => ({
        hiddenSize: e.config.hiddenSize,
        layers: e.config.numHiddenLayers,
      })),
      forceZerosForEmptyPrompt: plan.forceZerosForEmptyPrompt,
      schedulerConfig: jsonSafe(plan.schedulerConfig()),
    },
    tokenizers: plan.tokenizers(options),
    loras: initial?.loras ?? [],
    withLoras(requests) {
      const application = applyLoras(files, requests, { family, onWarning: options.onWarning });
      return { ...adapted(application.files), loras: application.loras, close: application.close };
    },
    textEncoder: (index, request) => own.textEncoder(index, request),
    unet: (reduction, chunking) => own.unet(reduction, chunking),
    vaeDecoder: (chunking) => built(plan.vae("decoder", chunking)),
    vaeEncoder: (chunking) => built(plan.vae("encoder", chunking)),
    samplerStep: (step) => built(plan.samplerStep(step)),
    close() {
      initial?.close();
      files.close();
    },
  };
}

/** A config as JSON carries it: non-finite numbers as the strings the scheduler configs accept. */
function jsonSafe(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(config, jsonNumbers)) as Record<string, unknown>;
}
