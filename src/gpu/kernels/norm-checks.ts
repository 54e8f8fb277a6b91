/**
 * Reference checks of the memory-bound kernels: group norm (vector and scalar channel loads, a
 * group straddling vectors, fused SiLU), layer norm (rows wider than the workgroup, odd widths),
 * elementwise ops on sizes that are and are not multiples of 4, nearest 2x upsampling, and the
 * timestep embedding with SD 1.x's and odd settings.
 */
import {
  type KernelCheck,
  randomValues,
  readAndCompare,
  roundToStorage,
  uploadInputs,
} from "../check.js";
import {
  referenceElementwise,
  referenceGroupNorm,
  referenceLayerNorm,
  referenceTimestepEmbedding,
  referenceUpsample2x,
} from "../reference/norm.js";
import type { StorageType } from "../types.js";
import {
  type ElementwiseOp,
  isBinary,
  prepareElementwise,
  prepareTimestepEmbedding,
  prepareUpsample2x,
  runSimple,
  TWO_PI_HI,
  TWO_PI_LO,
  timestepFrequencies,
  type UpsampleShape,
} from "./elementwise.js";
import {
  type GroupNormShape,
  type LayerNormShape,
  prepareGroupNorm,
  prepareLayerNorm,
  runGroupNorm,
} from "./norm.js";

export interface NormInputs {
  readonly x: Float32Array;
  readonly gamma: Float32Array;
  readonly beta: Float32Array;
}

/**
 * Group norm inputs: x with an offset mean (so the variance is not the mean of squares alone),
 * rounded to the storage type after the shift so that the GPU and the reference see the same x.
 */
export function groupNormInputs(
  shape: GroupNormShape,
  storage: StorageType,
  seed = 41,
): NormInputs {
  const n = shape.batch * shape.pixels * shape.channels;
  return {
    x: roundToStorage(
      randomValues(n, seed, storage).map((v) => v + 0.5),
      storage,
    ),
    gamma: randomValues(shape.channels, seed + 1, storage),
    beta: randomValues(shape.channels, seed + 2, storage),
  };
}

/** Layer norm inputs: x offset by -0.5, rounded to the storage type after the shift. */
export function layerNormInputs(
  shape: LayerNormShape,
  storage: StorageType,
  seed = 51,
): NormInputs {
  return {
    x: roundToStorage(
      randomValues(shape.rows * shape.channels, seed, storage).map((v) => v - 0.5),
      storage,
    ),
    gamma: randomValues(shape.channels, seed + 1, storage),
    beta: randomValues(shape.channels, seed + 2, storage),
  };
}

/** Group norm (and its fused SiLU) against the reference. */
function groupNormCheck(shape: GroupNormShape): KernelCheck["run"] {
  return async (ctx, variant) => {
    const s = variant.storage;
    const inputs = groupNormInputs(shape, s);
    const kernel = await prepareGroupNorm(ctx, variant, shape);
    const t = uploadInputs(ctx, s, { ...inputs });
    const out = runGroupNorm(ctx, kernel, t);
    return readAndCompare(ctx, out, t, referenceGroupNorm(shape, inputs, s));
  };
}

/** Layer norm against the reference. */
function layerNormCheck(shape: LayerNormShape): KernelCheck["run"] {
  return async (ctx, variant) => {
    const s = variant.storage;
    const inputs = layerNormInputs(shape, s);
    const kernel = await prepareLayerNorm(ctx, variant, shape);
    const t = uploadInputs(ctx, s, { ...inputs });
    const out = ctx.allocate([shape.rows, shape.channels], s, "layernorm output");
    ctx.dispatch([kernel.launch([t.x.buffer, t.gamma.buffer, t.beta.buffer, out.buffer])]);
    return readAndCompare(ctx, out, t, referenceLayerNorm(shape, inputs, s));
  };
}

/** An elementwise op on `n` values; the first operand spans [-4, 4). */
function elementwiseCheck(op: ElementwiseOp, n: number): KernelCheck["run"] {
  return async (ctx, variant) => {
    const s = variant.storage;
    const a = randomValues(n, 61, s).map((v) => v * 4);
    const b = isBinary(op) ? randomValues(n, 62, s) : undefined;
    const kernel = await prepareElementwise(ctx, variant, op, n);
    const t = uploadInputs(ctx, s, { a, b });
    const out = runSimple(ctx, kernel, t.b ? [t.a, t.b] : [t.a], [n], s);
    return readAndCompare(ctx, out, t, referenceElementwise(op, a, b, s));
  };
}

