/**
 * diffusers' ONNX export folders (`OnnxStableDiffusionPipeline`: model_index.json,
 * text_encoder/, unet/, vae_encoder/, vae_decoder/, tokenizer/, scheduler/; the XL pipeline adds
 * text_encoder_2/ and tokenizer_2/, and its UNet takes text_embeds and time_ids) as pipeline
 * components. The exported graphs are rewritten where they cannot reproduce the reference
 * pipelines as they are (see src/patch/):
 * - the UNet gets token reduction for the requested settings (one patched model per settings);
 * - the text encoder gets an output for the hidden state clip skip asks for;
 * - the VAE encoder outputs the latent distribution instead of a sample drawn inside the graph
 *   with onnxruntime's random numbers, so img2img draws its noise from the pipeline's source;
 * - inputs and outputs take the names and types of the models this project builds (float32,
 *   int64 token ids), so the same runner components serve both.
 *
 * Models whose weights sit in external data files (`unet/weights.pb`) are patched without
 * loading those weights: the patched graph is written to the model cache and the weight files
 * are hard-linked (or, across file systems, copied) next to it, since onnxruntime only reads
 * external data from the model's own folder.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { type JsonObject, readConfigFile } from "../configs/config-json.js";
import type { LoraRequest } from "../lora/apply-loras.js";
import { LoraWeightSource } from "../lora/lora-source.js";
import { InitializerWeights, replaceInitializers } from "../lora/onnx-initializers.js";
import { UNET_INPUTS } from "../models/unet.js";
import { readModel, writeModel } from "../onnx/model-io.js";
import { decodeModel, encodeModel, type ModelProto, type ValueInfoProto } from "../onnx/proto.js";
import { ATTENTION_RULES, applyRules } from "../patch/apply-rules.js";
import { GraphEdit } from "../patch/graph-edit.js";
import { GraphIndex } from "../patch/graph-index.js";
import {
  conformTextEncoderIo,
  conformUnetIo,
  conformVaeDecoderIo,
  conformVaeEncoderIo,
} from "../patch/io-contract.js";
import { clipHiddenStatesRule, LAST_HIDDEN_STATE } from "../patch/rules/clip-hidden-states.js";
import { type ReductionSettings, reducesNothing } from "../reduce/options.js";
import { createRunner, type SessionOptions } from "../runtime/session.js";
import type { ModelRunner } from "../runtime/types.js";
import { loadClipTokenizer } from "../tokenizers/load-folder.js";
import { fileIdentity } from "../util/file-identity.js";
import { PromiseMemo } from "../util/promise-memo.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { ModelFiles } from "../weights/model-files.js";
import type { WeightSource } from "../weights/source.js";
import { loraVariants } from "./lora-variants.js";
import { hashKey, ModelCache, stableStringify } from "./model-cache.js";
import { TEXT_ENCODERS } from "./model-plan.js";
import type { AdaptedModels, PipelineParts } from "./pipeline-parts.js";
import { MODEL_IO, RunnerTextEncoder, RunnerUnet, RunnerVae } from "./runner-components.js";

/** Session settings (device, threads, WebGPU tuning) for every model, and the cache. */
export interface OnnxFolderOptions extends SessionOptions {
  /**
   * Where rewritten models with external weights are written (default: the user's cache);
   * false loads their weights and runs them from memory instead.
   */
  readonly cache?: ModelCache | false;
  /**
   * LoRAs added to the initializers that kept their diffusers names; a LoRA with a module the
   * export renamed is refused.
   */
  readonly loras?: readonly LoraRequest[];
  readonly onWarning?: (message: string) => void;
}

/** Why an export cannot take a LoRA whose weights it renamed. */
const RENAMED_WEIGHTS =
  "this ONNX export does not keep the diffusers names of those weights; load the model from its diffusers folder or checkpoint to use this LoRA";

/** What the pipeline needs, from a loaded ONNX folder. */
export type OnnxFolder = PipelineParts & { release(): Promise<void> };

/** The scaling factor diffusers' ONNX pipelines use when the folder has no VAE config. */
const SD_VAE_SCALING_FACTOR = 0.18215;

