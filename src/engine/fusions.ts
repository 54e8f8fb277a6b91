/**
 * Node patterns of the builders' graphs that run as one launch, found once per model. Group norm
 * (Wu and He, 2018) as the builders write it for onnxruntime (InstanceNormalization over the
 * (B, G, C/G H W) view, a Reshape back, the per-channel scale and shift as Mul and Add, and
 * optionally SiLU as x * Sigmoid(x)) runs as one kernel from the InstanceNormalization on. And
 * for the tuned GEMM: a Linear (MatMul, then an Add of a bias initializer) with the bias in the GEMM's
 * epilogue, followed either by a GELU (a transformer MLP) or by the UNet's GEGLU feed-forward
 * (Shazeer, 2020, "GLU Variants Improve Transformer"): the Linear's output split in half along
 * the last axis into hidden and gate, then hidden * GELU(gate). GELU is the erf form the builder
 * writes, 0.5 x (1 + erf(x / sqrt 2)), which the GEMM's epilogues compute in registers. Or the
 * Linear is followed by a residual Add (x + Linear(h)), or, a transformer's proj_out, by the
 * Transpose and Reshape of its tokens back into the map and the map's residual Add, which the
 * GEMM writes channels-first. Residual Adds after a convolution go into its epilogue the same way.
 * Only top-level nodes whose every intermediate value has exactly that one reader (and is no
 * graph output) qualify, so skipping them loses nothing.
 * Whether the shapes fit (the bias spans the product's columns, the split halves them along the
 * last axis) is checked when a call knows them; the nodes run one by one otherwise.
 */
import type { GraphProto, NodeProto } from "../onnx/proto.js";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../util/float16.js";
import { attributesOf } from "./attributes.js";
import type { HostTensor } from "./host-tensor.js";

/** hidden * GELU(gate) after a Linear's Split, fused into the GEMM's GEGLU epilogue. */
export interface GegluFusion {
  /** The Split's axis attribute (checked against the rank at run time). */
  readonly axis: number;
  /** The Split's sizes (two equal halves for the fusion to apply). */
  readonly sizes: readonly number[];
  /** The nodes the GEMM replaces after the bias Add: the Split, the GELU's and the product. */
  readonly nodes: readonly NodeProto[];
  /** The product's name. */
  readonly output: string;
}

/** GELU(x) after a Linear, fused into the GEMM's GELU epilogue. */
export interface GeluFusion {
  /** The GELU's nodes, in graph order. */
  readonly nodes: readonly NodeProto[];
  /** The GELU's output name. */
  readonly output: string;
}

/** A residual Add after a Linear or a Conv (x + Linear(h)), fused into the kernel's epilogue. */
export interface ResidualFusion {
  /** The Add. */
  readonly add: NodeProto;
  /** The value added: computed before the MatMul runs (or a graph input). */
  readonly input: string;
}

/**
 * A transformer's tokens written back into its map and added to the map they came from (the
 * proj_out Linear's (B, N, C) output, Transpose [0, 2, 1], Reshape to (B, C, H, W), Add of x):
 * the GEMM writes (B, C, N) itself, x added in its epilogue, in place of a copy and an Add.
 */
export interface ChannelsFirstResidual {
  readonly transpose: NodeProto;
  readonly reshape: NodeProto;
  /** The Add, and the map it adds (computed before the MatMul runs, or a graph input). */
  readonly add: NodeProto;
  readonly input: string;
}

/** A MatMul's bias Add, and what follows it when the GEMM can absorb that too. */
export interface LinearFusion {
  readonly add: NodeProto;
  readonly bias: HostTensor;
  readonly geglu?: GegluFusion;
  readonly gelu?: GeluFusion;
  readonly residual?: ResidualFusion;
  readonly channelsFirst?: ChannelsFirstResidual;
}

/** Group norm's affine map and SiLU after its InstanceNormalization, run as one kernel. */
export interface GroupNormFusion {
  /** The Reshape back to (B, C, H, W). */
  readonly restore: NodeProto;
  /**
   * Where the Reshape's target shape comes from: the initializer holding it, or the value whose
   * dims it is (the input of the Shape node that feeds it).
   */
  readonly shape: { readonly initializer: HostTensor } | { readonly of: string };
  readonly gamma: HostTensor;
  readonly beta: HostTensor;
  /** The InstanceNormalization's epsilon. */
  readonly epsilon: number;
  readonly silu: boolean;
  /** The nodes the kernel replaces after the InstanceNormalization, in graph order. */
  readonly nodes: readonly NodeProto[];
  /** The last node's output: the group norm's result. */
  readonly output: string;
  /**
   * The output's one reader, where it can take the result channels-last: a transformer's tokens
   * (a Reshape by `shape` to (B, C, H W), then a Transpose to (B, H W, C), whose output `output`
   * the kernel then writes) or a Conv reading it as its input.
   */
  readonly channelsLastReader?:
    | {
        readonly kind: "tokens";
        readonly shape: HostTensor;
        readonly nodes: readonly NodeProto[];
        readonly output: string;
      }
    | { readonly kind: "conv"; readonly conv: NodeProto };
}

