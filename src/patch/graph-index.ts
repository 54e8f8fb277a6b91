/**
 * Read-only views of a decoded ONNX graph for the rewrite rules: who produces and who consumes
 * each value, the constant values a graph carries (initializers and Constant nodes), and the
 * values that only depend on constants and tensor shapes ("parameters", such as attention scales
 * computed from a head size at run time).
 */
import {
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  TensorDataType,
  type TensorProto,
} from "../onnx/proto.js";
import { float16BitsToFloat32 } from "../util/float16.js";

/** Ops whose output, given parameter inputs, is again a parameter (shape arithmetic). */
const PARAMETER_OPS = new Set([
  "Identity",
  "Cast",
  "Gather",
  "Slice",
  "Concat",
  "Unsqueeze",
  "Squeeze",
  "Reshape",
  "Transpose",
  "Add",
  "Sub",
  "Mul",
  "Div",
  "Sqrt",
  "Reciprocal",
  "Pow",
  "Neg",
  "Floor",
  "Ceil",
  "Max",
  "Min",
  "Equal",
  "Where",
  "Expand",
  "Range",
  "ConstantOfShape",
  "DequantizeLinear",
]);

export class GraphIndex {
  private readonly producers = new Map<string, NodeProto>();
  private readonly consumers = new Map<string, NodeProto[]>();
  private readonly initializers = new Map<string, TensorProto>();
  private readonly inputs = new Set<string>();
  private readonly outputs = new Set<string>();
  private readonly parameterMemo = new Map<string, boolean>();

  constructor(readonly graph: GraphProto) {
    for (const init of graph.initializer ?? []) this.initializers.set(init.name ?? "", init);
    for (const input of graph.input) this.inputs.add(input.name);
    for (const output of graph.output) this.outputs.add(output.name);
    for (const node of graph.node) {
      for (const output of node.output) if (output) this.producers.set(output, node);
      for (const input of nodeInputs(node)) {
        let list = this.consumers.get(input);
        if (!list) {
          list = [];
          this.consumers.set(input, list);
        }
        if (!list.includes(node)) list.push(node);
      }
    }
  }

  get nodes(): readonly NodeProto[] {
    return this.graph.node;
  }

  producer(value: string): NodeProto | undefined {
    return this.producers.get(value);
  }

  /** Nodes that read `value`, including nodes whose subgraphs read it. */
  consumersOf(value: string): readonly NodeProto[] {
    return this.consumers.get(value) ?? [];
  }

  isGraphInput(value: string): boolean {
    return this.inputs.has(value) && !this.initializers.has(value);
  }

  isGraphOutput(value: string): boolean {
    return this.outputs.has(value);
  }

  initializer(value: string): TensorProto | undefined {
    return this.initializers.get(value);
  }

  /** The tensor of an initializer or a Constant node's `value`, when `value` is one. */
  constantTensor(value: string): TensorProto | undefined {
    const init = this.initializers.get(value);
    if (init) return init;
    const node = this.producers.get(value);
    if (node?.opType !== "Constant") return undefined;
    return constantNodeTensor(node);
  }

  /** The numbers of a constant (any numeric type), or undefined. */
  constantNumbers(value: string): number[] | undefined {
    const tensor = this.constantTensor(value);
    return tensor ? tensorNumbers(tensor) : undefined;
  }

  /**
   * True when `value` depends only on constants and on tensor shapes (not on tensor contents):
   * weights, scales, reshape targets.
   */
  isParameter(value: string): boolean {
    const known = this.parameterMemo.get(value);
    if (known !== undefined) return known;
    this.parameterMemo.set(value, false); // cycles cannot occur in a valid graph; be safe anyway
    let result: boolean;
    if (this.initializers.has(value)) result = true;
    else if (this.inputs.has(value)) result = false;
    else {
      const node = this.producers.get(value);
      if (!node) result = false;
      else if (node.opType === "Constant" || node.opType === "Shape" || node.opType === "Size")
        result = true;
      else if (PARAMETER_OPS.has(node.opType) && !node.domain)
        result = node.input.every((i) => i === "" || this.isParameter(i));
      else result = false;
    }
    this.parameterMemo.set(value, result);
    return result;
  }

  /** Nodes in an order where every node comes after the producers of what it reads. */
  topologicalOrder(): NodeProto[] {
    return topologicalSort(this.graph.node, new Set([...this.inputs, ...this.initializers.keys()]));
  }
}

/** Inputs of a node, including outer-scope values its subgraphs read. */
export function nodeInputs(node: NodeProto): string[] {
  const names = node.input.filter((i) => i !== "");
  for (const graph of subgraphsOf(node)) names.push(...outerReferences(graph));
  return names;
}

