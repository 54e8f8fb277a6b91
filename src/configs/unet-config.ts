/**
 * `unet/config.json` of diffusers' UNet2DConditionModel, parsed into a typed, fully resolved
 * description: every per-block field is expanded to one entry per block (and per layer where
 * diffusers allows that), with diffusers' defaults for absent fields. Values the builder does not
 * implement are rejected here with an error that names the field, so a build never silently
 * computes something else than the checkpoint's own library would.
 */
import { ConfigFields } from "./config-fields.js";

export const DOWN_BLOCK_TYPES = ["CrossAttnDownBlock2D", "DownBlock2D"] as const;
export const UP_BLOCK_TYPES = ["CrossAttnUpBlock2D", "UpBlock2D"] as const;
export const MID_BLOCK_TYPES = ["UNetMidBlock2DCrossAttn", "UNetMidBlock2D"] as const;

export type DownBlockType = (typeof DOWN_BLOCK_TYPES)[number];
export type UpBlockType = (typeof UP_BLOCK_TYPES)[number];
export type MidBlockType = (typeof MID_BLOCK_TYPES)[number];

/** Attention settings of a block with transformers (absent for plain resnet blocks). */
export interface BlockAttention {
  /** Attention heads; the head size is the block's channels / heads. */
  readonly heads: number;
  readonly crossAttentionDim: number;
  /** Transformer blocks in each Transformer2DModel of the block, one entry per resnet layer. */
  readonly transformerLayers: readonly number[];
}

export interface DownBlockConfig {
  readonly type: DownBlockType;
  readonly outChannels: number;
  /** Resnets (each followed by a transformer in cross-attention blocks). */
  readonly layers: number;
  readonly attention: BlockAttention | null;
  readonly addDownsample: boolean;
}

export interface UpBlockConfig {
  readonly type: UpBlockType;
  readonly outChannels: number;
  /** Resnets: one more than the matching down block, for the extra skip connection. */
  readonly layers: number;
  readonly attention: BlockAttention | null;
  readonly addUpsample: boolean;
}

export interface MidBlockConfig {
  readonly type: MidBlockType;
  readonly channels: number;
  readonly attention: BlockAttention | null;
  readonly outputScaleFactor: number;
}

/** SDXL's micro-conditioning: pooled text embeddings and size/crop ids added to the time embedding. */
export interface TextTimeConditioning {
  readonly type: "text_time";
  /** Sinusoidal features per time id. */
  readonly timeEmbedDim: number;
  /** Input width of add_embedding: text embedding width + time ids * timeEmbedDim. */
  readonly projectionInputDim: number;
}

export interface UnetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly sampleSize: number | null;
  readonly centerInputSample: boolean;
  readonly flipSinToCos: boolean;
  readonly freqShift: number;
  readonly blockOutChannels: readonly number[];
  readonly downBlocks: readonly DownBlockConfig[];
  readonly midBlock: MidBlockConfig | null;
  readonly upBlocks: readonly UpBlockConfig[];
  readonly normNumGroups: number;
  readonly normEps: number;
  readonly downsamplePadding: number;
  readonly resnetOutScaleFactor: number;
  readonly useLinearProjection: boolean;
  readonly upcastAttention: boolean;
  /** `scale_shift`: each resnet's time projection gives a scale and a shift (twice the width). */
  readonly resnetTimeScaleShift: ResnetTimeScaleShift;
  readonly convInKernel: number;
  readonly convOutKernel: number;
  /** Width of the time embedding fed to every resnet (block_out_channels[0] * 4 by default). */
  readonly timeEmbeddingDim: number;
  /** Activation applied to the time embedding after it is built (`time_embedding_act_fn`). */
  readonly timeEmbeddingActivation: "silu" | null;
  /** Activation at the end of the TimestepEmbedding MLP (`timestep_post_act`). */
  readonly timestepPostActivation: "silu" | null;
  readonly addition: TextTimeConditioning | null;
}

/**
 * What a config is read for. `build`: everything the graph builders implement. `weights`: also
 * options that only change which weights exist, for laying out and mapping the weights of a
 * model the builders cannot run (resnet_time_scale_shift "scale_shift").
 */
export type UnetConfigUse = "build" | "weights";

export type ResnetTimeScaleShift = "default" | "scale_shift";

