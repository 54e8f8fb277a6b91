/**
 * Builtin full-size models: the configs of SD 1.5, SD 2.1 and SDXL base recorded as constants,
 * with seeded random weights generated on read. They build real-architecture models for
 * benchmarks without downloading weights, and give single-file loading the values that
 * weights cannot tell (head counts, scaling factors, token ids).
 */

import type { JsonObject } from "../configs/config-json.js";
import { float16ArrayToFloat32, float32ToFloat16Bits } from "../util/float16.js";
import { SeededRandom } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { type ComponentName, familyModelIndex, type ModelFiles } from "./model-files.js";
import { KeyedWeightSource, type WeightInfo, type WeightSource } from "./source.js";
import {
  clipTextWeightShapes,
  type Shape,
  unetWeightShapes,
  vaeWeightShapes,
} from "./weight-modules.js";

const SD15_UNET: JsonObject = {
  sample_size: 64,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  dropout: 0.0,
  act_fn: "silu",
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 768,
  transformer_layers_per_block: 1,
  reverse_transformer_layers_per_block: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  attention_head_dim: 8,
  num_attention_heads: null,
  dual_cross_attention: false,
  use_linear_projection: false,
  class_embed_type: null,
  addition_embed_type: null,
  addition_time_embed_dim: null,
  num_class_embeds: null,
  upcast_attention: false,
  resnet_time_scale_shift: "default",
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1.0,
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  projection_class_embeddings_input_dim: null,
  attention_type: "default",
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null,
  cross_attention_norm: null,
  addition_embed_type_num_heads: 64,
};

const SD21_UNET: JsonObject = {
  ...SD15_UNET,
  sample_size: 96,
  cross_attention_dim: 1024,
  attention_head_dim: [5, 10, 20, 20],
  use_linear_projection: true,
  upcast_attention: true,
};

const SDXL_UNET: JsonObject = {
  ...SD15_UNET,
  sample_size: 128,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  block_out_channels: [320, 640, 1280],
  cross_attention_dim: 2048,
  transformer_layers_per_block: [1, 2, 10],
  attention_head_dim: [5, 10, 20],
  use_linear_projection: true,
  addition_embed_type: "text_time",
  addition_time_embed_dim: 256,
  projection_class_embeddings_input_dim: 2816,
};

const SD15_VAE: JsonObject = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: [
    "DownEncoderBlock2D",
    "DownEncoderBlock2D",
    "DownEncoderBlock2D",
    "DownEncoderBlock2D",
  ],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 512,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

const SDXL_VAE: JsonObject = { ...SD15_VAE, scaling_factor: 0.13025 };

const CLIP_L_TEXT_ENCODER: JsonObject = {
  attention_dropout: 0.0,
  bos_token_id: 49406,
  eos_token_id: 49407,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  vocab_size: 49408,
};

// The OpenCLIP towers, converted to transformers' layout, differ from CLIP ViT-L in their sizes
// and their activation only.
const OPEN_CLIP_H_TEXT_ENCODER: JsonObject = {
  ...CLIP_L_TEXT_ENCODER,
  hidden_act: "gelu",
  hidden_size: 1024,
  intermediate_size: 4096,
  num_attention_heads: 16,
  num_hidden_layers: 23,
  projection_dim: 512,
};

const OPEN_CLIP_BIGG_TEXT_ENCODER: JsonObject = {
  ...CLIP_L_TEXT_ENCODER,
  hidden_act: "gelu",
  hidden_size: 1280,
  intermediate_size: 5120,
  num_attention_heads: 20,
  num_hidden_layers: 32,
  projection_dim: 1280,
};

export type BuiltinName = "sd15" | "sd21" | "sdxl";

interface BuiltinModel {
  readonly family: ModelFamily;
  readonly configs: Readonly<Partial<Record<ComponentName, JsonObject>>>;
}

const BUILTINS: Readonly<Record<BuiltinName, BuiltinModel>> = deepFreeze({
  sd15: {
    family: "sd1",
    configs: { unet: SD15_UNET, vae: SD15_VAE, text_encoder: CLIP_L_TEXT_ENCODER },
  },
  sd21: {
    family: "sd2",
    configs: { unet: SD21_UNET, vae: SD15_VAE, text_encoder: OPEN_CLIP_H_TEXT_ENCODER },
  },
  sdxl: {
    family: "sdxl",
    configs: {
      unet: SDXL_UNET,
      vae: SDXL_VAE,
      text_encoder: CLIP_L_TEXT_ENCODER,
      text_encoder_2: OPEN_CLIP_BIGG_TEXT_ENCODER,
    },
  },
});

const BUILTIN_OF_FAMILY: Readonly<Record<ModelFamily, BuiltinName>> = {
  sd1: "sd15",
  sd2: "sd21",
  sdxl: "sdxl",
};

export const BUILTIN_NAMES: readonly string[] = Object.freeze(
  Object.keys(BUILTINS).map((name) => `builtin:${name}`),
);

/** Parses `builtin:sd15` (or `sd15`); undefined when the name is not a builtin. */
export function builtinName(source: string): BuiltinName | undefined {
  const name = source.startsWith("builtin:") ? source.slice("builtin:".length) : source;
  return Object.hasOwn(BUILTINS, name) ? (name as BuiltinName) : undefined;
}