type Initializers = ReadonlyMap<string, HostTensor>;

/** Who reads each value, and the one reader of a value where exactly one does. */
function graphReaders(
  order: readonly NodeProto[],
  graph: GraphProto,
  reads: (node: NodeProto) => readonly string[],
) {
  const readers = new Map<string, NodeProto[]>();
  for (const node of order)
    for (const name of new Set(reads(node)))
      readers.set(name, [...(readers.get(name) ?? []), node]);
  const outputs = new Set(graph.output.map((o) => o.name));
  /** The one node reading `name`, when exactly one does and it is no graph output. */
  const sole = (name: string | undefined): NodeProto | undefined => {
    const users = name === undefined ? [] : (readers.get(name) ?? []);
    return name !== undefined && !outputs.has(name) && users.length === 1 ? users[0] : undefined;
  };
  /** Where in the order each value is computed. */
  const producedAt = new Map<string, number>();
  order.forEach((node, i) => {
    for (const name of node.output) producedAt.set(name, i);
  });
  return { readers, sole, outputs, producedAt };
}

/** A float initializer whose every value is `value`. */
function isFilled(initializers: Initializers, name: string | undefined, value: number): boolean {
  const t = name === undefined ? undefined : initializers.get(name);
  return t !== undefined && t.dtype === "float32" && t.data.every((v) => v === value);
}

/**
 * The group norms of a top-level node order, keyed by their InstanceNormalization: its scale all
 * ones and its bias all zeros (the statistics only), its output's one reader a Reshape, then an
 * optional Cast between float types (a view in this engine), a Mul by a float initializer
 * (gamma) and an Add of one (beta), and optionally SiLU. Each intermediate value has exactly the
 * one reader the pattern names (SiLU's input: the Sigmoid and the product).
 */
export function groupNormFusions(
  order: readonly NodeProto[],
  graph: GraphProto,
  initializers: Initializers,
  reads: (node: NodeProto) => readonly string[],
): Map<NodeProto, GroupNormFusion> {
  const { readers, sole, outputs } = graphReaders(order, graph, reads);
  const producers = new Map<string, NodeProto>();
  for (const node of order) for (const name of node.output) producers.set(name, node);
  const fusions = new Map<NodeProto, GroupNormFusion>();
  for (const node of order) {
    if (!isStandard(node, "InstanceNormalization")) continue;
    if (!isFilled(initializers, node.input[1], 1) || !isFilled(initializers, node.input[2], 0))
      continue;
    const restore = sole(node.output[0]);
    if (!isStandard(restore, "Reshape") || restore.input[0] !== node.output[0]) continue;
    const target = restore.input[1];
    const fromShape = producers.get(target);
    const shape = initializers.has(target)
      ? { initializer: initializers.get(target) as HostTensor }
      : isStandard(fromShape, "Shape") && (fromShape.attribute ?? []).length === 0
        ? { of: fromShape.input[0] }
        : undefined;
    if (!shape) continue;
    let next = sole(restore.output[0]);
    const cast = isStandard(next, "Cast") && [1, 10].includes(attributesOf(next).int("to", 0));
    const nodes: NodeProto[] = [restore];
    if (cast && next) {
      nodes.push(next);
      next = sole(next.output[0]);
    }
    const mul = next;
    const scaled = nodes[nodes.length - 1].output[0];
    if (!isStandard(mul, "Mul")) continue;
    const gamma = initializers.get(otherInput(mul, scaled) ?? "");
    const add = sole(mul.output[0]);
    if (gamma?.dtype !== "float32" || !isStandard(add, "Add")) continue;
    const beta = initializers.get(otherInput(add, mul.output[0]) ?? "");
    if (beta?.dtype !== "float32") continue;
    nodes.push(mul, add);
    // SiLU: y * Sigmoid(y), y read by exactly those two.
    const y = add.output[0];
    const users = outputs.has(y) ? [] : (readers.get(y) ?? []);
    const sigmoid = users.find((n) => isStandard(n, "Sigmoid"));
    const product = sigmoid ? sole(sigmoid.output[0]) : undefined;
    const silu =
      users.length === 2 &&
      sigmoid !== undefined &&
      isStandard(product, "Mul") &&
      users.includes(product) &&
      otherInput(product, sigmoid.output[0]) === y;
    if (silu && sigmoid && product) nodes.push(sigmoid, product);
    const output = nodes[nodes.length - 1].output[0];
    fusions.set(node, {
      restore,
      shape,
      gamma,
      beta,
      epsilon: attributesOf(node).float("epsilon", 1e-5),
      silu,
      nodes,
      output,
      channelsLastReader: channelsLastReader(output, sole, initializers),
    });
  }
  return fusions;
}

