/**
 * Which files of a diffusers pipeline repository to download. Pure: it sees the repository's
 * file list and its `model_index.json`, nothing else.
 *
 * - `model_index.json` names the components (`unet: ["diffusers", "UNet2DConditionModel"]`);
 *   entries whose value is `[null, null]` are absent components.
 * - Each component is a folder. Its files that are not weights (configs, tokenizer
 *   vocabularies, scheduler config) are all taken, but for documentation and images.
 * - Of its weights one format is taken, in this order of preference: safetensors, PyTorch
 *   (`.bin` `.pt` `.pth` `.ckpt`), ONNX (`.onnx` + external data), Flax, TensorFlow.
 * - Within a format, the requested variant (`diffusion_pytorch_model.fp16.safetensors`) when
 *   the component has it, else the plain weights, as diffusers does; a format with neither
 *   gives way to the next. Without a variant, only plain weights count; a component with only
 *   variant weights is an error naming them, and so is a variant no weights file has.
 * - A single weights file wins over a sharded copy of the same weights. A sharded one is its
 *   index (`*.safetensors.index.json`, or `*.index.fp16.json` for a variant); the shards are
 *   those its `weight_map` names (see `shardFilesOf`).
 */
import { HubError } from "./errors.js";

export interface PipelineFileOptions {
  readonly repoId: string;
  readonly variant?: string;
  /** Components not to download (say `safety_checker`). */
  readonly skipComponents?: readonly string[];
}

export interface PipelineFilePlan {
  readonly components: string[];
  /** Files to fetch as they are, `model_index.json` first. */
  readonly files: string[];
  /** Shard indexes: fetch each, then the shards it names. */
  readonly shardIndexes: string[];
}

export const MODEL_INDEX = "model_index.json";

type WeightFormat = "safetensors" | "pytorch" | "onnx" | "flax" | "tensorflow";

const FORMAT_PREFERENCE: readonly WeightFormat[] = [
  "safetensors",
  "pytorch",
  "onnx",
  "flax",
  "tensorflow",
];

const FORMAT_OF_EXTENSION: Readonly<Record<string, WeightFormat>> = {
  safetensors: "safetensors",
  bin: "pytorch",
  pt: "pytorch",
  pth: "pytorch",
  ckpt: "pytorch",
  onnx: "onnx",
  onnx_data: "onnx",
  pb: "onnx",
  msgpack: "flax",
  h5: "tensorflow",
};

const SKIPPED_EXTENSIONS = new Set(["md", "png", "jpg", "jpeg", "gif", "webp"]);
const SHARD_SUFFIX = /-\d{5}-of-\d{5}$/;

interface WeightFile {
  readonly path: string;
  readonly format: WeightFormat;
  /** The name without format, variant, shard number and index markers. */
  readonly stem: string;
  readonly variant: string | undefined;
  readonly kind: "single" | "shard" | "index";
}

/** Components named by a `model_index.json`, in its order. */
export function pipelineComponents(modelIndex: unknown, repoId: string): string[] {
  if (typeof modelIndex !== "object" || modelIndex === null || Array.isArray(modelIndex)) {
    throw new HubError("not-a-pipeline", `${repoId}: ${MODEL_INDEX} is not a JSON object`);
  }
  return Object.entries(modelIndex)
    .filter(
      ([key, value]) =>
        !key.startsWith("_") &&
        Array.isArray(value) &&
        value.length === 2 &&
        typeof value[0] === "string" &&
        typeof value[1] === "string",
    )
    .map(([key]) => key);
}

