/**
 * Reference checks of flash attention and ToDo's K/V pooling at scaled-down UNet shapes, with edge
 * sizes: token counts that are not multiples of any tile, head dim 40, cross-attention's 77 keys,
 * key grids the factor divides and ones it does not (torch's nearest rule), odd channel counts.
 */
import { type KernelCheck, randomValues, readAndCompare, uploadInputs } from "../check.js";
import { referenceAttention, referenceAvgPool } from "../reference/attention.js";
import {
  type AttentionShape,
  type AttentionTiling,
  attentionKeys,
  attentionTilingName,
  lazyRescale,
  prepareAttention,
  RESCALE_MARGIN,
  runAttention,
  SCORE_SCRATCH_SWEEP,
  TENSOR_CORE_ATTENTION_ORDER,
  tensorCoreWorkgroupBytes,
  WIDE_HEAD_SWEEP,
} from "./attention.js";
import { type AvgPoolShape, prepareAvgPool, runSimple } from "./elementwise.js";

/** Token-major K or V, (B, Nkv, H d), stored by head, (B, H, Nkv, d). */
function storedByHead(values: Float32Array, shape: AttentionShape): Float32Array {
  const { batch, kvTokens, heads, headDim: d } = shape;
  const out = new Float32Array(values.length);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < kvTokens; t++)
      for (let h = 0; h < heads; h++) {
        const from = ((b * kvTokens + t) * heads + h) * d;
        out.set(values.subarray(from, from + d), ((b * heads + h) * kvTokens + t) * d);
      }
  return out;
}

/** Flash attention against the reference (which reads K and V in the projections' layout). */
function attentionCheck(shape: AttentionShape, tiling?: AttentionTiling): KernelCheck["run"] {
  return async (ctx, variant) => {
    const storage = variant.storage;
    const hd = shape.heads * shape.headDim;
    const q = randomValues(shape.batch * shape.queries * hd, 21, storage);
    // Keys scaled up so that the softmax is far from uniform (scores of a few units).
    const k = randomValues(shape.batch * shape.kvTokens * hd, 22, storage).map(
      (x) => x * 4, // a power of two: still exact in the storage type
    );
    const v = randomValues(shape.batch * shape.kvTokens * hd, 23, storage);
    const kernel = await prepareAttention(ctx, variant, shape, tiling);
    const stored = (x: Float32Array) => (shape.kvByHead ? storedByHead(x, shape) : x);
    const t = uploadInputs(ctx, storage, { q, k: stored(k), v: stored(v) });
    const out = runAttention(ctx, kernel, t);
    const reference = referenceAttention(
      shape,
      { q, k, v },
      {
        storage,
        tensorCore: variant.path === "tensor-core",
        tiles: Math.ceil(attentionKeys(shape) / kernel.tiling.keysPerTile),
        rescaleMargin: lazyRescale(kernel) ? RESCALE_MARGIN : 0,
      },
    );
    return readAndCompare(ctx, out, t, reference);
  };
}

/** ToDo's K/V pooling against the reference. */
function avgPoolCheck(shape: AvgPoolShape): KernelCheck["run"] {
  return async (ctx, variant) => {
    const storage = variant.storage;
    const x = randomValues(shape.batch * shape.height * shape.width * shape.channels, 31, storage);
    const kernel = await prepareAvgPool(ctx, variant, shape);
    const t = uploadInputs(ctx, storage, { x });
    const oh = Math.floor(shape.height / shape.factor);
    const ow = Math.floor(shape.width / shape.factor);
    const out = runSimple(ctx, kernel, [t.x], [shape.batch, oh * ow, shape.channels], storage);
    return readAndCompare(ctx, out, t, referenceAvgPool(shape, x, storage));
  };
}