/** A group norm output's one reader, where it takes channels-last data (GroupNormFusion). */
function channelsLastReader(
  output: string,
  sole: (name: string | undefined) => NodeProto | undefined,
  initializers: Initializers,
): GroupNormFusion["channelsLastReader"] {
  const reader = sole(output);
  if (isStandard(reader, "Conv") && reader.input[0] === output)
    return { kind: "conv", conv: reader };
  const shape = reader?.input[1] === undefined ? undefined : initializers.get(reader.input[1]);
  if (!isStandard(reader, "Reshape") || reader.input[0] !== output || !shape) return undefined;
  const transpose = sole(reader.output[0]);
  if (!isStandard(transpose, "Transpose")) return undefined;
  if (attributesOf(transpose).ints("perm")?.join(",") !== "0,2,1") return undefined;
  return { kind: "tokens", shape, nodes: [reader, transpose], output: transpose.output[0] };
}

function isStandard(node: NodeProto | undefined, opType: string): node is NodeProto {
  return node !== undefined && node.opType === opType && (node.domain ?? "") === "";
}

/** The other input of a two-input node, given one of them (undefined if it does not read it). */
function otherInput(node: NodeProto, name: string): string | undefined {
  if (node.input.length !== 2) return undefined;
  if (node.input[0] === name) return node.input[1];
  if (node.input[1] === name) return node.input[0];
  return undefined;
}

/**
 * A float initializer holding the single value `value`, as its own precision rounds it: float32,
 * or float16 in a float16 graph (sqrt 2 is 1.4140625 there, so an exact float32 comparison
 * missed every GELU of an fp16 UNet and left its GEGLU unfused).
 */
function isScalar(initializers: Initializers, name: string | undefined, value: number): boolean {
  const t = name === undefined ? undefined : initializers.get(name);
  if (t === undefined || t.dtype !== "float32" || t.data.length !== 1) return false;
  const rounded = t.float16Bits
    ? float16BitsToFloat32(float32ToFloat16Bits(value))
    : Math.fround(value);
  return t.data[0] === rounded;
}

/**
 * The Linears of a top-level node order (MatMul -> Add of a float initializer), each with the
 * GEGLU or GELU that follows it where there is one, or else the residual Add (a transformer
 * block's x + Linear(h)) whose other operand is ready before the MatMul runs, or else the
 * transpose back into a map and the map's residual Add (ChannelsFirstResidual).
 */
export function linearFusions(
  order: readonly NodeProto[],
  graph: GraphProto,
  initializers: Initializers,
  reads: (node: NodeProto) => readonly string[],
): Map<NodeProto, LinearFusion> {
  const { readers, sole, producedAt } = graphReaders(order, graph, reads);
  const fusions = new Map<NodeProto, LinearFusion>();
  for (const [index, node] of order.entries()) {
    if (!isStandard(node, "MatMul")) continue;
    const add = sole(node.output[0]);
    if (!isStandard(add, "Add")) continue;
    const other = otherInput(add, node.output[0]);
    const bias =
      other === undefined || other === node.output[0] ? undefined : initializers.get(other);
    if (bias?.dtype !== "float32") continue;
    const geglu = gegluAfter(add.output[0], sole, readers, initializers);
    const gelu = geglu ? undefined : geluOf(add.output[0], sole, readers, initializers);
    const residual =
      geglu || gelu
        ? undefined
        : residualAfter(add.output[0], index, sole, producedAt, initializers);
    const channelsFirst =
      geglu || gelu || residual
        ? undefined
        : channelsFirstAfter(add.output[0], index, sole, producedAt, initializers);
    fusions.set(node, { add, bias, geglu, gelu, residual, channelsFirst });
  }
  return fusions;
}

/**
 * The Convs of a top-level node order whose output's one reader is an Add of a value computed
 * before the Conv (a resnet's shortcut + conv2(h)): the residual goes into the convolution's
 * epilogue. Whether the shapes match (no broadcasting) and the tuned kernel takes the Conv is
 * checked when a call knows the shapes.
 */
