/**
 * ToDo's grid resampling as graph pieces (Smith, Saxena & Saha 2024, arXiv:2402.13573): a token
 * grid h x w is reduced to floor(h/f) x floor(w/f) and, for `--merge-target all`, restored to
 * h x w. The modes reproduce torch's `interpolate` (align_corners false, no antialias) and
 * `avg_pool2d`/`max_pool2d` with kernel = stride = f, as the reference uses them.
 *
 * Grids that the factor does not divide (documented behaviour):
 * - the target is floor(h/f) x floor(w/f), as in the reference;
 * - nearest and nearest-exact pick torch's rows: floor(i * s) and floor((i + 0.5) * s), with
 *   s = h / floor(h/f) in float32, clamped to h - 1 (so the picks are not evenly spaced);
 * - bilinear and bicubic sample at (i + 0.5) * s - 0.5 (half-pixel), bicubic with a = -0.75 and
 *   edge clamping; area averages the window [floor(i*h/o), ceil((i+1)*h/o)) of each output;
 * - avg and max pool f x f blocks and drop the last h mod f rows and w mod f columns (the
 *   reference's kernel is h // floor(h/f), which equals f on grids like 20x12 with f = 3 but
 *   not on every grid, where the reference fails);
 * - a factor larger than a side leaves no token (`resolveReduction` refuses it when the image
 *   size is known);
 * - restoring (`all`) resamples back with the same mode; avg and max, which have no upsampling
 *   form, restore with nearest (the reference cannot restore them at all).
 * When the factor divides both sides, nearest and nearest-exact are one strided Slice, their
 * restore one Expand, and avg/max a Reshape and a reduction: no Resize or Gather runs. When the
 * grid is only known at run time, an `If` on divisibility picks that fast path. bilinear,
 * bicubic and area are separable linear maps: two MatMuls with (out, in) weight matrices that
 * the graph computes from the run-time grid with torch's float32 formulas. (onnxruntime's
 * Resize neither matches torch's coordinates to the last bit nor downsamples bicubic on CPU.)
 */
import { attr, type GraphBuilder, type Value } from "../onnx/builder.js";
import { TensorDataType } from "../onnx/proto.js";
import {
  castTo,
  dims,
  doubleScalar,
  gridToTokens,
  ifElse,
  intDiv,
  intMod,
  intMul,
  range,
  shapeOf,
  staticInt,
  type TokenGrid,
  tokensToGrid,
} from "./graph-helpers.js";
import type { DownsampleMode } from "./options.js";

const END = Number.MAX_SAFE_INTEGER;

/** (B, h*w, C) on `grid` -> (B, floor(h/f) * floor(w/f), C). */
export function downsampleTokens(
  g: GraphBuilder,
  grid: TokenGrid,
  factor: number,
  mode: DownsampleMode,
): Value {
  checkFactor(factor);
  const channels = dims(g, grid.tokens, 2, 3);
  const x = tokensToGrid(g, grid); // (B, h, w, C)
  const outH = intDiv(g, grid.height, factor);
  const outW = intDiv(g, grid.width, factor);
  const sizes = { inH: grid.height, inW: grid.width, outH, outW };
  switch (mode) {
    case "nearest":
    case "nearest-exact": {
      // torch picks rows i*f (nearest) or i*f + f//2 (nearest-exact) when f divides the side.
      const start = mode === "nearest" ? 0 : factor >> 1;
      return whenDivisible(
        g,
        grid,
        factor,
        (b) =>
          gridToTokens(
            b,
            b.slice(x, [start, start], [END, END], [1, 2], [factor, factor]),
            channels,
          ),
        (b) => gridToTokens(b, nearest(b, x, sizes, mode === "nearest-exact"), channels),
      );
    }
    case "avg":
    case "max":
      return whenDivisible(
        g,
        grid,
        factor,
        (b) => gridToTokens(b, pool(b, x, outH, outW, factor, mode), channels),
        (b) => {
          const cropped = b.op("Slice", [
            x,
            b.int64([0, 0]),
            shapeOf(b, [intMul(b, outH, factor), intMul(b, outW, factor)]),
            b.int64([1, 2]),
          ]);
          return gridToTokens(b, pool(b, cropped, outH, outW, factor, mode), channels);
        },
      );
    case "area":
    case "bilinear":
    case "bicubic":
      return gridToTokens(g, separable(g, x, sizes, mode), channels);
  }
}

/**
 * Nearest keys/values switched by a boolean `active` instead of an `If`: one strided Slice whose
 * step is `active ? f : 1`, computed in float64 so that GPU backends leave the arithmetic on the
 * CPU. With step 1 the slice is the whole grid, so the tokens (and the attention) are exactly
 * the baseline's; without control flow there is no subgraph launch and no host round trip per
 * block on GPU backends. When f does not divide a side, the picks are rows 0, f, 2f, ... of the
 * floor(h/f) * f rows that whole cells cover (the top-left token of each f x f cell), where
 * torch's interpolate would spread its picks over the remainder.
 */
