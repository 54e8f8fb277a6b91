/**
 * What the attention rules share: the match they produce, tracing the query, key and value
 * inputs of an attention core back to their projections (`to_q`, `to_k`, `to_v`), the checks
 * every rule makes, and the rewrite that inserts token reduction.
 *
 * ToDo (Smith, Saxena & Saha 2024, arXiv:2402.13573) reduces the keys and values of
 * self-attention: the normed hidden states (B, N, C) that `to_k` and `to_v` project are
 * downsampled on their (h, w) grid first. In an exported graph that means giving the K and V
 * projections a reduced copy of their input; the queries keep every token. For
 * `--merge-target all` the Q projection reads the reduced tokens too, and the attention output
 * (after `to_out`) is restored to every token before the residual addition.
 */
import type { Value } from "../onnx/builder.js";
import type { NodeProto } from "../onnx/proto.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { AttentionSite } from "../reduce/self-attention.js";
import { selfAttentionWithReduction } from "../reduce/self-attention.js";
import type { GraphEdit } from "./graph-edit.js";
import type { GraphIndex } from "./graph-index.js";

/** A linear projection of tokens: MatMul(tokens, W) with a constant W. */
export interface Projection {
  readonly node: NodeProto;
  /** Which input of `node` is the token sequence. */
  readonly inputIndex: number;
  /** The token sequence (B, N, C) that is projected. */
  readonly tokens: string;
  /** Nodes from the projection's output to the attention core (head split, scale, casts). */
  readonly path: readonly NodeProto[];
}

export interface TracedAttention {
  readonly query: Projection;
  readonly key: Projection;
  readonly value: Projection;
}

/** One attention block found by a rule. */
export interface AttentionMatch {
  readonly rule: string;
  /** The node that identifies the block: its Softmax or its fused attention node. */
  readonly anchor: NodeProto;
  /** The nodes the rule recognised as the attention core. */
  readonly core: readonly NodeProto[];
  /** The value the core produces: attention output per head, before `to_out`. */
  readonly output: string;
  /** The projections, or why they could not be traced. */
  readonly traced: TracedAttention | string;
}

/**
 * A rewrite rule, after onnxscript's rewriter: `match` finds candidates, `check` accepts one or
 * says why not, `rewrite` changes the graph through a `GraphEdit`.
 */
export interface RewriteRule<M, S> {
  readonly name: string;
  match(graph: GraphIndex): M[];
  check(graph: GraphIndex, match: M): true | string;
  rewrite(edit: GraphEdit, match: M, settings: S): void;
}

/** The attention rules take the site (where the rule driver found the block) with the settings. */
export interface AttentionRewrite {
  readonly site: AttentionSite;
  readonly settings: ReductionSettings;
}

export type AttentionRule = RewriteRule<AttentionMatch, AttentionRewrite>;

/** Ops a head split / merge path may contain between a projection and the core. */
const PATH_OPS = new Set(["Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze"]);
const SCALE_OPS = new Set(["Mul", "Div"]);

/**
 * Follows `value` back to the projection that made it: through reshapes, transposes and casts,
 * through Mul/Div by a parameter (a scale) and Add of a parameter (a bias), to a MatMul with a
 * constant weight.
 */
export function traceProjection(graph: GraphIndex, value: string): Projection | string {
  const path: NodeProto[] = [];
  let current = value;
  for (let steps = 0; steps < 32; steps++) {
    const node = graph.producer(current);
    if (!node) return `"${current}" is not computed by a projection`;
    if (node.domain) return `unexpected ${node.domain}.${node.opType} before the attention`;
    if (node.opType === "MatMul") {
      const [a, b] = node.input;
      if (graph.isParameter(b) && !graph.isParameter(a))
        return { node, inputIndex: 0, tokens: a, path: path.reverse() };
      return `MatMul "${node.name ?? current}" has no constant weight`;
    }
    path.push(node);
    if (PATH_OPS.has(node.opType)) {
      current = node.input[0];
      continue;
    }
    if (SCALE_OPS.has(node.opType) || node.opType === "Add") {
      const [a, b] = node.input;
      const aParam = graph.isParameter(a);
      const bParam = graph.isParameter(b);
      if (aParam === bParam)
        return `${node.opType} "${node.name ?? current}" mixes two computed tensors`;
      if (node.opType === "Div" && aParam)
        return `Div "${node.name ?? current}" divides by a tensor`;
      current = aParam ? b : a;
      continue;
    }
    return `unexpected ${node.opType} "${node.name ?? current}" between projection and attention`;
  }
  return `no projection within 32 nodes of "${value}"`;
}

