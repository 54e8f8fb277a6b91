/**
 * Editing a decoded ONNX model with the graph builder. New computation is described with a
 * `GraphBuilder` (the same one the model builders use, so the reduction pieces of `src/reduce/`
 * work unchanged); values of the existing graph enter it through `external`, which reserves
 * their names so the builder never reuses them. `commit` then splices the fragment into the
 * model: fragment names that collide with existing ones are renamed, the requested input
 * rewirings and output changes are applied, nodes are sorted topologically again, unused nodes
 * and initializers are dropped, and shape hints that may no longer hold are removed.
 */
import { type Dim, GraphBuilder, inlineTensor, type Value, valueInfo } from "../onnx/builder.js";
import type {
  GraphProto,
  ModelProto,
  NodeProto,
  TensorProto,
  ValueInfoProto,
} from "../onnx/proto.js";
import { ELEMENT_TYPES, type ElementType } from "../onnx/tensor-data.js";
import { GraphIndex, nodeInputs, subgraphsOf, topologicalSort } from "./graph-index.js";

/** Reduce ops whose `axes` moved from an attribute to an input in opset 18. */
const AXES_INPUT_SINCE_18 = new Set([
  "ReduceMean",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSum",
  "ReduceLogSumExp",
  "ReduceSumSquare",
]);

interface Rewire {
  readonly node: NodeProto;
  readonly index: number;
  readonly value: string;
}

export class GraphEdit {
  readonly builder: GraphBuilder;
  private readonly index: GraphIndex;
  private readonly reserved = new Set<string>();
  private readonly rewires: Rewire[] = [];
  private readonly replacedOutputs = new Map<string, { value: string; info: ValueInfoProto }>();
  private readonly addedOutputs: Array<{ value: string; info: ValueInfoProto }> = [];
  private readonly extraNodes: NodeProto[] = [];
  private readonly retypedInputs = new Map<string, ValueInfoProto>();
  private readonly renamed: Array<{ from: string; to: string; kind: "input" | "output" }> = [];
  private replayNames?: Set<string>;
  private replayCounter = 0;
  private committed = false;

  /** `floatType` is the element type of the activations the fragment computes with. */
  constructor(
    readonly model: ModelProto,
    floatType: "float32" | "float16" = "float32",
  ) {
    this.index = new GraphIndex(model.graph);
    this.builder = new GraphBuilder(floatType, undefined, "todo_sd_fragment");
  }

  /** True when the edit would change the model. */
  get pending(): boolean {
    return (
      this.builder.nodeCount > 0 ||
      this.rewires.length > 0 ||
      this.extraNodes.length > 0 ||
      this.replacedOutputs.size > 0 ||
      this.addedOutputs.length > 0 ||
      this.retypedInputs.size > 0 ||
      this.renamed.length > 0
    );
  }

  get graph(): GraphIndex {
    return this.index;
  }

  /** A value of the existing graph, for use in the fragment. */
  external(name: string): Value {
    if (!this.reserved.has(name)) {
      this.reserved.add(name);
      this.builder.input(name, "float32", []);
    }
    return { name };
  }

  /** Makes input `index` of an existing node read `value` (a fragment or existing value). */
  rewireInput(node: NodeProto, index: number, value: Value): void {
    if (index >= node.input.length)
      throw new Error(`node "${node.name ?? node.opType}" has no input ${index}`);
    this.rewires.push({ node, index, value: value.name });
  }

  /** Makes every existing reader of `old` (except `except`) read `value` instead. */
  replaceUses(old: string, value: Value, except: ReadonlySet<NodeProto> = new Set()): void {
    for (const node of this.index.consumersOf(old)) {
      if (except.has(node)) continue;
      node.input.forEach((input, i) => {
        if (input === old) this.rewires.push({ node, index: i, value: value.name });
      });
      if (subgraphsOf(node).length > 0 && !node.input.includes(old))
        throw new Error(
          `cannot redirect "${old}": node "${node.name ?? node.opType}" reads it inside a subgraph`,
        );
    }
    if (this.index.isGraphOutput(old))
      throw new Error(`cannot redirect "${old}": it is a graph output`);
  }

