/**
 * Writing built components to ONNX files that any onnxruntime host runs: standard ONNX ops plus
 * the com.microsoft contrib ops of onnxruntime's CPU backend (and, for GPU targets, the fused ops
 * of that backend). Files are written under temporary names and renamed, so a failed conversion
 * leaves nothing behind.
 */
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { applyLoras, type LoraRequest } from "../lora/apply-loras.js";
import type { BuiltModel } from "../models/layers.js";
import { saveModel } from "../onnx/model-io.js";
import { type ReductionOptions, reductionMetadata, resolveReduction } from "../reduce/options.js";
import { writeBytesAtomically } from "../util/atomic-write.js";
import { OptionError } from "../util/option-error.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";
import type { ComponentName, ModelFiles } from "../weights/model-files.js";
import { type LoadOptions, openModelFiles } from "./load.js";
import { type ModelPlan, planModel } from "./model-plan.js";

export const CONVERT_COMPONENTS = [
  "unet",
  "text_encoder",
  "text_encoder_2",
  "vae_decoder",
  "vae_encoder",
] as const;
export type ConvertComponent = (typeof CONVERT_COMPONENTS)[number];

export interface ConvertOptions
  extends Pick<LoadOptions, "configFrom" | "variant" | "revision" | "offline" | "builtinSeed"> {
  /** One component, or `all` (then `out` is a folder holding `<component>/model.onnx`). */
  readonly component: ConvertComponent | "all";
  readonly out: string;
  readonly dtype?: ModelDtype;
  /** The backend whose fastest operators the graph uses (default cpu: runs in every host). */
  readonly target?: Device;
  /** Token reduction built into the UNet. */
  readonly reduction?: ReductionOptions;
  /** The image size `auto` reduction factors are chosen for. */
  readonly width?: number;
  readonly height?: number;
  readonly onComponent?: (component: ConvertComponent, files: string[], ms: number) => void;
  /** LoRAs merged into the UNet and text encoders. */
  readonly loras?: readonly LoraRequest[];
  /** Told about LoRA keys that land on no weight (default: console.warn). */
  readonly onWarning?: (message: string) => void;
}

export interface ConvertedFile {
  readonly component: ConvertComponent;
  readonly files: readonly string[];
  readonly buildMs: number;
}

export function parseConvertComponent(value: string): ConvertComponent | "all" {
  if (value === "all" || (CONVERT_COMPONENTS as readonly string[]).includes(value))
    return value as ConvertComponent | "all";
  throw new Error(`unknown component "${value}"; expected ${CONVERT_COMPONENTS.join(", ")} or all`);
}

function sourceComponent(component: ConvertComponent): ComponentName {
  return component === "vae_decoder" || component === "vae_encoder" ? "vae" : component;
}

/** The graph of one component; `view` is the model with the asked LoRAs merged in. */
function buildComponent(
  plan: ModelPlan,
  view: ModelFiles,
  component: ConvertComponent,
  options: ConvertOptions,
): BuiltModel {
  switch (component) {
    case "unet": {
      const reduction = options.reduction
        ? resolveReduction(options.reduction, {
            architecture: plan.family,
            width: options.width,
            height: options.height,
          })
        : undefined;
      const built = plan.unet(reduction, { view }).build();
      return reduction
        ? {
            builder: built.builder,
            metadata: { ...built.metadata, ...reductionMetadata(reduction) },
          }
        : built;
    }
    case "text_encoder":
    case "text_encoder_2":
      return plan.textEncoder(component, undefined, view).build();
    case "vae_decoder":
      return plan.vae("decoder").build();
    case "vae_encoder":
      return plan.vae("encoder").build();
  }
}

