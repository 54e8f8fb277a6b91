/**
 * Single-file checkpoints in the original LDM layout, the way most community models ship: one
 * safetensors file holding the UNet (`model.diffusion_model.`), the VAE (`first_stage_model.`)
 * and the text encoder(s) (`cond_stage_model.` for SD 1.x/2.x, `conditioner.embedders.` for
 * SDXL). Opening one detects the family, takes each component's config from the caller or
 * reads it off the tensor shapes, and exposes each component under diffusers key names.
 *
 * Detection: SDXL has `conditioner.embedders.1.model.` (OpenCLIP ViT-bigG beside CLIP ViT-L at
 * `embedders.0.transformer.`); SD 2.x has an OpenCLIP ViT-H at `cond_stage_model.model.`;
 * SD 1.x has a transformers CLIP at `cond_stage_model.transformer.`. Without text encoders,
 * the UNet decides: SDXL's `label_emb`, or the cross-attention width (768 SD 1.x, 1024 SD 2.x,
 * 2048 SDXL).
 *
 * Only tensors of the four components are read. Other keys (EMA copies, noise-schedule
 * buffers) are ignored; unused keys *inside* a component are an error, since they mean the
 * config does not describe the checkpoint.
 */

import { parseClipTextConfig } from "../configs/clip-config.js";
import type { JsonObject } from "../configs/config-json.js";
import { parseUnetConfig } from "../configs/unet-config.js";
import { parseVaeConfig } from "../configs/vae-config.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { familyConfigs } from "./builtin.js";
import {
  CheckpointShapes,
  inferHfClipConfig,
  inferOpenClipConfig,
  inferUnetConfig,
  inferVaeConfig,
} from "./ldm-infer.js";
import {
  hfClipPlan,
  type KeyPlan,
  ldmUnetPlan,
  ldmVaePlan,
  MappedWeightSource,
  openClipPlan,
} from "./ldm-plans.js";
import {
  COMPONENT_NAMES,
  type ComponentName,
  familyModelIndex,
  type ModelFiles,
} from "./model-files.js";
import { SafetensorsFile } from "./safetensors.js";
import type { WeightSource } from "./source.js";

export const LDM_UNET_PREFIX = "model.diffusion_model.";
export const LDM_VAE_PREFIX = "first_stage_model.";

/** How a text encoder is stored: a transformers CLIP model or an OpenCLIP text tower. */
export type TextEncoderFormat = "transformers" | "open_clip";

export interface TextEncoderLocation {
  /** Prefix of the encoder's keys (for `transformers`, where `embeddings.` begins). */
  readonly prefix: string;
  readonly format: TextEncoderFormat;
}

export interface CheckpointLayout {
  readonly family: ModelFamily;
  readonly unet?: string;
  readonly vae?: string;
  readonly text_encoder?: TextEncoderLocation;
  readonly text_encoder_2?: TextEncoderLocation;
}

export interface SingleFileOptions {
  /** Component configs to use instead of reading them off the weights. */
  readonly configs?: Partial<Record<ComponentName, JsonObject>>;
  /**
   * The family, for a file whose weights do not tell (a UNet-only file of unusual width); it
   * must agree with the weights when they do.
   */
  readonly family?: ModelFamily;
}

const UNET_WIDTH_FAMILY: Readonly<Record<number, ModelFamily>> = {
  768: "sd1",
  1024: "sd2",
  2048: "sdxl",
};
const FAMILY_NAMES: Readonly<Record<ModelFamily, string>> = {
  sd1: "SD 1.x",
  sd2: "SD 2.x",
  sdxl: "SDXL",
};