/** Traces all three inputs of an attention core. */
export function traceAttention(
  graph: GraphIndex,
  query: string,
  key: string,
  value: string,
): TracedAttention | string {
  const q = traceProjection(graph, query);
  if (typeof q === "string") return `query: ${q}`;
  const k = traceProjection(graph, key);
  if (typeof k === "string") return `key: ${k}`;
  const v = traceProjection(graph, value);
  if (typeof v === "string") return `value: ${v}`;
  return { query: q, key: k, value: v };
}

/** Skips Casts (and Identities) after a value: the consumer chain a core output goes through. */
export function soleConsumerSkippingCasts(
  graph: GraphIndex,
  value: string,
): { node: NodeProto; input: string } | undefined {
  let current = value;
  for (let steps = 0; steps < 8; steps++) {
    const consumers = graph.consumersOf(current);
    if (consumers.length !== 1) return undefined;
    const node = consumers[0];
    if (node.opType === "Cast" || node.opType === "Identity") {
      current = node.output[0];
      continue;
    }
    return { node, input: current };
  }
  return undefined;
}

/**
 * The checks every attention rule makes: the block is self-attention (queries, keys and values
 * project the same tokens), and the key/value paths accept a shorter sequence (their reshapes
 * are computed at run time or keep the sequence length as 0 / -1).
 */
export function checkSelfAttention(graph: GraphIndex, match: AttentionMatch): true | string {
  if (typeof match.traced === "string") return match.traced;
  const { query, key, value } = match.traced;
  if (key.tokens !== value.tokens)
    return "keys and values project different tensors (not a standard attention block)";
  if (key.tokens !== query.tokens) {
    const source = graph.isGraphInput(key.tokens) ? `input "${key.tokens}"` : "another tensor";
    return `cross-attention (keys and values come from ${source})`;
  }
  if (key.node === query.node || key.node === value.node)
    return "queries, keys and values share one projection (packed QKV is not supported)";
  for (const projection of [key, value]) {
    for (const node of projection.path) {
      if (node.opType !== "Reshape") continue;
      const shape = graph.constantNumbers(node.input[1]);
      if (shape && !shape.some((d) => d === 0 || d === -1))
        return `Reshape "${node.name ?? node.output[0]}" fixes the key/value length (a static-shape export)`;
    }
  }
  return true;
}

/**
 * For `--merge-target all`: the value the attention block hands to its residual addition (the
 * output of `to_out`, after any rescaling), found by following the core output forward to the
 * Add that also reads the block's input.
 */
export function attentionBlockOutput(
  graph: GraphIndex,
  match: AttentionMatch,
): { value: string } | string {
  if (typeof match.traced === "string") return match.traced;
  const norm = graph.producer(match.traced.query.tokens);
  if (norm?.opType !== "LayerNormalization")
    return "the attention input is not a LayerNormalization output, so its residual is unknown";
  const residual = norm.input[0];
  let current = match.output;
  for (let steps = 0; steps < 16; steps++) {
    // Shape readers only size the next reshape; the data goes through exactly one node.
    const consumers = graph
      .consumersOf(current)
      .filter((n) => n.opType !== "Shape" && n.opType !== "Size");
    if (consumers.length !== 1) return "the attention output has several readers";
    const node = consumers[0];
    if (node.opType === "Add" && node.input.includes(residual) && node.input.includes(current))
      return { value: current };
    current = node.output[0];
  }
  return "no residual addition after the attention output";
}

/**
 * The rewrite shared by the attention rules: the reduction pieces of `src/reduce/` build the
 * reduced tokens (inside `If` nodes on the timestep when the schedule changes over time), and
 * the projections are rewired to read them.
 */
