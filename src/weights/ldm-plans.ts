/**
 * Where each diffusers/transformers weight lives in a single-file checkpoint of the original
 * LDM layout (CompVis `ldm` for SD 1.x/2.x, Stability's `sgm` for SDXL). A plan maps every key
 * a config implies to its source key in the file and how to turn the stored tensor into the
 * diffusers one. Plans are built from rule tables: a regular expression over the diffusers key
 * and the source key it names.
 *
 * The source of truth for the key set is the config (via the layout enumerators), so a mapped
 * checkpoint exposes exactly the keys diffusers would have.
 */
import type { ClipTextConfig } from "../configs/clip-config.js";
import type { UnetConfig } from "../configs/unet-config.js";
import type { VaeConfig } from "../configs/vae-config.js";
import type { SafetensorsFile } from "./safetensors.js";
import { KeyedWeightSource, sameShape, type WeightInfo } from "./source.js";
import {
  clipTextModules,
  flattenModules,
  type Shape,
  unetModules,
  vaeModules,
  type WeightModule,
} from "./weight-modules.js";

/**
 * How a stored tensor becomes the diffusers tensor:
 * - `direct`: the same data. Shapes may differ by trailing 1s only: a 1x1 convolution
 *   [C,C,1,1] stored where diffusers has a linear layer [C,C] is the same row-major data.
 * - `transpose`: a 2-D matrix stored transposed (OpenCLIP's `text_projection` is applied as
 *   `x @ P`, a Linear layer as `x @ W^T`).
 * - `rows`: one of `parts` equal row blocks of a stacked tensor (OpenCLIP's fused `in_proj`
 *   holds the query, key and value projections one above the other).
 */
export type Transform =
  | { readonly kind: "direct" }
  | { readonly kind: "transpose" }
  | { readonly kind: "rows"; readonly part: number; readonly parts: number };

export interface KeyMapping {
  /** Full key in the checkpoint, component prefix included. */
  readonly source: string;
  readonly transform: Transform;
  /** The diffusers shape. */
  readonly shape: Shape;
}

/** diffusers key -> where it is in the checkpoint. */
export type KeyPlan = ReadonlyMap<string, KeyMapping>;

const DIRECT: Transform = { kind: "direct" };

interface Rule {
  readonly pattern: RegExp;
  /** The source key (relative to the component prefix) for a match, or with its transform. */
  readonly source: (match: RegExpExecArray) => string | readonly [string, Transform];
}

function planFromRules(
  modules: readonly WeightModule[],
  rules: readonly Rule[],
  prefix: string,
): Map<string, KeyMapping> {
  const plan = new Map<string, KeyMapping>();
  for (const [key, shape] of flattenModules(modules)) {
    let mapping: KeyMapping | undefined;
    for (const rule of rules) {
      const match = rule.pattern.exec(key);
      if (!match) continue;
      const target = rule.source(match);
      const [source, transform] = typeof target === "string" ? [target, DIRECT] : target;
      mapping = { source: prefix + source, transform, shape };
      break;
    }
    // The rules cover every key the enumerators produce; a miss is a bug here, not bad input.
    if (!mapping) throw new Error(`no single-file rule for weight "${key}"`);
    plan.set(key, mapping);
  }
  return plan;
}

/**
 * Renames the leading sub-module of a suffix by a table (`conv1.weight` -> `in_layers.2.weight`).
 * Names absent from the table are kept.
 */
function renameSubmodule(suffix: string, table: Readonly<Record<string, string>>): string {
  for (const [from, to] of Object.entries(table)) {
    if (suffix.startsWith(`${from}.`)) return to + suffix.slice(from.length);
  }
  return suffix;
}

/** A decimal index captured by a rule's pattern. */
const n = (text: string) => Number.parseInt(text, 10);

// ---------------------------------------------------------------------------------- UNet

/** diffusers ResnetBlock2D names -> LDM ResBlock names (Sequential indices of its layers). */
const UNET_RESNET_NAMES: Readonly<Record<string, string>> = {
  norm1: "in_layers.0",
  conv1: "in_layers.2",
  time_emb_proj: "emb_layers.1",
  norm2: "out_layers.0",
  conv2: "out_layers.3",
  conv_shortcut: "skip_connection",
};

