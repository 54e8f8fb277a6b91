/**
 * The weight layout of diffusers' UNet2DConditionModel (SD 1.x, SD 2.x, SDXL): which modules
 * exist for a config and the shapes of their tensors, derived from the same typed config the
 * builder reads, so the two accept the same models. Head counts do not change any shape.
 */
import type { JsonObject } from "../configs/config-json.js";
import { parseUnetConfig, type UnetConfig, unetAttentionSites } from "../configs/unet-config.js";
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

export function unetModules(config: UnetConfig): WeightModule[] {
  const boc = config.blockOutChannels;
  const temb = config.timeEmbeddingDim;
  const scaleShift = config.resnetTimeScaleShift === "scale_shift";
  const modules: WeightModule[] = [
    { prefix: "conv_in", tensors: conv2d(boc[0], config.inChannels, config.convInKernel) },
    { prefix: "time_embedding.linear_1", tensors: linear(temb, boc[0]) },
    { prefix: "time_embedding.linear_2", tensors: linear(temb, temb) },
  ];
  if (config.addition) {
    modules.push(
      {
        prefix: "add_embedding.linear_1",
        tensors: linear(temb, config.addition.projectionInputDim),
      },
      { prefix: "add_embedding.linear_2", tensors: linear(temb, temb) },
    );
  }
  const resnet = (prefix: string, inC: number, outC: number) =>
    modules.push({ prefix, tensors: resnetTensors(inC, outC, temb, scaleShift) });
  // The transformers sit where the one list of attention sites says, as in the builder.
  const sites = new Map(unetAttentionSites(config).map((site) => [site.module, site]));
  const attention = (module: string) => {
    const site = sites.get(module);
    if (!site) return;
    const { channels, depth, attention } = site;
    const tensors = transformerTensors(
      channels,
      depth,
      attention.crossAttentionDim,
      config.useLinearProjection,
    );
    modules.push({ prefix: module, tensors });
  };

  // The skip connections as the builder keeps them: each up-block resnet takes the previous
  // output concatenated with the last skip the down path left.
  let width = boc[0];
  const skips: number[] = [width];
  config.downBlocks.forEach((block, b) => {
    for (let j = 0; j < block.layers; j++) {
      resnet(`down_blocks.${b}.resnets.${j}`, width, block.outChannels);
      width = block.outChannels;
      attention(`down_blocks.${b}.attentions.${j}`);
      skips.push(width);
    }
    if (block.addDownsample) {
      modules.push({
        prefix: `down_blocks.${b}.downsamplers.0.conv`,
        tensors: conv2d(width, width, 3),
      });
      skips.push(width);
    }
  });

  const mid = config.midBlock;
  if (mid) {
    resnet("mid_block.resnets.0", width, mid.channels);
    width = mid.channels;
    // diffusers builds UNetMidBlock2D with no layers after its first resnet.
    if (mid.attention) {
      attention("mid_block.attentions.0");
      resnet("mid_block.resnets.1", width, width);
    }
  }

  config.upBlocks.forEach((block, b) => {
    for (let j = 0; j < block.layers; j++) {
      const skip = skips.pop() ?? 0;
      resnet(`up_blocks.${b}.resnets.${j}`, width + skip, block.outChannels);
      width = block.outChannels;
      attention(`up_blocks.${b}.attentions.${j}`);
    }
    if (block.addUpsample) {
      modules.push({
        prefix: `up_blocks.${b}.upsamplers.0.conv`,
        tensors: conv2d(width, width, 3),
      });
    }
  });

  modules.push(
    { prefix: "conv_norm_out", tensors: norm(boc[0]) },
    { prefix: "conv_out", tensors: conv2d(config.outChannels, boc[0], config.convOutKernel) },
  );
  return modules;
}

/**
 * Every UNet weight key with its shape, exactly as diffusers names them. Read for its weights,
 * the config may ask for what only changes shapes (resnet_time_scale_shift "scale_shift").
 */
export function unetWeightShapes(config: JsonObject, label?: string): Map<string, Shape> {
  return flattenModules(unetModules(parseUnetConfig(config, label, "weights")));
}