export function downsampleTokensGated(
  g: GraphBuilder,
  grid: TokenGrid,
  factor: number,
  active: Value,
): Value {
  checkFactor(factor);
  const channels = dims(g, grid.tokens, 2, 3);
  const x = tokensToGrid(g, grid); // (B, h, w, C)
  const double = TensorDataType.DOUBLE;
  const step = castTo(
    g,
    g.add(g.mul(castTo(g, active, double), doubleScalar(g, factor - 1)), doubleScalar(g, 1)),
    TensorDataType.INT64,
  ); // f or 1
  const ends = shapeOf(g, [
    intMul(g, intDiv(g, grid.height, step), step),
    intMul(g, intDiv(g, grid.width, step), step),
  ]);
  const picked = g.op("Slice", [
    x,
    g.int64([0, 0]),
    ends,
    g.int64([1, 2]),
    shapeOf(g, [step, step]),
  ]);
  return gridToTokens(g, picked, channels); // (B, floor(h/f) * floor(w/f), C)
}

/**
 * The inverse of `downsampleTokens` for `--merge-target all`: (B, floor(h/f) * floor(w/f), C)
 * -> (B, h*w, C) on `grid`, resampled with the same mode (avg and max: nearest).
 */
export function upsampleTokens(
  g: GraphBuilder,
  reduced: Value,
  grid: Omit<TokenGrid, "tokens">,
  factor: number,
  mode: DownsampleMode,
): Value {
  checkFactor(factor);
  const channels = dims(g, reduced, 2, 3);
  const inH = intDiv(g, grid.height, factor);
  const inW = intDiv(g, grid.width, factor);
  const cells = (b: GraphBuilder) => b.reshape(reduced, shapeOf(b, [0, inH, inW, -1])); // (B, h/f, w/f, C)
  const sizes = { inH, inW, outH: grid.height, outW: grid.width };
  switch (mode) {
    case "nearest":
    case "nearest-exact":
    case "avg":
    case "max":
      // With f dividing the side both nearest modes repeat each token f times.
      return whenDivisible(
        g,
        { tokens: reduced, ...grid },
        factor,
        (b) => {
          const single = b.reshape(reduced, shapeOf(b, [0, inH, 1, inW, 1, -1]));
          const repeated = b.op("Expand", [single, b.int64([1, 1, factor, 1, factor, 1])]);
          return b.reshape(repeated, shapeOf(b, [0, -1, channels]));
        },
        (b) => gridToTokens(b, nearest(b, cells(b), sizes, mode === "nearest-exact"), channels),
      );
    case "area":
    case "bilinear":
    case "bicubic":
      return gridToTokens(g, separable(g, cells(g), sizes, mode), channels);
  }
}

function checkFactor(factor: number): void {
  if (!Number.isInteger(factor) || factor < 2)
    throw new Error(`a downsampling factor must be a whole number >= 2; got ${factor}`);
}

interface Sizes {
  readonly inH: Value;
  readonly inW: Value;
  readonly outH: Value;
  readonly outW: Value;
}

/**
 * `fast` when f divides both sides of the grid, else `general`: decided while building when the
 * grid is constant, otherwise by an `If` at run time.
 */
function whenDivisible(
  g: GraphBuilder,
  grid: TokenGrid,
  factor: number,
  fast: (b: GraphBuilder) => Value,
  general: (b: GraphBuilder) => Value,
): Value {
  const h = staticInt(g, grid.height);
  const w = staticInt(g, grid.width);
  if (h !== undefined && w !== undefined)
    return h % factor === 0 && w % factor === 0 ? fast(g) : general(g);
  const zero = g.int64([0], []);
  const divisible = g.op("And", [
    g.op("Equal", [intMod(g, grid.height, factor), zero]),
    g.op("Equal", [intMod(g, grid.width, factor), zero]),
  ]);
  return ifElse(
    g,
    divisible,
    "Divisible",
    [g.floatType],
    (b) => [fast(b)],
    (b) => [general(b)],
  )[0];
}

/**
 * Block pooling of (B, f*oh, f*ow, C) to (B, oh, ow, C), channel-last (no transposes): rows
 * first, then columns, each a reduction over one axis whose inner block is contiguous (one
 * reduction over two strided axes is several times slower on CPU).
 */
function pool(
  g: GraphBuilder,
  x: Value,
  outH: Value,
  outW: Value,
  factor: number,
  mode: "avg" | "max",
): Value {
  const op = mode === "avg" ? "ReduceMean" : "ReduceMax";
  const reduce = (v: Value) => g.op(op, [v], { axes: attr.ints([2]), keepdims: attr.int(0) });
  const rows = reduce(g.reshape(x, shapeOf(g, [0, outH, factor, -1]))); // (B, oh, f*ow*C)
  const columns = reduce(g.reshape(rows, shapeOf(g, [0, intMul(g, outH, outW), factor, -1])));
  return g.reshape(columns, shapeOf(g, [0, outH, outW, -1])); // (B, oh, ow, C)
}