/**
 * LDM numbers the UNet's layers flat: `input_blocks.0` is conv_in, then each down block's
 * layers (a ResBlock, plus a SpatialTransformer for attention blocks) and its downsampler take
 * one index each; `output_blocks` hold each up block's layers, the upsampler sitting inside the
 * block's last layer after its resnet (and attention). The transformers inside keep diffusers'
 * names.
 */
export function ldmUnetPlan(config: UnetConfig, prefix: string): KeyPlan {
  const inputIndex: number[][] = [];
  const downsamplerIndex: number[] = [];
  let next = 1;
  for (const block of config.downBlocks) {
    inputIndex.push(Array.from({ length: block.layers }, () => next++));
    if (block.addDownsample) downsamplerIndex.push(next++);
  }
  const outputIndex: number[][] = [];
  next = 0;
  for (const block of config.upBlocks) {
    outputIndex.push(Array.from({ length: block.layers }, () => next++));
  }
  const upsampler = (b: number): string => {
    const last = outputIndex[b][outputIndex[b].length - 1];
    return `output_blocks.${last}.${config.upBlocks[b].attention ? 2 : 1}.conv`;
  };
  const resnet = (at: string, suffix: string) =>
    `${at}.${renameSubmodule(suffix, UNET_RESNET_NAMES)}`;

  const rules: Rule[] = [
    { pattern: /^conv_in\.(.+)$/, source: (m) => `input_blocks.0.0.${m[1]}` },
    { pattern: /^time_embedding\.linear_1\.(.+)$/, source: (m) => `time_embed.0.${m[1]}` },
    { pattern: /^time_embedding\.linear_2\.(.+)$/, source: (m) => `time_embed.2.${m[1]}` },
    { pattern: /^add_embedding\.linear_1\.(.+)$/, source: (m) => `label_emb.0.0.${m[1]}` },
    { pattern: /^add_embedding\.linear_2\.(.+)$/, source: (m) => `label_emb.0.2.${m[1]}` },
    {
      pattern: /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      source: (m) => resnet(`input_blocks.${inputIndex[n(m[1])][n(m[2])]}.0`, m[3]),
    },
    {
      pattern: /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/,
      source: (m) => `input_blocks.${inputIndex[n(m[1])][n(m[2])]}.1.${m[3]}`,
    },
    {
      pattern: /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/,
      source: (m) => `input_blocks.${downsamplerIndex[n(m[1])]}.0.op.${m[2]}`,
    },
    { pattern: /^mid_block\.resnets\.0\.(.+)$/, source: (m) => resnet("middle_block.0", m[1]) },
    { pattern: /^mid_block\.attentions\.0\.(.+)$/, source: (m) => `middle_block.1.${m[1]}` },
    { pattern: /^mid_block\.resnets\.1\.(.+)$/, source: (m) => resnet("middle_block.2", m[1]) },
    {
      pattern: /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      source: (m) => resnet(`output_blocks.${outputIndex[n(m[1])][n(m[2])]}.0`, m[3]),
    },
    {
      pattern: /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/,
      source: (m) => `output_blocks.${outputIndex[n(m[1])][n(m[2])]}.1.${m[3]}`,
    },
    {
      pattern: /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/,
      source: (m) => `${upsampler(n(m[1]))}.${m[2]}`,
    },
    { pattern: /^conv_norm_out\.(.+)$/, source: (m) => `out.0.${m[1]}` },
    { pattern: /^conv_out\.(.+)$/, source: (m) => `out.2.${m[1]}` },
  ];
  return planFromRules(unetModules(config), rules, prefix);
}

// ----------------------------------------------------------------------------------- VAE

const VAE_RESNET_NAMES: Readonly<Record<string, string>> = { conv_shortcut: "nin_shortcut" };

/** diffusers Attention names -> LDM AttnBlock names (whose projections are 1x1 convolutions). */
const VAE_ATTENTION_NAMES: Readonly<Record<string, string>> = {
  group_norm: "norm",
  to_q: "q",
  to_k: "k",
  to_v: "v",
  "to_out.0": "proj_out",
};