const DEFAULT_DOWN: readonly DownBlockType[] = [
  "CrossAttnDownBlock2D",
  "CrossAttnDownBlock2D",
  "CrossAttnDownBlock2D",
  "DownBlock2D",
];
const DEFAULT_UP: readonly UpBlockType[] = [
  "UpBlock2D",
  "CrossAttnUpBlock2D",
  "CrossAttnUpBlock2D",
  "CrossAttnUpBlock2D",
];

/** diffusers spells SiLU both ways. */
const SILU_NAMES = ["silu", "swish"];

/** Parses a UNet2DConditionModel config; `label` names the file in error messages. */
export function parseUnetConfig(
  json: unknown,
  label = "unet/config.json",
  use: UnetConfigUse = "build",
): UnetConfig {
  const c = new ConfigFields(json, label);
  const className = c.optionalString("_class_name");
  if (className !== null && className !== "UNet2DConditionModel") {
    throw c.unsupported("_class_name");
  }
  rejectUnlessUnset(c, [
    "class_embed_type",
    "num_class_embeds",
    "time_cond_proj_dim",
    "encoder_hid_dim",
    "encoder_hid_dim_type",
    "cross_attention_norm",
  ]);
  rejectUnlessFalse(c, ["dual_cross_attention", "class_embeddings_concat"]);
  c.choice("attention_type", ["default"], "default");
  const resnetTimeScaleShift = c.choice<ResnetTimeScaleShift>(
    "resnet_time_scale_shift",
    use === "weights" ? ["default", "scale_shift"] : ["default"],
    "default",
  );
  c.choice("time_embedding_type", ["positional"], "positional");
  const actFn = c.string("act_fn", "silu");
  if (!SILU_NAMES.includes(actFn)) throw c.unsupported("act_fn");

  const { down: downTypes, up: upTypes } = c.blockTypes(
    { allowed: DOWN_BLOCK_TYPES, fallback: DEFAULT_DOWN },
    { allowed: UP_BLOCK_TYPES, fallback: DEFAULT_UP },
  );
  const blocks = downTypes.length;
  const blockOutChannels = c.perBlock("block_out_channels", [320, 640, 1280, 1280], blocks);
  if (!Array.isArray(c.raw("block_out_channels")) && c.raw("block_out_channels") !== undefined) {
    throw c.invalid("block_out_channels", "a list of integers, one per block");
  }
  const layersPerBlock = c.perBlock("layers_per_block", 2, blocks);
  const crossAttentionDim = c.perBlock("cross_attention_dim", 1280, blocks);
  // Historical naming: diffusers' `attention_head_dim` holds the number of heads unless
  // `num_attention_heads` is given (the head size is then channels / heads).
  const headsField = c.isUnset("num_attention_heads")
    ? "attention_head_dim"
    : "num_attention_heads";
  const heads = c.perBlock(headsField, 8, blocks);
  const onlyCross = c.raw("only_cross_attention");
  if (
    onlyCross !== undefined &&
    onlyCross !== null &&
    onlyCross !== false &&
    !(Array.isArray(onlyCross) && onlyCross.every((v) => v === false))
  ) {
    throw c.unsupported("only_cross_attention");
  }

  const transformerLayers = transformerLayersPerBlock(c, layersPerBlock);
  const reverseTransformerLayers = reverseTransformerLayersPerBlock(
    c,
    transformerLayers,
    layersPerBlock,
  );

  const attentionOf = (
    block: number,
    isCross: boolean,
    perLayer: readonly number[],
    headCount: number,
    crossDim: number,
  ): BlockAttention | null => {
    if (!isCross) return null;
    const channels = blockOutChannels[block];
    if (channels % headCount !== 0) {
      throw new Error(
        `${label}: block_out_channels[${block}] = ${channels} is not divisible by ${headsField} = ${headCount}`,
      );
    }
    return { heads: headCount, crossAttentionDim: crossDim, transformerLayers: perLayer };
  };

  const downBlocks: DownBlockConfig[] = downTypes.map((type, i) => ({
    type,
    outChannels: blockOutChannels[i],
    layers: layersPerBlock[i],
    attention: attentionOf(
      i,
      type === "CrossAttnDownBlock2D",
      transformerLayers[i],
      heads[i],
      crossAttentionDim[i],
    ),
    addDownsample: i < blocks - 1,
  }));

  const upBlocks: UpBlockConfig[] = upTypes.map((type, i) => {
    const mirror = blocks - 1 - i;
    return {
      type,
      outChannels: blockOutChannels[mirror],
      layers: layersPerBlock[mirror] + 1,
      attention: attentionOf(
        mirror,
        type === "CrossAttnUpBlock2D",
        reverseTransformerLayers[i],
        heads[mirror],
        crossAttentionDim[mirror],
      ),
      addUpsample: i < blocks - 1,
    };
  });

  const last = blocks - 1;
  const midBlock = parseMidBlock(c, blockOutChannels[last], (isCross) =>
    // The mid block has one transformer; a per-layer list contributes its first entry.
    attentionOf(last, isCross, [transformerLayers[last][0]], heads[last], crossAttentionDim[last]),
  );

  const normNumGroups = c.normGroups(blockOutChannels);

  const timeEmbeddingDim = c.optionalInteger("time_embedding_dim") ?? blockOutChannels[0] * 4;
  return {
    inChannels: c.integer("in_channels", 4, 1),
    outChannels: c.integer("out_channels", 4, 1),
    sampleSize: c.optionalInteger("sample_size"),
    centerInputSample: c.boolean("center_input_sample", false),
    flipSinToCos: c.boolean("flip_sin_to_cos", true),
    freqShift: c.number("freq_shift", 0),
    blockOutChannels,
    downBlocks,
    midBlock,
    upBlocks,
    normNumGroups,
    normEps: c.number("norm_eps", 1e-5),
    downsamplePadding: c.integer("downsample_padding", 1, 0),
    resnetOutScaleFactor: c.number("resnet_out_scale_factor", 1),
    useLinearProjection: c.boolean("use_linear_projection", false),
    upcastAttention: c.boolean("upcast_attention", false),
    resnetTimeScaleShift,
    convInKernel: oddKernel(c, "conv_in_kernel"),
    convOutKernel: oddKernel(c, "conv_out_kernel"),
    timeEmbeddingDim,
    timeEmbeddingActivation: optionalSilu(c, "time_embedding_act_fn"),
    timestepPostActivation: optionalSilu(c, "timestep_post_act"),
    addition: parseAddition(c),
  };
}

