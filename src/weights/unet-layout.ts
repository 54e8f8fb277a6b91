/**
 * The weight layout of diffusers' UNet2DConditionModel (SD 1.x, SD 2.x, SDXL): which modules
 * exist for a config and the shapes of their tensors. Head counts do not change any shape, so
 * they are not read here.
 */
import { ConfigReader } from "./config-fields.js";
import type { JsonObject } from "./config-json.js";
import {
  conv2d,
  flattenModules,
  linear,
  norm,
  resnetTensors,
  type Shape,
  under,
  type WeightModule,
} from "./weight-modules.js";

export interface UnetBlockLayout {
  readonly hasAttention: boolean;
  /** Resnets in the block (down: layers_per_block, up: layers_per_block + 1). */
  readonly layers: number;
  /** Transformer blocks inside each layer's attention, when the block has attention. */
  readonly transformerDepth: readonly number[];
  readonly crossAttentionDim: number;
  /** Whether the block ends with a downsampler (down) or an upsampler (up). */
  readonly resample: boolean;
}

export interface UnetLayout {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly convInKernel: number;
  readonly convOutKernel: number;
  readonly timeEmbedDim: number;
  /** Input width of SDXL's `add_embedding` (text_time conditioning), when present. */
  readonly additionEmbedInputDim: number | undefined;
  readonly useLinearProjection: boolean;
  readonly scaleShift: boolean;
  readonly down: readonly UnetBlockLayout[];
  readonly mid: { readonly transformerDepth: number; readonly crossAttentionDim: number };
  readonly up: readonly UnetBlockLayout[];
}

const DOWN_BLOCK_TYPES = ["CrossAttnDownBlock2D", "DownBlock2D"];
const UP_BLOCK_TYPES = ["CrossAttnUpBlock2D", "UpBlock2D"];