export function planPipelineFiles(
  repoFiles: readonly string[],
  modelIndex: unknown,
  options: PipelineFileOptions,
): PipelineFilePlan {
  const { repoId, variant } = options;
  const skip = new Set(options.skipComponents ?? []);
  const components = pipelineComponents(modelIndex, repoId).filter((name) => !skip.has(name));
  const files: string[] = [MODEL_INDEX];
  const shardIndexes: string[] = [];
  const variantsSeen = new Set<string>();
  for (const component of components) {
    const own = repoFiles.filter((path) => folderOf(path) === component);
    if (own.length === 0) {
      throw new HubError(
        "not-a-pipeline",
        `${repoId}: component "${component}" of ${MODEL_INDEX} has no files in the repository`,
      );
    }
    const weights: WeightFile[] = [];
    for (const path of own) {
      const weight = parseWeightFile(path);
      if (weight) weights.push(weight);
      else if (!SKIPPED_EXTENSIONS.has(extensionOf(path))) files.push(path);
    }
    if (weights.length === 0) continue;
    for (const w of weights) if (w.variant !== undefined) variantsSeen.add(w.variant);
    let chosen: WeightFile[] = [];
    for (const format of FORMAT_PREFERENCE) {
      const inFormat = weights.filter((w) => w.format === format);
      if (variant !== undefined && inFormat.some((w) => w.variant === variant)) {
        chosen = inFormat.filter((w) => w.variant === variant);
        break;
      }
      chosen = inFormat.filter((w) => w.variant === undefined);
      if (chosen.length > 0) break;
    }
    if (chosen.length === 0) {
      const found = [...new Set(weights.map((w) => w.variant))].join(", ");
      throw new HubError(
        "variant-not-found",
        `${repoId}: ${component} has only variant weights (${found}); pass one of them as the variant`,
      );
    }
    for (const stem of new Set(chosen.map((w) => w.stem))) {
      const ofStem = chosen.filter((w) => w.stem === stem);
      const singles = ofStem.filter((w) => w.kind === "single");
      const indexes = ofStem.filter((w) => w.kind === "index");
      if (singles.length > 0) files.push(...singles.map((w) => w.path));
      else if (indexes.length > 0) shardIndexes.push(...indexes.map((w) => w.path));
      else files.push(...ofStem.map((w) => w.path));
    }
  }
  if (variant !== undefined && !variantsSeen.has(variant)) {
    const found = variantsSeen.size > 0 ? [...variantsSeen].join(", ") : "none";
    throw new HubError(
      "variant-not-found",
      `${repoId} has no "${variant}" variant of its weights (variants found: ${found})`,
    );
  }
  return { components, files, shardIndexes };
}

/** The shard files an index names (`weight_map` values), as repository paths. */
export function shardFilesOf(index: unknown, indexPath: string, repoId: string): string[] {
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null) {
    throw new HubError("bad-response", `${repoId}: ${indexPath} has no weight_map`);
  }
  const folder = folderOf(indexPath);
  const shards = new Set<string>();
  for (const value of Object.values(map)) {
    if (typeof value !== "string") {
      throw new HubError("bad-response", `${repoId}: ${indexPath} maps a weight to a non-name`);
    }
    shards.add(folder === "" ? value : `${folder}/${value}`);
  }
  return [...shards].sort();
}

/** Reads a weights file name: `diffusion_pytorch_model.fp16.safetensors`, `model-00001-of-00002.safetensors`, `model.fp16-00001-of-00002.safetensors`, `diffusion_pytorch_model.safetensors.index.fp16.json`. */
function parseWeightFile(path: string): WeightFile | undefined {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const tokens = name.split(".");
  if (tokens.length < 2) return undefined;
  const extension = tokens[tokens.length - 1];
  const isIndex = extension === "json" && tokens.includes("index");
  const formatToken = isIndex
    ? tokens.slice(1, -1).find((t) => t in FORMAT_OF_EXTENSION)
    : extension in FORMAT_OF_EXTENSION
      ? extension
      : undefined;
  if (formatToken === undefined) return undefined;
  let sharded = false;
  const unsharded = tokens.map((token) => {
    if (!SHARD_SUFFIX.test(token)) return token;
    sharded = true;
    return token.replace(SHARD_SUFFIX, "");
  });
  const middle = unsharded
    .slice(1, -1)
    .filter((t) => t !== formatToken && !(isIndex && t === "index") && t !== "");
  return {
    path,
    format: FORMAT_OF_EXTENSION[formatToken],
    stem: unsharded[0],
    variant: middle.length > 0 ? middle.join(".") : undefined,
    kind: isIndex ? "index" : sharded ? "shard" : "single",
  };
}

function folderOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

function extensionOf(path: string): string {
  const dot = path.lastIndexOf(".");
  return dot <= path.lastIndexOf("/") ? "" : path.slice(dot + 1).toLowerCase();
}
