/**
 * The CLIP text encoder (Radford et al. 2021, "Learning Transferable Visual Models From Natural
 * Language Supervision") as an ONNX graph, built from a transformers config and weights:
 * CLIPTextModel (SD 1.x, SD 2.x, SDXL's first encoder) and CLIPTextModelWithProjection (SDXL's
 * second encoder). A pre-norm causal transformer:
 *
 *   x = token_embedding[ids] + position_embedding[0..S)
 *   per layer: x += attn(layer_norm1(x)) with a causal mask; x += mlp(layer_norm2(x))
 *   last_hidden_state = final_layer_norm(x)
 *   pooled = last_hidden_state at the end-of-text position (@ text_projection^T if any)
 *
 * Hidden states are numbered as transformers' `hidden_states` tuple: 0 is the embeddings, i is
 * the output of layer i-1, negative indices count from the end (-1 is the last layer, -2 the
 * "penultimate" state that clip skip and SDXL use).
 */

import type { ClipTextConfig } from "../configs/clip-config.js";
import { attr, GraphBuilder, type Value } from "../onnx/builder.js";
import type { ModelDtype } from "../util/vocabulary.js";
import { type WeightSource, WeightTracker } from "../weights/source.js";
import { clipEncoderLayer } from "../weights/weight-modules.js";
import { layerNorm, linear, linearWeights, type WeightContext, weight } from "./layers.js";

/** One hidden state exposed as a graph output. */
export interface HiddenStateOutput {
  /** The graph output's name. */
  readonly name: string;
  /** Index into transformers' `hidden_states` (0 = embeddings, -1 = last layer). */
  readonly index: number;
  /** Whether `final_layer_norm` is applied (SD 1.x/2.x clip skip does, SDXL does not). */
  readonly finalLayerNorm: boolean;
}

/** The hidden-state outputs a graph has unless the caller asks for others. */
export const DEFAULT_HIDDEN_STATE_OUTPUTS: readonly HiddenStateOutput[] = Object.freeze([
  { name: "last_hidden_state", index: -1, finalLayerNorm: true },
  { name: "penultimate_hidden_state", index: -2, finalLayerNorm: false },
  { name: "penultimate_after_final_ln", index: -2, finalLayerNorm: true },
]);

export interface ClipTextEncoderOptions {
  /** Element type of weights and activations; inputs and outputs stay int64 / float32. */
  readonly dtype?: ModelDtype;
  /** Hidden states to output (default DEFAULT_HIDDEN_STATE_OUTPUTS). */
  readonly hiddenStates?: readonly HiddenStateOutput[];
  /**
   * Whether to output the pooled embedding: `pooler_output` (CLIPTextModel) or `text_embeds`
   * (with projection). Default true.
   */
  readonly pooled?: boolean;
  /**
   * Whether the weights include `text_projection` (CLIPTextModelWithProjection). Default: the
   * config's `architectures`, or, when the config does not name one, whether the key exists.
   */
  readonly projection?: boolean;
  /** A fixed sequence length, or "dynamic" (default: max_position_embeddings, usually 77). */
  readonly sequenceLength?: number | "dynamic";
}

export const INPUT_IDS = "input_ids";
export const POOLER_OUTPUT = "pooler_output";
export const TEXT_EMBEDS = "text_embeds";

const PREFIX = "text_model";
const PROJECTION = "text_projection";
const PROJECTION_KEY = `${PROJECTION}.weight`;
/**
 * A buffer that older exports saved (`torch.arange(max_position_embeddings)[None]`).
 * transformers no longer loads it (it is a non-persistent buffer), so its values never matter,
 * and some community checkpoints carry corrupted ones: it is declared and ignored.
 */
const POSITION_IDS_BUFFER = `${PREFIX}.embeddings.position_ids`;
/**
 * transformers' test for configs written before `eos_token_id` was set correctly: the pooled
 * state is then taken at the largest token id (end-of-text is the largest id in CLIP's vocabulary).
 */