function rejectUnlessUnset(c: ConfigFields, fields: readonly string[]): void {
  for (const field of fields) if (!c.isUnset(field)) throw c.unsupported(field);
}

function rejectUnlessFalse(c: ConfigFields, fields: readonly string[]): void {
  for (const field of fields) if (c.boolean(field, false)) throw c.unsupported(field);
}

function oddKernel(c: ConfigFields, field: string): number {
  const kernel = c.integer(field, 3, 1);
  if (kernel % 2 !== 1) throw c.unsupported(field);
  return kernel;
}

function optionalSilu(c: ConfigFields, field: string): "silu" | null {
  const value = c.optionalString(field);
  if (value === null) return null;
  if (!SILU_NAMES.includes(value)) throw c.unsupported(field);
  return "silu";
}

/**
 * `transformer_layers_per_block`: an integer, one per block, or (asymmetric UNets) one list per
 * block with an entry per resnet layer. Resolved to the last form.
 */
function transformerLayersPerBlock(c: ConfigFields, layersPerBlock: readonly number[]): number[][] {
  const field = "transformer_layers_per_block";
  const value = c.raw(field) ?? 1;
  const blocks = layersPerBlock.length;
  const entries: unknown[] = Array.isArray(value) ? value : new Array(blocks).fill(value);
  if (entries.length !== blocks) {
    throw new Error(
      `${c.label}: ${field} has ${entries.length} entries, but the model has ${blocks} blocks`,
    );
  }
  return entries.map((entry, i) => perLayer(c, field, entry, layersPerBlock[i]));
}

function reverseTransformerLayersPerBlock(
  c: ConfigFields,
  transformerLayers: readonly number[][],
  layersPerBlock: readonly number[],
): number[][] {
  const field = "reverse_transformer_layers_per_block";
  const blocks = layersPerBlock.length;
  const upLayers = (i: number) => layersPerBlock[blocks - 1 - i] + 1;
  const value = c.raw(field);
  if (value === undefined || value === null) {
    const given = c.raw("transformer_layers_per_block");
    if (Array.isArray(given) && given.some((entry) => Array.isArray(entry))) {
      // As in diffusers: the up path of an asymmetric UNet cannot be guessed.
      throw new Error(
        `${c.label}: transformer_layers_per_block has per-layer lists, so reverse_transformer_layers_per_block is required`,
      );
    }
    return transformerLayers.map((_, i) =>
      new Array<number>(upLayers(i)).fill(transformerLayers[blocks - 1 - i][0]),
    );
  }
  if (!Array.isArray(value) || value.length !== blocks) {
    throw c.invalid(field, `a list with one entry per block (${blocks})`);
  }
  return value.map((entry, i) => perLayer(c, field, entry, upLayers(i)));
}