/** Opens a diffusers ONNX export folder; sessions are created when first needed. */
export async function openOnnxFolder(
  dir: string,
  options: OnnxFolderOptions = {},
): Promise<OnnxFolder> {
  const index = readConfigFile(join(dir, "model_index.json"));
  const className = typeof index._class_name === "string" ? index._class_name : "";
  if (!className.startsWith("Onnx"))
    throw new Error(
      `${dir}: model_index.json names ${className || "no pipeline class"}, not an ONNX pipeline (OnnxStableDiffusionPipeline)`,
    );
  const xl = /XL/.test(className);
  const encoderNames = xl ? TEXT_ENCODERS.sdxl : TEXT_ENCODERS.sd1;
  for (const part of [...encoderNames, "unet", "vae_decoder"]) {
    if (!existsSync(join(dir, part, "model.onnx")))
      throw new Error(`${dir}: ${part}/model.onnx is missing`);
  }
  const { cache, loras: loraRequests, onWarning, ...sessionOptions } = options;
  const files = (part: string) =>
    new OnnxModelFile(join(dir, part, "model.onnx"), sessionOptions, cache);

  const unetFile = files("unet");
  const unetGraph = unetFile.structure().graph;
  const family = onnxUnetFamily(unetGraph.input);
  const textTime = family === "sdxl";
  if (textTime !== xl)
    throw new Error(
      `${dir}: model_index.json names ${className}, but the UNet ${textTime ? "takes" : "lacks"} SDXL's text_embeds and time_ids inputs`,
    );
  const schedulerConfig = readConfigFile(join(dir, "scheduler", "scheduler_config.json"));
  const vaeConfigPath = join(dir, "vae_decoder", "config.json");
  const vaeConfig: JsonObject = existsSync(vaeConfigPath) ? readConfigFile(vaeConfigPath) : {};
  const scalingFactor =
    typeof vaeConfig.scaling_factor === "number" ? vaeConfig.scaling_factor : SD_VAE_SCALING_FACTOR;
  const shiftFactor = typeof vaeConfig.shift_factor === "number" ? vaeConfig.shift_factor : 0;

  const textFiles = encoderNames.map((name) => files(name));
  const textShapes = textFiles.map(textEncoderShape);

  // The text encoder and UNet with (or without) LoRAs added to their named initializers.
  const adaptedModels = (view: ModelFiles) => {
    const unetPatch = loraPatch(view.weights.unet);
    const textEncoders = encoderNames.map((name, i) => {
      const textPatch = loraPatch(view.weights[name]);
      const { hiddenSize, layers } = textShapes[i];
      return new RunnerTextEncoder(hiddenSize, layers, (request) => {
        const fromEnd = request.hiddenStateFromEnd;
        const key = fromEnd ? `hidden-state:${fromEnd}:${request.finalLayerNorm ? 1 : 0}` : "io";
        return textFiles[i].runner(`${textPatch?.tag ?? ""}${key}`, (model) => {
          const patched = textPatch ? textPatch.apply(model) : false;
          if (fromEnd) addHiddenState(model, fromEnd, request.finalLayerNorm === true);
          return (
            conformTextEncoderIo(model, { input: MODEL_IO.textEncoder.input }) ||
            !!fromEnd ||
            patched
          );
        });
      });
    });
    const unets = new PromiseMemo<string, RunnerUnet>();
    return {
      textEncoders,
      unet(reduction: ReductionSettings | undefined) {
        const active = reduction && !reducesNothing(reduction) ? reduction : undefined;
        const key = `${unetPatch?.tag ?? ""}${active ? `reduction:${stableStringify(active)}` : "io"}`;
        return unets.get(key, () =>
          unetFile
            .runner(key, (model) => {
              const patched = unetPatch ? unetPatch.apply(model) : false;
              if (active) applyRules(model, ATTENTION_RULES, active, unetFile.path);
              return (
                conformUnetIo(model, MODEL_IO.unet, unetFile.path) ||
                active !== undefined ||
                patched
              );
            })
            .then((runner) => new RunnerUnet(runner)),
        );
      },
      async release() {
        for (const encoder of textEncoders) await encoder.release();
        await unets.releaseAll((unet) => unet.release());
      },
    } satisfies Omit<AdaptedModels, "loras"> & { release(): Promise<void> };
  };
  // The initializers are read only when a LoRA is asked for.
  const initializers = new Map<string, InitializerWeights>();
  const initializersOf = (file: OnnxModelFile) => {
    let weights = initializers.get(file.path);
    if (!weights) {
      weights = new InitializerWeights(file.path, file.structure(), dirname(file.path));
      initializers.set(file.path, weights);
    }
    return weights;
  };
  const weights: ModelFiles["weights"] = {
    get unet() {
      return initializersOf(unetFile);
    },
  };
  for (const [i, name] of encoderNames.entries())
    Object.defineProperty(weights, name, {
      get: () => initializersOf(textFiles[i]),
      enumerable: true,
    });
  const initializerFiles: ModelFiles = { label: dir, family, configs: {}, weights, close() {} };
  const loras = loraVariants(
    initializerFiles,
    family,
    { loras: loraRequests, onWarning, unmatchedError: RENAMED_WEIGHTS },
    adaptedModels,
  );
  const own = loras.own;

  const encoderFile = existsSync(join(dir, "vae_encoder", "model.onnx"))
    ? files("vae_encoder")
    : undefined;
  const decoderFile = files("vae_decoder");
  const vae = new RunnerVae(
    scalingFactor,
    shiftFactor,
    () => decoderFile.runner("io", (model) => conformVaeDecoderIo(model, MODEL_IO.vaeDecoder)),
    () => {
      if (!encoderFile)
        return Promise.reject(
          new Error(`${dir}: there is no vae_encoder/model.onnx; img2img needs it`),
        );
      return encoderFile.runner("latent-moments", (model) => {
        conformVaeEncoderIo(model, MODEL_IO.vaeEncoder, encoderFile.path);
        return true;
      });
    },
  );
  return {
    family,
    label: basename(dir),
    tokenizers: encoderNames.map((_, i) =>
      loadClipTokenizer(join(dir, i === 0 ? "tokenizer" : `tokenizer_${i + 1}`)),
    ),
    textEncoders: own.textEncoders,
    unet: (reduction) => own.unet(reduction),
    loras: own.loras,
    withLoras: (requests) => loras.withLoras(requests),
    vae,
    schedulerConfig,
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
    latentChannels:
      dimValue(
        unetGraph.input.find((i) => i.name === "sample"),
        1,
      ) ?? 4,
    vaeScale: 8,
    defaultSize: onnxDefaultSide(family, schedulerConfig.prediction_type === "v_prediction"),
    async release() {
      await loras.release();
      await vae.release();
    },
  };
}

