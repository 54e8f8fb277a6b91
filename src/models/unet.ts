/**
 * The denoising UNet of Stable Diffusion (Rombach et al., 2022), as diffusers'
 * UNet2DConditionModel computes it, built as an ONNX graph from `unet/config.json` and its
 * weights. SD 1.x, 2.x and XL differ only in configuration: per-level head counts, linear or
 * convolutional transformer projections, transformer depth per block, and SDXL's text_time
 * conditioning.
 *
 * Graph I/O: `sample` (B, in, H, W), `timestep` (B), `encoder_hidden_states` (B, S, D) and, for
 * text_time models, `text_embeds` (B, P) and `time_ids` (B, 6); output `out_sample`
 * (B, out, H, W). All float32; batch, height, width and sequence length are dynamic.
 *
 * Every self-attention goes through `selfAttentionWithReduction`, where token reduction (ToDo,
 * ToMe) can act; cross-attention never does.
 */

import {
  type BlockAttention,
  type UnetConfig,
  unetAttentionSites,
} from "../configs/unet-config.js";
import type { GraphBuilder, Value } from "../onnx/builder.js";
import {
  type AttentionSite,
  type ReductionSettings,
  selfAttentionWithReduction,
} from "../reduce/self-attention.js";
import type { WeightSource } from "../weights/source.js";
import {
  applyLinear,
  attention,
  attentionChunks,
  type BuiltModel,
  buildMetadata,
  conv2d,
  downsample,
  featureMapDims,
  groupNorm,
  type LayerContext,
  layerNorm,
  linear,
  linearWeights,
  type ModelBuildOptions,
  resnetBlock,
  startBuild,
  upsample,
} from "./layers.js";

export const UNET_INPUTS = Object.freeze({
  sample: "sample",
  timestep: "timestep",
  encoderHiddenStates: "encoder_hidden_states",
  textEmbeds: "text_embeds",
  timeIds: "time_ids",
});
export const UNET_OUTPUT = "out_sample";

export interface UnetBuildOptions extends ModelBuildOptions {
  /** Token reduction settings, handed to `selfAttentionWithReduction` untouched. */
  readonly reduction?: ReductionSettings;
  /** text_time models: micro-conditioning ids per sample (6 for SDXL base, 5 for the refiner). */
  readonly timeIds?: number;
}

/** diffusers fixes these inside Transformer2DModel and BasicTransformerBlock. */
const TRANSFORMER_GROUP_NORM_EPS = 1e-6;
const TRANSFORMER_LAYER_NORM_EPS = 1e-5;
/** Text tokens that chunking plans for: three 77-token windows of a long prompt. */
const MAX_TEXT_TOKENS = 3 * 77;
/** GEGLU's hidden width is 4x the model width (Shazeer, 2020). */
const FEED_FORWARD_MULT = 4;