export function convResidualFusions(
  order: readonly NodeProto[],
  graph: GraphProto,
  initializers: Initializers,
  reads: (node: NodeProto) => readonly string[],
): Map<NodeProto, ResidualFusion> {
  const { sole, producedAt } = graphReaders(order, graph, reads);
  const fusions = new Map<NodeProto, ResidualFusion>();
  for (const [index, node] of order.entries()) {
    if (!isStandard(node, "Conv")) continue;
    const residual = residualAfter(node.output[0], index, sole, producedAt, initializers);
    if (residual) fusions.set(node, residual);
  }
  return fusions;
}

/** The Add of a value computed before node `index` (not an initializer) to the node's output. */
function residualAfter(
  linear: string,
  index: number,
  sole: (name: string | undefined) => NodeProto | undefined,
  producedAt: ReadonlyMap<string, number>,
  initializers: Initializers,
): ResidualFusion | undefined {
  const add = sole(linear);
  if (!isStandard(add, "Add")) return undefined;
  const input = otherInput(add, linear);
  if (input === undefined || input === linear || initializers.has(input)) return undefined;
  const at = producedAt.get(input);
  if (at !== undefined && at >= index) return undefined;
  return { add, input };
}

/**
 * Transpose [0, 2, 1] of a Linear's output, then a Reshape whose shape is known before node
 * `index` runs, then the residual Add (residualAfter): each the one reader of the value before.
 */
function channelsFirstAfter(
  linear: string,
  index: number,
  sole: (name: string | undefined) => NodeProto | undefined,
  producedAt: ReadonlyMap<string, number>,
  initializers: Initializers,
): ChannelsFirstResidual | undefined {
  const transpose = sole(linear);
  if (!isStandard(transpose, "Transpose")) return undefined;
  if (attributesOf(transpose).ints("perm")?.join(",") !== "0,2,1") return undefined;
  const reshape = sole(transpose.output[0]);
  if (!isStandard(reshape, "Reshape") || reshape.input[0] !== transpose.output[0]) return undefined;
  const shape = reshape.input[1];
  const shapeAt = shape === undefined ? undefined : producedAt.get(shape);
  if (shape === undefined || (shapeAt === undefined ? !initializers.has(shape) : shapeAt >= index))
    return undefined;
  const residual = residualAfter(reshape.output[0], index, sole, producedAt, initializers);
  return residual && { transpose, reshape, add: residual.add, input: residual.input };
}

function gegluAfter(
  linear: string,
  sole: (name: string | undefined) => NodeProto | undefined,
  readers: ReadonlyMap<string, readonly NodeProto[]>,
  initializers: Initializers,
): GegluFusion | undefined {
  const split = sole(linear);
  if (!isStandard(split, "Split") || split.output.length !== 2 || split.input[0] !== linear)
    return undefined;
  const sizes = split.input[1] ? initializers.get(split.input[1]) : undefined;
  if (sizes?.data.length !== 2) return undefined;
  const [hidden, gate] = split.output;
  const gelu = geluOf(gate, sole, readers, initializers);
  if (!gelu) return undefined;
  const product = sole(gelu.output);
  if (
    !isStandard(product, "Mul") ||
    otherInput(product, gelu.output) !== hidden ||
    sole(hidden) !== product
  )
    return undefined;
  return {
    axis: attributesOf(split).int("axis", 0),
    sizes: Array.from(sizes.data),
    nodes: [split, ...gelu.nodes, product],
    output: product.output[0],
  };
}

/**
 * GELU(x) = (x * 0.5) * (erf(x / sqrt 2) + 1) as GraphBuilder.gelu writes it, where x has
 * exactly those two readers.
 */
function geluOf(
  x: string,
  sole: (name: string | undefined) => NodeProto | undefined,
  readers: ReadonlyMap<string, readonly NodeProto[]>,
  initializers: Initializers,
): GeluFusion | undefined {
  const users = readers.get(x) ?? [];
  if (users.length !== 2) return undefined;
  const div = users.find((n) => isStandard(n, "Div") && n.input[0] === x);
  const half = users.find((n) => isStandard(n, "Mul"));
  if (!div || !half || !isScalar(initializers, div.input[1], Math.SQRT2)) return undefined;
  if (!isScalar(initializers, otherInput(half, x), 0.5)) return undefined;
  const erf = sole(div.output[0]);
  if (!isStandard(erf, "Erf")) return undefined;
  const plusOne = sole(erf.output[0]);
  if (!isStandard(plusOne, "Add") || !isScalar(initializers, otherInput(plusOne, erf.output[0]), 1))
    return undefined;
  const gelu = sole(plusOne.output[0]);
  if (
    !isStandard(gelu, "Mul") ||
    otherInput(gelu, plusOne.output[0]) !== half.output[0] ||
    sole(half.output[0]) !== gelu
  )
    return undefined;
  return { nodes: [div, half, erf, plusOne, gelu], output: gelu.output[0] };
}