/**
 * An export's model family, from its UNet's inputs: SDXL's UNet takes text_embeds and
 * time_ids; SD 2.x's text context is 1024 wide, SD 1.x's 768.
 */
export function onnxUnetFamily(inputs: readonly ValueInfoProto[]): ModelFamily {
  if (inputs.some((i) => i.name === UNET_INPUTS.textEmbeds || i.name === UNET_INPUTS.timeIds))
    return "sdxl";
  const context = inputs.find((i) => i.name === UNET_INPUTS.encoderHiddenStates);
  return lastDim(context) === 1024 ? "sd2" : "sd1";
}

/**
 * The side an export of a family generates at by default: what the family's released models
 * were trained for (SD 2.x: 768 px for v-prediction, 512 px otherwise).
 */
export function onnxDefaultSide(family: ModelFamily, vPrediction: boolean): number {
  return family === "sdxl" ? 1024 : family === "sd2" && vPrediction ? 768 : 512;
}

/** How a component's LoRAs are added to a copy of its graph, and what names that variant. */
function loraPatch(
  source: WeightSource | undefined,
): { tag: string; apply(model: ModelProto): boolean } | undefined {
  if (!(source instanceof LoraWeightSource)) return undefined;
  const keys = source.patchedKeys();
  return {
    tag: `lora:${stableStringify(source.loraIdentities)}:`,
    apply: (model) => replaceInitializers(model, keys, source) > 0,
  };
}