function perLayer(c: ConfigFields, field: string, entry: unknown, layers: number): number[] {
  const valid = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
  if (valid(entry)) return new Array<number>(layers).fill(entry as number);
  if (Array.isArray(entry) && entry.length === layers && entry.every(valid)) {
    return [...(entry as number[])];
  }
  throw c.invalid(field, "positive integers, or per-block lists with one entry per layer", entry);
}

function parseMidBlock(
  c: ConfigFields,
  channels: number,
  attentionOf: (isCross: boolean) => BlockAttention | null,
): MidBlockConfig | null {
  // An explicit null means "no mid block"; an absent field means the default cross-attention one.
  if (c.raw("mid_block_type") === null) return null;
  const type = c.choice("mid_block_type", MID_BLOCK_TYPES, "UNetMidBlock2DCrossAttn");
  const outputScaleFactor = c.number("mid_block_scale_factor", 1);
  return {
    type,
    channels,
    attention: attentionOf(type === "UNetMidBlock2DCrossAttn"),
    outputScaleFactor,
  };
}

function parseAddition(c: ConfigFields): TextTimeConditioning | null {
  const type = c.optionalString("addition_embed_type");
  if (type === null) return null;
  if (type !== "text_time") throw c.unsupported("addition_embed_type");
  const timeEmbedDim = c.optionalInteger("addition_time_embed_dim");
  if (timeEmbedDim === null) throw c.invalid("addition_time_embed_dim", "an integer for text_time");
  const projectionInputDim = c.optionalInteger("projection_class_embeddings_input_dim");
  if (projectionInputDim === null) {
    throw c.invalid("projection_class_embeddings_input_dim", "an integer for text_time");
  }
  return { type, timeEmbedDim, projectionInputDim };
}

/** One Transformer2DModel of the UNet: where it sits, at which spatial level, what it holds. */
export interface UnetAttentionSite {
  /** diffusers module path: `down_blocks.1.attentions.0`, `mid_block.attentions.0`. */
  readonly module: string;
  /**
   * Spatial level: 1 at the full latent resolution, one more after each downsampler, one less
   * after each upsampler. It follows the block's position, never its channel width.
   */
  readonly level: number;
  readonly channels: number;
  readonly attention: BlockAttention;
  /** Transformer blocks inside; each has one self-attention (`attn1`) and one cross-attention. */
  readonly depth: number;
}

/**
 * The spatial level of a UNet block from its position alone. Every down block but the last ends
 * with a downsampler and every up block but the last with an upsampler, so down block `i` is at
 * level i + 1, the mid block at `blocks` (the number of down blocks) and up block `j` at
 * blocks - j. The patch rules read ONNX exports by the same rule, from module paths.
 */
export function unetBlockLevel(part: "down" | "mid" | "up", index: number, blocks: number): number {
  if (part === "down") return index + 1;
  return part === "mid" ? blocks : blocks - index;
}

/**
 * Every attention site of the UNet in execution order. The builder places its transformers and
 * their token reduction by it, the weight layout its transformers' tensors, and `info` counts
 * self-attention per level from it; the patch rules, which see node names and no config, read
 * levels from module paths by the same `unetBlockLevel`.
 */
export function unetAttentionSites(config: UnetConfig): UnetAttentionSite[] {
  const sites: UnetAttentionSite[] = [];
  const blocks = config.downBlocks.length;
  const add = (
    part: "down" | "mid" | "up",
    index: number,
    channels: number,
    attention: BlockAttention | null,
    layers: number,
  ) => {
    if (!attention) return;
    const block = part === "mid" ? "mid_block" : `${part}_blocks.${index}`;
    const level = unetBlockLevel(part, index, blocks);
    for (let j = 0; j < layers; j++) {
      const depth = attention.transformerLayers[j];
      sites.push({ module: `${block}.attentions.${j}`, level, channels, attention, depth });
    }
  };
  for (const [i, b] of config.downBlocks.entries()) {
    add("down", i, b.outChannels, b.attention, b.layers);
  }
  const mid = config.midBlock;
  if (mid) add("mid", 0, mid.channels, mid.attention, 1);
  for (const [i, b] of config.upBlocks.entries())
    add("up", i, b.outChannels, b.attention, b.layers);
  return sites;
}
