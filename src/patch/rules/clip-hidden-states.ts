/**
 * CLIP text encoders exported to ONNX give only `last_hidden_state` (and the pooled output),
 * but clip skip needs an earlier hidden state: transformers' `hidden_states[-n]`, for SD 1.x/2.x
 * with the final layer norm applied (Radford et al. 2021 for CLIP; clip skip as the reference
 * pipelines implement it).
 *
 * The hidden states are found on the residual stream, not by names: in a pre-norm transformer
 * each layer adds two branches (attention, MLP) to the stream, so walking back from the final
 * norm's input through Adds whose one operand is also read elsewhere (by the next branch's norm)
 * visits hidden_states[L], the mid-layer sum, hidden_states[L-1], ... down to the embeddings,
 * hidden_states[0]. The final norm is applied to an earlier state by replaying the nodes between
 * hidden_states[L] and `last_hidden_state` (one LayerNormalization, or its decomposition in
 * older opsets), so its weights and epsilon are reused exactly.
 */
import type { NodeProto } from "../../onnx/proto.js";
import type { RewriteRule } from "../attention.js";
import type { GraphEdit } from "../graph-edit.js";
import type { GraphIndex } from "../graph-index.js";
import { outputFloatType } from "./vae-encoder-moments.js";

export const LAST_HIDDEN_STATE = "last_hidden_state";

export interface HiddenStatesMatch {
  /** hidden_states[0..L], or why they could not be found. */
  readonly hiddenStates: readonly string[] | string;
  /** The nodes of the final norm, from hidden_states[L] to `last_hidden_state`. */
  readonly finalNorm: readonly NodeProto[];
  readonly lastHiddenState: string;
}

export interface HiddenStateRequest {
  /** n of hidden_states[-n] (1 = the last layer's output, 2 = the penultimate). */
  readonly fromEnd: number;
  readonly finalLayerNorm: boolean;
  /** The name of the new output. */
  readonly output: string;
}

export const clipHiddenStatesRule: RewriteRule<HiddenStatesMatch, HiddenStateRequest> = {
  name: "clip-hidden-states",
  match(graph: GraphIndex): HiddenStatesMatch[] {
    const output = graph.graph.output.find((o) => o.name === LAST_HIDDEN_STATE);
    if (!output) return [];
    const last = findLastHiddenState(graph, output.name);
    if (!last) {
      return [
        {
          hiddenStates: "no residual addition before the final norm",
          finalNorm: [],
          lastHiddenState: output.name,
        },
      ];
    }
    return [
      {
        hiddenStates: residualStream(graph, last),
        finalNorm: between(graph, last, output.name),
        lastHiddenState: output.name,
      },
    ];
  },
  check(_graph: GraphIndex, match: HiddenStatesMatch): true | string {
    if (typeof match.hiddenStates === "string") return match.hiddenStates;
    if (match.hiddenStates.length < 2) return "no encoder layers found on the residual stream";
    if (match.finalNorm.length === 0) return "no final norm before last_hidden_state";
    return true;
  },
  rewrite(edit: GraphEdit, match: HiddenStatesMatch, request: HiddenStateRequest): void {
    if (typeof match.hiddenStates === "string")
      throw new Error(`cannot rewrite: ${match.hiddenStates}`);
    const states = match.hiddenStates;
    const layers = states.length - 1;
    if (!Number.isInteger(request.fromEnd) || request.fromEnd < 1 || request.fromEnd > layers + 1)
      throw new Error(
        `hidden_states[-${request.fromEnd}] does not exist: the text encoder has ${layers} layers (1 to ${layers + 1} from the end)`,
      );
    const state = states[layers + 1 - request.fromEnd];
    let value = state;
    if (request.finalLayerNorm) {
      const copy = edit.replay(match.finalNorm, new Map([[states[layers], state]]));
      value = copy(match.lastHiddenState);
    }
    const type = outputFloatType(edit, match.lastHiddenState);
    edit.addOutput(edit.external(value), request.output, type);
  },
};

/** hidden_states[L]: the first residual Add above `output` (the final norm's input). */
function findLastHiddenState(graph: GraphIndex, output: string): string | undefined {
  const queue = [output];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const value = queue.shift()!;
    const node = graph.producer(value);
    if (!node) continue;
    if (isResidualAdd(graph, node)) return value;
    for (const input of node.input) {
      if (input && !seen.has(input) && !graph.isParameter(input)) {
        seen.add(input);
        queue.push(input);
      }
    }
  }
  return undefined;
}

/** An Add of two computed tensors, one of which something else reads too (the stream). */
function isResidualAdd(graph: GraphIndex, node: NodeProto): boolean {
  if (node.opType !== "Add" || node.domain) return false;
  const [a, b] = node.input;
  if (graph.isParameter(a) || graph.isParameter(b)) return false;
  const shared = [a, b].filter((v) => graph.consumersOf(v).length > 1);
  return shared.length === 1;
}

/** hidden_states[0..L] from hidden_states[L], walking the residual Adds back. */
function residualStream(graph: GraphIndex, last: string): string[] | string {
  const chain = [last];
  let current = last;
  for (;;) {
    const node = graph.producer(current);
    if (!node || !isResidualAdd(graph, node)) break;
    const [a, b] = node.input;
    current = graph.consumersOf(a).length > 1 ? a : b;
    chain.push(current);
  }
  if (chain.length % 2 === 0)
    return `the residual stream has ${chain.length - 1} additions, not two per layer`;
  // chain = [hs[L], mid, hs[L-1], ..., mid, hs[0]]
  return chain.filter((_, i) => i % 2 === 0).reverse();
}

/** Nodes on paths from `from` to `to`, in graph order. */
function between(graph: GraphIndex, from: string, to: string): NodeProto[] {
  const upstream = new Set<NodeProto>();
  const stack = [to];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const value = stack.pop()!;
    if (seen.has(value) || value === from) continue;
    seen.add(value);
    const node = graph.producer(value);
    if (!node) continue;
    upstream.add(node);
    for (const input of node.input) if (input) stack.push(input);
  }
  const downstream = new Set<string>([from]);
  const out: NodeProto[] = [];
  for (const node of graph.topologicalOrder()) {
    if (!upstream.has(node)) continue;
    if (!node.input.some((i) => downstream.has(i))) continue;
    out.push(node);
    for (const o of node.output) downstream.add(o);
  }
  return out;
}
