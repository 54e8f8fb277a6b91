/**
 * Reading a component's config off the tensor shapes of an LDM-layout checkpoint. Shapes
 * give the structure (channels, depths, which blocks attend, widths); the rest (head counts,
 * group counts, scaling factors, token ids, sample sizes) is not stored in weights and comes
 * from the `base` config, the builtin config of the detected family.
 *
 * Head counts follow each family's rule: SD 1.x has 8 heads everywhere (`attention_head_dim`
 * 8 in diffusers' naming), SD 2.x and SDXL have 64-wide heads; text encoders have 64-wide
 * heads. Models that differ need their configs passed in.
 */
import type { JsonObject, JsonValue } from "../configs/config-json.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { Shape } from "./weight-modules.js";

/**
 * Tensor shapes of a whole checkpoint, with fast "is there a module here" queries. Keys are read
 * under `prefix` (a component's part of the file, see `under`); errors name the whole key.
 */
export class CheckpointShapes {
  private readonly modulePrefixes: ReadonlySet<string>;

  constructor(
    readonly shapes: ReadonlyMap<string, Shape>,
    readonly label: string,
    readonly prefix = "",
    modulePrefixes?: ReadonlySet<string>,
  ) {
    this.modulePrefixes = modulePrefixes ?? everyModulePrefix(shapes.keys());
  }

  /** The same checkpoint read under `prefix` too. */
  under(prefix: string): CheckpointShapes {
    return new CheckpointShapes(this.shapes, this.label, this.prefix + prefix, this.modulePrefixes);
  }

  get(key: string): Shape | undefined {
    return this.shapes.get(this.prefix + key);
  }

  require(key: string, why: string): Shape {
    const shape = this.get(key);
    if (!shape) {
      throw new Error(`${this.label}: missing "${this.prefix + key}" (needed to read ${why})`);
    }
    return shape;
  }

  /** The shape of the first key under the prefix that ends with `suffix`. */
  firstEndingWith(suffix: string): Shape | undefined {
    for (const [key, shape] of this.shapes) {
      if (key.startsWith(this.prefix) && key.endsWith(suffix)) return shape;
    }
    return undefined;
  }

  /** Whether any key starts with `prefix` (which ends with a dot). */
  hasModule(prefix: string): boolean {
    return this.modulePrefixes.has(this.prefix + prefix);
  }

  /** How many consecutive indices 0, 1, ... exist as `${prefix}${i}.` modules. */
  countIndexed(prefix: string): number {
    let count = 0;
    while (this.hasModule(`${prefix}${count}.`)) count++;
    return count;
  }
}

function everyModulePrefix(keys: Iterable<string>): Set<string> {
  const prefixes = new Set<string>();
  for (const key of keys) {
    for (let at = key.indexOf("."); at >= 0; at = key.indexOf(".", at + 1)) {
      prefixes.add(key.slice(0, at + 1));
    }
  }
  return prefixes;
}

/** One integer if all equal, else the list (diffusers accepts both). */
function compact(values: readonly number[]): JsonValue {
  return values.every((v) => v === values[0]) ? values[0] : [...values];
}

function normGroups(base: JsonObject, channels: readonly number[]): number {
  const preferred = typeof base.norm_num_groups === "number" ? base.norm_num_groups : 32;
  for (let groups = preferred; groups > 1; groups = Math.floor(groups / 2)) {
    if (channels.every((c) => c % groups === 0)) return groups;
  }
  return 1;
}

interface InferredBlock {
  layers: number;
  channels: number;
  /** Transformer depth per layer; 0 for a layer without attention. */
  depths: number[];
}