  /**
   * Adds copies of existing `nodes` (in order) that read `substitutions` instead of the values
   * named there; returns the copy's name of each original output. Used to apply an existing
   * computation (a final layer norm, say) to another tensor.
   */
  replay(
    nodes: readonly NodeProto[],
    substitutions: ReadonlyMap<string, string>,
  ): (original: string) => string {
    this.replayNames ??= collectNames(this.model.graph);
    const names = this.replayNames;
    const fresh = (base: string) => {
      let name: string;
      do name = `todo_sd_replay_${++this.replayCounter}/${base}`;
      while (names.has(name));
      names.add(name);
      return name;
    };
    const mapping = new Map(substitutions);
    for (const node of nodes) {
      const copy = structuredClone(node);
      copy.input = node.input.map((i) => mapping.get(i) ?? i);
      copy.output = node.output.map((o) => {
        if (!o) return o;
        const name = fresh(o);
        mapping.set(o, name);
        return name;
      });
      copy.name = fresh(node.name || node.opType);
      this.extraNodes.push(copy);
    }
    return (original) => {
      const name = mapping.get(original);
      if (!name) throw new Error(`"${original}" is not an output of the replayed nodes`);
      return name;
    };
  }

  /**
   * Changes graph input `name` to `type` and `shape`; `convert` builds, from the new input, the
   * value the graph's readers get instead (a Cast to the old type, say).
   */
  replaceInput(
    name: string,
    type: ElementType,
    shape: readonly Dim[] | undefined,
    convert: (input: Value) => Value,
  ): void {
    if (!this.index.isGraphInput(name)) throw new Error(`the graph has no input "${name}"`);
    const value = convert(this.external(name));
    this.replaceUses(name, value);
    this.retypedInputs.set(name, valueInfo(name, type, shape));
  }

  /** Renames a graph input or output (applied last, so the other edits use the old name). */
  rename(kind: "input" | "output", from: string, to: string): void {
    const exists =
      kind === "input" ? this.index.isGraphInput(from) : this.index.isGraphOutput(from);
    if (!exists) throw new Error(`the graph has no ${kind} "${from}"`);
    if (from !== to) this.renamed.push({ from, to, kind });
  }

  /** Adds a graph output `name` with the contents of `value`. */
  addOutput(value: Value, name: string, type: ElementType, shape?: readonly Dim[]): void {
    this.addedOutputs.push({ value: value.name, info: valueInfo(name, type, shape) });
  }

  /** Replaces the graph output `name`: it keeps its name and now carries `value`. */
  replaceOutput(name: string, value: Value, type: ElementType, shape?: readonly Dim[]): void {
    if (!this.index.isGraphOutput(name)) throw new Error(`the graph has no output "${name}"`);
    this.replacedOutputs.set(name, { value: value.name, info: valueInfo(name, type, shape) });
  }

  /** Removes graph output `name` (its computation is pruned when nothing else reads it). */
  removeOutput(name: string): void {
    if (!this.index.isGraphOutput(name)) throw new Error(`the graph has no output "${name}"`);
    this.replacedOutputs.set(name, { value: "", info: { name } });
  }