/**
 * The LDM autoencoder names blocks `down.{i}.block.{j}` / `up.{i}.block.{j}`, and numbers its
 * decoder's up blocks from the lowest resolution's opposite end: diffusers' up_blocks.0 (the
 * first to run) is LDM's `up.{n-1}`.
 */
export function ldmVaePlan(config: VaeConfig, prefix: string): KeyPlan {
  const blocks = config.blockOutChannels.length;
  const rules: Rule[] = [
    {
      pattern: /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      source: (m) =>
        `encoder.down.${m[1]}.block.${m[2]}.${renameSubmodule(m[3], VAE_RESNET_NAMES)}`,
    },
    {
      pattern: /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/,
      source: (m) => `encoder.down.${m[1]}.downsample.conv.${m[2]}`,
    },
    {
      pattern: /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      source: (m) =>
        `decoder.up.${blocks - 1 - n(m[1])}.block.${m[2]}.${renameSubmodule(m[3], VAE_RESNET_NAMES)}`,
    },
    {
      pattern: /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/,
      source: (m) => `decoder.up.${blocks - 1 - n(m[1])}.upsample.conv.${m[2]}`,
    },
    {
      pattern: /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/,
      source: (m) => `${m[1]}.mid.block_${n(m[2]) + 1}.${renameSubmodule(m[3], VAE_RESNET_NAMES)}`,
    },
    {
      pattern: /^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$/,
      source: (m) => `${m[1]}.mid.attn_1.${renameSubmodule(m[2], VAE_ATTENTION_NAMES)}`,
    },
    {
      pattern: /^(encoder|decoder)\.conv_norm_out\.(.+)$/,
      source: (m) => `${m[1]}.norm_out.${m[2]}`,
    },
    // conv_in, conv_out, quant_conv and post_quant_conv keep their names.
    { pattern: /^(.+)$/, source: (m) => m[1] },
  ];
  return planFromRules(vaeModules(config), rules, prefix);
}

// -------------------------------------------------------------------------- text encoders

/**
 * A transformers CLIPTextModel saved inside the checkpoint (SD 1.x `cond_stage_model.transformer.`,
 * SDXL `conditioner.embedders.0.transformer.`): the same names under a prefix. `prefix` is
 * where `text_model.` begins; old checkpoints saved before transformers had the `text_model`
 * wrapper put its children directly under the prefix (`hasTextModelLevel` false).
 */
export function hfClipPlan(
  config: ClipTextConfig,
  withProjection: boolean,
  prefix: string,
  hasTextModelLevel: boolean,
): KeyPlan {
  const rules: Rule[] = [
    {
      pattern: /^text_model\.(.+)$/,
      source: (m) => (hasTextModelLevel ? `text_model.${m[1]}` : m[1]),
    },
    { pattern: /^(text_projection\..+)$/, source: (m) => m[1] },
  ];
  return planFromRules(clipTextModules(config, withProjection), rules, prefix);
}

const OPEN_CLIP_LAYER_NAMES: Readonly<Record<string, string>> = {
  "self_attn.out_proj": "attn.out_proj",
  layer_norm1: "ln_1",
  layer_norm2: "ln_2",
  "mlp.fc1": "mlp.c_fc",
  "mlp.fc2": "mlp.c_proj",
};

/**
 * An OpenCLIP text tower (SD 2.x `cond_stage_model.model.`, SDXL
 * `conditioner.embedders.1.model.`): residual blocks `transformer.resblocks.{i}` with a fused
 * query/key/value projection, and a projection matrix stored transposed.
 */
