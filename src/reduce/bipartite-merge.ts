/**
 * ToMe for Stable Diffusion as graph pieces: bipartite soft matching with a 2-D destination
 * grid (Bolya & Hoffman 2023, "Token Merging for Fast Stable Diffusion", arXiv:2303.17604;
 * matching from Bolya et al. 2023, "Token Merging: Your ViT but Faster", ICLR).
 *
 * The grid h x w is cut into sy x sx cells; one token of each whole cell is a destination (the
 * top-left one, or a seeded choice), every other token a source. Rows and columns beyond the
 * last whole cell hold sources only; a grid smaller than the stride caps the stride at the grid
 * (where the reference fails for want of destinations). Each source is scored against every destination by cosine
 * similarity of the tokens themselves; the r = min(floor(N * ratio), sources) sources with the
 * best scores merge into their best destination by the mean (the destination counts itself),
 * the other sources stay. `--merge-target all` restores every token afterwards: a merged source
 * takes the value of its destination.
 *
 * The reference orders sources and destinations by an unstable sort and picks the first of
 * equal scores; attention does not depend on token order, so only exact ties could tell the
 * two apart.
 */
import { attr, type GraphBuilder, type Value } from "../onnx/builder.js";
import { TensorDataType, type TensorProto } from "../onnx/proto.js";
import {
  castTo,
  dimScalar,
  dims,
  doubleScalar,
  intDiv,
  intMod,
  intMul,
  range,
  shapeOf,
  type TokenGrid,
} from "./graph-helpers.js";

export interface MatchOptions {
  readonly ratio: number;
  readonly strideX: number;
  readonly strideY: number;
  /** A seeded destination in each cell instead of the top-left one. */
  readonly random?: {
    readonly seed: number;
    /** Varies the choice between self-attention blocks (e.g. a hash of the block's name). */
    readonly salt: number;
    /** The float32 timestep scalar: the choice changes with the step, as the reference's draws do. */
    readonly timestep: Value;
  };
}

export interface MergedTokens {
  /** (B, N - r, C): the sources that stay, then the destinations. */
  readonly merged: Value;
  /** (B, N) int64: the row of `merged` that restores each original token (when asked for). */
  readonly restoreIndex?: Value;
}

const MODULUS = 2147483647; // 2^31 - 1, prime: products of values below it with the factors fit int64.
const MULTIPLIER = 48271;

/**
 * The hash behind `--tome-random`: for cell c it mixes seed, salt and step, then picks one of
 * the sx*sy positions. Integer arithmetic only, so every backend picks the same tokens.
 */
export function randomCellChoice(
  seed: number,
  salt: number,
  step: number,
  cell: number,
  cells: number,
): number {
  const m = BigInt(MODULUS);
  let v =
    ((BigInt(seed) % m) * 31n +
      BigInt(salt % MODULUS) +
      BigInt(cell) * 40503n +
      BigInt(step) * 9973n) %
    m;
  for (let i = 0; i < 3; i++) v = (v * BigInt(MULTIPLIER)) % m;
  return Number((v * BigInt(cells)) / m);
}

/** A 31-bit hash of a block name (FNV-1a), for `MatchOptions.random.salt`. */
export function saltOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % MODULUS;
}

/**
 * A bool (N,) mask of the destination tokens of a height x width grid (run-time int64 scalars).
 */
