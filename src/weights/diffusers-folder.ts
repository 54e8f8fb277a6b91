/**
 * Reading a diffusers model folder: `model_index.json` at the top, one sub-folder per
 * component with its `config.json` and safetensors weights.
 *
 * Weight file resolution in a component folder (`base` is `diffusion_pytorch_model`, the
 * diffusers name, or `model`, the transformers name; either is accepted for any component):
 * 1. With `variant: "fp16"`: `base.fp16.safetensors`, then the sharded
 *    `base.safetensors.index.fp16.json`. When the folder has no such variant, the plain files
 *    below are used instead: a variant stores the same model at another precision.
 * 2. Plain: `base.safetensors`, then the sharded `base.safetensors.index.json`.
 * 3. Without a variant option and without plain files, a folder holding exactly one variant
 *    (only `model.fp16.safetensors`, say) uses it; several variants are an error asking to
 *    choose one.
 * Pickled weights (`.bin`, `.ckpt`, ...) are never loaded: a folder with only those is an error.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, join, normalize, sep } from "node:path";
import { isJsonObject, type JsonObject, readConfigFile } from "../configs/config-json.js";
import type { ModelFamily } from "../util/vocabulary.js";
import {
  COMPONENT_NAMES,
  type ComponentName,
  type ModelFiles,
  type ModelIndex,
} from "./model-files.js";
import { SafetensorsFile } from "./safetensors.js";
import { KeyedWeightSource, type WeightInfo } from "./source.js";

export interface DiffusersOptions {
  /** Weight variant, e.g. `fp16`: prefer `*.fp16.safetensors` files. */
  readonly variant?: string;
}

const WEIGHT_BASES = ["diffusion_pytorch_model", "model"] as const;
const PICKLE_EXTENSIONS = [".bin", ".ckpt", ".pt", ".pth", ".pkl"];

/** Where a component's weights are: one file, or a sharded index. */
export type WeightFiles =
  | { readonly kind: "single"; readonly path: string }
  | { readonly kind: "sharded"; readonly indexPath: string };

export function readModelIndex(folder: string): ModelIndex {
  requireFolder(folder);
  const path = join(folder, "model_index.json");
  const json = readConfigFile(path);
  const components: Record<string, readonly [string | null, string | null]> = {};
  const attributes: JsonObject = {};
  for (const [key, value] of Object.entries(json)) {
    if (isComponentEntry(value)) components[key] = [value[0], value[1]];
    else attributes[key] = value;
  }
  const className = typeof json._class_name === "string" ? json._class_name : undefined;
  return { className, components, attributes };
}

function isComponentEntry(value: unknown): value is [string | null, string | null] {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every((v) => v === null || typeof v === "string")
  );
}

/** Picks the weight file(s) of a component folder by the rules in this file's header. */
export function resolveWeightFiles(componentDir: string, variant?: string): WeightFiles {
  requireFolder(componentDir);
  const names = new Set(readdirSync(componentDir));
  const pick = (v: string | undefined): WeightFiles | undefined => {
    for (const base of WEIGHT_BASES) {
      const single = v ? `${base}.${v}.safetensors` : `${base}.safetensors`;
      if (names.has(single)) return { kind: "single", path: join(componentDir, single) };
      const indexes = v
        ? [`${base}.safetensors.index.${v}.json`, `${base}.${v}.safetensors.index.json`]
        : [`${base}.safetensors.index.json`];
      for (const index of indexes) {
        if (names.has(index)) return { kind: "sharded", indexPath: join(componentDir, index) };
      }
    }
    return undefined;
  };
  const chosen = (variant ? pick(variant) : undefined) ?? pick(undefined);
  if (chosen) return chosen;

  const variants = variantsAmong(names);
  if (variants.size === 1 && !variant) return pick([...variants][0])!;
  if (variants.size > 0) {
    throw new Error(
      `${componentDir}: no ${variant ? `"${variant}" or plain` : "plain"} safetensors weights; variants present: ${[...variants].sort().join(", ")} (pass one as the variant option)`,
    );
  }
  const pickled = [...names].filter((n) => PICKLE_EXTENSIONS.some((ext) => n.endsWith(ext)));
  if (pickled.length > 0) {
    throw new Error(
      `${componentDir}: only safetensors weights are supported, found ${pickled.sort().join(", ")} (convert to .safetensors)`,
    );
  }
  throw new Error(
    `${componentDir}: no weight file (expected diffusion_pytorch_model.safetensors or model.safetensors, a variant such as model.fp16.safetensors, or a sharded *.safetensors.index.json)`,
  );
}