/** Nearest 2x upsampling against the reference. */
function upsampleCheck(shape: UpsampleShape): KernelCheck["run"] {
  return async (ctx, variant) => {
    const s = variant.storage;
    const x = randomValues(shape.batch * shape.height * shape.width * shape.channels, 71, s);
    const kernel = await prepareUpsample2x(ctx, variant, shape);
    const t = uploadInputs(ctx, s, { x });
    const outShape = [shape.batch, 2 * shape.height, 2 * shape.width, shape.channels];
    const out = runSimple(ctx, kernel, [t.x], outShape, s);
    return readAndCompare(ctx, out, t, referenceUpsample2x(shape, x));
  };
}

export interface TimestepCase {
  readonly timesteps: readonly number[];
  readonly dim: number;
  readonly flipSinToCos: boolean;
  readonly freqShift: number;
}

/** The timestep embedding against the reference. */
function timestepCheck(c: TimestepCase): KernelCheck["run"] {
  return async (ctx, variant) => {
    const s = variant.storage;
    const t = Float32Array.from(c.timesteps);
    const kernel = await prepareTimestepEmbedding(
      ctx,
      variant,
      t.length,
      c.dim,
      c.flipSinToCos,
      c.freqShift,
    );
    const inputs = uploadInputs(ctx, "f32", { t });
    const out = runSimple(ctx, kernel, [inputs.t], [t.length, c.dim], s);
    return readAndCompare(
      ctx,
      out,
      inputs,
      referenceTimestepEmbedding(
        t,
        timestepFrequencies(c.dim, c.freqShift),
        c.dim,
        c.flipSinToCos,
        { hi: TWO_PI_HI, lo: TWO_PI_LO },
        s,
      ),
    );
  };
}

export const GROUP_NORM_CASES: readonly GroupNormShape[] = Object.freeze([
  // 12 channels in 4 groups of 3: groups straddle the 4-channel vectors; fused SiLU.
  { batch: 2, pixels: 63, channels: 12, groups: 4, eps: 1e-5, silu: true },
  // 9 channels (scalar loads), 3 groups, the VAE's eps.
  { batch: 1, pixels: 50, channels: 9, groups: 3, eps: 1e-6, silu: false },
]);

export const LAYER_NORM_CASES: readonly LayerNormShape[] = Object.freeze([
  { rows: 7, channels: 40, eps: 1e-5 },
  // Wider than a row's 32 threads and odd (one channel per load).
  { rows: 5, channels: 77, eps: 1e-5 },
  // Four channels per load, 80 vectors over 32 threads (a partial last round), and rows that
  // fill one workgroup of 8 and part of a second.
  { rows: 9, channels: 320, eps: 1e-5 },
]);

export const ELEMENTWISE_CASES: readonly { op: ElementwiseOp; n: number }[] = Object.freeze([
  { op: "add", n: 1001 },
  { op: "mul", n: 64 },
  { op: "silu", n: 300 },
  { op: "gelu", n: 303 },
]);

export const UPSAMPLE_CASES: readonly UpsampleShape[] = Object.freeze([
  // Pixels of whole 16-byte vectors (8 channels), of 4-byte words (6 in f32 and f16, 5 in f32),
  // and in f16 of neither (5 channels: 10 bytes), each copied its own way.
  { batch: 2, height: 3, width: 5, channels: 8 },
  { batch: 1, height: 4, width: 3, channels: 6 },
  { batch: 2, height: 2, width: 3, channels: 5 },
]);

export const TIMESTEP_CASES: readonly TimestepCase[] = Object.freeze([
  // SD 1.x / 2.x: 320 channels, cosines first, no shift; the schedule's extremes.
  { timesteps: [999, 500, 1, 0], dim: 320, flipSinToCos: true, freqShift: 0 },
  // Odd dim (a zero column), sines first, diffusers' default shift of 1.
  { timesteps: [981, 37], dim: 33, flipSinToCos: false, freqShift: 1 },
]);

export function normChecks(): KernelCheck[] {
  return [
    ...GROUP_NORM_CASES.map((c) => ({
      family: "groupnorm",
      name: `${c.batch}x${c.pixels}x${c.channels}/${c.groups}${c.silu ? " silu" : ""}`,
      run: groupNormCheck(c),
    })),
    ...LAYER_NORM_CASES.map((c) => ({
      family: "layernorm",
      name: `${c.rows}x${c.channels}`,
      run: layerNormCheck(c),
    })),
    ...ELEMENTWISE_CASES.map((c) => ({
      family: "elementwise",
      name: `${c.op} ${c.n}`,
      run: elementwiseCheck(c.op, c.n),
    })),
    ...UPSAMPLE_CASES.map((c) => ({
      family: "upsample",
      name: `${c.batch}x${c.height}x${c.width}x${c.channels}`,
      run: upsampleCheck(c),
    })),
    ...TIMESTEP_CASES.map((c) => ({
      family: "timestep",
      name: `${c.timesteps.length}x${c.dim} ${c.flipSinToCos ? "cos,sin" : "sin,cos"} shift ${c.freqShift}`,
      run: timestepCheck(c),
    })),
  ];
}
