/**
 * Attention already fused into onnxruntime's com.microsoft.MultiHeadAttention with separate
 * query, key and value inputs (B, N, C), as this project's builder and onnxruntime's
 * transformer optimizer emit. The fused op accepts a key/value sequence of another length, so
 * only the projections change. Packed forms (QKV in one input, or key and value given as
 * past-state) are reported and left alone.
 */
import {
  type AttentionMatch,
  type AttentionRule,
  checkSelfAttention,
  rewriteSelfAttention,
  traceAttention,
} from "../attention.js";
import type { GraphIndex } from "../graph-index.js";

const MS_DOMAIN = "com.microsoft";

export const fusedAttentionRule: AttentionRule = {
  name: "fused-multi-head-attention",
  match(graph: GraphIndex): AttentionMatch[] {
    const matches: AttentionMatch[] = [];
    for (const node of graph.nodes) {
      if (node.domain !== MS_DOMAIN || node.opType !== "MultiHeadAttention") continue;
      const [query, key, value] = node.input;
      const packed = !key || !value;
      matches.push({
        rule: this.name,
        anchor: node,
        core: [node],
        output: node.output[0],
        traced: packed
          ? "packed query/key/value input (not supported)"
          : traceAttention(graph, query, key, value),
      });
    }
    return matches;
  },
  check: checkSelfAttention,
  rewrite: rewriteSelfAttention,
};
