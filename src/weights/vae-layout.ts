/**
 * The weight layout of diffusers' AutoencoderKL: an encoder and a decoder of resnet blocks
 * around a mid block with one self-attention, and the 1x1 quant/post-quant convolutions.
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

export interface VaeLayout {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly latentChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly midAttention: boolean;
  readonly quantConv: boolean;
  readonly postQuantConv: boolean;
}

export function vaeLayout(config: JsonObject, label = "vae config"): VaeLayout {
  const c = new ConfigReader(config, label);
  const blockOutChannels = c.intList("block_out_channels");
  const blocks = blockOutChannels.length;
  if (blocks === 0) c.fail("block_out_channels", "a non-empty list", blockOutChannels);
  for (const [field, allowed] of [
    ["down_block_types", "DownEncoderBlock2D"],
    ["up_block_types", "UpDecoderBlock2D"],
  ] as const) {
    if (!c.has(field)) continue;
    const types = c.stringList(field);
    if (types.length !== blocks || types.some((t) => t !== allowed)) {
      c.fail(field, `a list of ${blocks} × ${allowed}`, types);
    }
  }
  return {
    inChannels: c.int("in_channels", 3),
    outChannels: c.int("out_channels", 3),
    latentChannels: c.int("latent_channels", 4),
    blockOutChannels,
    layersPerBlock: c.int("layers_per_block", 1),
    midAttention: c.bool("mid_block_add_attention", true),
    quantConv: c.bool("use_quant_conv", true),
    postQuantConv: c.bool("use_post_quant_conv", true),
  };
}

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

export function vaeModules(layout: VaeLayout): WeightModule[] {
  const boc = layout.blockOutChannels;
  const last = boc[boc.length - 1];
  const latent = layout.latentChannels;
  const modules: WeightModule[] = [
    { prefix: "encoder.conv_in", tensors: conv2d(boc[0], layout.inChannels, 3) },
  ];
  let channels = boc[0];
  boc.forEach((outC, b) => {
    for (let j = 0; j < layout.layersPerBlock; j++) {
      modules.push({
        prefix: `encoder.down_blocks.${b}.resnets.${j}`,
        tensors: resnetTensors(j === 0 ? channels : outC, outC, undefined),
      });
    }
    if (b < boc.length - 1) {
      modules.push({
        prefix: `encoder.down_blocks.${b}.downsamplers.0.conv`,
        tensors: conv2d(outC, outC, 3),
      });
    }
    channels = outC;
  });
  modules.push(
    ...midBlockModules("encoder.mid_block", last, layout.midAttention),
    { prefix: "encoder.conv_norm_out", tensors: norm(last) },
    // The encoder predicts a mean and a log-variance per latent channel.
    { prefix: "encoder.conv_out", tensors: conv2d(2 * latent, last, 3) },
    { prefix: "decoder.conv_in", tensors: conv2d(last, latent, 3) },
    ...midBlockModules("decoder.mid_block", last, layout.midAttention),
  );
  const reversed = [...boc].reverse();
  let previous = reversed[0];
  reversed.forEach((outC, b) => {
    for (let j = 0; j < layout.layersPerBlock + 1; j++) {
      modules.push({
        prefix: `decoder.up_blocks.${b}.resnets.${j}`,
        tensors: resnetTensors(j === 0 ? previous : outC, outC, undefined),
      });
    }
    if (b < boc.length - 1) {
      modules.push({
        prefix: `decoder.up_blocks.${b}.upsamplers.0.conv`,
        tensors: conv2d(outC, outC, 3),
      });
    }
    previous = outC;
  });
  modules.push(
    { prefix: "decoder.conv_norm_out", tensors: norm(boc[0]) },
    { prefix: "decoder.conv_out", tensors: conv2d(layout.outChannels, boc[0], 3) },
  );
  if (layout.quantConv) {
    modules.push({ prefix: "quant_conv", tensors: conv2d(2 * latent, 2 * latent, 1) });
  }
  if (layout.postQuantConv) {
    modules.push({ prefix: "post_quant_conv", tensors: conv2d(latent, latent, 1) });
  }
  return modules;
}

/** Every AutoencoderKL weight key with its shape, exactly as diffusers names them. */
export function vaeWeightShapes(config: JsonObject, label?: string): Map<string, Shape> {
  return flattenModules(vaeModules(vaeLayout(config, label)));
}
