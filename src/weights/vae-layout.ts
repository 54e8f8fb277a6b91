/**
 * The weight layout of diffusers' AutoencoderKL: an encoder and a decoder of resnet blocks
 * around a mid block with one self-attention, and the 1x1 quant/post-quant convolutions.
 * Derived from the same typed config the builders read.
 */
import type { JsonObject } from "../configs/config-json.js";
import { parseVaeConfig, type VaeConfig } from "../configs/vae-config.js";
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

function midBlockModules(prefix: string, channels: number, attention: boolean): WeightModule[] {
  const modules: WeightModule[] = [
    { prefix: `${prefix}.resnets.0`, tensors: resnetTensors(channels, channels, undefined) },
  ];
  if (attention) {
    modules.push({
      prefix: `${prefix}.attentions.0`,
      tensors: [
        ...under("group_norm", norm(channels)),
        ...under("to_q", linear(channels, channels)),
        ...under("to_k", linear(channels, channels)),
        ...under("to_v", linear(channels, channels)),
        ...under("to_out.0", linear(channels, channels)),
      ],
    });
  }
  modules.push({
    prefix: `${prefix}.resnets.1`,
    tensors: resnetTensors(channels, channels, undefined),
  });
  return modules;
}

/** Blocks of `layers` resnets at the given widths, each but the last ending in a resampler. */
function resnetPath(
  prefix: string,
  resampler: "downsamplers" | "upsamplers",
  widths: readonly number[],
  layers: number,
): WeightModule[] {
  const modules: WeightModule[] = [];
  let channels = widths[0];
  widths.forEach((outC, b) => {
    for (let j = 0; j < layers; j++) {
      modules.push({
        prefix: `${prefix}.${b}.resnets.${j}`,
        tensors: resnetTensors(j === 0 ? channels : outC, outC, undefined),
      });
    }
    if (b < widths.length - 1) {
      modules.push({
        prefix: `${prefix}.${b}.${resampler}.0.conv`,
        tensors: conv2d(outC, outC, 3),
      });
    }
    channels = outC;
  });
  return modules;
}

export function vaeModules(config: VaeConfig): WeightModule[] {
  const boc = config.blockOutChannels;
  const last = boc[boc.length - 1];
  const latent = config.latentChannels;
  const modules: WeightModule[] = [
    { prefix: "encoder.conv_in", tensors: conv2d(boc[0], config.inChannels, 3) },
  ];
  modules.push(...resnetPath("encoder.down_blocks", "downsamplers", boc, config.layersPerBlock));
  modules.push(
    ...midBlockModules("encoder.mid_block", last, config.midBlockAddAttention),
    { prefix: "encoder.conv_norm_out", tensors: norm(last) },
    // The encoder predicts a mean and a log-variance per latent channel.
    { prefix: "encoder.conv_out", tensors: conv2d(2 * latent, last, 3) },
    { prefix: "decoder.conv_in", tensors: conv2d(last, latent, 3) },
    ...midBlockModules("decoder.mid_block", last, config.midBlockAddAttention),
  );
  // The decoder walks the widths back up, with one more resnet per block.
  const reversed = [...boc].reverse();
  modules.push(
    ...resnetPath("decoder.up_blocks", "upsamplers", reversed, config.layersPerBlock + 1),
  );
  modules.push(
    { prefix: "decoder.conv_norm_out", tensors: norm(boc[0]) },
    { prefix: "decoder.conv_out", tensors: conv2d(config.outChannels, boc[0], 3) },
  );
  if (config.useQuantConv) {
    modules.push({ prefix: "quant_conv", tensors: conv2d(2 * latent, 2 * latent, 1) });
  }
  if (config.usePostQuantConv) {
    modules.push({ prefix: "post_quant_conv", tensors: conv2d(latent, latent, 1) });
  }
  return modules;
}

/** Every AutoencoderKL weight key with its shape, exactly as diffusers names them. */
export function vaeWeightShapes(config: JsonObject, label?: string): Map<string, Shape> {
  return flattenModules(vaeModules(parseVaeConfig(config, label)));
}
