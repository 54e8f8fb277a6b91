/**
 * The weight layout of transformers' CLIPTextModel and CLIPTextModelWithProjection (the text
 * encoders of every SD generation; SD 2.x and SDXL's second encoder are OpenCLIP models
 * converted to this layout), derived from the same typed config the builder reads.
 */
import { type ClipTextConfig, parseClipTextConfig } from "../configs/clip-config.js";
import type { JsonObject } from "../configs/config-json.js";
import {
  flattenModules,
  linear,
  norm,
  type Shape,
  under,
  type WeightModule,
} from "./weight-modules.js";

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