export function subgraphsOf(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const attribute of node.attribute ?? []) {
    if (attribute.g) out.push(attribute.g);
    for (const g of attribute.graphs ?? []) out.push(g);
  }
  return out;
}

/** Names a subgraph reads but does not define itself (values of the enclosing graphs). */
export function outerReferences(graph: GraphProto): string[] {
  const defined = new Set<string>([
    ...graph.input.map((i) => i.name),
    ...(graph.initializer ?? []).map((i) => i.name ?? ""),
  ]);
  for (const node of graph.node) for (const o of node.output) defined.add(o);
  const used = new Set<string>();
  for (const node of graph.node) {
    for (const name of nodeInputs(node)) if (!defined.has(name)) used.add(name);
  }
  for (const output of graph.output) if (!defined.has(output.name)) used.add(output.name);
  return [...used];
}

/**
 * A stable topological order: nodes keep their relative order unless a node reads a value
 * produced later, in which case the producer moves before it. Iterative, so deep graphs do not
 * exhaust the stack.
 */
export function topologicalSort(nodes: readonly NodeProto[], available: Set<string>): NodeProto[] {
  const producers = new Map<string, NodeProto>();
  for (const node of nodes) for (const o of node.output) if (o) producers.set(o, node);
  const state = new Map<NodeProto, "visiting" | "done">();
  const order: NodeProto[] = [];
  for (const root of nodes) {
    if (state.get(root) === "done") continue;
    const stack: Array<{ node: NodeProto; deps: NodeProto[]; next: number }> = [];
    const push = (node: NodeProto) => {
      state.set(node, "visiting");
      const deps: NodeProto[] = [];
      for (const input of nodeInputs(node)) {
        if (available.has(input)) continue;
        const producer = producers.get(input);
        if (producer && producer !== node) deps.push(producer);
      }
      stack.push({ node, deps, next: 0 });
    };
    push(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.deps.length) {
        const dep = top.deps[top.next++];
        const s = state.get(dep);
        if (s === "done") continue;
        if (s === "visiting")
          throw new Error(`the graph has a cycle through node "${dep.name ?? dep.opType}"`);
        push(dep);
        continue;
      }
      stack.pop();
      state.set(top.node, "done");
      order.push(top.node);
    }
  }
  return order;
}

export function attribute(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function intsAttribute(node: NodeProto, name: string): number[] | undefined {
  return attribute(node, name)?.ints?.map(Number);
}

function constantNodeTensor(node: NodeProto): TensorProto | undefined {
  for (const a of node.attribute ?? []) {
    if (a.name === "value" && a.t) return a.t;
    if (a.name === "value_float" && a.f !== undefined)
      return { dims: [], dataType: TensorDataType.FLOAT, floatData: [a.f] };
    if (a.name === "value_floats" && a.floats)
      return { dims: [a.floats.length], dataType: TensorDataType.FLOAT, floatData: a.floats };
    if (a.name === "value_int" && a.i !== undefined)
      return { dims: [], dataType: TensorDataType.INT64, int64Data: [Number(a.i)] };
    if (a.name === "value_ints" && a.ints)
      return {
        dims: [a.ints.length],
        dataType: TensorDataType.INT64,
        int64Data: a.ints.map(Number),
      };
  }
  return undefined;
}

/** The values of a numeric tensor as JavaScript numbers (int64 beyond 2^53 loses precision). */
export function tensorNumbers(tensor: TensorProto): number[] | undefined {
  const count = (tensor.dims ?? []).reduce((a, b) => a * Number(b), 1);
  const raw = tensor.rawData;
  if (raw && raw.byteLength > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      switch (tensor.dataType) {
        case TensorDataType.FLOAT:
          out.push(view.getFloat32(i * 4, true));
          break;
        case TensorDataType.DOUBLE:
          out.push(view.getFloat64(i * 8, true));
          break;
        case TensorDataType.INT64:
          out.push(Number(view.getBigInt64(i * 8, true)));
          break;
        case TensorDataType.INT32:
          out.push(view.getInt32(i * 4, true));
          break;
        case TensorDataType.FLOAT16:
          out.push(float16BitsToFloat32(view.getUint16(i * 2, true)));
          break;
        default:
          return undefined;
      }
    }
    return out;
  }
  const list =
    tensor.floatData ?? tensor.int64Data ?? tensor.int32Data ?? tensor.doubleData ?? undefined;
  if (!list) return count === 0 ? [] : undefined;
  if (tensor.dataType === TensorDataType.FLOAT16) return list.map((v) => float16BitsToFloat32(v));
  return list.map(Number);
}