export function inferUnetConfig(
  ckpt: CheckpointShapes,
  family: ModelFamily,
  base: JsonObject,
  pooledTextDim: number | undefined,
): JsonObject {
  const convIn = ckpt.require("input_blocks.0.0.weight", "the UNet input channels");
  const convOut = ckpt.require("out.2.weight", "the UNet output channels");
  const timeEmbed = ckpt.require("time_embed.0.weight", "the UNet time embedding width");
  const unsupported = (why: string): never => {
    throw new Error(`${ckpt.label}: unsupported UNet layout: ${why}`);
  };
  const depthOf = (module: string) =>
    ckpt.hasModule(`${module}.1.proj_in.`)
      ? ckpt.countIndexed(`${module}.1.transformer_blocks.`)
      : 0;

  // Down path: runs of ResBlocks, each run closed by a downsampler except the last.
  const down: InferredBlock[] = [];
  let index = 1;
  for (;;) {
    const block: InferredBlock = { layers: 0, channels: 0, depths: [] };
    while (ckpt.get(`input_blocks.${index}.0.in_layers.0.weight`)) {
      block.channels = ckpt.require(
        `input_blocks.${index}.0.out_layers.3.weight`,
        "a resnet width",
      )[0];
      block.depths.push(depthOf(`input_blocks.${index}`));
      block.layers++;
      index++;
    }
    if (block.layers === 0) unsupported(`no ResBlock at input_blocks.${index}`);
    down.push(block);
    if (!ckpt.get(`input_blocks.${index}.0.op.weight`)) break;
    index++;
  }
  const blocks = down.length;

  // Up path: mirror of the down path with one more layer per block.
  const up: InferredBlock[] = [];
  index = 0;
  for (let b = 0; b < blocks; b++) {
    const block: InferredBlock = {
      layers: down[blocks - 1 - b].layers + 1,
      channels: 0,
      depths: [],
    };
    for (let j = 0; j < block.layers; j++, index++) {
      const out = ckpt.require(
        `output_blocks.${index}.0.out_layers.3.weight`,
        "an up-block resnet",
      );
      block.channels = out[0];
      block.depths.push(depthOf(`output_blocks.${index}`));
    }
    up.push(block);
  }
  if (ckpt.hasModule(`output_blocks.${index}.`)) {
    unsupported(`output_blocks.${index} is beyond the ${index} layers the down path implies`);
  }

  const midDepth = depthOf("middle_block");
  if (midDepth === 0) unsupported("the middle block has no transformer");

  const hasAttention = (block: InferredBlock, where: string) => {
    const attending = block.depths.filter((d) => d > 0).length;
    if (attending !== 0 && attending !== block.depths.length) {
      unsupported(`attention in only some layers of ${where}`);
    }
    return attending > 0;
  };
  const downAttention = down.map((block, b) => hasAttention(block, `down block ${b}`));
  const upAttention = up.map((block, b) => hasAttention(block, `up block ${b}`));

  // diffusers gives the middle block the depth of the last down block, so a last block
  // without attention carries the middle block's depth.
  const downDepths = down.map((block, b) => {
    if (downAttention[b]) return compact(block.depths);
    return b === blocks - 1 ? midDepth : 1;
  });
  if (downAttention[blocks - 1] && down[blocks - 1].depths.some((d) => d !== midDepth)) {
    unsupported("the middle block's depth differs from the last down block's");
  }
  const upDepths = up.map((block, b) => (upAttention[b] ? compact(block.depths) : 1));
  const reversedDown = [...downDepths].reverse();
  const upMatchesDown = upDepths.every(
    (depth, b) => !upAttention[b] || JSON.stringify(depth) === JSON.stringify(reversedDown[b]),
  );

  // Widths read from the first attention that exists.
  const firstAttention = ckpt.firstEndingWith(".attn2.to_k.weight");
  const firstProjIn = ckpt.firstEndingWith(".proj_in.weight");
  if (!firstAttention || !firstProjIn) unsupported("no cross-attention layer");
  const crossAttentionDim = firstAttention![1];
  const useLinearProjection = firstProjIn!.length === 2;

  const blockOutChannels = down.map((block) => block.channels);
  const c0 = blockOutChannels[0];
  const labelEmbed = ckpt.get("label_emb.0.0.weight");
  let additionTimeEmbedDim: JsonValue = base.addition_time_embed_dim ?? null;
  if (labelEmbed && pooledTextDim !== undefined) {
    // SDXL conditions on the pooled text embedding plus six sinusoidally embedded size numbers.
    const perNumber = (labelEmbed[1] - pooledTextDim) / 6;
    if (Number.isInteger(perNumber) && perNumber > 0) additionTimeEmbedDim = perNumber;
  }
  const attentionHeadDim: JsonValue =
    family === "sd1"
      ? (base.attention_head_dim ?? 8)
      : blockOutChannels.map((c) => Math.max(1, Math.floor(c / 64)));

  return {
    ...base,
    in_channels: convIn[1],
    out_channels: convOut[0],
    conv_in_kernel: convIn[2],
    conv_out_kernel: convOut[2],
    block_out_channels: blockOutChannels,
    layers_per_block: compact(down.map((block) => block.layers)),
    down_block_types: downAttention.map((a) => (a ? "CrossAttnDownBlock2D" : "DownBlock2D")),
    up_block_types: upAttention.map((a) => (a ? "CrossAttnUpBlock2D" : "UpBlock2D")),
    mid_block_type: "UNetMidBlock2DCrossAttn",
    transformer_layers_per_block: downDepths.every((d) => typeof d === "number")
      ? compact(downDepths as number[])
      : downDepths,
    reverse_transformer_layers_per_block: upMatchesDown ? null : upDepths,
    cross_attention_dim: crossAttentionDim,
    use_linear_projection: useLinearProjection,
    time_embedding_dim: timeEmbed[0] === 4 * c0 ? null : timeEmbed[0],
    addition_embed_type: labelEmbed ? "text_time" : null,
    addition_time_embed_dim: labelEmbed ? additionTimeEmbedDim : null,
    projection_class_embeddings_input_dim: labelEmbed ? labelEmbed[1] : null,
    attention_head_dim: attentionHeadDim,
    norm_num_groups: normGroups(base, blockOutChannels),
  };
}