export const ATTENTION_CASES: readonly { shape: AttentionShape; gpuOnly?: boolean }[] =
  Object.freeze([
    // Self-attention, 67 tokens (no tile divides it), head dim 40, two heads.
    { shape: { batch: 2, queries: 67, heads: 2, headDim: 40, kvTokens: 67 } },
    // Nearest ToDo on a 9 x 10 grid, factor 2: 4 x 5 keys, rows picked by torch's rule (9 is odd).
    {
      shape: {
        batch: 1,
        queries: 90,
        heads: 2,
        headDim: 40,
        kvTokens: 90,
        keyGrid: { height: 9, width: 10, factor: 2 },
      },
    },
    // Nearest ToDo, factor 3 dividing a 6 x 9 grid (strided rows and columns).
    {
      shape: {
        batch: 2,
        queries: 54,
        heads: 1,
        headDim: 64,
        kvTokens: 54,
        keyGrid: { height: 6, width: 9, factor: 3 },
      },
    },
    // K/V stored by head: 67 tokens, and nearest ToDo's key grid read through that layout.
    { shape: { batch: 2, queries: 67, heads: 2, headDim: 40, kvTokens: 67, kvByHead: true } },
    {
      shape: {
        batch: 2,
        queries: 90,
        heads: 2,
        headDim: 40,
        kvTokens: 90,
        keyGrid: { height: 9, width: 10, factor: 2 },
        kvByHead: true,
      },
    },
    // Cross-attention: 77 keys, head dim 80.
    { shape: { batch: 1, queries: 33, heads: 2, headDim: 80, kvTokens: 77 } },
    // SD 2.x / XL's largest head (160): long unrolled kernels, checked on a GPU only.
    { shape: { batch: 1, queries: 40, heads: 2, headDim: 160, kvTokens: 77 }, gpuOnly: true },
  ]);

export const AVG_POOL_CASES: readonly AvgPoolShape[] = Object.freeze([
  // Cells of 2 x 2 on a 7 x 9 grid (last row and column dropped), 12 channels (vector loads).
  { batch: 2, height: 7, width: 9, channels: 12, factor: 2 },
  // Odd channel count (scalar loads), factor 3.
  { batch: 1, height: 6, width: 7, channels: 5, factor: 3 },
]);

function describe(s: AttentionShape): string {
  const g = s.keyGrid;
  return `${s.batch}x${s.queries}q x ${s.heads}h x ${s.headDim} keys ${attentionKeys(s)}${g ? ` (${g.height}x${g.width}/${g.factor})` : ""}${s.kvByHead ? " K/V by head" : ""}`;
}

/**
 * Tensor-core tilings checked on a GPU besides the default one: every tiling the default order
 * may fall back to, and the candidates the sweep times, so that a tiling is known to be right
 * before it is made a default.
 */
export const CHECKED_TENSOR_CORE_TILINGS: readonly AttentionTiling[] = Object.freeze([
  ...TENSOR_CORE_ATTENTION_ORDER,
  { keysPerTile: 32, subgroups: 4, rescale: "lazy", staging: "double", rowBlocks: 2 },
  { keysPerTile: 32, subgroups: 4, rescale: "lazy", rowBlocks: 2 },
  { keysPerTile: 32, subgroups: 8, rescale: "lazy", rowBlocks: 2 },
  { keysPerTile: 32, subgroups: 2, rescale: "lazy", staging: "double", rowBlocks: 2 },
  { keysPerTile: 64, subgroups: 2, rescale: "lazy", rowBlocks: 2 },
  { keysPerTile: 64, subgroups: 4, rescale: "lazy" },
  ...SCORE_SCRATCH_SWEEP,
  ...WIDE_HEAD_SWEEP[80],
  ...WIDE_HEAD_SWEEP[160],
]);

export function attentionChecks(tiling?: AttentionTiling, ci = false): KernelCheck[] {
  const cases = ATTENTION_CASES.filter((c) => !(ci && c.gpuOnly));
  return [
    ...cases.map((c) => ({
      family: "attention",
      name: describe(c.shape),
      run: attentionCheck(c.shape, tiling),
    })),
    // On a GPU: the other tensor-core tilings, where they fit workgroup memory at the head dim.
    ...(ci || tiling
      ? []
      : CHECKED_TENSOR_CORE_TILINGS.flatMap((t) =>
          cases.map(
            (c): KernelCheck => ({
              family: "attention",
              name: `${describe(c.shape)} ${attentionTilingName(t, "tensor-core")}`,
              run: attentionCheck(c.shape, t),
              appliesTo: (ctx, variant) =>
                variant.path === "tensor-core" &&
                tensorCoreWorkgroupBytes(variant, c.shape.headDim, t) <=
                  ctx.capabilities.limits.maxComputeWorkgroupStorageSize,
            }),
          ),
        )),
    ...AVG_POOL_CASES.map((s) => ({
      family: "avgpool",
      name: `${s.batch}x${s.height}x${s.width}x${s.channels}/${s.factor}`,
      run: avgPoolCheck(s),
    })),
  ];
}