  /** Splices the fragment into the model (in place) and returns the model. */
  commit(): ModelProto {
    if (this.committed) throw new Error("this edit was already committed");
    const opset = this.model.opsetImport.find((o) => !o.domain)?.version ?? 1;
    // The builder writes opset-13 forms (Squeeze, Unsqueeze, Split and Slice take inputs).
    if (opset < 13 && this.builder.nodeCount > 0)
      throw new Error(
        `the model uses ONNX opset ${opset}; adding to it needs opset 13 or newer (re-export it with a newer opset)`,
      );
    this.committed = true;
    const graph = this.model.graph;
    graph.node.push(...this.extraNodes);
    const fragment = this.builder.toGraphProto();
    const initializers = this.builder.initializers.map((init) => inlineTensor(init));

    // Rename fragment-made names that the model already uses.
    const existing = collectNames(graph);
    const created = new Set<string>(initializers.map((t) => t.name ?? ""));
    collectOutputs(fragment.node, created);
    const renames = new Map<string, string>();
    let counter = 0;
    for (const name of created) {
      if (this.reserved.has(name)) throw new Error(`the fragment redefines "${name}"`);
      if (!existing.has(name)) continue;
      let fresh: string;
      do fresh = `${name}__todo_sd_${++counter}`;
      while (existing.has(fresh) || created.has(fresh));
      renames.set(name, fresh);
    }
    const rename = (name: string) => renames.get(name) ?? name;
    renameGraphNodes(fragment.node, rename);
    for (const t of initializers) t.name = rename(t.name ?? "");
    // onnxruntime also wants node names to be unique.
    const nodeNames = collectNodeNames(graph.node);
    for (const node of allNodesOf(fragment.node)) {
      if (!node.name || !nodeNames.has(node.name)) {
        if (node.name) nodeNames.add(node.name);
        continue;
      }
      let fresh: string;
      do fresh = `${node.name}__todo_sd_${++counter}`;
      while (nodeNames.has(fresh));
      node.name = fresh;
      nodeNames.add(fresh);
    }

    if (opset >= 18) legalizeReduceAxes(fragment.node, initializers, existing);

    graph.node.push(...fragment.node);
    graph.initializer = [...(graph.initializer ?? []), ...initializers];
    const changed = new Set<string>();
    for (const { node, index, value } of this.rewires) {
      node.input[index] = rename(value);
      for (const o of node.output) changed.add(o);
    }
    for (const node of fragment.node) for (const o of node.output) changed.add(o);

    // A replaced output keeps its name for the new value; readers of the old value inside
    // the graph (and the fragment) read it under a fresh name.
    for (const [name, replaced] of this.replacedOutputs) {
      let fresh: string;
      do fresh = `${name}__todo_sd_${++counter}`;
      while (existing.has(fresh) || created.has(fresh));
      for (const node of allNodesOf(graph.node)) {
        node.input = node.input.map((i) => (i === name ? fresh : i));
        node.output = node.output.map((o) => (o === name ? fresh : o));
      }
      if (replaced.value === name) replaced.value = fresh;
    }

    const outputs: ValueInfoProto[] = [];
    for (const output of graph.output) {
      const replaced = this.replacedOutputs.get(output.name);
      if (!replaced) outputs.push(output);
      else if (replaced.value !== "") {
        graph.node.push(identity(rename(replaced.value), output.name, `${output.name}/todo_sd`));
        outputs.push(replaced.info);
        changed.add(output.name);
      }
    }
    for (const added of this.addedOutputs) {
      const source = rename(added.value);
      if (source !== added.info.name)
        graph.node.push(identity(source, added.info.name, `${added.info.name}/todo_sd`));
      outputs.push(added.info);
    }
    graph.output = outputs;
    graph.input = graph.input.map((i) => this.retypedInputs.get(i.name) ?? i);
    for (const { from, to, kind } of this.renamed) {
      const names = collectNames(graph);
      if (names.has(to)) throw new Error(`cannot rename ${kind} "${from}": "${to}" is taken`);
      renameEverywhere(graph, from, to);
      changed.add(to);
    }

    for (const node of graph.node) {
      if (node.domain && !this.model.opsetImport.some((o) => o.domain === node.domain))
        this.model.opsetImport.push({ domain: node.domain, version: 1 });
    }
    const available = new Set<string>([
      ...graph.input.map((i) => i.name),
      ...graph.initializer.map((i) => i.name ?? ""),
    ]);
    graph.node = topologicalSort(graph.node, available);
    pruneUnused(graph);
    dropStaleValueInfo(graph, changed);
    return this.model;
  }
}

function identity(input: string, output: string, name: string): NodeProto {
  return { opType: "Identity", input: [input], output: [output], name, attribute: [] };
}

/** Every value and initializer name of a graph and its subgraphs. */
function collectNames(graph: GraphProto, into = new Set<string>()): Set<string> {
  for (const i of graph.input) into.add(i.name);
  for (const o of graph.output) into.add(o.name);
  for (const t of graph.initializer ?? []) into.add(t.name ?? "");
  for (const v of graph.valueInfo ?? []) into.add(v.name);
  for (const node of graph.node) {
    for (const n of node.input) into.add(n);
    for (const n of node.output) into.add(n);
    for (const sub of subgraphsOf(node)) collectNames(sub, into);
  }
  into.delete("");
  return into;
}