export function rewriteSelfAttention(
  edit: GraphEdit,
  match: AttentionMatch,
  { site, settings }: AttentionRewrite,
): void {
  if (typeof match.traced === "string") throw new Error(`cannot rewrite: ${match.traced}`);
  const { query, key, value } = match.traced;
  const g = edit.builder;
  const tokens = edit.external(query.tokens);
  if (settings.target === "kv") {
    let keysValues: Value | undefined;
    g.scope(`todo_sd/${site.name}`, () =>
      selfAttentionWithReduction(g, tokens, site, settings, (_b, queries, kv) => {
        keysValues = kv;
        return queries; // the attention itself stays where it is in the graph
      }),
    );
    if (!keysValues || keysValues.name === tokens.name) return;
    edit.rewireInput(key.node, key.inputIndex, keysValues);
    edit.rewireInput(value.node, value.inputIndex, keysValues);
    return;
  }
  const output = attentionBlockOutput(edit.graph, match);
  if (typeof output === "string") throw new Error(`cannot rewrite: ${output}`);
  const attended = edit.external(output.value);
  let reduced: Value | undefined;
  const restored = g.scope(`todo_sd/${site.name}`, () =>
    selfAttentionWithReduction(g, tokens, site, settings, (_b, queries) => {
      reduced = queries;
      return attended;
    }),
  );
  if (!reduced || restored.name === attended.name) return;
  edit.rewireInput(query.node, query.inputIndex, reduced);
  edit.rewireInput(key.node, key.inputIndex, reduced);
  edit.rewireInput(value.node, value.inputIndex, reduced);
  edit.replaceUses(output.value, restored);
}

/**
 * The matches of a Softmax-anchored rule: for each Softmax (softmaxScores), `scoreMatMul` takes
 * the node that made its scores and returns the score MatMul the rule accepts, pushing onto
 * `core` any node it steps over (a scaling Mul, say), or undefined where the pattern is not the
 * rule's; softmaxCoreMatch completes each.
 */
export function softmaxCoreMatches(
  graph: GraphIndex,
  rule: string,
  scoreMatMul: (core: NodeProto[], scores: NodeProto | undefined) => NodeProto | undefined,
): AttentionMatch[] {
  const matches: AttentionMatch[] = [];
  for (const softmax of graph.nodes) {
    const start = softmaxScores(graph, softmax);
    const scores = start && scoreMatMul(start.core, start.scores);
    const match = start && scores && softmaxCoreMatch(graph, rule, softmax, start.core, scores);
    if (match) matches.push(match);
  }
  return matches;
}

/**
 * The start of an attention core: a Softmax and the node that made its scores, stepping over an
 * additive mask (an Add with a parameter); `core` lists the nodes passed. Undefined when the
 * node is not a plain Softmax or its Add has no constant side.
 */
function softmaxScores(
  graph: GraphIndex,
  softmax: NodeProto,
): { core: NodeProto[]; scores: NodeProto | undefined } | undefined {
  if (softmax.opType !== "Softmax" || softmax.domain) return undefined;
  const core = [softmax];
  let scores = graph.producer(softmax.input[0]);
  if (scores?.opType === "Add") {
    const [a, b] = scores.input;
    const data = graph.isParameter(b) ? a : graph.isParameter(a) ? b : undefined;
    if (data === undefined) return undefined;
    core.push(scores);
    scores = graph.producer(data);
  }
  return { core, scores };
}

/**
 * The rest of a Softmax-anchored core once a rule has accepted its score MatMul: the Softmax's
 * output must reach (through casts) the MatMul with v as its first input. Pushes both MatMuls
 * onto `core`; undefined when the output goes anywhere else.
 */
function softmaxCoreMatch(
  graph: GraphIndex,
  rule: string,
  softmax: NodeProto,
  core: NodeProto[],
  scores: NodeProto,
): AttentionMatch | undefined {
  core.push(scores);
  const next = soleConsumerSkippingCasts(graph, softmax.output[0]);
  if (next?.node.opType !== "MatMul" || next.node.input[0] !== next.input) return undefined;
  core.push(next.node);
  const [q, kT] = scores.input;
  return {
    rule,
    anchor: softmax,
    core: core.reverse(),
    output: next.node.output[0],
    traced: traceAttention(graph, q, kT, next.node.input[1]),
  };
}
