/**
 * The KL autoencoder of latent diffusion (Rombach et al., 2022), as diffusers' AutoencoderKL
 * computes it, built as two ONNX graphs from `vae/config.json` and its weights:
 *
 * - decoder: `latents` (B, L, h, w) -> `image` (B, 3, 8h, 8w) for SD's four levels; includes
 *   post_quant_conv, no scaling (the pipeline divides by the scaling factor first);
 * - encoder: `image` (B, 3, H, W) in [-1, 1] -> `latent_mean` and `latent_logvar`
 *   (B, L, H/8, W/8): includes quant_conv, the moments split into the Gaussian's mean and its
 *   log-variance clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does.
 *
 * The weights file holds both halves; each builder owns its half (`decoder.*` and
 * `post_quant_conv.*`, or `encoder.*` and `quant_conv.*`) and checks that it used every weight of
 * it, and that the file holds nothing that belongs to neither.
 */

import type { VaeConfig } from "../configs/vae-config.js";
import type { Value } from "../onnx/builder.js";
import type { WeightSource } from "../weights/source.js";
import {
  attention,
  attentionChunks,
  type BuiltModel,
  buildMetadata,
  conv2d,
  downsample,
  featureMapDims,
  groupNorm,
  type LayerContext,
  linear,
  type ModelBuildOptions,
  resnetBlock,
  startBuild,
  upsample,
} from "./layers.js";

export const VAE_DECODER_IO = Object.freeze({ input: "latents", output: "image" });
export const VAE_ENCODER_IO = Object.freeze({
  input: "image",
  mean: "latent_mean",
  logvar: "latent_logvar",
});

/** diffusers builds every norm of the autoencoder with this epsilon. */
const VAE_EPS = 1e-6;
/** DiagonalGaussianDistribution's clamp of the log-variance. */
const LOGVAR_MIN = -30;
const LOGVAR_MAX = 20;

const DECODER_PREFIXES = ["decoder.", "post_quant_conv."];
const ENCODER_PREFIXES = ["encoder.", "quant_conv."];

export function buildVaeDecoder(
  config: VaeConfig,
  weights: WeightSource,
  options: ModelBuildOptions = {},
): BuiltModel {
  const { ctx, tracker, dtype } = startBuild(withoutPrefixes(weights, ENCODER_PREFIXES), options);
  const { g } = ctx;
  const L = config.latentChannels;
  const levels = config.blockOutChannels;
  const norm = normSpec(config);
  const latents = g.input(VAE_DECODER_IO.input, "float32", featureMapDims(L, "latent"));

  let z = g.castToFloat(latents); // (B, L, h, w)
  if (config.usePostQuantConv) {
    z = conv2d(ctx, "post_quant_conv", z, { inChannels: L, outChannels: L, kernel: 1 });
  }
  let width = levels[levels.length - 1];
  let h = conv2d(ctx, "decoder.conv_in", z, { inChannels: L, outChannels: width, kernel: 3 }); // (B, C, h, w)
  h = midBlock(ctx, "decoder.mid_block", h, width, norm, config.midBlockAddAttention);
  const reversed = [...levels].reverse();
  reversed.forEach((outChannels, i) => {
    const block = `decoder.up_blocks.${i}`;
    h = resnets(ctx, block, h, [width, outChannels], config.layersPerBlock + 1, norm);
    width = outChannels;
    if (i < reversed.length - 1) {
      h = upsample(ctx, `${block}.upsamplers.0`, h, width); // (B, C, 2h, 2w)
    }
  });
  h = groupNorm(ctx, "decoder.conv_norm_out", h, { ...norm, channels: width, silu: true });
  h = conv2d(ctx, "decoder.conv_out", h, {
    inChannels: width,
    outChannels: config.outChannels,
    kernel: 3,
  }); // (B, 3, H, W)
  const imageDims = featureMapDims(config.outChannels, "image");
  g.output(g.cast(h, "float32"), VAE_DECODER_IO.output, "float32", imageDims);
  tracker.assertAllUsed();
  return { builder: g, metadata: buildMetadata("vae_decoder", dtype, ctx) };
}

