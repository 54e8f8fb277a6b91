/**
 * Loading a model source into a pipeline (Node): the source is classified once and opened;
 * diffusers folders, single-file checkpoints, Hugging Face Hub ids and `builtin:*` models are
 * planned (model-plan.ts) and built into ONNX graphs run by Node runners (plan-runners.ts,
 * cached on disk); diffusers ONNX export folders are loaded as they are (onnx-folder.ts).
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { type JsonObject, readConfigFile } from "../configs/config-json.js";
import { downloadPipeline } from "../hub/download-pipeline.js";
import { isHubId } from "../hub/hub-id.js";
import { builtinName, openBuiltin } from "../weights/builtin.js";
import { openDiffusersFolder } from "../weights/diffusers-folder.js";
import type { ComponentName, ModelFiles } from "../weights/model-files.js";
import { openSingleFile } from "../weights/single-file.js";
import { defaultCacheDir, ModelCache } from "./model-cache.js";
import { openOnnxFolder } from "./onnx-folder.js";
import { probeEngine, type RunnerOptions, runnerParts, runnerPlan } from "./plan-runners.js";
import { StableDiffusionPipeline } from "./stable-diffusion.js";

export interface LoadOptions extends RunnerOptions {
  /** Hub ids: revision and weight variant (e.g. fp16), offline mode, download progress. */
  readonly revision?: string;
  readonly variant?: string;
  readonly offline?: boolean;
  readonly hubCacheDir?: string;
  readonly onDownloadProgress?: (file: string, received: number, total: number | undefined) => void;
  /** Single-file checkpoints: a diffusers folder to take configs, tokenizers and scheduler from. */
  readonly configFrom?: string;
  /** Seed of `builtin:*` random weights. */
  readonly builtinSeed?: number;
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
  | { readonly kind: "onnx-folder"; readonly source: string; readonly dir: string }
  | {
      readonly kind: Exclude<SourceKind, "onnx-folder">;
      /** The string the source was opened from. */
      readonly source: string;
      readonly files: ModelFiles;
      /** The folder configs, tokenizers and scheduler come from, when there is one. */
      readonly folder?: string;
    };

/** Classifies a source (unless its kind is known already) and opens it. */
export async function openSource(
  source: string,
  options: LoadOptions = {},
  kind: SourceKind = classifySource(source),
): Promise<OpenedSource> {
  switch (kind) {
    case "onnx-folder":
      return { kind, source, dir: source };
    case "builtin":
      return { kind, source, files: openBuiltin(source, { seed: options.builtinSeed }) };
    case "diffusers-folder":
      return {
        kind,
        source,
        files: openDiffusersFolder(source, { variant: options.variant }),
        folder: source,
      };
    case "single-file": {
      const configs = options.configFrom ? readComponentConfigs(options.configFrom) : undefined;
      const files = openSingleFile(source, { configs });
      return { kind, source, files, folder: options.configFrom };
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
      return {
        kind,
        source,
        files: openDiffusersFolder(folder, { variant: options.variant }),
        folder,
      };
    }
  }
}

/**
 * Opens the files of an opened source again, with handles of their own (for a consumer that
 * closes them on its own schedule), neither classifying nor downloading it again.
 */
export function reopenSource(
  opened: OpenedSource,
  options: LoadOptions = {},
): Promise<OpenedSource> {
  if (opened.kind === "onnx-folder") return Promise.resolve(opened);
  if (opened.kind === "hub" && opened.folder)
    return openSource(opened.folder, options, "diffusers-folder");
  return openSource(opened.source, options, opened.kind);
}

/** Opens the weights of a source that is built from weights (classified unless `kind` is given). */
export async function openModelFiles(
  source: string,
  options: LoadOptions = {},
  kind?: SourceKind,
): Promise<{ files: ModelFiles; folder?: string }> {
  const opened = await openSource(source, options, kind);
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

/** Loads any source (or one opened by `openSource`) into a ready pipeline. */
export async function loadPipeline(
  source: string | OpenedSource,
  options: LoadOptions = {},
): Promise<StableDiffusionPipeline> {
  const opened = typeof source === "string" ? await openSource(source, options) : source;
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
    const probed = await probeEngine(options);
    return new StableDiffusionPipeline(runnerParts(runnerPlan(files, folder, probed), probed));
  } catch (error) {
    files.close();
    throw error;
  }
}