const LEGACY_EOS_TOKEN_ID = 2;

/** Whether a build outputs `text_embeds` rather than `pooler_output`. */
export function hasProjection(
  config: ClipTextConfig,
  weights: WeightSource,
  options: ClipTextEncoderOptions = {},
): boolean {
  if (options.projection !== undefined) return options.projection;
  if (config.architecture !== undefined) {
    return config.architecture === "CLIPTextModelWithProjection";
  }
  return weights.has(PROJECTION_KEY);
}

/**
 * diffusers' `clip_skip` (k layers skipped, 0 = none) as a hidden state: SD 1.x/2.x use
 * hidden_states[-(k+1)] through the final layer norm; SDXL uses hidden_states[-(k+2)] as is.
 */
export function clipSkipHiddenState(
  clipSkip: number,
  convention: "sd" | "sdxl",
  name = "prompt_embeds",
): HiddenStateOutput {
  if (!Number.isSafeInteger(clipSkip) || clipSkip < 0) {
    throw new Error(`clip skip must be a non-negative integer, got ${clipSkip}`);
  }
  return convention === "sd"
    ? { name, index: -(clipSkip + 1), finalLayerNorm: true }
    : { name, index: -(clipSkip + 2), finalLayerNorm: false };
}

/**
 * Builds the encoder: input `input_ids` int64 [batch, sequence]; float32 outputs
 * [batch, sequence, hidden] per hidden state and [batch, hidden or projection_dim] pooled.
 * Every weight of `weights` must be used exactly once (missing and unused keys are errors).
 */
export function buildClipTextEncoder(
  config: ClipTextConfig,
  weights: WeightSource,
  options: ClipTextEncoderOptions = {},
): GraphBuilder {
  const g = new GraphBuilder(options.dtype ?? "float32");
  const tracker = new WeightTracker(weights);
  const ctx: ClipContext = { g, weights: tracker, config };
  const layers = config.numHiddenLayers;
  const hidden = config.hiddenSize;
  const projection = hasProjection(config, weights, options);
  const pooled = options.pooled ?? true;
  const outputs = resolveOutputs(options.hiddenStates ?? DEFAULT_HIDDEN_STATE_OUTPUTS, layers);
  if (pooled && outputs.some((o) => o.name === pooledName(projection))) {
    throw new Error(`output name "${pooledName(projection)}" is used twice`);
  }
  if (!pooled && outputs.length === 0) {
    throw new Error("the text encoder graph needs at least one output");
  }
  // Layers past the deepest requested state are not built; the pooled output needs them all.
  const depth = Math.max(pooled ? layers : 0, ...outputs.map((o) => o.index));
  const needsFinalNorm = pooled || outputs.some((o) => o.finalLayerNorm);

  const sequence = options.sequenceLength ?? config.maxPositionEmbeddings;
  if (sequence !== "dynamic") checkSequenceLength(sequence, config);
  const sequenceDim = sequence === "dynamic" ? "sequence" : sequence;
  const ids = g.input(INPUT_IDS, "int64", ["batch", sequenceDim]);

  if (weights.has(POSITION_IDS_BUFFER)) tracker.take(POSITION_IDS_BUFFER);

  const positions = sequencePositions(g, ids); // (S) int64
  let x = g.scope("embeddings", () => {
    const tokenTable = weight(ctx, `${PREFIX}.embeddings.token_embedding.weight`, [
      config.vocabSize,
      hidden,
    ]);
    const positionTable = weight(ctx, `${PREFIX}.embeddings.position_embedding.weight`, [
      config.maxPositionEmbeddings,
      hidden,
    ]);
    return g.add(g.gather(tokenTable, ids), g.gather(positionTable, positions)); // (B, S, C)
  });
  const mask = g.scope("causal_mask", () => causalMask(g, positions)); // (S, S)

  const states: Value[] = [x];
  for (let i = 0; i < layers; i++) {
    const prefix = `${PREFIX}.encoder.layers.${i}`;
    if (i >= depth) {
      for (const [suffix, shape] of clipEncoderLayer(config))
        tracker.take(`${prefix}.${suffix}`, shape);
      continue;
    }
    x = g.scope(`layers.${i}`, () => encoderLayer(ctx, prefix, x, mask));
    states.push(x);
  }

  const finalNormKeys = [`${PREFIX}.final_layer_norm.weight`, `${PREFIX}.final_layer_norm.bias`];
  let finalNorm: ((v: Value) => Value) | undefined;
  if (needsFinalNorm) {
    const scale = weight(ctx, finalNormKeys[0], [hidden]);
    const bias = weight(ctx, finalNormKeys[1], [hidden]);
    finalNorm = (v) =>
      g.scope("final_layer_norm", () => g.layerNorm(v, scale, bias, config.layerNormEps));
  } else {
    for (const key of finalNormKeys) tracker.take(key, [hidden]);
  }

  const normalized = new Map<number, Value>();
  const normalizedState = (index: number): Value => {
    let value = normalized.get(index);
    if (!value) {
      value = finalNorm!(states[index]);
      normalized.set(index, value);
    }
    return value;
  };

  for (const out of outputs) {
    const value = out.finalLayerNorm ? normalizedState(out.index) : states[out.index];
    g.output(toFloat32(g, value), out.name, "float32", ["batch", sequenceDim, hidden]);
  }

  if (pooled) {
    let value = g.scope("pooler", () => poolAtEndOfText(g, config, ids, normalizedState(layers)));
    let width = hidden;
    if (projection) {
      const { weightT } = linearWeights(ctx, PROJECTION, hidden, config.projectionDim, {
        bias: false,
      });
      value = g.scope("text_projection", () => g.matMul(value, weightT)); // (B, P)
      width = config.projectionDim;
    }
    g.output(toFloat32(g, value), pooledName(projection), "float32", ["batch", width]);
  } else if (projection) {
    tracker.take(PROJECTION_KEY, [config.projectionDim, hidden]);
  }

  tracker.assertAllUsed();
  return g;
}