/** Builds the UNet graph. Weights are only declared here; they are read when the model is written. */
export function buildUnet(
  config: UnetConfig,
  weights: WeightSource,
  options: UnetBuildOptions = {},
): BuiltModel {
  const { ctx, tracker, dtype } = startBuild(weights, options);
  const { g } = ctx;
  const groups = config.normNumGroups;
  const channels = config.blockOutChannels;

  // ---- inputs ----
  const sampleInput = g.input(
    UNET_INPUTS.sample,
    "float32",
    featureMapDims(config.inChannels, "image"),
  );
  const timestep = g.input(UNET_INPUTS.timestep, "float32", ["batch"]);
  const contextDim = crossAttentionWidth(config);
  const context = g.castToFloat(
    g.input(UNET_INPUTS.encoderHiddenStates, "float32", [
      "batch",
      "sequence",
      contextDim ?? "context",
    ]),
  ); // (B, S, D)

  let sample = g.castToFloat(sampleInput); // (B, in, H, W)
  if (config.centerInputSample) sample = g.sub(g.mul(sample, g.float(2)), g.float(1));

  // ---- time embedding ----
  const timesteps = g.op("Expand", [timestep, g.shape(sampleInput, 0, 1)]); // (B): a [1] timestep serves the batch
  const tFeatures = g.castToFloat(
    sinusoidalEmbedding(g, timesteps, channels[0], config.flipSinToCos, config.freqShift),
  ); // (B, C0)
  let emb = timestepMlp(ctx, "time_embedding", tFeatures, channels[0], config); // (B, T)
  if (config.addition) {
    const a = config.addition;
    const ids = options.timeIds ?? 6;
    const textWidth = a.projectionInputDim - ids * a.timeEmbedDim;
    if (textWidth <= 0) {
      throw new Error(
        `unet: projection_class_embeddings_input_dim ${a.projectionInputDim} leaves no room for text embeddings beside ${ids} time ids x ${a.timeEmbedDim}`,
      );
    }
    const textEmbeds = g.castToFloat(
      g.input(UNET_INPUTS.textEmbeds, "float32", ["batch", textWidth]),
    ); // (B, P)
    const timeIds = g.input(UNET_INPUTS.timeIds, "float32", ["batch", ids]); // (B, ids)
    const idFeatures = sinusoidalEmbedding(
      g,
      g.reshape(timeIds, [-1]),
      a.timeEmbedDim,
      config.flipSinToCos,
      config.freqShift,
    ); // (B * ids, E)
    const timeEmbeds = g.castToFloat(g.reshape(idFeatures, [-1, ids * a.timeEmbedDim])); // (B, ids * E)
    const added = g.concat([textEmbeds, timeEmbeds], -1); // (B, projectionInputDim)
    emb = g.add(emb, timestepMlp(ctx, "add_embedding", added, a.projectionInputDim, config));
  }
  if (config.timeEmbeddingActivation === "silu") emb = g.silu(emb);
  const tembActivated = g.silu(emb); // (B, T): every resnet starts its time path with SiLU
  const T = config.timeEmbeddingDim;

  const resnet = (key: string, x: Value, inChannels: number, outChannels: number, scale: number) =>
    resnetBlock(ctx, key, x, tembActivated, {
      inChannels,
      outChannels,
      groups,
      eps: config.normEps,
      timeEmbeddingChannels: T,
      outputScaleFactor: scale,
    });
  // Each transformer's level and depth come from the one list of the UNet's attention sites.
  const sites = new Map(unetAttentionSites(config).map((site) => [site.module, site]));
  const transformer = (key: string, x: Value) => {
    const site = sites.get(key);
    if (!site) throw new Error(`unet: no attention site ${key} in the config`);
    return spatialTransformer(ctx, key, x, context, {
      channels: site.channels,
      attention: site.attention,
      depth: site.depth,
      groups,
      linearProjection: config.useLinearProjection,
      upcast: config.upcastAttention,
      level: site.level,
      timestep,
      reduction: options.reduction,
    });
  };

  // ---- down path ----
  let h = conv2d(ctx, "conv_in", sample, {
    inChannels: config.inChannels,
    outChannels: channels[0],
    kernel: config.convInKernel,
  }); // (B, C0, H, W)
  let width = channels[0];
  const skips: Array<{ value: Value; channels: number }> = [{ value: h, channels: width }];
  config.downBlocks.forEach((block, i) => {
    for (let j = 0; j < block.layers; j++) {
      h = resnet(
        `down_blocks.${i}.resnets.${j}`,
        h,
        width,
        block.outChannels,
        config.resnetOutScaleFactor,
      );
      width = block.outChannels;
      if (block.attention) {
        h = transformer(`down_blocks.${i}.attentions.${j}`, h);
      }
      skips.push({ value: h, channels: width });
    }
    if (block.addDownsample) {
      h = downsample(ctx, `down_blocks.${i}.downsamplers.0`, h, width, config.downsamplePadding); // (B, C, H/2, W/2)
      skips.push({ value: h, channels: width });
    }
  });

  // ---- middle ----
  const mid = config.midBlock;
  if (mid) {
    h = resnet("mid_block.resnets.0", h, width, mid.channels, mid.outputScaleFactor);
    if (mid.attention) {
      h = transformer("mid_block.attentions.0", h);
      h = resnet("mid_block.resnets.1", h, width, mid.channels, mid.outputScaleFactor);
    }
  }

  // ---- up path ----
  config.upBlocks.forEach((block, i) => {
    for (let j = 0; j < block.layers; j++) {
      const skip = skips.pop();
      if (!skip) {
        throw new Error(
          "unet: the up blocks consume more skip connections than the down blocks make",
        );
      }
      h = g.concat([h, skip.value], 1); // (B, C + Cskip, H, W)
      h = resnet(
        `up_blocks.${i}.resnets.${j}`,
        h,
        width + skip.channels,
        block.outChannels,
        config.resnetOutScaleFactor,
      );
      width = block.outChannels;
      if (block.attention) {
        h = transformer(`up_blocks.${i}.attentions.${j}`, h);
      }
    }
    if (block.addUpsample) {
      // Upsample to the next skip connection's size: exactly 2x when the latent size is a
      // multiple of the total stride, and the right size when it is not.
      const next = skips[skips.length - 1];
      h = upsample(ctx, `up_blocks.${i}.upsamplers.0`, h, width, next?.value);
    }
  });
  if (skips.length > 0) throw new Error("unet: the up blocks leave skip connections unused");

  // ---- output ----
  h = groupNorm(ctx, "conv_norm_out", h, {
    channels: width,
    groups,
    eps: config.normEps,
    silu: true,
  });
  h = conv2d(ctx, "conv_out", h, {
    inChannels: width,
    outChannels: config.outChannels,
    kernel: config.convOutKernel,
  }); // (B, out, H, W)
  g.output(
    g.cast(h, "float32"),
    UNET_OUTPUT,
    "float32",
    featureMapDims(config.outChannels, "image"),
  );
  tracker.assertAllUsed();

  return { builder: g, metadata: buildMetadata("unet", dtype, ctx) };
}