/** torch's nearest source rows for one axis: min(floor(i * s), in - 1), s = in/out in float32. */
function nearestIndices(g: GraphBuilder, inSize: Value, outSize: Value, exact: boolean): Value {
  const f32 = TensorDataType.FLOAT;
  const scale = g.div(castTo(g, inSize, f32), castTo(g, outSize, f32));
  let position = castTo(g, range(g, outSize), f32);
  if (exact) position = g.add(position, g.float(0.5, [], "float32"));
  const index = castTo(g, g.op("Floor", [g.mul(position, scale)]), TensorDataType.INT64);
  return g.op("Min", [index, g.sub(inSize, g.int64([1], []))]);
}

function nearest(g: GraphBuilder, x: Value, s: Sizes, exact: boolean): Value {
  const rows = g.gather(x, nearestIndices(g, s.inH, s.outH, exact), 1);
  return g.gather(rows, nearestIndices(g, s.inW, s.outW, exact), 2);
}

/** The (out, in) matrix of `mode` along one axis, in the graph's float type. */
function interpolationMatrix(
  g: GraphBuilder,
  inSize: Value,
  outSize: Value,
  mode: "area" | "bilinear" | "bicubic",
): Value {
  const columns = g.unsqueeze(range(g, inSize), [0]); // (1, in)
  const rows = g.unsqueeze(range(g, outSize), [1]); // (out, 1)
  if (mode === "area") {
    // Row i averages inputs [floor(i*in/out), ceil((i+1)*in/out)), as adaptive average pooling.
    const one = g.int64([1], []);
    const start = g.div(g.mul(rows, inSize), outSize);
    const end = g.div(g.sub(g.add(g.mul(g.add(rows, one), inSize), outSize), one), outSize);
    const inside = g.op("And", [
      g.op("GreaterOrEqual", [columns, start]),
      g.op("Less", [columns, end]),
    ]);
    return g.div(g.castToFloat(inside), g.castToFloat(g.sub(end, start)));
  }
  // torch's source coordinate, in float32 as torch computes it: s * (i + 0.5) - 0.5, s = in/out.
  const f32 = TensorDataType.FLOAT;
  const float = (v: number) => g.float(v, [], "float32");
  const scale = g.div(castTo(g, inSize, f32), castTo(g, outSize, f32));
  let source = g.sub(g.mul(g.add(castTo(g, rows, f32), float(0.5)), scale), float(0.5));
  if (mode === "bilinear") source = g.op("Max", [source, float(0)]);
  // torch caps the first tap at the last index, then clamps the fraction to [0, 1] from it.
  const last = g.sub(inSize, g.int64([1], []));
  const first = g.op("Min", [castTo(g, g.op("Floor", [source]), TensorDataType.INT64), last]);
  const t = g.op("Min", [g.op("Max", [g.sub(source, castTo(g, first, f32)), float(0)]), float(1)]);
  // One (out, in) term: `weight` (out, 1) at column clamp(first + offset) of each row.
  const term = (offset: number, weight: Value) => {
    const index = g.op("Min", [
      g.op("Max", [offset === 0 ? first : g.add(first, g.int64([offset], [])), g.int64([0], [])]),
      last,
    ]);
    return g.mul(castTo(g, g.op("Equal", [columns, index]), f32), weight);
  };
  let matrix: Value;
  if (mode === "bilinear") {
    matrix = g.add(term(0, g.sub(float(1), t)), term(1, t));
  } else {
    // Keys' cubic convolution with a = -0.75 (torch's constant), taps at first-1 .. first+2.
    const a = -0.75;
    const near = (x: Value) =>
      g.add(g.mul(g.mul(g.sub(g.mul(float(a + 2), x), float(a + 3)), x), x), float(1));
    const far = (x: Value) =>
      g.sub(
        g.mul(g.add(g.mul(g.sub(g.mul(float(a), x), float(5 * a)), x), float(8 * a)), x),
        float(4 * a),
      );
    const one = float(1);
    const rest = g.sub(one, t);
    matrix = g.add(
      g.add(term(-1, far(g.add(t, one))), term(0, near(t))),
      g.add(term(1, near(rest)), term(2, far(g.add(rest, one)))),
    );
  }
  return g.floatType === "float32" ? matrix : g.castToFloat(matrix);
}

/** A separable linear resampling of (B, h, w, C): columns first, then rows, as MatMuls. */
function separable(
  g: GraphBuilder,
  x: Value,
  s: Sizes,
  mode: "area" | "bilinear" | "bicubic",
): Value {
  // (ow, w) @ (B, h, w, C) -> (B, h, ow, C)
  const columns = g.matMul(interpolationMatrix(g, s.inW, s.outW, mode), x);
  // (oh, h) @ (B, h, ow*C) -> (B, oh, ow*C)
  const flat = g.reshape(columns, shapeOf(g, [0, 0, -1]));
  const rows = g.matMul(interpolationMatrix(g, s.inH, s.outH, mode), flat);
  return g.reshape(rows, shapeOf(g, [0, 0, s.outW, -1]));
}