function pooledName(projection: boolean): string {
  return projection ? TEXT_EMBEDS : POOLER_OUTPUT;
}

/** Validates names and turns negative indices into positions in the hidden-state list. */
function resolveOutputs(
  requested: readonly HiddenStateOutput[],
  layers: number,
): HiddenStateOutput[] {
  const names = new Set<string>([INPUT_IDS]);
  return requested.map((out) => {
    if (names.has(out.name)) throw new Error(`output name "${out.name}" is used twice`);
    names.add(out.name);
    const index = out.index < 0 ? layers + 1 + out.index : out.index;
    if (!Number.isSafeInteger(out.index) || index < 0 || index > layers) {
      throw new Error(
        `hidden state index ${out.index} for "${out.name}" is out of range for ${layers} layers (valid: ${-(layers + 1)}..${layers})`,
      );
    }
    return { ...out, index };
  });
}

function checkSequenceLength(length: number, config: ClipTextConfig): void {
  if (!Number.isSafeInteger(length) || length < 1 || length > config.maxPositionEmbeddings) {
    throw new Error(
      `sequence length ${length} is not in 1..${config.maxPositionEmbeddings} (max_position_embeddings)`,
    );
  }
}

/** 0..S-1 for the sequence length of `ids` (B, S). */
function sequencePositions(g: GraphBuilder, ids: Value): Value {
  const length = g.squeeze(g.shape(ids, 1, 2), [0]); // scalar S
  return g.op("Range", [g.int64([0], []), length, g.int64([1], [])]);
}

/**
 * Additive causal mask (S, S): 0 where a query may attend, the float type's lowest value
 * above the diagonal, as transformers builds it. The diagonal is always open, so no row of
 * the softmax is all masked.
 */
function causalMask(g: GraphBuilder, positions: Value): Value {
  const future = g.op("Greater", [g.unsqueeze(positions, [0]), g.unsqueeze(positions, [1])]);
  const lowest = g.floatType === "float16" ? -65504 : -3.4028234663852886e38;
  return g.op("Where", [future, g.float(lowest), g.float(0)]);
}

