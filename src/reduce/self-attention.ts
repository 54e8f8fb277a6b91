/**
 * The contract between the model builders and token reduction (ToDo / ToMe): a UNet builds each
 * self-attention (attn1) through `selfAttentionWithReduction`, handing over the token sequence,
 * where it sits (level and grid), and a callback that builds the attention itself. The reduction
 * module decides what the queries and keys/values are, and may wrap the choice in an `If` on the
 * timestep so that one model serves every step.
 */
import type { GraphBuilder, Value } from "../onnx/builder.js";

/** Builds attention from queries (B, Nq, C) and keys/values source (B, Nk, C) to (B, Nq, C). */
export type Attend = (g: GraphBuilder, queries: Value, keysValues: Value) => Value;

export interface AttentionSite {
  /** Spatial level: 1 = full latent resolution, 2 = half of it, ... */
  readonly level: number;
  /** int64 scalars: the token grid of this block at run time (tokens = height * width). */
  readonly height: Value;
  readonly width: Value;
  /** The UNet's `timestep` input, float [B]. */
  readonly timestep: Value;
  /** A stable name of the block, for node names. */
  readonly name: string;
}

export interface ReductionSettings {
  readonly enabled: boolean;
}

/** Self-attention over `tokens` (B, N, C); without reduction it is `attend(tokens, tokens)`. */
export function selfAttentionWithReduction(
  g: GraphBuilder,
  tokens: Value,
  _site: AttentionSite,
  _settings: ReductionSettings | undefined,
  attend: Attend,
): Value {
  return attend(g, tokens, tokens);
}