export function destinationMask(
  g: GraphBuilder,
  height: Value,
  width: Value,
  options: MatchOptions,
): Value {
  // A grid smaller than the stride caps the stride, so every grid has a destination.
  const sx = g.op("Min", [g.int64([options.strideX], []), width]);
  const sy = g.op("Min", [g.int64([options.strideY], []), height]);
  const positions = range(g, g.mul(height, width)); // (N,)
  const row = g.div(positions, width);
  const column = intMod(g, positions, width);
  const cellsY = g.div(height, sy);
  const cellsX = g.div(width, sx);
  const cellRow = g.div(row, sy);
  const cellColumn = g.div(column, sx);
  let offsetY: Value = g.int64([0], []);
  let offsetX: Value = g.int64([0], []);
  if (options.random) {
    const { seed, salt, timestep } = options.random;
    const cell = g.add(g.mul(cellRow, cellsX), cellColumn);
    const step = castTo(g, g.op("Floor", [timestep]), TensorDataType.INT64);
    let v = g.add(
      g.add(
        g.int64([((seed % MODULUS) * 31 + (salt % MODULUS)) % MODULUS], []),
        intMul(g, cell, 40503),
      ),
      intMul(g, step, 9973),
    );
    v = intMod(g, v, MODULUS);
    for (let i = 0; i < 3; i++) v = intMod(g, intMul(g, v, MULTIPLIER), MODULUS);
    const choice = intDiv(g, g.mul(v, g.mul(sx, sy)), MODULUS);
    offsetY = g.div(choice, sx);
    offsetX = g.op("Mod", [choice, sx]);
  }
  const and = (a: Value, b: Value) => g.op("And", [a, b]);
  return and(
    and(g.op("Less", [cellRow, cellsY]), g.op("Less", [cellColumn, cellsX])),
    and(
      g.op("Equal", [g.sub(row, g.mul(cellRow, sy)), offsetY]),
      g.op("Equal", [g.sub(column, g.mul(cellColumn, sx)), offsetX]),
    ),
  );
}

/** Rows of (B, K, C) picked per batch by (B, k) indices -> (B, k, C). */
function gatherRows(g: GraphBuilder, x: Value, index: Value): Value {
  const batch = dimScalar(g, x, 0);
  const rows = dimScalar(g, x, 1);
  const flat = g.reshape(x, shapeOf(g, [-1, dims(g, x, 2, 3)]));
  const offsets = g.unsqueeze(g.mul(range(g, batch), rows), [1]); // (B, 1)
  return g.gather(flat, g.add(index, offsets), 0);
}

function slice1(
  g: GraphBuilder,
  x: Value,
  start: number | Value,
  end: number | Value,
  axis: number,
): Value {
  return g.op("Slice", [x, shapeOf(g, [start]), shapeOf(g, [end]), g.int64([axis])]);
}

/**
 * Merges the tokens of `grid` (B, N, C). With `restore`, also returns the index that
 * `restoreTokens` needs to bring a (B, N - r, C) result back to (B, N, C).
 */
