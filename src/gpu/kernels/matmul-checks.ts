/**
 * Reference checks of GEMM and convolution at scaled-down UNet shapes, with edge sizes: rows,
 * columns and K that are not multiples of any tile, odd channel counts (scalar loads), GEGLU,
 * per-batch B, stride 2, 1x1 with a residual.
 */
import {
  type CheckOutcome,
  type KernelCheck,
  randomValues,
  readAndCompare,
  uploadInputs,
} from "../check.js";
import type { GpuContext } from "../context.js";
import { referenceConv, referenceGemm } from "../reference/matmul.js";
import type { ConvShape } from "../types.js";
import type { KernelVariant } from "../variants.js";
import { prepareConv, runConv, sameConv } from "./conv2d.js";
import { type GemmOptions, type GemmShape, prepareGemm, runGemm } from "./gemm.js";
import type { Tiling } from "./matmul-wgsl.js";

export async function checkGemm(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: GemmShape,
  options: GemmOptions,
  seed = 1,
): Promise<CheckOutcome> {
  const storage = variant.storage;
  const epilogue = options.epilogue ?? "none";
  const cols = epilogue === "geglu" ? 2 * shape.n : shape.n;
  const bCount = (shape.sharedB ? 1 : shape.batch) * shape.k * cols;
  const a = randomValues(shape.batch * shape.m * shape.k, seed, storage);
  const b = randomValues(bCount, seed + 1, storage);
  const bias = options.bias ? randomValues(cols, seed + 2, storage) : undefined;
  const residual = options.residual
    ? randomValues(shape.batch * shape.m * shape.n, seed + 3, storage)
    : undefined;
  const kernel = await prepareGemm(ctx, variant, shape, options);
  const t = uploadInputs(ctx, storage, { a, b, bias, residual });
  const out = runGemm(ctx, kernel, t);
  // Channels-first: the residual uploaded is (images, N, planeSize); the reference is row-major.
  const plane = options.planeSize;
  const images = plane ? shape.m / plane : 0;
  const reference = referenceGemm(
    shape,
    {
      a,
      b,
      bias,
      residual: residual && plane ? swapLastTwo(residual, images, shape.n, plane) : residual,
    },
    epilogue,
    { storage, tensorCore: variant.path === "tensor-core" },
  );
  return readAndCompare(
    ctx,
    out,
    t,
    plane ? channelsFirst(reference, images, plane, shape.n) : reference,
  );
}

/** A convolution check's options: bias, residual, and which sides are channels-first. */
export interface ConvCheckOptions {
  readonly bias?: boolean;
  readonly residual?: boolean;
  readonly splitK?: number;
  readonly channelsFirstInput?: boolean;
  readonly channelsFirstOutput?: boolean;
}

export async function checkConv(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: ConvShape,
  options: ConvCheckOptions & { tiling?: Tiling },
  seed = 11,
): Promise<CheckOutcome> {
  const storage = variant.storage;
  const kernel = await prepareConv(ctx, variant, shape, options);
  const m = kernel.spec.m;
  const x = randomValues(
    shape.batch * shape.height * shape.width * shape.inChannels,
    seed,
    storage,
  );
  const w = randomValues(kernel.spec.k * shape.outChannels, seed + 1, storage);
  const bias = options.bias ? randomValues(shape.outChannels, seed + 2, storage) : undefined;
  const residual = options.residual
    ? randomValues(m * shape.outChannels, seed + 3, storage)
    : undefined;
  const t = uploadInputs(ctx, storage, { x, w, bias, residual });
  const out = runConv(ctx, kernel, shape, t);
  // Channels-first: x uploaded is (B, Cin, H, W) and the residual (B, Cout, Ho, Wo); the
  // reference works in NHWC.
  const planes = options.channelsFirstOutput ? m / shape.batch : 0;
  const reference = referenceConv(
    shape,
    {
      x: options.channelsFirstInput
        ? swapLastTwo(x, shape.batch, shape.inChannels, shape.height * shape.width)
        : x,
      w,
      bias,
      residual:
        residual && planes
          ? swapLastTwo(residual, shape.batch, shape.outChannels, planes)
          : residual,
    },
    { storage, tensorCore: variant.path === "tensor-core" },
  );
  return readAndCompare(
    ctx,
    out,
    t,
    planes ? channelsFirst(reference, shape.batch, planes, shape.outChannels) : reference,
  );
}

