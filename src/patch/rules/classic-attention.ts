/**
 * The classic attention pattern, as diffusers' `AttnProcessor` exports (the SDXL export among
 * the fixtures): heads folded into the batch, scores = MatMul(q, kᵀ) scaled afterwards by a Mul
 * or Div (baddbmm's alpha), an optional additive bias (baddbmm's input, a zero tensor or a
 * mask), Softmax, then MatMul with v.
 *
 *   q ─┐
 *      MatMul ─ Mul|Div(scale) ─ [Add(bias)] ─ Softmax ─ [Cast] ─ MatMul ─ out
 *   kᵀ ┘                                                     v ─┘
 */
import {
  type AttentionMatch,
  type AttentionRule,
  checkSelfAttention,
  rewriteSelfAttention,
  softmaxCoreMatches,
} from "../attention.js";
import type { GraphIndex } from "../graph-index.js";

export const classicAttentionRule: AttentionRule = {
  name: "classic-attention",
  match(graph: GraphIndex): AttentionMatch[] {
    return softmaxCoreMatches(graph, this.name, (core, start) => {
      let scores = start;
      if (scores?.opType === "Mul" || scores?.opType === "Div") {
        const [a, b] = scores.input;
        const data = graph.isParameter(b)
          ? a
          : scores.opType === "Mul" && graph.isParameter(a)
            ? b
            : undefined;
        if (data === undefined) return undefined;
        core.push(scores);
        scores = graph.producer(data);
      }
      if (scores?.opType !== "MatMul" || scores.domain) return undefined;
      const [q, kT] = scores.input;
      // Scaled operands belong to the SDPA rule.
      if (isScaled(graph, q) || isScaled(graph, kT)) return undefined;
      if (graph.isParameter(q) || graph.isParameter(kT)) return undefined;
      return scores;
    });
  },
  check: checkSelfAttention,
  rewrite: rewriteSelfAttention,
};

/** True when `value` is a Mul/Div of a tensor by a parameter (an operand scaled before MatMul). */
export function isScaled(graph: GraphIndex, value: string): boolean {
  const node = graph.producer(value);
  if (!node || (node.opType !== "Mul" && node.opType !== "Div")) return false;
  const [a, b] = node.input;
  return graph.isParameter(a) !== graph.isParameter(b);
}