/** Opens the weights of a component folder as one lazy source. */
export function openWeightFiles(files: WeightFiles): SafetensorsWeightSource {
  if (files.kind === "single") {
    const file = SafetensorsFile.open(files.path);
    return new SafetensorsWeightSource(files.path, [file]);
  }
  return openShardedIndex(files.indexPath);
}

function openShardedIndex(indexPath: string): SafetensorsWeightSource {
  const index = readConfigFile(indexPath);
  const weightMap = index.weight_map;
  if (!isJsonObject(weightMap)) {
    throw new Error(`${indexPath}: sharded index has no "weight_map" object`);
  }
  const dir = join(indexPath, "..");
  const shards = new Map<string, SafetensorsFile>();
  const keyFile = new Map<string, SafetensorsFile>();
  const closeAll = () => {
    for (const file of shards.values()) file.close();
  };
  try {
    for (const [key, shardName] of Object.entries(weightMap)) {
      if (typeof shardName !== "string" || !isPlainRelativePath(shardName)) {
        throw new Error(
          `${indexPath}: weight "${key}" maps to ${JSON.stringify(shardName)}, not a file name inside the folder`,
        );
      }
      let shard = shards.get(shardName);
      if (!shard) {
        const shardPath = join(dir, shardName);
        if (!existsSync(shardPath)) {
          throw new Error(`${indexPath}: shard "${shardName}" (for "${key}") not found`);
        }
        shard = SafetensorsFile.open(shardPath);
        shards.set(shardName, shard);
      }
      if (!shard.has(key)) {
        throw new Error(
          `${indexPath}: weight "${key}" is mapped to shard "${shardName}", which lacks it`,
        );
      }
      keyFile.set(key, shard);
    }
  } catch (error) {
    closeAll();
    throw error;
  }
  if (keyFile.size === 0) throw new Error(`${indexPath}: sharded index maps no weights`);
  return new SafetensorsWeightSource(indexPath, [...shards.values()], keyFile);
}

function isPlainRelativePath(name: string): boolean {
  if (name.length === 0 || name.startsWith("/") || name.includes("\\")) return false;
  const normalized = normalize(name);
  return !normalized.startsWith("..") && !normalized.includes(`${sep}..`) && normalized !== ".";
}

/** Opens one component (`unet`, `vae`, `text_encoder`, `text_encoder_2`) of a diffusers folder. */
export function openDiffusersComponent(
  folder: string,
  component: ComponentName,
  options: DiffusersOptions = {},
): ModelFiles {
  requireFolder(folder);
  const modelIndex = existsSync(join(folder, "model_index.json"))
    ? readModelIndex(folder)
    : undefined;
  const entry = modelIndex?.components[component];
  if (modelIndex && entry && entry[1] === null) {
    throw new Error(
      `${join(folder, "model_index.json")}: component "${component}" is null in this pipeline`,
    );
  }
  const source = openComponent(folder, component, options);
  return {
    label: folder,
    family: familyOfConfigs({ [component]: source.config }),
    configs: { [component]: source.config },
    weights: { [component]: source.weights },
    modelIndex,
    close: () => source.weights.close(),
  };
}

/** Opens every weight-bearing component that the folder's `model_index.json` lists. */
export function openDiffusersFolder(folder: string, options: DiffusersOptions = {}): ModelFiles {
  const modelIndex = readModelIndex(folder);
  const configs: Partial<Record<ComponentName, JsonObject>> = {};
  const weights: Partial<Record<ComponentName, SafetensorsWeightSource>> = {};
  const closeAll = () => {
    for (const source of Object.values(weights)) source.close();
  };
  try {
    for (const component of COMPONENT_NAMES) {
      const entry = modelIndex.components[component];
      if (!entry || entry[1] === null) continue;
      const opened = openComponent(folder, component, options);
      configs[component] = opened.config;
      weights[component] = opened.weights;
    }
  } catch (error) {
    closeAll();
    throw error;
  }
  if (Object.keys(weights).length === 0) {
    throw new Error(
      `${join(folder, "model_index.json")}: lists none of ${COMPONENT_NAMES.join(", ")}`,
    );
  }
  // A variant stands in for plain weights component by component, but one that no component
  // has is a typing mistake, not a choice.
  const variant = options.variant;
  const components = Object.keys(weights);
  const usesVariant = (component: string) => {
    const chosen = resolveWeightFiles(join(folder, component), variant);
    return isVariantFile(chosen.kind === "single" ? chosen.path : chosen.indexPath, variant!);
  };
  if (variant && !components.some(usesVariant)) {
    closeAll();
    throw new Error(
      `${folder}: no component has "${variant}" weights (*.${variant}.safetensors); variants present: ${variantsIn(folder, components).join(", ") || "none"}`,
    );
  }
  return {
    label: folder,
    family: familyOfConfigs(configs),
    configs,
    weights,
    modelIndex,
    close: closeAll,
  };
}