/** Layers and width of the exported CLIP text encoder, or why it is not one. */
function textEncoderShape(file: OnnxModelFile): { layers: number; hiddenSize: number } {
  const model = file.structure();
  const graph = new GraphIndex(model.graph);
  const [match] = clipHiddenStatesRule.match(graph);
  const verdict = match ? clipHiddenStatesRule.check(graph, match) : "no last_hidden_state output";
  if (verdict !== true) throw new Error(`${file.path}: not a CLIP text encoder: ${verdict}`);
  const states = match.hiddenStates as readonly string[];
  const last = model.graph.output.find((o) => o.name === LAST_HIDDEN_STATE);
  return { layers: states.length - 1, hiddenSize: lastDim(last) ?? 0 };
}

function addHiddenState(model: ModelProto, fromEnd: number, finalLayerNorm: boolean): void {
  const edit = new GraphEdit(model);
  const [match] = clipHiddenStatesRule.match(edit.graph);
  clipHiddenStatesRule.rewrite(edit, match, {
    fromEnd,
    finalLayerNorm,
    output: MODEL_IO.textEncoder.skip,
  });
  edit.commit();
}

// ---- model files and their rewritten variants -----------------------------------------------

/** One exported model file: runners of its rewritten copies (or of the file, unchanged). */
export class OnnxModelFile {
  private bytes?: Uint8Array;
  private externalFiles?: string[];

  constructor(
    readonly path: string,
    private readonly sessionSettings: SessionOptions,
    private readonly cache?: ModelCache | false,
  ) {}

  /** The graph, without the weights of external data files (a fresh copy each call). */
  structure(): ModelProto {
    if (!this.bytes) {
      const model = readModel(this.path, false);
      this.externalFiles = externalLocations(model);
      this.bytes = encodeModel(model);
    }
    return decodeModel(this.bytes, this.path);
  }

  /**
   * A runner of the model after `edit` (which returns false when it changed nothing). Models
   * with external data go through the cache: onnxruntime reads external files only from the
   * model's folder.
   */
  async runner(key: string, edit: (model: ModelProto) => boolean): Promise<ModelRunner> {
    let model = this.structure();
    const external = this.externalFiles ?? [];
    // Without a cache, the weights are loaded and the model runs from memory (under 2 GiB).
    const inMemory = external.length === 0 || this.cache === false;
    if (external.length > 0 && inMemory) model = readModel(this.path, true);
    if (!edit(model)) return createRunner(this.path, this.sessionSettings);
    if (inMemory) return createRunner(encodeModel(model), this.sessionSettings);
    const cache = this.cache || new ModelCache();
    const description = {
      kind: "onnx-export-variant",
      source: fileIdentity(this.path),
      external: external.map((file) => fileIdentity(join(dirname(this.path), file))),
      variant: key,
    };
    const build = (modelPath: string) => {
      writeModel(model, modelPath, "never");
      for (const file of external) {
        const target = join(dirname(modelPath), file);
        mkdirSync(dirname(target), { recursive: true });
        try {
          linkSync(join(dirname(this.path), file), target);
        } catch {
          copyFileSync(join(dirname(this.path), file), target);
        }
      }
    };
    return cache.open(hashKey(description), description, build, (entry) =>
      createRunner(entry.modelPath, this.sessionSettings),
    );
  }
}

function externalLocations(model: ModelProto): string[] {
  const locations = new Set<string>();
  for (const tensor of model.graph.initializer ?? []) {
    if (tensor.dataLocation !== 1) continue;
    const location = tensor.externalData?.find((e) => e.key === "location")?.value;
    if (location) locations.add(location);
  }
  return [...locations];
}

// ---- graph I/O ----------------------------------------------------------------------------

function dimValue(info: ValueInfoProto | undefined, axis: number): number | undefined {
  const value = info?.type?.tensorType?.shape?.dim[axis]?.dimValue;
  return value === undefined ? undefined : Number(value);
}

function lastDim(info: ValueInfoProto | undefined): number | undefined {
  const dims = info?.type?.tensorType?.shape?.dim;
  return dims && dims.length > 0 ? dimValue(info, dims.length - 1) : undefined;
}
