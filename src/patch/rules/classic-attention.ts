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
  softmaxCoreMatch,
  softmaxScores,
} from "../attention.js";
import type { GraphIndex } from "../graph-index.js";

export const classicAttentionRule: AttentionRule = {
  name: "classic-attention",
  match(graph: GraphIndex): AttentionMatch[] {
    const matches: AttentionMatch[] = [];
    for (const softmax of graph.nodes) {
      const start = softmaxScores(graph, softmax);
      if (!start) continue;
      const core = start.core;
      let scores = start.scores;
      if (scores?.opType === "Mul" || scores?.opType === "Div") {
        const [a, b] = scores.input;
        const data = graph.isParameter(b)
          ? a
          : scores.opType === "Mul" && graph.isParameter(a)
            ? b
            : undefined;
        if (data === undefined) continue;
        core.push(scores);
        scores = graph.producer(data);
      }
      if (scores?.opType !== "MatMul" || scores.domain) continue;
      const [q, kT] = scores.input;
      // Scaled operands belong to the SDPA rule.
      if (isScaled(graph, q) || isScaled(graph, kT)) continue;
      if (graph.isParameter(q) || graph.isParameter(kT)) continue;
      const match = softmaxCoreMatch(graph, this.name, softmax, core, scores);
      if (match) matches.push(match);
    }
    return matches;
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