/** The common cross-attention width of all attention blocks (null when there is none). */
/** The width of `encoder_hidden_states` (null for a UNet without cross-attention). */
export function crossAttentionWidth(config: UnetConfig): number | null {
  const widths = new Set<number>();
  for (const block of [...config.downBlocks, ...config.upBlocks, config.midBlock]) {
    if (block?.attention) widths.add(block.attention.crossAttentionDim);
  }
  if (widths.size > 1) {
    throw new Error(
      `unet/config.json: unsupported value for cross_attention_dim: [${[...widths].join(", ")}] (one width per model)`,
    );
  }
  return widths.size === 1 ? [...widths][0] : null;
}

/**
 * The sinusoidal embedding of DDPM (Ho et al., 2020) as diffusers' get_timestep_embedding
 * computes it: frequencies exp(-ln(10000) * i / (dim/2 - freqShift)), sines then cosines
 * (swapped with flipSinToCos), zero-padded to an odd `dim`. Always float32: timesteps up to 1000
 * times the highest frequency need float32's precision. t (N) -> (N, dim).
 */
export function sinusoidalEmbedding(
  g: GraphBuilder,
  t: Value,
  dim: number,
  flipSinToCos: boolean,
  freqShift: number,
): Value {
  const half = Math.floor(dim / 2);
  // float32 arithmetic step by step, as the reference computes the frequencies.
  const logMax = Math.fround(-Math.log(10000));
  const freqs = Array.from({ length: half }, (_, i) =>
    Math.fround(Math.exp(Math.fround(Math.fround(logMax * i) / (half - freqShift)))),
  );
  const args = g.mul(g.unsqueeze(t, [1]), g.float(freqs, [1, half], "float32")); // (N, half)
  const sin = g.op("Sin", [args]);
  const cos = g.op("Cos", [args]);
  let emb = g.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1); // (N, 2 * half)
  if (dim % 2 === 1) emb = g.op("Pad", [emb, g.int64([0, 0, 0, 1])]); // (N, dim)
  return emb;
}

/** diffusers' TimestepEmbedding at `key`: linear_1, SiLU, linear_2 (+ optional post SiLU). */
function timestepMlp(
  ctx: LayerContext,
  key: string,
  x: Value,
  inFeatures: number,
  config: UnetConfig,
): Value {
  const T = config.timeEmbeddingDim;
  let h = ctx.g.silu(linear(ctx, `${key}.linear_1`, x, inFeatures, T)); // (B, T)
  h = linear(ctx, `${key}.linear_2`, h, T, T); // (B, T)
  return config.timestepPostActivation === "silu" ? ctx.g.silu(h) : h;
}

interface SpatialTransformerSpec {
  readonly channels: number;
  readonly attention: BlockAttention;
  /** Number of BasicTransformerBlocks. */
  readonly depth: number;
  readonly groups: number;
  readonly linearProjection: boolean;
  readonly upcast: boolean;
  readonly level: number;
  readonly timestep: Value;
  readonly reduction: ReductionSettings | undefined;
}

/**
 * diffusers' Transformer2DModel over a feature map at `key`: GroupNorm, proj_in, `depth`
 * BasicTransformerBlocks over the H*W tokens, proj_out, plus the input. x (B, C, H, W) -> same.
 * proj_in/proj_out are 1x1 convolutions in SD 1.x and Linear layers in SD 2.x / XL; applied to the
 * tokens both are the same MatMul.
 */
function spatialTransformer(
  ctx: LayerContext,
  key: string,
  x: Value,
  context: Value,
  spec: SpatialTransformerSpec,
): Value {
  const { g } = ctx;
  const C = spec.channels;
  const projection = { kernel1x1: !spec.linearProjection };
  const h = groupNorm(ctx, `${key}.norm`, x, {
    channels: C,
    groups: spec.groups,
    eps: TRANSFORMER_GROUP_NORM_EPS,
  });
  let tokens = g.transpose(g.reshape(h, [0, 0, -1]), [0, 2, 1]); // (B, H*W, C)
  tokens = linear(ctx, `${key}.proj_in`, tokens, C, C, projection); // (B, N, C)
  const shape = g.shape(x); // [B, C, H, W]
  const site = {
    height: g.gather(shape, g.int64([2], [])), // int64 scalar
    width: g.gather(shape, g.int64([3], [])),
  };
  for (let i = 0; i < spec.depth; i++) {
    tokens = basicTransformerBlock(ctx, `${key}.transformer_blocks.${i}`, tokens, context, spec, {
      ...site,
      level: spec.level,
      timestep: spec.timestep,
      name: `${key}.transformer_blocks.${i}.attn1`,
    });
  }
  tokens = linear(ctx, `${key}.proj_out`, tokens, C, C, projection); // (B, N, C)
  const out = g.reshape(g.transpose(tokens, [0, 2, 1]), shape); // (B, C, H, W)
  return g.add(out, x);
}