/** The graph and the tracked weights of the model that `config` describes. */
interface ClipContext extends WeightContext {
  readonly config: ClipTextConfig;
}

/** One pre-norm transformer layer; `x` is (B, S, C). */
function encoderLayer(ctx: ClipContext, prefix: string, x: Value, mask: Value): Value {
  const { g, config } = ctx;
  const C = config.hiddenSize;
  const F = config.intermediateSize;
  const eps = config.layerNormEps;
  const norm1 = layerNorm(ctx, `${prefix}.layer_norm1`, x, C, eps);
  x = g.add(
    x,
    g.scope("self_attn", () => selfAttention(ctx, prefix, norm1, mask)),
  );
  const norm2 = layerNorm(ctx, `${prefix}.layer_norm2`, x, C, eps);
  const mlp = g.scope("mlp", () => {
    const up = linear(ctx, `${prefix}.mlp.fc1`, norm2, C, F); // (B, S, F)
    const act = config.hiddenAct === "quick_gelu" ? g.quickGelu(up) : g.gelu(up);
    return linear(ctx, `${prefix}.mlp.fc2`, act, F, C); // (B, S, C)
  });
  return g.add(x, mlp);
}

/** Multi-head causal self-attention (Vaswani et al. 2017) over `x` (B, S, C). */
function selfAttention(ctx: ClipContext, prefix: string, x: Value, mask: Value): Value {
  const { g, config } = ctx;
  const C = config.hiddenSize;
  const heads = config.numAttentionHeads;
  const headDim = C / heads;
  const attn = `${prefix}.self_attn`;
  const q = linear(ctx, `${attn}.q_proj`, x, C, C);
  const k = linear(ctx, `${attn}.k_proj`, x, C, C);
  const v = linear(ctx, `${attn}.v_proj`, x, C, C);
  // Reshape's 0 copies the input dimension, so batch and sequence may be dynamic.
  const split = (t: Value, perm: number[]) =>
    g.transpose(g.reshape(t, [0, 0, heads, headDim]), perm);
  const qh = split(q, [0, 2, 1, 3]); // (B, H, S, D)
  const kt = split(k, [0, 2, 3, 1]); // (B, H, D, S)
  const vh = split(v, [0, 2, 1, 3]); // (B, H, S, D)
  const scores = g.add(g.mul(g.matMul(qh, kt), g.float(1 / Math.sqrt(headDim))), mask); // (B, H, S, S)
  const context = g.matMul(g.softmax(scores, -1), vh); // (B, H, S, D)
  const merged = g.reshape(g.transpose(context, [0, 2, 1, 3]), [0, 0, C]); // (B, S, C)
  return linear(ctx, `${attn}.out_proj`, merged, C, C);
}

/**
 * The state at each sequence's end-of-text token (B, C). transformers takes the first position
 * of `eos_token_id`, or, for legacy configs (eos_token_id 2), the first position of the largest
 * id; with no match the first position (argmax of all zeros) is taken, as there.
 */
function poolAtEndOfText(g: GraphBuilder, config: ClipTextConfig, ids: Value, state: Value): Value {
  const keys =
    config.eosTokenId === LEGACY_EOS_TOKEN_ID
      ? g.cast(ids, "int32")
      : g.cast(g.op("Equal", [ids, g.int64([config.eosTokenId], [])]), "int32");
  // ArgMax returns the first of equal maxima (select_last_index 0), like torch.argmax.
  const position = g.op("ArgMax", [keys], {
    axis: attr.int(1),
    keepdims: attr.int(1),
    select_last_index: attr.int(0),
  }); // (B, 1)
  return g.op("GatherND", [state, position], { batch_dims: attr.int(1) }); // (B, C)
}

function toFloat32(g: GraphBuilder, value: Value): Value {
  return g.floatType === "float32" ? value : g.cast(value, "float32");
}