export function openClipPlan(
  config: ClipTextConfig,
  withProjection: boolean,
  prefix: string,
): KeyPlan {
  const QKV = ["q", "k", "v"];
  const rules: Rule[] = [
    {
      pattern: /^text_model\.embeddings\.token_embedding\.weight$/,
      source: () => "token_embedding.weight",
    },
    {
      pattern: /^text_model\.embeddings\.position_embedding\.weight$/,
      source: () => "positional_embedding",
    },
    { pattern: /^text_model\.final_layer_norm\.(.+)$/, source: (m) => `ln_final.${m[1]}` },
    {
      pattern: /^text_projection\.weight$/,
      source: () => ["text_projection", { kind: "transpose" }],
    },
    {
      pattern: /^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/,
      source: (m) => [
        `transformer.resblocks.${m[1]}.attn.in_proj_${m[3]}`,
        { kind: "rows", part: QKV.indexOf(m[2]), parts: 3 },
      ],
    },
    {
      pattern: /^text_model\.encoder\.layers\.(\d+)\.(.+)$/,
      source: (m) =>
        `transformer.resblocks.${m[1]}.${renameSubmodule(m[2], OPEN_CLIP_LAYER_NAMES)}`,
    },
  ];
  return planFromRules(clipTextModules(config, withProjection), rules, prefix);
}

/** The stored shape a mapping expects (the inverse of its transform), for checks and tests. */
export function storedShape(mapping: KeyMapping): Shape {
  const { shape, transform } = mapping;
  switch (transform.kind) {
    case "direct":
      return shape;
    case "transpose":
      return [...shape].reverse();
    case "rows":
      return [shape[0] * transform.parts, ...shape.slice(1)];
  }
}

/**
 * A `WeightSource` that shows a component of a single-file checkpoint under diffusers names:
 * each read fetches the stored tensor and applies its plan's transform (row slice, transpose).
 */
export class MappedWeightSource extends KeyedWeightSource<KeyMapping> {
  /** Checks that every planned source exists with a compatible shape; one error lists problems. */
  constructor(
    label: string,
    private readonly file: SafetensorsFile,
    plan: KeyPlan,
  ) {
    super(label, plan);
    const problems: string[] = [];
    for (const [key, mapping] of plan) {
      if (!file.has(mapping.source)) {
        problems.push(`missing "${mapping.source}" (for ${key})`);
        continue;
      }
      const stored = file.info(mapping.source).shape;
      if (!storedShapeFits(stored, mapping)) {
        problems.push(
          `"${mapping.source}" has shape [${stored.join(",")}], expected [${storedShape(mapping).join(",")}] (for ${key})`,
        );
      }
    }
    if (problems.length > 0) {
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
      throw new Error(`${label} does not match its config: ${problems[0]}${more}`);
    }
  }

  identity(): unknown {
    return { file: this.file.identity(), mapped: this.label, keys: this.entries.size };
  }

  info(key: string): WeightInfo {
    const mapping = this.entry(key);
    return { dtype: this.file.info(mapping.source).dtype, shape: mapping.shape };
  }

  readFloat32(key: string): Float32Array {
    const mapping = this.entry(key);
    return applyTransform(this.file.readFloat32(mapping.source), mapping);
  }

  readFloat16(key: string): Uint16Array | undefined {
    const mapping = this.entry(key);
    const bits = this.file.readFloat16Bits(mapping.source);
    return bits && applyTransform(bits, mapping);
  }
}

/** Equal shapes, up to trailing 1s (a 1x1 convolution kernel and a matrix hold the same data). */
function storedShapeFits(stored: Shape, mapping: KeyMapping): boolean {
  const expected = storedShape(mapping);
  const trim = (shape: Shape) => {
    let end = shape.length;
    while (end > 1 && shape[end - 1] === 1) end--;
    return shape.slice(0, end);
  };
  if (mapping.transform.kind !== "direct") return sameShape(stored, expected);
  return sameShape(trim(stored), trim(expected));
}

function applyTransform<T extends Float32Array | Uint16Array>(values: T, mapping: KeyMapping): T {
  const { transform, shape } = mapping;
  switch (transform.kind) {
    case "direct":
      return values;
    case "rows": {
      const size = shape.reduce((a, b) => a * b, 1);
      return values.slice(transform.part * size, (transform.part + 1) * size) as T;
    }
    case "transpose": {
      // Stored [cols, rows], wanted [rows, cols].
      const [rows, cols] = shape;
      const out = new (values.constructor as new (n: number) => T)(values.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) out[r * cols + c] = values[c * rows + r];
      }
      return out;
    }
  }
}
