/**
 * `vae/config.json` of diffusers' AutoencoderKL, parsed into a typed description with diffusers'
 * defaults. Values the builder does not implement are rejected with an error naming the field.
 */
import { ConfigFields } from "./config-fields.js";

export interface VaeConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly latentChannels: number;
  /** Encoder widths per level; the decoder walks them in reverse. */
  readonly blockOutChannels: readonly number[];
  /** Resnets per encoder block (decoder blocks have one more). */
  readonly layersPerBlock: number;
  readonly normNumGroups: number;
  readonly sampleSize: number | null;
  /** Latents are scaled by this factor before the UNet sees them (the pipeline applies it). */
  readonly scalingFactor: number;
  /** Subtracted before scaling when set (latents = (z - shift) * scale). */
  readonly shiftFactor: number | null;
  readonly latentsMean: readonly number[] | null;
  readonly latentsStd: readonly number[] | null;
  /**
   * The VAE overflows in float16 and must run in float32 even in a float16 pipeline (SDXL's VAE;
   * diffusers' default is true, and its SDXL pipelines are the ones that act on it).
   */
  readonly forceUpcast: boolean;
  readonly useQuantConv: boolean;
  readonly usePostQuantConv: boolean;
  readonly midBlockAddAttention: boolean;
}

/** Parses an AutoencoderKL config; `label` names the file in error messages. */
export function parseVaeConfig(json: unknown, label = "vae/config.json"): VaeConfig {
  const c = new ConfigFields(json, label);
  const className = c.optionalString("_class_name");
  if (className !== null && className !== "AutoencoderKL") throw c.unsupported("_class_name");
  const actFn = c.string("act_fn", "silu");
  if (actFn !== "silu" && actFn !== "swish") throw c.unsupported("act_fn");
  const { down } = c.blockTypes(
    { allowed: ["DownEncoderBlock2D"], fallback: ["DownEncoderBlock2D"] },
    { allowed: ["UpDecoderBlock2D"], fallback: ["UpDecoderBlock2D"] },
  );
  const blocks = down.length;
  const blockOutChannels = c.perBlock("block_out_channels", [64], blocks);
  const normNumGroups = c.normGroups(blockOutChannels);
  const latentChannels = c.integer("latent_channels", 4, 1);
  const latentsMean = c.numberList("latents_mean");
  const latentsStd = c.numberList("latents_std");
  for (const [field, list] of [
    ["latents_mean", latentsMean],
    ["latents_std", latentsStd],
  ] as const) {
    if (list && list.length !== latentChannels) {
      throw c.invalid(field, `${latentChannels} numbers, one per latent channel`);
    }
  }
  return {
    inChannels: c.integer("in_channels", 3, 1),
    outChannels: c.integer("out_channels", 3, 1),
    latentChannels,
    blockOutChannels,
    layersPerBlock: c.integer("layers_per_block", 1, 1),
    normNumGroups,
    sampleSize: c.optionalInteger("sample_size"),
    scalingFactor: c.number("scaling_factor", 0.18215),
    shiftFactor: c.optionalNumber("shift_factor"),
    latentsMean,
    latentsStd,
    forceUpcast: c.boolean("force_upcast", true),
    useQuantConv: c.boolean("use_quant_conv", true),
    usePostQuantConv: c.boolean("use_post_quant_conv", true),
    midBlockAddAttention: c.boolean("mid_block_add_attention", true),
  };
}