/** A row-major (images, planes, channels) reference and its bounds, laid out channels-first. */
function channelsFirst<R extends { value: Float64Array; bound: Float64Array }>(
  reference: R,
  images: number,
  planes: number,
  channels: number,
): R {
  return {
    ...reference,
    value: swapLastTwo(reference.value, images, planes, channels),
    bound: swapLastTwo(reference.bound, images, planes, channels),
  };
}

/** (B, R, C) -> (B, C, R): NHWC to NCHW with R the pixels, or back with R the channels. */
function swapLastTwo<A extends Float32Array | Float64Array>(
  x: A,
  batch: number,
  rows: number,
  cols: number,
): A {
  const out = x.slice() as A;
  for (let b = 0; b < batch; b++)
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) out[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
  return out;
}

interface GemmCase {
  readonly shape: GemmShape;
  readonly options: GemmOptions;
}

/** GEMM cases: the UNet's linear layers scaled down (tokens x channels), edges included. */
export const GEMM_CASES: readonly GemmCase[] = Object.freeze([
  // to_q of a 40-wide head group: 2 x 67 tokens (not a multiple of the tile), 40 -> 40.
  { shape: { batch: 2, m: 67, n: 40, k: 40, sharedB: true }, options: {} },
  // projection with bias and residual, K not a multiple of the K step.
  {
    shape: { batch: 2, m: 70, n: 72, k: 84, sharedB: true },
    options: { bias: true, residual: true },
  },
  // GEGLU feed-forward in: 2N columns, the gate half fused.
  {
    shape: { batch: 1, m: 66, n: 36, k: 48, sharedB: true },
    options: { bias: true, epilogue: "geglu" },
  },
  // GELU with bias (the time-embedding MLP's shape, odd sizes: scalar loads).
  {
    shape: { batch: 2, m: 9, n: 37, k: 33, sharedB: true },
    options: { bias: true, epilogue: "gelu" },
  },
  // one B per batch entry (attention-like batched products), odd K.
  { shape: { batch: 3, m: 33, n: 20, k: 19, sharedB: false }, options: {} },
  // Split-K (the deep levels' long K): K's tiles over three workgroups (fewer where the tile's
  // K step leaves fewer tiles), the sums added and the whole epilogue applied by the reduction;
  // K not a multiple of any K step, so the last split is short.
  {
    shape: { batch: 2, m: 21, n: 24, k: 100, sharedB: true },
    options: { bias: true, epilogue: "gelu", residual: true, splitK: 3 },
  },
  // A transformer's proj_out written back into its NCHW map (2 images of 5 x 7 tokens), with
  // the NCHW input added: channels-first output and residual; then the same split.
  {
    shape: { batch: 1, m: 70, n: 24, k: 40, sharedB: true },
    options: { bias: true, residual: true, planeSize: 35 },
  },
  {
    shape: { batch: 1, m: 70, n: 24, k: 96, sharedB: true },
    options: { bias: true, residual: true, planeSize: 35, splitK: 2 },
  },
  // GEGLU split: the gate's sums travel beside the hidden ones.
  {
    shape: { batch: 1, m: 18, n: 20, k: 72, sharedB: true },
    options: { bias: true, epilogue: "geglu", splitK: 2 },
  },
]);

