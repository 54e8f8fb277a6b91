/**
 * The configuration of a CLIP text encoder, read from a transformers `config.json`
 * (`text_encoder/`, `text_encoder_2/`). Fields that are absent take transformers'
 * CLIPTextConfig defaults; values this toolkit cannot build are rejected with one line.
 */

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
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${label}: expected a JSON object`);
  }
  const raw = json as Record<string, unknown>;
  const d = CLIP_TEXT_DEFAULTS;
  const modelType = raw["model_type"];
  if (modelType !== undefined && modelType !== "clip_text_model") {
    throw new Error(
      `${label}: "model_type" is ${JSON.stringify(modelType)}; expected "clip_text_model"`,
    );
  }
  const config: ClipTextConfig = {
    vocabSize: positiveInt(raw, "vocab_size", d.vocabSize, label),
    hiddenSize: positiveInt(raw, "hidden_size", d.hiddenSize, label),
    intermediateSize: positiveInt(raw, "intermediate_size", d.intermediateSize, label),
    projectionDim: positiveInt(raw, "projection_dim", d.projectionDim, label),
    numHiddenLayers: positiveInt(raw, "num_hidden_layers", d.numHiddenLayers, label),
    numAttentionHeads: positiveInt(raw, "num_attention_heads", d.numAttentionHeads, label),
    maxPositionEmbeddings: positiveInt(
      raw,
      "max_position_embeddings",
      d.maxPositionEmbeddings,
      label,
    ),
    hiddenAct: oneOf(raw, "hidden_act", CLIP_ACTIVATIONS, d.hiddenAct, label),
    layerNormEps: positiveNumber(raw, "layer_norm_eps", d.layerNormEps, label),
    eosTokenId: nonNegativeInt(raw, "eos_token_id", d.eosTokenId, label),
    architecture: architectureOf(raw, label),
  };
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new Error(
      `${label}: "hidden_size" ${config.hiddenSize} is not divisible by "num_attention_heads" ${config.numAttentionHeads}`,
    );
  }
  return config;
}

function architectureOf(
  raw: Record<string, unknown>,
  label: string,
): ClipTextArchitecture | undefined {
  const list = raw["architectures"];
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list) || list.length !== 1 || typeof list[0] !== "string") {
    throw new Error(
      `${label}: "architectures" is ${JSON.stringify(list)}; expected one class name`,
    );
  }
  const name = list[0];
  if (!(CLIP_TEXT_ARCHITECTURES as readonly string[]).includes(name)) {
    throw new Error(
      `${label}: "architectures" is ["${name}"]; supported: ${CLIP_TEXT_ARCHITECTURES.join(", ")}`,
    );
  }
  return name as ClipTextArchitecture;
}

function numberField(
  raw: Record<string, unknown>,
  field: string,
  fallback: number,
  label: string,
): number {
  const value = raw[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Error(`${label}: "${field}" is ${JSON.stringify(value)}; expected a number`);
  }
  return value;
}

function positiveNumber(
  raw: Record<string, unknown>,
  field: string,
  fallback: number,
  label: string,
): number {
  const value = numberField(raw, field, fallback, label);
  if (!(value > 0)) throw new Error(`${label}: "${field}" is ${value}; expected a positive number`);
  return value;
}

function nonNegativeInt(
  raw: Record<string, unknown>,
  field: string,
  fallback: number,
  label: string,
): number {
  const value = numberField(raw, field, fallback, label);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${label}: "${field}" is ${value}; expected a non-negative integer`);
  }
  return value;
}

function positiveInt(
  raw: Record<string, unknown>,
  field: string,
  fallback: number,
  label: string,
): number {
  const value = nonNegativeInt(raw, field, fallback, label);
  if (value === 0) throw new Error(`${label}: "${field}" is 0; expected a positive integer`);
  return value;
}

function oneOf<T extends string>(
  raw: Record<string, unknown>,
  field: string,
  allowed: readonly T[],
  fallback: T,
  label: string,
): T {
  const value = raw[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new Error(
      `${label}: "${field}" is ${JSON.stringify(value)}; supported: ${allowed.join(", ")}`,
    );
  }
  return value as T;
}
