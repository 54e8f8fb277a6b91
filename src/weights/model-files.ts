/**
 * The common result of opening model weights, whatever their origin: a diffusers folder, a
 * single-file LDM checkpoint, or the builtin full-size configs with random weights. The
 * pipeline loader turns one of these into components without knowing where it came from.
 */
import type { JsonObject } from "../configs/config-json.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { WeightSource } from "./source.js";

/** The weight-bearing components of an SD 1.x / 2.x / XL pipeline, named as in diffusers. */
export const COMPONENT_NAMES = Object.freeze([
  "unet",
  "vae",
  "text_encoder",
  "text_encoder_2",
] as const);

export type ComponentName = (typeof COMPONENT_NAMES)[number];

/**
 * A `model_index.json`: component name -> [library, class] (both null for an absent optional
 * component such as `safety_checker`), plus pipeline attributes (`_class_name`,
 * `requires_safety_checker`, ...).
 */
export interface ModelIndex {
  readonly className: string | undefined;
  readonly components: Readonly<Record<string, readonly [string | null, string | null]>>;
  readonly attributes: Readonly<JsonObject>;
}

export interface ModelFiles {
  /** Where the files came from, for messages (a folder, a file, `builtin:sdxl`). */
  readonly label: string;
  /** Set when known: always for single files and builtins, from the pipeline class for folders. */
  readonly family?: ModelFamily;
  /** The diffusers/transformers `config.json` of each component present. */
  readonly configs: Partial<Record<ComponentName, JsonObject>>;
  /** Weights under diffusers/transformers key names, one source per component present. */
  readonly weights: Partial<Record<ComponentName, WeightSource>>;
  /** The pipeline's model index; synthesised for single files and builtins. */
  readonly modelIndex?: ModelIndex;
  /** Releases open files. Sources must not be read afterwards. */
  close(): void;
}

/** The class a component is built as (`CLIPTextModelWithProjection`, ...), when recorded. */
export function componentClassName(
  files: ModelFiles,
  component: ComponentName,
): string | undefined {
  const fromIndex = files.modelIndex?.components[component]?.[1];
  if (fromIndex) return fromIndex;
  const config = files.configs[component];
  const className = config?._class_name;
  if (typeof className === "string") return className;
  const architectures = config?.architectures;
  if (Array.isArray(architectures) && typeof architectures[0] === "string") {
    return architectures[0];
  }
  return undefined;
}

/** The pipeline class diffusers uses for a family, and each component's [library, class]. */
export function familyModelIndex(
  family: ModelFamily,
  components: readonly ComponentName[],
): ModelIndex {
  const classes: Record<ComponentName, readonly [string, string]> = {
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
    text_encoder: ["transformers", "CLIPTextModel"],
    text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
  };
  const className = family === "sdxl" ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline";
  const entries: Record<string, readonly [string, string]> = {};
  for (const name of components) entries[name] = classes[name];
  return { className, components: entries, attributes: { _class_name: className } };
}