/**
 * diffusers' BasicTransformerBlock (layer_norm variant) at `key`: pre-norm self-attention,
 * cross-attention to the text, and a GEGLU feed-forward, each with a residual. (B, N, C) -> same.
 */
function basicTransformerBlock(
  ctx: LayerContext,
  key: string,
  tokens: Value,
  context: Value,
  spec: SpatialTransformerSpec,
  site: AttentionSite,
): Value {
  const { g } = ctx;
  const C = spec.channels;
  const heads = spec.attention.heads;
  const op = ctx.ops.attention;
  // Chunking plans for the largest latent: at this level, one token per (2^(level-1))^2
  // positions; keys are all tokens for self-attention (the reduction is off at late steps) and
  // the text's tokens for cross-attention.
  const levelSide = (ctx.chunking?.maxLatentSide ?? 0) / 2 ** (site.level - 1);
  const tokensAtLevel = Math.ceil(levelSide) ** 2;
  const shapeFor = (keys: number) => ({
    heads,
    headDim: C / heads,
    upcast: spec.upcast,
    queryChunks: attentionChunks(ctx, heads, tokensAtLevel, keys, spec.upcast),
  });
  const shape = shapeFor(tokensAtLevel);
  const crossShape = shapeFor(MAX_TEXT_TOKENS);

  // Self-attention. The weights are declared here, once, at the top level: `attend` may run
  // more than once (in each branch of an If) and may build inside a subgraph.
  let n = layerNorm(ctx, `${key}.norm1`, tokens, C, TRANSFORMER_LAYER_NORM_EPS); // (B, N, C)
  const toQ = linearWeights(ctx, `${key}.attn1.to_q`, C, C, { bias: false });
  const toK = linearWeights(ctx, `${key}.attn1.to_k`, C, C, { bias: false });
  const toV = linearWeights(ctx, `${key}.attn1.to_v`, C, C, { bias: false });
  const toOut = linearWeights(ctx, `${key}.attn1.to_out.0`, C, C);
  const selfAttention = selfAttentionWithReduction(
    g,
    n,
    site,
    spec.reduction,
    (sub, queries, keysValues) => {
      const q = applyLinear(sub, queries, toQ); // (B, Nq, C)
      const k = applyLinear(sub, keysValues, toK); // (B, Nk, C)
      const v = applyLinear(sub, keysValues, toV); // (B, Nk, C)
      return applyLinear(sub, attention(sub, op, q, k, v, shape), toOut); // (B, Nq, C)
    },
  );
  tokens = g.add(selfAttention, tokens);

  // Cross-attention to the text encoder's hidden states (B, S, D).
  const D = spec.attention.crossAttentionDim;
  n = layerNorm(ctx, `${key}.norm2`, tokens, C, TRANSFORMER_LAYER_NORM_EPS);
  const q = linear(ctx, `${key}.attn2.to_q`, n, C, C, { bias: false }); // (B, N, C)
  const k = linear(ctx, `${key}.attn2.to_k`, context, D, C, { bias: false }); // (B, S, C)
  const v = linear(ctx, `${key}.attn2.to_v`, context, D, C, { bias: false }); // (B, S, C)
  const crossAttention = linear(
    ctx,
    `${key}.attn2.to_out.0`,
    attention(g, op, q, k, v, crossShape),
    C,
    C,
  );
  tokens = g.add(crossAttention, tokens);

  // GEGLU feed-forward: proj gives [hidden, gate]; hidden * gelu(gate), then back to C.
  n = layerNorm(ctx, `${key}.norm3`, tokens, C, TRANSFORMER_LAYER_NORM_EPS);
  const inner = C * FEED_FORWARD_MULT;
  const [hidden, gate] = g.split(
    linear(ctx, `${key}.ff.net.0.proj`, n, C, 2 * inner),
    [inner, inner],
    -1,
  ); // (B, N, inner) x 2
  const ff = linear(ctx, `${key}.ff.net.2`, g.mul(hidden, g.gelu(gate)), inner, C); // (B, N, C)
  return g.add(ff, tokens);
}
