/**
 * The weight layout of transformers' CLIPTextModel and CLIPTextModelWithProjection (the text
 * encoders of every SD generation; SD 2.x and SDXL's second encoder are OpenCLIP models
 * converted to this layout).
 */
import { ConfigReader } from "./config-fields.js";
import type { JsonObject } from "./config-json.js";
import {
  flattenModules,
  linear,
  norm,
  type Shape,
  under,
  type WeightModule,
} from "./weight-modules.js";

export interface ClipTextLayout {
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  /** Output width of `text_projection`, for CLIPTextModelWithProjection; else undefined. */
  readonly projectionDim: number | undefined;
}

export function clipTextLayout(
  config: JsonObject,
  withProjection: boolean,
  label = "text encoder config",
): ClipTextLayout {
  const c = new ConfigReader(config, label);
  return {
    vocabSize: c.int("vocab_size", 49408),
    maxPositions: c.int("max_position_embeddings", 77),
    hidden: c.int("hidden_size", 512),
    intermediate: c.int("intermediate_size", 2048),
    layers: c.int("num_hidden_layers", 12),
    projectionDim: withProjection ? c.int("projection_dim", 512) : undefined,
  };
}

export function clipTextModules(layout: ClipTextLayout): WeightModule[] {
  const h = layout.hidden;
  const modules: WeightModule[] = [
    {
      prefix: "text_model.embeddings",
      tensors: [
        ["token_embedding.weight", [layout.vocabSize, h]],
        ["position_embedding.weight", [layout.maxPositions, h]],
      ],
    },
  ];
  for (let i = 0; i < layout.layers; i++) {
    modules.push({
      prefix: `text_model.encoder.layers.${i}`,
      tensors: [
        ...under("self_attn.q_proj", linear(h, h)),
        ...under("self_attn.k_proj", linear(h, h)),
        ...under("self_attn.v_proj", linear(h, h)),
        ...under("self_attn.out_proj", linear(h, h)),
        ...under("layer_norm1", norm(h)),
        ...under("mlp.fc1", linear(layout.intermediate, h)),
        ...under("mlp.fc2", linear(h, layout.intermediate)),
        ...under("layer_norm2", norm(h)),
      ],
    });
  }
  modules.push({ prefix: "text_model.final_layer_norm", tensors: norm(h) });
  if (layout.projectionDim !== undefined) {
    modules.push({ prefix: "text_projection", tensors: linear(layout.projectionDim, h, false) });
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
  return flattenModules(clipTextModules(clipTextLayout(config, withProjection, label)));
}