export function unetLayout(config: JsonObject, label = "unet config"): UnetLayout {
  const c = new ConfigReader(config, label);
  const what = "UNet";
  c.requireValue("class_embed_type", [undefined, null], what);
  c.requireValue("num_class_embeds", [undefined, null], what);
  c.requireValue("encoder_hid_dim_type", [undefined, null], what);
  c.requireValue("encoder_hid_dim", [undefined, null], what);
  c.requireValue("time_cond_proj_dim", [undefined, null], what);
  c.requireValue("time_embedding_type", [undefined, "positional"], what);
  c.requireValue("addition_embed_type", [undefined, null, "text_time"], what);
  c.requireValue("mid_block_type", [undefined, "UNetMidBlock2DCrossAttn"], what);
  c.requireValue("only_cross_attention", [undefined, false], what);
  c.requireValue("dual_cross_attention", [undefined, false], what);
  c.requireValue("attention_type", [undefined, "default"], what);
  c.requireValue("resnet_time_scale_shift", [undefined, "default", "scale_shift"], what);

  const blockOutChannels = c.intList("block_out_channels");
  const blocks = blockOutChannels.length;
  const downTypes = c.stringList("down_block_types");
  const upTypes = c.stringList("up_block_types");
  if (blocks === 0) c.fail("block_out_channels", "a non-empty list", blockOutChannels);
  if (downTypes.length !== blocks)
    c.fail("down_block_types", `a list of ${blocks} names`, downTypes);
  if (upTypes.length !== blocks) c.fail("up_block_types", `a list of ${blocks} names`, upTypes);
  for (const [field, types, allowed] of [
    ["down_block_types", downTypes, DOWN_BLOCK_TYPES],
    ["up_block_types", upTypes, UP_BLOCK_TYPES],
  ] as const) {
    for (const type of types) {
      if (!allowed.includes(type)) c.fail(field, `made of ${allowed.join(" or ")}`, types);
    }
  }

  const downLayers = c.intPerBlock("layers_per_block", blocks, 2);
  const upLayers = [...downLayers].reverse().map((n) => n + 1);
  const crossDims = c.intPerBlock("cross_attention_dim", blocks, 1280);
  const downDepth = c.intPerBlockPerLayer("transformer_layers_per_block", downLayers, 1);
  let upDepth: number[][];
  if (c.has("reverse_transformer_layers_per_block")) {
    upDepth = c.intPerBlockPerLayer("reverse_transformer_layers_per_block", upLayers);
  } else {
    upDepth = upLayers.map((layers, i) => {
      const depths = downDepth[blocks - 1 - i];
      if (!depths.every((d) => d === depths[0])) {
        c.fail(
          "reverse_transformer_layers_per_block",
          "given when transformer_layers_per_block varies within a block",
          null,
        );
      }
      return new Array<number>(layers).fill(depths[0] ?? 1);
    });
  }

  const down = downTypes.map(
    (type, i): UnetBlockLayout => ({
      hasAttention: type === "CrossAttnDownBlock2D",
      layers: downLayers[i],
      transformerDepth: downDepth[i],
      crossAttentionDim: crossDims[i],
      resample: i < blocks - 1,
    }),
  );
  const up = upTypes.map(
    (type, i): UnetBlockLayout => ({
      hasAttention: type === "CrossAttnUpBlock2D",
      layers: upLayers[i],
      transformerDepth: upDepth[i],
      crossAttentionDim: crossDims[blocks - 1 - i],
      resample: i < blocks - 1,
    }),
  );
  const lastDepths = downDepth[blocks - 1];
  const additionType = c.optionalString("addition_embed_type");
  return {
    inChannels: c.int("in_channels", 4),
    outChannels: c.int("out_channels", 4),
    blockOutChannels,
    convInKernel: c.int("conv_in_kernel", 3),
    convOutKernel: c.int("conv_out_kernel", 3),
    timeEmbedDim: c.optionalInt("time_embedding_dim") ?? blockOutChannels[0] * 4,
    additionEmbedInputDim:
      additionType === "text_time" ? c.int("projection_class_embeddings_input_dim") : undefined,
    useLinearProjection: c.bool("use_linear_projection", false),
    scaleShift: c.optionalString("resnet_time_scale_shift") === "scale_shift",
    down,
    mid: {
      transformerDepth: lastDepths[lastDepths.length - 1] ?? 1,
      crossAttentionDim: crossDims[blocks - 1],
    },
    up,
  };
}

/** Transformer2DModel with `depth` BasicTransformerBlocks (self-attention, cross-attention, GEGLU). */
function transformerTensors(
  channels: number,
  depth: number,
  crossAttentionDim: number,
  linearProjection: boolean,
): [string, Shape][] {
  const projection = (): [string, Shape][] =>
    linearProjection ? linear(channels, channels) : conv2d(channels, channels, 1);
  const tensors: [string, Shape][] = [
    ...under("norm", norm(channels)),
    ...under("proj_in", projection()),
  ];
  for (let t = 0; t < depth; t++) {
    const block = `transformer_blocks.${t}`;
    tensors.push(
      ...under(`${block}.norm1`, norm(channels)),
      ...under(`${block}.attn1`, attentionTensors(channels, channels)),
      ...under(`${block}.norm2`, norm(channels)),
      ...under(`${block}.attn2`, attentionTensors(channels, crossAttentionDim)),
      ...under(`${block}.norm3`, norm(channels)),
      // GEGLU projects to twice the 4x inner width: one half gates the other.
      ...under(`${block}.ff.net.0.proj`, linear(8 * channels, channels)),
      ...under(`${block}.ff.net.2`, linear(channels, 4 * channels)),
    );
  }
  tensors.push(...under("proj_out", projection()));
  return tensors;
}

function attentionTensors(channels: number, contextChannels: number): [string, Shape][] {
  return [
    ...under("to_q", linear(channels, channels, false)),
    ...under("to_k", linear(channels, contextChannels, false)),
    ...under("to_v", linear(channels, contextChannels, false)),
    ...under("to_out.0", linear(channels, channels)),
  ];
}