/** Finds the components of an LDM checkpoint and its family, from key names and a few shapes. */
export function detectCheckpointLayout(
  ckpt: CheckpointShapes,
  family?: ModelFamily,
): CheckpointLayout {
  const has = (prefix: string) => ckpt.hasModule(prefix);
  const hfPrefix = (root: string) => (has(`${root}text_model.`) ? `${root}text_model.` : root);

  let textFamily: ModelFamily | undefined;
  let text_encoder: TextEncoderLocation | undefined;
  let text_encoder_2: TextEncoderLocation | undefined;
  if (has("conditioner.embedders.")) {
    if (has("conditioner.embedders.0.model.") && !has("conditioner.embedders.1.")) {
      throw new Error(`${ckpt.label}: SDXL refiner checkpoints are not supported`);
    }
    textFamily = "sdxl";
    if (has("conditioner.embedders.0.transformer.")) {
      text_encoder = {
        prefix: hfPrefix("conditioner.embedders.0.transformer."),
        format: "transformers",
      };
    }
    if (has("conditioner.embedders.1.model.")) {
      text_encoder_2 = { prefix: "conditioner.embedders.1.model.", format: "open_clip" };
    }
  } else if (has("cond_stage_model.model.")) {
    textFamily = "sd2";
    text_encoder = { prefix: "cond_stage_model.model.", format: "open_clip" };
  } else if (has("cond_stage_model.transformer.")) {
    textFamily = "sd1";
    text_encoder = { prefix: hfPrefix("cond_stage_model.transformer."), format: "transformers" };
  }

  const unet = has(LDM_UNET_PREFIX) ? LDM_UNET_PREFIX : undefined;
  const vae = has(LDM_VAE_PREFIX) ? LDM_VAE_PREFIX : undefined;
  if (!unet && !vae && !text_encoder && !text_encoder_2) {
    const sample = [...ckpt.shapes.keys()].slice(0, 3).join(", ");
    const diffusersLike = ["down_blocks.", "encoder.down_blocks.", "text_model."].some((p) =>
      ckpt.hasModule(p),
    );
    throw new Error(
      `${ckpt.label}: unknown checkpoint layout: no ${LDM_UNET_PREFIX}, ${LDM_VAE_PREFIX}, cond_stage_model. or conditioner. keys (${
        diffusersLike
          ? "this looks like one diffusers component; open its model folder instead"
          : `first keys: ${sample}`
      })`,
    );
  }

  let unetFamily: ModelFamily | undefined;
  if (unet) {
    if (has(`${unet}label_emb.`)) unetFamily = "sdxl";
    else {
      const width = unetCrossWidth(ckpt, unet);
      if (width !== undefined) unetFamily = UNET_WIDTH_FAMILY[width];
    }
  }
  if (textFamily && unetFamily && textFamily !== unetFamily) {
    throw new Error(
      `${ckpt.label}: mixed checkpoint: the text encoders are ${FAMILY_NAMES[textFamily]}, the UNet is ${FAMILY_NAMES[unetFamily]}`,
    );
  }
  const fromWeights = textFamily ?? unetFamily;
  if (family && fromWeights && family !== fromWeights) {
    throw new Error(
      `${ckpt.label}: the weights are ${FAMILY_NAMES[fromWeights]}, not the ${FAMILY_NAMES[family]} that was asked for`,
    );
  }
  const detected = family ?? fromWeights;
  if (!detected) {
    throw new Error(
      `${ckpt.label}: cannot tell whether this is SD 1.x, SD 2.x or SDXL from its weights; pass the family`,
    );
  }
  return { family: detected, unet, vae, text_encoder, text_encoder_2 };
}

/** The width of the text features the UNet's cross-attention reads. */
function unetCrossWidth(ckpt: CheckpointShapes, prefix: string): number | undefined {
  return ckpt.under(prefix).firstEndingWith(".attn2.to_k.weight")?.[1];
}

/** Text feature width each encoder gives, read from its token embedding. */
function textWidth(
  ckpt: CheckpointShapes,
  location: TextEncoderLocation | undefined,
): number | undefined {
  if (!location) return undefined;
  const key =
    location.format === "transformers"
      ? `${location.prefix}embeddings.token_embedding.weight`
      : `${location.prefix}token_embedding.weight`;
  return ckpt.get(key)?.[1];
}

/**
 * The config of every component present: the caller's where `given`, otherwise read off the
 * weights on top of the family's builtin config. Also checks that the UNet's cross-attention
 * width equals what the text encoders give (their sum for SDXL).
 */
export function inferCheckpointConfigs(
  ckpt: CheckpointShapes,
  layout: CheckpointLayout,
  given: Partial<Record<ComponentName, JsonObject>> = {},
): Partial<Record<ComponentName, JsonObject>> {
  const base = familyConfigs(layout.family);
  const out: Partial<Record<ComponentName, JsonObject>> = {};
  for (const component of ["text_encoder", "text_encoder_2"] as const) {
    const location = layout[component];
    if (!location) continue;
    const baseConfig = base[component];
    if (!baseConfig) {
      throw new Error(
        `${ckpt.label}: a ${FAMILY_NAMES[layout.family]} checkpoint has no ${component}`,
      );
    }
    out[component] =
      given[component] ??
      (location.format === "transformers"
        ? inferHfClipConfig(ckpt.under(location.prefix), baseConfig)
        : inferOpenClipConfig(ckpt.under(location.prefix), baseConfig, layout.family === "sd2"));
  }
  if (layout.vae) out.vae = given.vae ?? inferVaeConfig(ckpt.under(layout.vae), base.vae!);
  if (!layout.unet) return out;

  const pooled = out.text_encoder_2?.projection_dim;
  const unet =
    given.unet ??
    inferUnetConfig(
      ckpt.under(layout.unet),
      layout.family,
      base.unet!,
      typeof pooled === "number" ? pooled : undefined,
    );
  out.unet = unet;
  // Read from the file rather than the config, so a wrong config is reported as such later.
  const crossWidth = unetCrossWidth(ckpt, layout.unet);
  const widths = [textWidth(ckpt, layout.text_encoder), textWidth(ckpt, layout.text_encoder_2)];
  const complete =
    layout.family === "sdxl" ? widths.every((w) => w !== undefined) : widths[0] !== undefined;
  if (complete && crossWidth !== undefined) {
    const textTotal = widths.reduce((a: number, w) => a + (w ?? 0), 0);
    if (textTotal !== crossWidth) {
      throw new Error(
        `${ckpt.label}: the UNet attends to ${crossWidth}-wide text features but the text encoders give ${textTotal} (mixed checkpoint?)`,
      );
    }
  }
  return out;
}

