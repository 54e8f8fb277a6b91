/**
 * A typed ONNX graph builder. Model builders describe computation with methods named after the
 * ONNX operators; the builder invents value names, deduplicates constants, keeps initializers
 * lazy and emits a ModelProto or a file (see `model-io.ts`).
 */
import {
  type AttributeProto,
  AttributeType,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.js";
import {
  ELEMENT_TYPES,
  type ElementType,
  floatData,
  type InitializerData,
  int64Data,
} from "./tensor-data.js";

/** A value in the graph, by name. */
export interface Value {
  readonly name: string;
}

/** An attribute's type and value, as they go into an AttributeProto (the node adds the name). */
export type AttributeValue = Omit<AttributeProto, "name">;

export const attr = Object.freeze({
  int: (i: number): AttributeValue => ({ type: AttributeType.INT, i }),
  float: (f: number): AttributeValue => ({ type: AttributeType.FLOAT, f }),
  string: (value: string): AttributeValue => ({
    type: AttributeType.STRING,
    s: new TextEncoder().encode(value),
  }),
  ints: (ints: readonly number[]): AttributeValue => ({
    type: AttributeType.INTS,
    ints: [...ints],
  }),
  floats: (floats: readonly number[]): AttributeValue => ({
    type: AttributeType.FLOATS,
    floats: [...floats],
  }),
  tensor: (t: TensorProto): AttributeValue => ({ type: AttributeType.TENSOR, t }),
  graph: (g: GraphProto): AttributeValue => ({ type: AttributeType.GRAPH, g }),
});

export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;
export type Dim = number | string;

export interface OpOptions {
  readonly domain?: string;
  readonly name?: string;
}

export const MS_DOMAIN = "com.microsoft";

export interface Initializer {
  readonly name: string;
  readonly data: InitializerData;
}

/** A builder's initializer as a tensor with its bytes inline. */
export function inlineTensor(init: Initializer, bytes = init.data.bytes()): TensorProto {
  return {
    name: init.name,
    dims: [...init.data.dims],
    dataType: ELEMENT_TYPES[init.data.type].dataType,
    rawData: bytes,
  };
}

/** Shared state of a top-level graph and its subgraphs: names, initializers, constants. */
class BuildContext {
  readonly initializers: Initializer[] = [];
  readonly initializerNames = new Set<string>();
  readonly constants = new Map<string, Value>();
  readonly usedNames = new Set<string>();
  readonly usedNodeNames = new Set<string>();
  private counter = 0;

  /** A value name not used yet (values and nodes are separate namespaces in ONNX). */
  freshName(base: string, used: Set<string> = this.usedNames): string {
    let name = base;
    while (used.has(name)) name = `${base}_${++this.counter}`;
    used.add(name);
    return name;
  }
}

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly scopes: string[] = [];
  private readonly context: BuildContext;

  /** `floatType` is the element type of activations and float weights in this graph. */
  constructor(
    readonly floatType: "float32" | "float16" = "float32",
    context?: BuildContext,
    readonly graphName = "main",
  ) {
    this.context = context ?? new BuildContext();
  }

  // ---- structure -------------------------------------------------------------------------

  input(name: string, type: ElementType, shape: readonly Dim[]): Value {
    this.context.usedNames.add(name);
    this.inputs.push(valueInfo(name, type, shape));
    return { name };
  }

  /** Marks `value` as a graph output named `name` (an Identity is added if the name differs). */
  output(value: Value, name: string, type: ElementType, shape?: readonly Dim[]): void {
    let finalName = value.name;
    if (value.name !== name) {
      this.context.usedNames.add(name);
      this.nodes.push(makeNode("Identity", [value.name], [name], {}, this.nodeName("Identity")));
      finalName = name;
    }
    this.outputs.push(valueInfo(finalName, type, shape));
  }

  /** Runs `body` with node names prefixed by `scope` (for readable graphs and profiles). */
  scope<T>(scope: string, body: () => T): T {
    this.scopes.push(scope);
    try {
      return body();
    } finally {
      this.scopes.pop();
    }
  }

  /** A subgraph (for If / Loop bodies) that shares names and initializers with this graph. */
  subgraph(name: string): GraphBuilder {
    return new GraphBuilder(this.floatType, this.context, name);
  }

  initializer(name: string, data: InitializerData): Value {
    if (this.context.initializerNames.has(name)) throw new Error(`duplicate initializer "${name}"`);
    if (this.context.usedNames.has(name)) name = this.context.freshName(name);
    else this.context.usedNames.add(name);
    this.context.initializerNames.add(name);
    this.context.initializers.push({ name, data });
    return { name };
  }

  /** A float weight in the graph's float type. */
  weight(
    name: string,
    dims: readonly number[],
    values: () => Float32Array,
    keepFloat32 = false,
  ): Value {
    return this.initializer(
      name,
      floatData(dims, keepFloat32 ? "float32" : this.floatType, values),
    );
  }

  /** An int64 constant tensor (deduplicated). A `number[]` gives a 1-D tensor. */
  int64(values: readonly number[], dims: readonly number[] = [values.length]): Value {
    const key = `i64:${dims.join("x")}:${values.join(",")}`;
    return this.cached(key, () =>
      this.initializer(this.context.freshName("const_i64"), int64Data(dims, values)),
    );
  }

  /** A float constant in the graph's float type (or float32) with the given dims (default scalar). */
  float(
    values: number | readonly number[],
    dims?: readonly number[],
    type: "float32" | "float16" = this.floatType,
  ): Value {
    const list = typeof values === "number" ? [values] : values;
    const shape = dims ?? (typeof values === "number" ? [] : [list.length]);
    const key = `f:${type}:${shape.join("x")}:${list.join(",")}`;
    return this.cached(key, () =>
      this.initializer(
        this.context.freshName("const_f"),
        floatData(shape, type, () => Float32Array.from(list)),
      ),
    );
  }

  private cached(key: string, make: () => Value): Value {
    let value = this.context.constants.get(key);
    if (!value) {
      value = make();
      this.context.constants.set(key, value);
    }
    return value;
  }

  // ---- nodes -----------------------------------------------------------------------------

  /** Adds one node and returns its outputs (`outputs` of them; "" inputs are omitted optionals). */
  opN(
    opType: string,
    inputs: ReadonlyArray<Value | "">,
    outputs: number,
    attributes: Attributes = {},
    options: OpOptions = {},
  ): Value[] {
    const name = this.nodeName(options.name ?? opType);
    const outputNames = Array.from({ length: outputs }, (_, i) =>
      this.context.freshName(outputs === 1 ? name : `${name}:${i}`),
    );
    const inputNames = inputs.map((v) => (v === "" ? "" : v.name));
    while (inputNames.length > 0 && inputNames[inputNames.length - 1] === "") inputNames.pop();
    this.nodes.push(makeNode(opType, inputNames, outputNames, attributes, name, options.domain));
    return outputNames.map((n) => ({ name: n }));
  }

  op(
    opType: string,
    inputs: ReadonlyArray<Value | "">,
    attributes: Attributes = {},
    options: OpOptions = {},
  ): Value {
    return this.opN(opType, inputs, 1, attributes, options)[0];
  }

  private nodeName(base: string): string {
    const prefix = this.scopes.length > 0 ? `${this.scopes.join("/")}/` : "";
    return this.context.freshName(`${prefix}${base}`, this.context.usedNodeNames);
  }

  // ---- operator helpers (ONNX opset 17 semantics) ----------------------------------------

  add(a: Value, b: Value): Value {
    return this.op("Add", [a, b]);
  }
  sub(a: Value, b: Value): Value {
    return this.op("Sub", [a, b]);
  }
  mul(a: Value, b: Value): Value {
    return this.op("Mul", [a, b]);
  }
  div(a: Value, b: Value): Value {
    return this.op("Div", [a, b]);
  }
  matMul(a: Value, b: Value): Value {
    return this.op("MatMul", [a, b]);
  }
  sigmoid(x: Value): Value {
    return this.op("Sigmoid", [x]);
  }
  /** SiLU / swish: x * sigmoid(x). */
  silu(x: Value): Value {
    return this.mul(x, this.sigmoid(x));
  }
  /** GELU with the exact erf form: 0.5 x (1 + erf(x / sqrt 2)). */
  gelu(x: Value): Value {
    const erf = this.op("Erf", [this.div(x, this.float(Math.SQRT2))]);
    return this.mul(this.mul(x, this.float(0.5)), this.add(erf, this.float(1)));
  }
  /** The "quick GELU" of CLIP: x * sigmoid(1.702 x). */
  quickGelu(x: Value): Value {
    return this.mul(x, this.sigmoid(this.mul(x, this.float(1.702))));
  }
  softmax(x: Value, axis = -1): Value {
    return this.op("Softmax", [x], { axis: attr.int(axis) });
  }
  reshape(x: Value, shape: readonly number[] | Value): Value {
    return this.op("Reshape", [
      x,
      Array.isArray(shape) ? this.int64(shape as number[]) : (shape as Value),
    ]);
  }
  transpose(x: Value, perm: readonly number[]): Value {
    return this.op("Transpose", [x], { perm: attr.ints(perm) });
  }
  concat(values: readonly Value[], axis: number): Value {
    return this.op("Concat", values, { axis: attr.int(axis) });
  }
  unsqueeze(x: Value, axes: readonly number[]): Value {
    return this.op("Unsqueeze", [x, this.int64(axes)]);
  }
  squeeze(x: Value, axes: readonly number[]): Value {
    return this.op("Squeeze", [x, this.int64(axes)]);
  }
  shape(x: Value, start?: number, end?: number): Value {
    return this.op("Shape", [x], {
      start: start === undefined ? undefined : attr.int(start),
      end: end === undefined ? undefined : attr.int(end),
    });
  }
  cast(x: Value, to: ElementType): Value {
    return this.op("Cast", [x], { to: attr.int(ELEMENT_TYPES[to].dataType) });
  }
  /** Cast to the graph's float type (no node when it is already float32 and the graph is too). */
  castToFloat(x: Value): Value {
    return this.cast(x, this.floatType);
  }
  slice(
    x: Value,
    starts: readonly number[],
    ends: readonly number[],
    axes: readonly number[],
    steps?: readonly number[],
  ): Value {
    const inputs: Value[] = [x, this.int64(starts), this.int64(ends), this.int64(axes)];
    if (steps) inputs.push(this.int64(steps));
    return this.op("Slice", inputs);
  }
  gather(x: Value, indices: Value, axis = 0): Value {
    return this.op("Gather", [x, indices], { axis: attr.int(axis) });
  }
  split(x: Value, sizes: readonly number[], axis: number): Value[] {
    return this.opN("Split", [x, this.int64(sizes)], sizes.length, { axis: attr.int(axis) });
  }
  reduceMean(x: Value, axes: readonly number[], keepDims = true): Value {
    return this.op("ReduceMean", [x], {
      axes: attr.ints(axes),
      keepdims: attr.int(keepDims ? 1 : 0),
    });
  }

  /** y = x W^T + b with W stored [out, in] (PyTorch Linear layout) as a transposed weight. */
  linear(x: Value, weightT: Value, bias?: Value): Value {
    const y = this.matMul(x, weightT);
    return bias ? this.add(y, bias) : y;
  }

  conv(
    x: Value,
    weight: Value,
    bias: Value | undefined,
    options: { kernel: number; stride?: number; padding?: number },
  ): Value {
    const pad = options.padding ?? 0;
    return this.op("Conv", bias ? [x, weight, bias] : [x, weight], {
      kernel_shape: attr.ints([options.kernel, options.kernel]),
      strides: attr.ints([options.stride ?? 1, options.stride ?? 1]),
      pads: attr.ints([pad, pad, pad, pad]),
    });
  }

  layerNorm(x: Value, scale: Value, bias: Value, epsilon: number): Value {
    return this.op("LayerNormalization", [x, scale, bias], {
      axis: attr.int(-1),
      epsilon: attr.float(epsilon),
    });
  }

  // ---- output ----------------------------------------------------------------------------

  /** The graph's nodes and I/O; initializers are attached by `toModel` at the top level. */
  toGraphProto(initializers: TensorProto[] = []): GraphProto {
    return {
      name: this.graphName,
      node: this.nodes,
      input: this.inputs,
      output: this.outputs,
      initializer: initializers,
    };
  }

  get initializers(): readonly Initializer[] {
    return this.context.initializers;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }
}

function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Attributes,
  name: string,
  domain?: string,
): NodeProto {
  const attribute: AttributeProto[] = [];
  for (const [key, value] of Object.entries(attributes)) {
    if (value) attribute.push({ name: key, ...value });
  }
  const node: NodeProto = { opType, input: inputs, output: outputs, name, attribute };
  if (domain) node.domain = domain;
  return node;
}

export function valueInfo(name: string, type: ElementType, shape?: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type].dataType,
        shape: shape
          ? { dim: shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) }
          : undefined,
      },
    },
  };
}

export interface ModelOptions {
  readonly opset?: number;
  readonly msOpset?: number;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly docString?: string;
}

export const DEFAULT_OPSET = 17;

/** The model around a top-level graph, without initializer data (see model-io.ts). */
export function modelShell(graph: GraphProto, options: ModelOptions = {}): ModelProto {
  return {
    irVersion: 8,
    producerName: "todo-sd",
    producerVersion: "0.1.0",
    opsetImport: [
      { domain: "", version: options.opset ?? DEFAULT_OPSET },
      { domain: MS_DOMAIN, version: options.msOpset ?? 1 },
    ],
    graph,
    docString: options.docString,
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
}