export function inferVaeConfig(ckpt: CheckpointShapes, base: JsonObject): JsonObject {
  const convIn = ckpt.require("encoder.conv_in.weight", "the VAE input channels");
  const decoderIn = ckpt.require("decoder.conv_in.weight", "the VAE latent channels");
  const decoderOut = ckpt.require("decoder.conv_out.weight", "the VAE output channels");
  const blocks = ckpt.countIndexed("encoder.down.");
  if (blocks === 0)
    throw new Error(`${ckpt.label}: missing "${ckpt.prefix}encoder.down.0.*" VAE blocks`);
  const blockOutChannels = Array.from(
    { length: blocks },
    (_, b) => ckpt.require(`encoder.down.${b}.block.0.conv2.weight`, "a VAE block width")[0],
  );
  return {
    ...base,
    in_channels: convIn[1],
    out_channels: decoderOut[0],
    latent_channels: decoderIn[1],
    block_out_channels: blockOutChannels,
    layers_per_block: ckpt.countIndexed("encoder.down.0.block."),
    down_block_types: new Array(blocks).fill("DownEncoderBlock2D"),
    up_block_types: new Array(blocks).fill("UpDecoderBlock2D"),
    mid_block_add_attention: ckpt.hasModule("encoder.mid.attn_1."),
    use_quant_conv: ckpt.get("quant_conv.weight") !== undefined,
    use_post_quant_conv: ckpt.get("post_quant_conv.weight") !== undefined,
    norm_num_groups: normGroups(base, blockOutChannels),
  };
}

function headsFor(hidden: number, base: JsonObject): number {
  if (base.hidden_size === hidden && typeof base.num_attention_heads === "number") {
    return base.num_attention_heads;
  }
  return hidden % 64 === 0 ? hidden / 64 : 1;
}

/** A transformers CLIP text model; `ckpt` reads under its prefix (up to `embeddings.`). */
export function inferHfClipConfig(ckpt: CheckpointShapes, base: JsonObject): JsonObject {
  const tokens = ckpt.require("embeddings.token_embedding.weight", "the text encoder width");
  const positions = ckpt.require("embeddings.position_embedding.weight", "the text length");
  const fc1 = ckpt.require("encoder.layers.0.mlp.fc1.weight", "the text MLP width");
  return {
    ...base,
    vocab_size: tokens[0],
    hidden_size: tokens[1],
    max_position_embeddings: positions[0],
    intermediate_size: fc1[0],
    num_hidden_layers: ckpt.countIndexed("encoder.layers."),
    num_attention_heads: headsFor(tokens[1], base),
  };
}

/**
 * An OpenCLIP text tower. SD 2.x reads the penultimate layer's output, so diffusers' SD 2.x
 * text encoder omits the last residual block (`dropLastLayer`).
 */
export function inferOpenClipConfig(
  ckpt: CheckpointShapes,
  base: JsonObject,
  dropLastLayer: boolean,
): JsonObject {
  const tokens = ckpt.require("token_embedding.weight", "the text encoder width");
  const positions = ckpt.require("positional_embedding", "the text length");
  const fc = ckpt.require("transformer.resblocks.0.mlp.c_fc.weight", "the text MLP width");
  const projection = ckpt.get("text_projection");
  const layers = ckpt.countIndexed("transformer.resblocks.");
  return {
    ...base,
    vocab_size: tokens[0],
    hidden_size: tokens[1],
    max_position_embeddings: positions[0],
    intermediate_size: fc[0],
    num_hidden_layers: dropLastLayer ? layers - 1 : layers,
    num_attention_heads: headsFor(tokens[1], base),
    projection_dim: projection ? projection[1] : (base.projection_dim ?? tokens[1]),
  };
}
