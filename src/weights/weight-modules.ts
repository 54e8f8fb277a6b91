/**
 * Weight names and shapes as a list of modules: a module is a key prefix
 * (`down_blocks.1.resnets.0`) with the tensors under it. Enumerating a model's modules from
 * its config gives the exact key set diffusers/transformers would save, which random weights
 * are generated for and single-file checkpoints are mapped onto.
 */
import { type ClipTextConfig, parseClipTextConfig } from "../configs/clip-config.js";
import type { JsonObject } from "../configs/config-json.js";
import { parseUnetConfig, type UnetConfig, unetAttentionSites } from "../configs/unet-config.js";
import { parseVaeConfig, type VaeConfig } from "../configs/vae-config.js";

export type Shape = readonly number[];

export interface WeightModule {
  /** Key prefix without the trailing dot; empty for top-level tensors. */
  readonly prefix: string;
  /** Tensor names under the prefix, with their shapes. */
  readonly tensors: ReadonlyArray<readonly [suffix: string, shape: Shape]>;
}

/** Every key (`prefix.suffix`) with its shape, in module order. */
export function flattenModules(modules: readonly WeightModule[]): Map<string, Shape> {
  const out = new Map<string, Shape>();
  for (const module of modules) {
    for (const [suffix, shape] of module.tensors) {
      const key = module.prefix ? `${module.prefix}.${suffix}` : suffix;
      if (out.has(key)) throw new Error(`duplicate weight key "${key}" in a module list`);
      out.set(key, shape);
    }
  }
  return out;
}

export function parameterCount(shapes: ReadonlyMap<string, Shape>): number {
  let total = 0;
  for (const shape of shapes.values()) total += shape.reduce((a, b) => a * b, 1);
  return total;
}

// Building blocks shared by the UNet, the VAE and the text encoders.

export function linear(outFeatures: number, inFeatures: number, bias = true): [string, Shape][] {
  const out: [string, Shape][] = [["weight", [outFeatures, inFeatures]]];
  if (bias) out.push(["bias", [outFeatures]]);
  return out;
}

export function conv2d(outChannels: number, inChannels: number, kernel: number): [string, Shape][] {
  return [
    ["weight", [outChannels, inChannels, kernel, kernel]],
    ["bias", [outChannels]],
  ];
}

/** GroupNorm or LayerNorm affine parameters. */
export function norm(channels: number): [string, Shape][] {
  return [
    ["weight", [channels]],
    ["bias", [channels]],
  ];
}

/** Prefixes each tensor name of a sub-module (`conv1` + `weight` -> `conv1.weight`). */
export function under(name: string, tensors: [string, Shape][]): [string, Shape][] {
  return tensors.map(([suffix, shape]) => [`${name}.${suffix}`, shape]);
}

/**
 * diffusers' ResnetBlock2D: GroupNorm, 3x3 conv, optional time-embedding projection, GroupNorm,
 * 3x3 conv, and a 1x1 conv on the skip path when the channel count changes. With
 * `scaleShift` (resnet_time_scale_shift "scale_shift") the time projection gives a scale and a
 * shift per channel.
 */
export function resnetTensors(
  inChannels: number,
  outChannels: number,
  timeEmbedChannels: number | undefined,
  scaleShift = false,
): [string, Shape][] {
  const tensors = [
    ...under("norm1", norm(inChannels)),
    ...under("conv1", conv2d(outChannels, inChannels, 3)),
  ];
  if (timeEmbedChannels !== undefined) {
    tensors.push(
      ...under(
        "time_emb_proj",
        linear(scaleShift ? 2 * outChannels : outChannels, timeEmbedChannels),
      ),
    );
  }
  tensors.push(
    ...under("norm2", norm(outChannels)),
    ...under("conv2", conv2d(outChannels, outChannels, 3)),
  );
  if (inChannels !== outChannels) {
    tensors.push(...under("conv_shortcut", conv2d(outChannels, inChannels, 1)));
  }
  return tensors;
}

// The weight layout of diffusers' UNet2DConditionModel (SD 1.x, SD 2.x, SDXL): which modules
// exist for a config and the shapes of their tensors, derived from the same typed config the
// builder reads, so the two accept the same models. Head counts do not change any shape.

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

// The weight layout of diffusers' AutoencoderKL: an encoder and a decoder of resnet blocks
// around a mid block with one self-attention, and the 1x1 quant/post-quant convolutions.
// Derived from the same typed config the builders read.

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

// The weight layout of transformers' CLIPTextModel and CLIPTextModelWithProjection (the text
// encoders of every SD generation; SD 2.x and SDXL's second encoder are OpenCLIP models
// converted to this layout), derived from the same typed config the builder reads.

/** The tensors of one encoder layer, below `text_model.encoder.layers.N.`. */
export function clipEncoderLayer(config: ClipTextConfig): [string, Shape][] {
  const h = config.hiddenSize;
  return [
    ...under("self_attn.q_proj", linear(h, h)),
    ...under("self_attn.k_proj", linear(h, h)),
    ...under("self_attn.v_proj", linear(h, h)),
    ...under("self_attn.out_proj", linear(h, h)),
    ...under("layer_norm1", norm(h)),
    ...under("mlp.fc1", linear(config.intermediateSize, h)),
    ...under("mlp.fc2", linear(h, config.intermediateSize)),
    ...under("layer_norm2", norm(h)),
  ];
}

/** `withProjection`: CLIPTextModelWithProjection, which adds `text_projection`. */
export function clipTextModules(config: ClipTextConfig, withProjection: boolean): WeightModule[] {
  const h = config.hiddenSize;
  const modules: WeightModule[] = [
    {
      prefix: "text_model.embeddings",
      tensors: [
        ["token_embedding.weight", [config.vocabSize, h]],
        ["position_embedding.weight", [config.maxPositionEmbeddings, h]],
      ],
    },
  ];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    modules.push({ prefix: `text_model.encoder.layers.${i}`, tensors: clipEncoderLayer(config) });
  }
  modules.push({ prefix: "text_model.final_layer_norm", tensors: norm(h) });
  if (withProjection) {
    modules.push({ prefix: "text_projection", tensors: linear(config.projectionDim, h, false) });
  }
  return modules;
}

/**
 * Every text-encoder weight key with its shape, as transformers names them. `withProjection`
 * selects CLIPTextModelWithProjection (SDXL's second encoder), which adds `text_projection`.
 */
export function clipTextWeightShapes(
  config: JsonObject,
  withProjection: boolean,
  label?: string,
): Map<string, Shape> {
  return flattenModules(clipTextModules(parseClipTextConfig(config, label), withProjection));
}