/** Where each diffusers key of a component is in a checkpoint of the given layout. */
export function singleFilePlan(
  component: ComponentName,
  config: JsonObject,
  layout: CheckpointLayout,
  label: string,
): KeyPlan {
  const configLabel = `${label} ${component} config`;
  switch (component) {
    case "unet":
      return ldmUnetPlan(parseUnetConfig(config, configLabel, "weights"), layout.unet!);
    case "vae":
      return ldmVaePlan(parseVaeConfig(config, configLabel), layout.vae!);
    case "text_encoder":
    case "text_encoder_2": {
      const location = layout[component]!;
      const clip = parseClipTextConfig(config, configLabel);
      const withProjection = component === "text_encoder_2";
      if (location.format === "open_clip") {
        return openClipPlan(clip, withProjection, location.prefix);
      }
      const root = textModelRoot(location.prefix);
      return hfClipPlan(clip, withProjection, root, root !== location.prefix);
    }
  }
}

/** Keys that may sit inside a component's prefix without being weights of the diffusers model. */
function isIgnorable(
  key: string,
  component: ComponentName,
  layout: CheckpointLayout,
  layers: number,
): boolean {
  if (component === "unet") return false;
  if (component === "vae") return key.startsWith(`${layout.vae}loss.`);
  const location = layout[component]!;
  const rest = key.slice(location.prefix.length);
  if (location.format === "transformers") return rest.endsWith("position_ids");
  if (rest === "logit_scale" || rest === "attn_mask" || rest.startsWith("visual.")) return true;
  if (layout.family === "sd2") {
    // SD 2.x uses the penultimate layer: its last block and the projection go unused.
    if (rest === "text_projection") return true;
    const block = /^transformer\.resblocks\.(\d+)\./.exec(rest);
    if (block && Number(block[1]) >= layers) return true;
  }
  return false;
}

function componentPrefix(component: ComponentName, layout: CheckpointLayout): string | undefined {
  if (component === "unet") return layout.unet;
  if (component === "vae") return layout.vae;
  const location = layout[component];
  if (!location) return undefined;
  // A transformers encoder's text_projection and position_ids may sit above text_model.
  return location.format === "transformers" ? textModelRoot(location.prefix) : location.prefix;
}

/** A transformers encoder's prefix without its `text_model.` level, when it has one. */
function textModelRoot(prefix: string): string {
  return prefix.endsWith("text_model.") ? prefix.slice(0, -"text_model.".length) : prefix;
}

/**
 * Opens a single-file LDM checkpoint: detects its family, uses the caller's configs where
 * given and configs read off the weights otherwise, and maps each component to diffusers keys.
 */
export function openSingleFile(path: string, options: SingleFileOptions = {}): ModelFiles {
  const lower = path.toLowerCase();
  if ([".ckpt", ".pt", ".pth", ".bin"].some((ext) => lower.endsWith(ext))) {
    throw new Error(
      `${path}: only safetensors checkpoints are supported (convert it to .safetensors)`,
    );
  }
  const file = SafetensorsFile.open(path);
  try {
    const ckpt = new CheckpointShapes(
      new Map(file.keys().map((key) => [key, file.info(key).shape])),
      path,
    );
    const layout = detectCheckpointLayout(ckpt, options.family);
    const chosen = inferCheckpointConfigs(ckpt, layout, options.configs);
    const configs: Partial<Record<ComponentName, JsonObject>> = {};
    const weights: Partial<Record<ComponentName, WeightSource>> = {};
    const components = COMPONENT_NAMES.filter((c) => componentPrefix(c, layout) !== undefined);
    for (const component of components) {
      const config = chosen[component]!;
      const plan = singleFilePlan(component, config, layout, path);
      const source = new MappedWeightSource(`${path} ${component}`, file, plan);
      checkAllUsed(file, component, layout, plan, config, path);
      configs[component] = config;
      weights[component] = source;
    }
    return {
      label: path,
      family: layout.family,
      configs,
      weights,
      modelIndex: familyModelIndex(layout.family, components),
      close: () => file.close(),
    };
  } catch (error) {
    file.close();
    throw error;
  }
}

function checkAllUsed(
  file: SafetensorsFile,
  component: ComponentName,
  layout: CheckpointLayout,
  plan: KeyPlan,
  config: JsonObject,
  path: string,
): void {
  const prefix = componentPrefix(component, layout)!;
  const used = new Set([...plan.values()].map((m) => m.source));
  const layers = typeof config.num_hidden_layers === "number" ? config.num_hidden_layers : 0;
  const unused = file
    .keys()
    .filter((key) => key.startsWith(prefix) && !used.has(key))
    .filter((key) => !isIgnorable(key, component, layout, layers));
  if (unused.length > 0) {
    const more = unused.length > 1 ? ` and ${unused.length - 1} more` : "";
    throw new Error(
      `${path}: ${component} config leaves ${unused.length} weight(s) unused: "${unused[0]}"${more} (does the config describe this checkpoint?)`,
    );
  }
}
