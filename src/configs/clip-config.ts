/**
 * The configuration of a CLIP text encoder, read from a transformers `config.json`
 * (`text_encoder/`, `text_encoder_2/`). Fields that are absent take transformers'
 * CLIPTextConfig defaults; values this toolkit cannot build are rejected with one line.
 */
import { ConfigFields } from "./config-fields.js";

export type ClipActivation = "quick_gelu" | "gelu";

export const CLIP_ACTIVATIONS: readonly ClipActivation[] = Object.freeze(["quick_gelu", "gelu"]);

/** Which transformers class the weights belong to (the second adds `text_projection`). */
export type ClipTextArchitecture = "CLIPTextModel" | "CLIPTextModelWithProjection";

export const CLIP_TEXT_ARCHITECTURES: readonly ClipTextArchitecture[] = Object.freeze([
  "CLIPTextModel",
  "CLIPTextModelWithProjection",
]);

export interface ClipTextConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly projectionDim: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly hiddenAct: ClipActivation;
  readonly layerNormEps: number;
  readonly eosTokenId: number;
  /** From `architectures`; undefined when the file does not say (older exports). */
  readonly architecture: ClipTextArchitecture | undefined;
}

/** transformers' CLIPTextConfig defaults (the openai/clip-vit-base-patch32 text tower). */
export const CLIP_TEXT_DEFAULTS: ClipTextConfig = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 512,
  intermediateSize: 2048,
  projectionDim: 512,
  numHiddenLayers: 12,
  numAttentionHeads: 8,
  maxPositionEmbeddings: 77,
  hiddenAct: "quick_gelu",
  layerNormEps: 1e-5,
  eosTokenId: 49407,
  architecture: undefined,
});

/** Parses a text encoder's `config.json` object; `label` names it in error messages. */
export function parseClipTextConfig(json: unknown, label = "text encoder config"): ClipTextConfig {
  const c = new ConfigFields(json, label);
  const d = CLIP_TEXT_DEFAULTS;
  c.choice("model_type", ["clip_text_model"], "clip_text_model");
  const layerNormEps = c.number("layer_norm_eps", d.layerNormEps);
  if (!(layerNormEps > 0)) throw c.invalid("layer_norm_eps", "a positive number");
  const config: ClipTextConfig = {
    vocabSize: c.integer("vocab_size", d.vocabSize, 1),
    hiddenSize: c.integer("hidden_size", d.hiddenSize, 1),
    intermediateSize: c.integer("intermediate_size", d.intermediateSize, 1),
    projectionDim: c.integer("projection_dim", d.projectionDim, 1),
    numHiddenLayers: c.integer("num_hidden_layers", d.numHiddenLayers, 1),
    numAttentionHeads: c.integer("num_attention_heads", d.numAttentionHeads, 1),
    maxPositionEmbeddings: c.integer("max_position_embeddings", d.maxPositionEmbeddings, 1),
    hiddenAct: c.choice("hidden_act", CLIP_ACTIVATIONS, d.hiddenAct),
    layerNormEps,
    eosTokenId: c.integer("eos_token_id", d.eosTokenId, 0),
    architecture: architectureOf(c),
  };
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new Error(
      `${label}: hidden_size = ${config.hiddenSize} is not divisible by num_attention_heads = ${config.numAttentionHeads}`,
    );
  }
  return config;
}

/** The one class name of `architectures`, when the file gives it. */
function architectureOf(c: ConfigFields): ClipTextArchitecture | undefined {
  const list = c.raw("architectures");
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list) || list.length !== 1) {
    throw c.invalid("architectures", "a list with one class name");
  }
  if (!(CLIP_TEXT_ARCHITECTURES as readonly unknown[]).includes(list[0])) {
    throw c.unsupported("architectures");
  }
  return list[0] as ClipTextArchitecture;
}