/** Renames a value in a graph's inputs, outputs and nodes, subgraphs included. */
function renameEverywhere(graph: GraphProto, from: string, to: string): void {
  for (const i of graph.input) if (i.name === from) i.name = to;
  for (const o of graph.output) if (o.name === from) o.name = to;
  for (const v of graph.valueInfo ?? []) if (v.name === from) v.name = to;
  for (const node of graph.node) {
    node.input = node.input.map((n) => (n === from ? to : n));
    node.output = node.output.map((n) => (n === from ? to : n));
    for (const sub of subgraphsOf(node)) renameEverywhere(sub, from, to);
  }
}

function collectNodeNames(nodes: readonly NodeProto[]): Set<string> {
  const names = new Set<string>();
  for (const node of allNodesOf(nodes)) if (node.name) names.add(node.name);
  return names;
}

/** Nodes of a list and of all their subgraphs. */
function allNodesOf(nodes: readonly NodeProto[]): NodeProto[] {
  const out: NodeProto[] = [];
  for (const node of nodes) {
    out.push(node);
    for (const sub of subgraphsOf(node)) out.push(...allNodesOf(sub.node));
  }
  return out;
}

function collectOutputs(nodes: readonly NodeProto[], into: Set<string>): void {
  for (const node of nodes) {
    for (const o of node.output) if (o) into.add(o);
    for (const sub of subgraphsOf(node)) {
      collectOutputs(sub.node, into);
      for (const t of sub.initializer ?? []) into.add(t.name ?? "");
    }
  }
}

function renameGraphNodes(nodes: readonly NodeProto[], rename: (name: string) => string): void {
  for (const node of nodes) {
    node.input = node.input.map((n) => (n ? rename(n) : n));
    node.output = node.output.map((n) => (n ? rename(n) : n));
    for (const sub of subgraphsOf(node)) {
      renameGraphNodes(sub.node, rename);
      for (const o of sub.output) o.name = rename(o.name);
      for (const t of sub.initializer ?? []) t.name = rename(t.name ?? "");
    }
  }
}

/** Opset 18 moved `axes` of most Reduce ops from an attribute to an input. */
function legalizeReduceAxes(
  nodes: readonly NodeProto[],
  initializers: TensorProto[],
  existing: ReadonlySet<string>,
): void {
  let counter = 0;
  for (const node of nodes) {
    for (const sub of subgraphsOf(node)) legalizeReduceAxes(sub.node, initializers, existing);
    if (!AXES_INPUT_SINCE_18.has(node.opType) || node.domain) continue;
    const axes = (node.attribute ?? []).find((a) => a.name === "axes");
    if (!axes?.ints) continue;
    let name: string;
    do name = `todo_sd_reduce_axes_${++counter}`;
    while (existing.has(name) || initializers.some((t) => t.name === name));
    initializers.push({
      name,
      dims: [axes.ints.length],
      dataType: ELEMENT_TYPES.int64.dataType,
      rawData: new Uint8Array(BigInt64Array.from(axes.ints, (v) => BigInt(v)).buffer),
    });
    node.attribute = (node.attribute ?? []).filter((a) => a !== axes);
    node.input = [node.input[0], name];
  }
}

/** Drops nodes whose outputs nothing reads, then initializers nothing reads. */
function pruneUnused(graph: GraphProto): void {
  const needed = new Set(graph.output.map((o) => o.name));
  const kept: NodeProto[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const node = graph.node[i];
    if (!node.output.some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const input of nodeInputs(node)) needed.add(input);
  }
  graph.node = kept.reverse();
  // An initializer listed as a graph input (older IR versions) is a default for that input.
  for (const input of graph.input) needed.add(input.name);
  graph.initializer = (graph.initializer ?? []).filter((t) => needed.has(t.name ?? ""));
}

/** Shape hints downstream of a change may be wrong now (a shorter key sequence, for one). */
function dropStaleValueInfo(graph: GraphProto, changed: Set<string>): void {
  if (!graph.valueInfo || graph.valueInfo.length === 0) return;
  const stale = new Set(changed);
  for (const node of graph.node) {
    if (nodeInputs(node).some((i) => stale.has(i))) for (const o of node.output) stale.add(o);
  }
  graph.valueInfo = graph.valueInfo.filter((v) => !stale.has(v.name));
}