/** Builds and writes the asked components; returns what was written. */
export async function convertModel(
  source: string,
  options: ConvertOptions,
): Promise<ConvertedFile[]> {
  if (options.component !== "all" && !/\.onnx$/i.test(options.out)) {
    throw new OptionError(
      (name) => `${name("out")} must name an .onnx file for one component; got ${options.out}`,
    );
  }
  if (options.reduction && options.component !== "unet" && options.component !== "all") {
    throw new Error("token reduction flags apply to the unet component only");
  }
  const { files: opened, folder } = await openModelFiles(source, options);
  let lorasApplied: ReturnType<typeof applyLoras> | undefined;
  try {
    // The model's rules (its classes, the VAE's element type and refusals) are checked before
    // anything is written. Converted files run anywhere, so float32 unless asked.
    const plan = planModel(opened, folder, {
      device: options.target ?? "cpu",
      dtype: options.dtype ?? "float32",
    });
    lorasApplied =
      options.loras && options.loras.length > 0
        ? applyLoras(opened, options.loras, {
            family: plan.family,
            onWarning: options.onWarning,
          })
        : undefined;
    const files = lorasApplied?.files ?? opened;
    const components =
      options.component === "all"
        ? CONVERT_COMPONENTS.filter((c) => files.weights[sourceComponent(c)] !== undefined)
        : [options.component];
    const results: ConvertedFile[] = [];
    for (const component of components) {
      const path =
        options.component === "all" ? join(options.out, component, "model.onnx") : options.out;
      try {
        mkdirSync(dirname(path), { recursive: true });
      } catch (error) {
        throw new Error(
          `cannot create ${dirname(path)} (${(error as NodeJS.ErrnoException).code})`,
        );
      }
      const start = performance.now();
      const { builder, metadata } = buildComponent(plan, files, component, options);
      let written: string[];
      try {
        written = saveModel(builder, path, {
          metadata: {
            ...metadata,
            "todo_sd.source": basename(source),
            "todo_sd.component": component,
            ...loraMetadata(component),
          },
        });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        throw new Error(code ? `cannot write ${path} (${code})` : (error as Error).message);
      }
      const ms = performance.now() - start;
      results.push({ component, files: written, buildMs: ms });
      options.onComponent?.(component, written, ms);
    }
    if (options.component === "all") writePipelineFolder(plan, options.out);
    return results;
  } finally {
    lorasApplied?.close();
    opened.close();
  }

  /** The LoRAs merged into a component, recorded in its metadata_props. */
  function loraMetadata(component: ConvertComponent): Record<string, string> {
    const name = sourceComponent(component);
    if (!lorasApplied || lorasApplied.files.weights[name] === opened.weights[name]) return {};
    const loras = lorasApplied.loras.map(({ name, sha256, weight }) => ({ name, sha256, weight }));
    return { "todo_sd.loras": JSON.stringify(loras) };
  }
}

/** diffusers' pipeline class for an ONNX export of each family. */
const ONNX_PIPELINE_CLASS = Object.freeze({
  sd1: "OnnxStableDiffusionPipeline",
  sd2: "OnnxStableDiffusionPipeline",
  sdxl: "OnnxStableDiffusionXLPipeline",
});

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeBytesAtomically(path, new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`));
}

/**
 * The rest of a diffusers ONNX folder beside the converted components, so that it loads as a
 * model source: model_index.json, the tokenizers (the model's own, else the shipped CLIP
 * vocabulary with the family's pad token), the scheduler config and the VAE config (its scaling
 * factor).
 */
function writePipelineFolder(plan: ModelPlan, out: string): void {
  const family = plan.family;
  const scheduler = plan.schedulerConfig();
  const index: Record<string, unknown> = {
    _class_name: ONNX_PIPELINE_CLASS[family],
    _diffusers_version: "0.30.0",
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ["diffusers", String(scheduler._class_name)],
    ...(plan.forceZerosForEmptyPrompt ? { force_zeros_for_empty_prompt: true } : {}),
  };
  for (const component of CONVERT_COMPONENTS)
    if (existsSync(join(out, component, "model.onnx")))
      index[component] = ["diffusers", "OnnxRuntimeModel"];
  plan.tokenizers({}).forEach(({ dir, padToken }, i) => {
    const name = i === 0 ? "tokenizer" : `tokenizer_${i + 1}`;
    index[name] = ["transformers", "CLIPTokenizer"];
    mkdirSync(join(out, name), { recursive: true });
    for (const file of [
      "vocab.json",
      "merges.txt",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
    ])
      if (existsSync(join(dir, file))) copyFileSync(join(dir, file), join(out, name, file));
    // A folder without a config gets the family's pad token written out, as loaders assume it.
    if (padToken && !existsSync(join(dir, "tokenizer_config.json")))
      writeJson(join(out, name, "tokenizer_config.json"), { pad_token: padToken });
  });
  writeJson(join(out, "scheduler", "scheduler_config.json"), scheduler);
  const vae = plan.files.configs.vae;
  if (vae && existsSync(join(out, "vae_decoder", "model.onnx")))
    writeJson(join(out, "vae_decoder", "config.json"), vae);
  writeJson(join(out, "model_index.json"), index);
}