export function mergeTokens(
  g: GraphBuilder,
  grid: TokenGrid,
  options: MatchOptions,
  restore: boolean,
): MergedTokens {
  if (!(options.ratio > 0 && options.ratio < 1))
    throw new Error(`ToMe ratio must be in (0, 1); got ${options.ratio}`);
  // float32 throughout: float16 overflows in the norms and has no ScatterND reduction on CPU.
  const x = g.floatType === "float32" ? grid.tokens : g.cast(grid.tokens, "float32");
  const count = g.mul(grid.height, grid.width); // N
  const isDestination = destinationMask(g, grid.height, grid.width, options);
  // Destinations first, then sources, each in grid order: sort keys pos (dst) or N + pos (src).
  const f32 = TensorDataType.FLOAT;
  const keys = g.add(
    castTo(g, range(g, count), f32),
    g.mul(castTo(g, g.op("Not", [isDestination]), f32), castTo(g, count, f32)),
  );
  const [, order] = g.opN("TopK", [keys, shapeOf(g, [count])], 2, {
    axis: attr.int(0),
    largest: attr.int(0),
    sorted: attr.int(1),
  });
  const destinationCount = g.op("ReduceSum", [castTo(g, isDestination, TensorDataType.INT64)], {
    keepdims: attr.int(0),
  });
  const sourceCount = g.sub(count, destinationCount);
  const destinations = slice1(g, order, 0, destinationCount, 0); // (Nd,) grid positions
  const sources = slice1(g, order, destinationCount, count, 0); // (Ns,)

  // Cosine similarity of every source with every destination.
  const normed = g.div(x, g.op("ReduceL2", [x], { axes: attr.ints([-1]), keepdims: attr.int(1) }));
  const scores = g.matMul(
    g.gather(normed, sources, 1),
    g.transpose(g.gather(normed, destinations, 1), [0, 2, 1]),
  ); // (B, Ns, Nd)
  const best = g.op("ReduceMax", [scores], { axes: attr.ints([-1]), keepdims: attr.int(0) });
  const bestDestination = g.op("ArgMax", [scores], { axis: attr.int(-1), keepdims: attr.int(0) });
  const [, ranked] = g.opN("TopK", [best, shapeOf(g, [sourceCount])], 2, {
    axis: attr.int(-1),
    largest: attr.int(1),
    sorted: attr.int(1),
  }); // (B, Ns) sources by descending best score

  // r = floor(N * ratio) in float64, as the reference's int(N * ratio), at most the sources.
  const wanted = castTo(
    g,
    g.op("Floor", [g.mul(castTo(g, count, TensorDataType.DOUBLE), doubleScalar(g, options.ratio))]),
    TensorDataType.INT64,
  );
  const r = g.op("Min", [wanted, sourceCount]);
  const moving = slice1(g, ranked, 0, r, 1); // (B, r)
  const staying = slice1(g, ranked, r, sourceCount, 1); // (B, Ns - r)
  const target = g.op("GatherElements", [bestDestination, moving], { axis: attr.int(1) }); // (B, r)

  const sourceTokens = g.gather(x, sources, 1); // (B, Ns, C)
  const destinationTokens = g.gather(x, destinations, 1); // (B, Nd, C)
  const kept = gatherRows(g, sourceTokens, staying);
  const moved = gatherRows(g, sourceTokens, moving); // (B, r, C)
  // Mean into the destinations: sum with ScatterND, divided by 1 + the number merged in.
  const batchIndex = g.op("Expand", [
    g.unsqueeze(range(g, dimScalar(g, x, 0)), [1]),
    g.shape(target),
  ]);
  const scatterIndex = g.concat([g.unsqueeze(batchIndex, [2]), g.unsqueeze(target, [2])], 2);
  const sums = g.op("ScatterND", [destinationTokens, scatterIndex, moved], {
    reduction: attr.string("add"),
  });
  const ones = (shape: Value) =>
    g.op("ConstantOfShape", [shape], {
      value: attr.tensor(ONE_FLOAT32),
    });
  const counts = g.op(
    "ScatterND",
    [ones(g.shape(destinationTokens, 0, 2)), scatterIndex, ones(g.shape(target))],
    {
      reduction: attr.string("add"),
    },
  );
  const means = g.div(sums, g.unsqueeze(counts, [2]));
  const merged32 = g.concat([kept, means], 1);
  const merged = g.floatType === "float32" ? merged32 : g.castToFloat(merged32);
  if (!restore) return { merged };

  // The row of `merged` for each grid position: kept sources first, destinations after them.
  const keptCount = g.sub(sourceCount, r);
  const batchShape = (k: Value) => shapeOf(g, [dimScalar(g, x, 0), k]);
  const positions = g.concat(
    [
      g.op("Expand", [g.unsqueeze(destinations, [0]), batchShape(destinationCount)]),
      g.gather(sources, staying, 0),
      g.gather(sources, moving, 0),
    ],
    1,
  );
  const rows = g.concat(
    [
      g.op("Expand", [
        g.unsqueeze(g.add(range(g, destinationCount), keptCount), [0]),
        batchShape(destinationCount),
      ]),
      g.op("Expand", [g.unsqueeze(range(g, keptCount), [0]), batchShape(keptCount)]),
      g.add(target, keptCount),
    ],
    1,
  );
  const restoreIndex = g.op(
    "ScatterElements",
    [g.op("Expand", [g.int64([0], [1, 1]), batchShape(count)]), positions, rows],
    { axis: attr.int(1) },
  );
  return { merged, restoreIndex };
}

/** (B, N - r, C) -> (B, N, C) with the index from `mergeTokens`. */
export function restoreTokens(g: GraphBuilder, merged: Value, restoreIndex: Value): Value {
  return gatherRows(g, merged, restoreIndex);
}

const ONE_FLOAT32: TensorProto = {
  dims: [1],
  dataType: TensorDataType.FLOAT,
  rawData: new Uint8Array(new Float32Array([1]).buffer),
};
