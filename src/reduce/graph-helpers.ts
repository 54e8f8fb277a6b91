/**
 * Small graph pieces shared by the token-reduction builders: run-time integer arithmetic on
 * int64 scalars (token grids are only known when the model runs), reshapes between token
 * sequences and grids, and `If` nodes whose branches are built by callbacks.
 */
import { attr, type GraphBuilder, type Value } from "../onnx/builder.js";
import { TensorDataType } from "../onnx/proto.js";
import type { ElementType } from "../onnx/tensor-data.js";

/** A token sequence (B, N, C) laid out row-major on a height x width grid (int64 scalars). */
export interface TokenGrid {
  readonly tokens: Value;
  readonly height: Value;
  readonly width: Value;
}

/** An int64 scalar: a number becomes a constant, a Value is used as is. */
export function intScalar(g: GraphBuilder, v: number | Value): Value {
  return typeof v === "number" ? g.int64([v], []) : v;
}

/** A piece of a shape vector: a constant, an int64 scalar, or an int64 1-D vector. */
export type ShapePart = number | Value | { readonly vector: Value };

/** A 1-D int64 shape vector from constants, scalars and 1-D pieces. */
export function shapeOf(g: GraphBuilder, parts: readonly ShapePart[]): Value {
  return g.concat(
    parts.map((p) =>
      typeof p === "number" ? g.int64([p]) : "vector" in p ? p.vector : toVector(g, p),
    ),
    0,
  );
}

const graphCaches = new WeakMap<GraphBuilder, Map<string, Value>>();

/** The value of `key` in graph `g`: made by `make` the first time, then shared. */
export function oncePerGraph(g: GraphBuilder, key: string, make: () => Value): Value {
  let cache = graphCaches.get(g);
  if (!cache) {
    cache = new Map();
    graphCaches.set(g, cache);
  }
  let value = cache.get(key);
  if (!value) {
    value = make();
    cache.set(key, value);
  }
  return value;
}

/** A scalar as a 1-element vector (cached, so a grid dimension is unsqueezed once per graph). */
export function toVector(g: GraphBuilder, scalar: Value): Value {
  return oncePerGraph(g, `vector:${scalar.name}`, () => g.unsqueeze(scalar, [0]));
}

/** Dimensions [start, end) of `x` as a 1-D vector. */
export function dims(g: GraphBuilder, x: Value, start: number, end: number): { vector: Value } {
  return { vector: g.shape(x, start, end) };
}

/** dim `axis` of `x` as an int64 scalar. */
export function dimScalar(g: GraphBuilder, x: Value, axis: number): Value {
  return g.squeeze(g.shape(x, axis, axis + 1), [0]);
}

export function intDiv(g: GraphBuilder, a: Value, b: number | Value): Value {
  return g.div(a, intScalar(g, b));
}

export function intMul(g: GraphBuilder, a: Value, b: number | Value): Value {
  return g.mul(a, intScalar(g, b));
}

export function intMod(g: GraphBuilder, a: Value, b: number | Value): Value {
  return g.op("Mod", [a, intScalar(g, b)]);
}

export function range(g: GraphBuilder, limit: Value, start: number | Value = 0): Value {
  return g.op("Range", [intScalar(g, start), limit, g.int64([1], [])]);
}

/** (B, N, C) -> (B, h, w, C). */
export function tokensToGrid(g: GraphBuilder, grid: TokenGrid): Value {
  return g.reshape(grid.tokens, shapeOf(g, [0, grid.height, grid.width, -1]));
}

/** (B, h, w, C) -> (B, h*w, C); `channels` is the [C] vector of the token input. */
export function gridToTokens(g: GraphBuilder, x: Value, channels: ShapePart): Value {
  return g.reshape(x, shapeOf(g, [0, -1, channels]));
}

/** A constant float64 scalar (float64 keeps `tokens * ratio` exactly as the reference rounds it). */
export function doubleScalar(g: GraphBuilder, value: number): Value {
  const bytes = new Uint8Array(new Float64Array([value]).buffer);
  return g.op("Constant", [], {
    value: attr.tensor({ dims: [], dataType: TensorDataType.DOUBLE, rawData: bytes }),
  });
}

export function castTo(g: GraphBuilder, x: Value, dataType: number): Value {
  return g.op("Cast", [x], { to: attr.int(dataType) });
}

/**
 * The int64 value of a scalar that is a constant of the graph (an initializer made by
 * `g.int64`), or undefined when it is only known at run time.
 */
export function staticInt(g: GraphBuilder, v: Value): number | undefined {
  const init = g.initializers.find((i) => i.name === v.name);
  if (init?.data.type !== "int64" || init.data.dims.length > 1) return undefined;
  if (init.data.dims.length === 1 && init.data.dims[0] !== 1) return undefined;
  const bytes = init.data.bytes();
  return Number(new BigInt64Array(bytes.buffer, bytes.byteOffset, 1)[0]);
}

/**
 * An `If` node: `thenBody`/`elseBody` build each branch in a subgraph and return its outputs,
 * whose element types are `types`. A branch may return outer values; they are passed through
 * an Identity because a branch must produce its outputs itself.
 */
export function ifElse(
  g: GraphBuilder,
  condition: Value,
  name: string,
  types: readonly ElementType[],
  thenBody: (b: GraphBuilder) => Value[],
  elseBody: (b: GraphBuilder) => Value[],
): Value[] {
  const branch = (suffix: string, body: (b: GraphBuilder) => Value[]) => {
    const b = g.subgraph(`${name}/${suffix}`);
    const outputs = b.scope(`${name}/${suffix}`, () => body(b));
    if (outputs.length !== types.length)
      throw new Error(
        `If ${name}: ${suffix} branch has ${outputs.length} outputs, expected ${types.length}`,
      );
    const produced = new Set(b.toGraphProto().node.flatMap((n) => n.output));
    outputs.forEach((v, i) => {
      const out = produced.has(v.name)
        ? v
        : b.scope(`${name}/${suffix}`, () => b.op("Identity", [v]));
      b.output(out, out.name, types[i]);
    });
    return b.toGraphProto();
  };
  return g.opN(
    "If",
    [condition],
    types.length,
    {
      then_branch: attr.graph(branch("then", thenBody)),
      else_branch: attr.graph(branch("else", elseBody)),
    },
    { name },
  );
}