export function buildVaeEncoder(
  config: VaeConfig,
  weights: WeightSource,
  options: ModelBuildOptions = {},
): BuiltModel {
  const { ctx, tracker, dtype } = startBuild(withoutPrefixes(weights, DECODER_PREFIXES), options);
  const { g } = ctx;
  const L = config.latentChannels;
  const levels = config.blockOutChannels;
  const norm = normSpec(config);
  const image = g.input(
    VAE_ENCODER_IO.input,
    "float32",
    featureMapDims(config.inChannels, "image"),
  );

  let width = levels[0];
  let h = conv2d(ctx, "encoder.conv_in", g.castToFloat(image), {
    inChannels: config.inChannels,
    outChannels: width,
    kernel: 3,
  }); // (B, C0, H, W)
  levels.forEach((outChannels, i) => {
    const block = `encoder.down_blocks.${i}`;
    h = resnets(ctx, block, h, [width, outChannels], config.layersPerBlock, norm);
    width = outChannels;
    if (i < levels.length - 1) {
      // The encoder pads bottom/right only (downsample_padding 0): (B, C, H/2, W/2).
      h = downsample(ctx, `${block}.downsamplers.0`, h, width, 0);
    }
  });
  h = midBlock(ctx, "encoder.mid_block", h, width, norm, config.midBlockAddAttention);
  h = groupNorm(ctx, "encoder.conv_norm_out", h, { ...norm, channels: width, silu: true });
  let moments = conv2d(ctx, "encoder.conv_out", h, {
    inChannels: width,
    outChannels: 2 * L,
    kernel: 3,
  }); // (B, 2L, h, w)
  if (config.useQuantConv) {
    moments = conv2d(ctx, "quant_conv", moments, {
      inChannels: 2 * L,
      outChannels: 2 * L,
      kernel: 1,
    });
  }
  const [mean, logvar] = g.split(moments, [L, L], 1); // (B, L, h, w) x 2
  const clamped = g.op("Clip", [
    g.cast(logvar, "float32"),
    g.float(LOGVAR_MIN, undefined, "float32"),
    g.float(LOGVAR_MAX, undefined, "float32"),
  ]);
  const latentDims = featureMapDims(L, "latent");
  g.output(g.cast(mean, "float32"), VAE_ENCODER_IO.mean, "float32", latentDims);
  g.output(clamped, VAE_ENCODER_IO.logvar, "float32", latentDims);
  tracker.assertAllUsed();
  return { builder: g, metadata: buildMetadata("vae_encoder", dtype, ctx) };
}

/** The source without the other half's keys, so that the use-every-weight check covers one half. */
function withoutPrefixes(source: WeightSource, prefixes: readonly string[]): WeightSource {
  const excluded = (key: string) => prefixes.some((p) => key.startsWith(p));
  return {
    label: source.label,
    keys: () => source.keys().filter((key) => !excluded(key)),
    has: (key) => !excluded(key) && source.has(key),
    info: (key) => source.info(key),
    readFloat32: (key) => source.readFloat32(key),
  };
}

/** The group count of the config and the epsilon diffusers gives every norm of the autoencoder. */
interface NormSpec {
  readonly groups: number;
  readonly eps: number;
}

function normSpec(config: VaeConfig): NormSpec {
  return { groups: config.normNumGroups, eps: VAE_EPS };
}

/** `count` resnets at `${key}.resnets.*` without a time embedding; the first changes the width. */
function resnets(
  ctx: LayerContext,
  key: string,
  x: Value,
  [inChannels, outChannels]: [number, number],
  count: number,
  norm: NormSpec,
): Value {
  let h = x;
  for (let j = 0; j < count; j++) {
    const spec = { ...norm, inChannels: j === 0 ? inChannels : outChannels, outChannels };
    h = resnetBlock(ctx, `${key}.resnets.${j}`, h, undefined, spec);
  }
  return h;
}

/** diffusers' UNetMidBlock2D of the autoencoder: resnet, single-head self-attention, resnet. */
function midBlock(
  ctx: LayerContext,
  key: string,
  x: Value,
  channels: number,
  norm: NormSpec,
  withAttention: boolean,
): Value {
  const spec = { ...norm, inChannels: channels, outChannels: channels };
  let h = resnetBlock(ctx, `${key}.resnets.0`, x, undefined, spec);
  if (withAttention) h = spatialSelfAttention(ctx, `${key}.attentions.0`, h, channels, norm);
  return resnetBlock(ctx, `${key}.resnets.1`, h, undefined, spec);
}

/**
 * Single-head self-attention over all H*W positions with a residual, at `key` (group_norm,
 * to_q/to_k/to_v/to_out.0 with biases). diffusers computes its softmax in float32
 * (upcast_softmax). x (B, C, H, W) -> same.
 */
function spatialSelfAttention(
  ctx: LayerContext,
  key: string,
  x: Value,
  channels: number,
  norm: NormSpec,
): Value {
  const { g } = ctx;
  const C = channels;
  const h = groupNorm(ctx, `${key}.group_norm`, x, { ...norm, channels: C });
  const positions = g.transpose(g.reshape(h, [0, 0, -1]), [0, 2, 1]); // (B, H*W, C)
  const q = linear(ctx, `${key}.to_q`, positions, C, C); // (B, N, C)
  const k = linear(ctx, `${key}.to_k`, positions, C, C);
  const v = linear(ctx, `${key}.to_v`, positions, C, C);
  // At most one token per latent position (the mid block runs at the latent's resolution).
  const tokens = (ctx.chunking?.maxLatentSide ?? 0) ** 2;
  const attended = attention(g, ctx.ops.attention, q, k, v, {
    heads: 1,
    headDim: C,
    upcast: true,
    queryChunks: attentionChunks(ctx, 1, tokens, tokens, true),
  });
  const out = linear(ctx, `${key}.to_out.0`, attended, C, C); // (B, N, C)
  return g.add(g.reshape(g.transpose(out, [0, 2, 1]), g.shape(x)), x); // (B, C, H, W)
}
