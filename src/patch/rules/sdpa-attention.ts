/**
 * The attention pattern of torch's `scaled_dot_product_attention` as the ONNX exporter
 * decomposes it (diffusers' default `AttnProcessor2_0`; both SD 1.5 exports among the fixtures):
 * heads kept as a dimension, the scale applied to the operands before the score MatMul (the
 * square root of the scale on q and on kᵀ, computed at run time from the head size), an optional
 * additive mask, Softmax, then MatMul with v. Graphs that scale only q (as the MatMul attention
 * of this project's builder does) match too.
 *
 *   q ─ Mul(√scale) ─┐
 *                    MatMul ─ [Add(mask)] ─ Softmax ─ [Cast] ─ MatMul ─ out
 *   kᵀ ─ Mul(√scale) ┘                                     v ─┘
 */
import {
  type AttentionMatch,
  type AttentionRule,
  checkSelfAttention,
  rewriteSelfAttention,
  softmaxCoreMatches,
} from "../attention.js";
import type { GraphIndex } from "../graph-index.js";
import { isScaled } from "./classic-attention.js";

export const sdpaAttentionRule: AttentionRule = {
  name: "sdpa-attention",
  match(graph: GraphIndex): AttentionMatch[] {
    return softmaxCoreMatches(graph, this.name, (_core, scores) => {
      if (scores?.opType !== "MatMul" || scores.domain) return undefined;
      const [q, kT] = scores.input;
      return isScaled(graph, q) || isScaled(graph, kT) ? scores : undefined;
    });
  },
  check: checkSelfAttention,
  rewrite: rewriteSelfAttention,
};