/** A copy of a builtin model's component configs. */
export function builtinConfigs(name: BuiltinName): Partial<Record<ComponentName, JsonObject>> {
  return structuredClone(BUILTINS[name].configs) as Partial<Record<ComponentName, JsonObject>>;
}

/** The builtin configs of the reference model of a family (SD 1.5, SD 2.1, SDXL base). */
export function familyConfigs(family: ModelFamily): Partial<Record<ComponentName, JsonObject>> {
  return builtinConfigs(BUILTIN_OF_FAMILY[family]);
}

/** Every weight key and shape of a component, from its config. */
export function componentWeightShapes(
  component: ComponentName,
  config: JsonObject,
  label?: string,
): Map<string, Shape> {
  switch (component) {
    case "unet":
      return unetWeightShapes(config, label);
    case "vae":
      return vaeWeightShapes(config, label);
    case "text_encoder":
      return clipTextWeightShapes(config, false, label);
    case "text_encoder_2":
      return clipTextWeightShapes(config, true, label);
  }
}

export interface BuiltinOptions {
  /** Seed of the random weights (default 0). */
  readonly seed?: number;
}

/** Opens `builtin:sd15`, `builtin:sd21` or `builtin:sdxl`: full-size configs, random weights. */
export function openBuiltin(source: string, options: BuiltinOptions = {}): ModelFiles {
  const name = builtinName(source);
  if (!name) {
    throw new Error(`unknown builtin model "${source}" (known: ${BUILTIN_NAMES.join(", ")})`);
  }
  const label = `builtin:${name}`;
  const configs = builtinConfigs(name);
  const weights: Partial<Record<ComponentName, WeightSource>> = {};
  const components = Object.keys(configs) as ComponentName[];
  for (const component of components) {
    const shapes = componentWeightShapes(component, configs[component]!, `${label} ${component}`);
    weights[component] = new RandomWeightSource(`${label} ${component}`, shapes, options.seed ?? 0);
  }
  return {
    label,
    family: BUILTINS[name].family,
    configs,
    weights,
    modelIndex: familyModelIndex(BUILTINS[name].family, components),
    close: () => {},
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

const LEVELS = 4096;
const ONE_FLOAT16 = 0x3c00;

/**
 * Seeded random weights for a known key/shape list, generated on each read: a full-size model
 * can be built and benchmarked without its multi-gigabyte file and without holding its weights
 * in memory. Every tensor has its own stream, seeded from the source seed and a hash of its
 * key, so reading one tensor never needs the others and the order of reads does not matter.
 *
 * Values are float16 (so float32 and float16 builds see the same numbers):
 * - `*.bias`: 0; other 1-D tensors (every GroupNorm/LayerNorm weight in these models): 1;
 * - everything else: uniform with variance 1/fan_in (fan_in = product of all but the first
 *   dimension), which keeps activations of order one through each layer, finite in float16.
 *   Draws come from a 4096-level grid spanning the range, which makes generation a table
 *   lookup per value.
 */
export class RandomWeightSource extends KeyedWeightSource<Shape> {
  constructor(
    label: string,
    shapes: ReadonlyMap<string, Shape>,
    readonly seed = 0,
  ) {
    super(label, shapes);
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`${label}: seed must be a non-negative integer, got ${seed}`);
    }
  }

  identity(): unknown {
    // The generator is fixed by this file; bump the version when it changes.
    return { random: 1, label: this.label, seed: this.seed, tensors: this.entries.size };
  }

  info(key: string): WeightInfo {
    return { dtype: "F16", shape: this.entry(key) };
  }

  readFloat32(key: string): Float32Array {
    return float16ArrayToFloat32(this.readFloat16(key));
  }

  readFloat16(key: string): Uint16Array {
    const shape = this.entry(key);
    const count = shape.reduce((a, b) => a * b, 1);
    const out = new Uint16Array(count);
    if (key.endsWith(".bias")) return out;
    if (shape.length === 1) return out.fill(ONE_FLOAT16);

    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    const halfWidth = Math.sqrt(3 / Math.max(fanIn, 1));
    const table = new Uint16Array(LEVELS);
    for (let i = 0; i < LEVELS; i++) {
      table[i] = float32ToFloat16Bits(halfWidth * (((i + 0.5) / LEVELS) * 2 - 1));
    }
    // xoshiro128** (the generator of SeededRandom), run on local variables: this loop
    // produces billions of values for a full-size model.
    const seeding = new SeededRandom(streamSeed(this.seed, key));
    let s0 = seeding.nextUint32();
    let s1 = seeding.nextUint32();
    let s2 = seeding.nextUint32();
    let s3 = seeding.nextUint32() | 1;
    // Two 12-bit draws from each 32-bit output.
    for (let i = 0; i < count; i += 2) {
      const x = Math.imul(s1, 5);
      const bits = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      out[i] = table[bits >>> 20];
      if (i + 1 < count) out[i + 1] = table[bits & (LEVELS - 1)];
    }
    return out;
  }
}

/** A 53-bit seed from the source seed and the key (two independent FNV-1a hashes). */
export function streamSeed(seed: number, key: string): number {
  const text = `${seed}\u0000${key}`;
  let low = 0x811c9dc5;
  let high = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    low = Math.imul(low ^ c, 0x01000193);
    high = Math.imul(high ^ c, 0x01000193) ^ (high >>> 13);
  }
  return (high >>> 11) * 2 ** 32 + (low >>> 0);
}