/** Convolution cases: 3x3 stride 1 and 2, 1x1, odd channels and map sizes. */
export const CONV_CASES: readonly {
  shape: ConvShape;
  options: ConvCheckOptions;
  gpuOnly?: boolean;
}[] = Object.freeze([
  // Channels-first input, output and residual (NCHW, as the engine runs convolutions), stride 1
  // and 2; an NHWC input with a channels-first output (the engine's asymmetric padding).
  {
    shape: sameConv({ batch: 2, height: 9, width: 7, inChannels: 8, outChannels: 20 }),
    options: { bias: true, residual: true, channelsFirstInput: true, channelsFirstOutput: true },
  },
  {
    shape: sameConv({ batch: 1, height: 9, width: 8, inChannels: 4, outChannels: 12 }, 3, 2),
    options: { bias: true, channelsFirstInput: true, channelsFirstOutput: true },
  },
  {
    shape: sameConv({ batch: 1, height: 5, width: 6, inChannels: 4, outChannels: 8 }),
    options: { bias: true, channelsFirstOutput: true },
  },
  // Channels-first input with Cin not a multiple of 4 (a pixel's channels one at a time).
  {
    shape: sameConv({ batch: 1, height: 6, width: 5, inChannels: 3, outChannels: 5 }),
    options: { bias: true, channelsFirstInput: true, channelsFirstOutput: true },
    gpuOnly: true,
  },
  {
    shape: sameConv({ batch: 2, height: 9, width: 7, inChannels: 8, outChannels: 12 }),
    options: { bias: true },
  },
  {
    shape: sameConv({ batch: 1, height: 6, width: 5, inChannels: 4, outChannels: 7 }),
    options: { bias: true, residual: true },
  },
  {
    shape: sameConv({ batch: 2, height: 9, width: 8, inChannels: 8, outChannels: 16 }, 3, 2),
    options: { bias: true },
  },
  // Input channels not a multiple of 4 (scalar image loads; the VAE encoder's RGB input).
  // SwiftShader takes minutes to compile this variant, so it runs in bench-kernels --check only.
  {
    shape: sameConv({ batch: 1, height: 6, width: 5, inChannels: 3, outChannels: 5 }),
    options: { bias: true },
    gpuOnly: true,
  },
  {
    shape: sameConv({ batch: 2, height: 5, width: 7, inChannels: 12, outChannels: 8 }, 1),
    options: { bias: true, residual: true },
  },
  // Split-K with the engine's NCHW input, output and residual (the partial sums row-major, the
  // reduction writing channel planes), and with NHWC in and out.
  {
    shape: sameConv({ batch: 2, height: 5, width: 6, inChannels: 16, outChannels: 12 }),
    options: {
      bias: true,
      residual: true,
      channelsFirstInput: true,
      channelsFirstOutput: true,
      splitK: 4,
    },
  },
  {
    shape: sameConv({ batch: 1, height: 4, width: 5, inChannels: 12, outChannels: 8 }),
    options: { bias: true, splitK: 3 },
  },
]);

function describeGemm(c: GemmCase): string {
  const s = c.shape;
  const o = c.options;
  return [
    `${s.batch}x${s.m}x${s.n}x${s.k}`,
    s.sharedB ? "" : "batched-B",
    o.epilogue && o.epilogue !== "none" ? o.epilogue : "",
    o.bias ? "bias" : "",
    o.residual ? "residual" : "",
    o.planeSize ? `nchw-out ${o.planeSize}` : "",
    o.splitK ? `split-k ${o.splitK}` : "",
  ]
    .filter(Boolean)
    .join(" ");
}

function describeConv(s: ConvShape, o: ConvCheckOptions): string {
  return [
    `${s.kernel}x${s.kernel}/${s.stride} ${s.batch}x${s.height}x${s.width}x${s.inChannels}->${s.outChannels}`,
    o.bias ? "bias" : "",
    o.residual ? "residual" : "",
    o.channelsFirstInput ? "nchw-in" : "",
    o.channelsFirstOutput ? "nchw-out" : "",
    o.splitK ? `split-k ${o.splitK}` : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/**
 * The checks, optionally with a given tiling (the sweep checks each tiling it times); `ci`
 * leaves out the cases that a CPU driver compiles too slowly.
 */
export function matmulChecks(tiling?: Tiling, ci = false): KernelCheck[] {
  return [
    ...GEMM_CASES.map((c) => ({
      family: "gemm",
      name: describeGemm(c),
      run: (ctx: GpuContext, variant: KernelVariant) =>
        checkGemm(ctx, variant, c.shape, { ...c.options, tiling }),
    })),
    ...CONV_CASES.filter((c) => !(ci && c.gpuOnly)).map((c) => ({
      family: "conv",
      name: describeConv(c.shape, c.options),
      run: (ctx: GpuContext, variant: KernelVariant) =>
        checkConv(ctx, variant, c.shape, { ...c.options, tiling }),
    })),
  ];
}