function openComponent(
  folder: string,
  component: ComponentName,
  options: DiffusersOptions,
): { config: JsonObject; weights: SafetensorsWeightSource } {
  const dir = join(folder, component);
  if (!isFolder(dir)) throw new Error(`${dir}: component folder not found`);
  const config = readConfigFile(join(dir, "config.json"));
  const weights = openWeightFiles(resolveWeightFiles(dir, options.variant));
  return { config, weights };
}

/**
 * The family a UNet config belongs to, as far as configs tell: SDXL's text_time conditioning,
 * SD 2.x's linear projections in the transformers, otherwise SD 1.x. Undefined without a UNet.
 */
export function familyOfConfigs(
  configs: Partial<Record<ComponentName, JsonObject>>,
): ModelFamily | undefined {
  const unet = configs.unet;
  if (!unet) return undefined;
  if (unet.addition_embed_type === "text_time") return "sdxl";
  if (unet.use_linear_projection === true) return "sd2";
  return "sd1";
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function requireFolder(path: string): void {
  if (!existsSync(path)) throw new Error(`${path}: folder not found`);
  if (!isFolder(path)) throw new Error(`${path}: not a folder`);
}

function isVariantFile(path: string, variant: string): boolean {
  const name = basename(path);
  return name.includes(`.${variant}.safetensors`) || name.includes(`.index.${variant}.json`);
}

/** The weight variants the component folders of a model hold. */
function variantsIn(folder: string, components: readonly string[]): string[] {
  return [
    ...variantsAmong(components.flatMap((component) => readdirSync(join(folder, component)))),
  ].sort();
}

/** The variants named by weight files among `names` (`model.fp16.safetensors`, ...). */
function variantsAmong(names: Iterable<string>): Set<string> {
  const variants = new Set<string>();
  const pattern =
    /^(?:diffusion_pytorch_model|model)\.(?:([^.]+)\.safetensors|safetensors\.index\.([^.]+)\.json)$/;
  for (const name of names) {
    const match = pattern.exec(name);
    if (match) variants.add(match[1] ?? match[2]);
  }
  return variants;
}

/**
 * A `WeightSource` over one safetensors file or the shards of a sharded checkpoint. Only
 * headers are read when it opens; each tensor is read from disk when it is asked for.
 */
export class SafetensorsWeightSource extends KeyedWeightSource<SafetensorsFile> {
  /**
   * `files`: the opened files; `keyFile`: which file holds each key (default: every tensor of
   * every file, a key present in two files being an error).
   */
  constructor(
    label: string,
    private readonly files: readonly SafetensorsFile[],
    keyFile?: ReadonlyMap<string, SafetensorsFile>,
  ) {
    super(label, keyFile ?? fileOfEachKey(label, files));
  }

  identity(): unknown {
    return { files: this.files.map((f) => f.identity()), keys: this.entries.size };
  }

  info(key: string): WeightInfo {
    const info = this.entry(key).info(key);
    return { dtype: info.dtype, shape: info.shape };
  }

  readFloat32(key: string): Float32Array {
    return this.entry(key).readFloat32(key);
  }

  readFloat16(key: string): Uint16Array | undefined {
    return this.entry(key).readFloat16Bits(key);
  }

  close(): void {
    for (const file of this.files) file.close();
  }
}

/** Every tensor of every file; a key present in two files is an error. */
function fileOfEachKey(label: string, files: readonly SafetensorsFile[]) {
  const map = new Map<string, SafetensorsFile>();
  for (const file of files) {
    for (const key of file.keys()) {
      const other = map.get(key);
      if (other) {
        throw new Error(`${label}: weight "${key}" is in both ${other.label} and ${file.label}`);
      }
      map.set(key, file);
    }
  }
  return map;
}