export function unetModules(layout: UnetLayout): WeightModule[] {
  const boc = layout.blockOutChannels;
  const temb = layout.timeEmbedDim;
  const resnet = (inC: number, outC: number) => resnetTensors(inC, outC, temb, layout.scaleShift);
  const transformer = (channels: number, depth: number, cross: number) =>
    transformerTensors(channels, depth, cross, layout.useLinearProjection);
  const modules: WeightModule[] = [
    { prefix: "conv_in", tensors: conv2d(boc[0], layout.inChannels, layout.convInKernel) },
    { prefix: "time_embedding.linear_1", tensors: linear(temb, boc[0]) },
    { prefix: "time_embedding.linear_2", tensors: linear(temb, temb) },
  ];
  if (layout.additionEmbedInputDim !== undefined) {
    modules.push(
      { prefix: "add_embedding.linear_1", tensors: linear(temb, layout.additionEmbedInputDim) },
      { prefix: "add_embedding.linear_2", tensors: linear(temb, temb) },
    );
  }

  let channels = boc[0];
  layout.down.forEach((block, b) => {
    const outC = boc[b];
    for (let j = 0; j < block.layers; j++) {
      modules.push({
        prefix: `down_blocks.${b}.resnets.${j}`,
        tensors: resnet(j === 0 ? channels : outC, outC),
      });
      if (block.hasAttention) {
        modules.push({
          prefix: `down_blocks.${b}.attentions.${j}`,
          tensors: transformer(outC, block.transformerDepth[j], block.crossAttentionDim),
        });
      }
    }
    if (block.resample) {
      modules.push({
        prefix: `down_blocks.${b}.downsamplers.0.conv`,
        tensors: conv2d(outC, outC, 3),
      });
    }
    channels = outC;
  });

  const midC = boc[boc.length - 1];
  modules.push(
    { prefix: "mid_block.resnets.0", tensors: resnet(midC, midC) },
    {
      prefix: "mid_block.attentions.0",
      tensors: transformer(midC, layout.mid.transformerDepth, layout.mid.crossAttentionDim),
    },
    { prefix: "mid_block.resnets.1", tensors: resnet(midC, midC) },
  );

  // Each up-block resnet takes the previous output concatenated with one skip connection
  // from the down path, in the reverse order the down path produced them.
  const reversed = [...boc].reverse();
  let previous = reversed[0];
  layout.up.forEach((block, b) => {
    const outC = reversed[b];
    const skipOfLast = reversed[Math.min(b + 1, boc.length - 1)];
    for (let j = 0; j < block.layers; j++) {
      const inC = j === 0 ? previous : outC;
      const skipC = j === block.layers - 1 ? skipOfLast : outC;
      modules.push({ prefix: `up_blocks.${b}.resnets.${j}`, tensors: resnet(inC + skipC, outC) });
      if (block.hasAttention) {
        modules.push({
          prefix: `up_blocks.${b}.attentions.${j}`,
          tensors: transformer(outC, block.transformerDepth[j], block.crossAttentionDim),
        });
      }
    }
    if (block.resample) {
      modules.push({ prefix: `up_blocks.${b}.upsamplers.0.conv`, tensors: conv2d(outC, outC, 3) });
    }
    previous = outC;
  });

  modules.push(
    { prefix: "conv_norm_out", tensors: norm(boc[0]) },
    { prefix: "conv_out", tensors: conv2d(layout.outChannels, boc[0], layout.convOutKernel) },
  );
  return modules;
}

/** Every UNet weight key with its shape, exactly as diffusers names them. */
export function unetWeightShapes(config: JsonObject, label?: string): Map<string, Shape> {
  return flattenModules(unetModules(unetLayout(config, label)));
}
