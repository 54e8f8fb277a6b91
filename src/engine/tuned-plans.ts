/**
 * Which nodes the executor hands to src/gpu's tuned kernels (batched GEMM, implicit-GEMM
 * convolution, flash attention, layer norm) and which stay on the engine's own portable kernels. Each plan
 * is a pure function of the operands' dims, the node's attributes, the kernel variant and the
 * adapter's limits: it either returns the tuned kernel's shape or says, in a few words, why the
 * tuned kernel does not take the node. The tuned prepare functions throw for shapes they refuse;
 * these checks come first, so a refusal never costs a compilation or an exception per call.
 */
import {
  type AttentionShape,
  DEFAULT_ATTENTION_TILINGS,
  TENSOR_CORE_ATTENTION_ORDER,
  tensorCoreRows,
  tensorCoreWorkgroupBytes,
} from "../gpu/kernels/attention.js";
import { convSpec } from "../gpu/kernels/conv2d.js";
import { type GemmShape, gemmSpec } from "../gpu/kernels/gemm.js";
import { matmulGrid, type Tiling } from "../gpu/kernels/matmul-wgsl.js";
import type { LayerNormShape } from "../gpu/kernels/norm.js";
import type { ConvShape, GpuCapabilities } from "../gpu/types.js";
import type { KernelVariant } from "../gpu/variants.js";
import { sizeOf } from "./host-tensor.js";

/** The tuned kernel's shape for a node, or why the node stays on the portable kernels. */
export type TunedPlan<S> =
  | { readonly kind: "tuned"; readonly shape: S }
  | { readonly kind: "portable"; readonly reason: string };

type Limits = GpuCapabilities["limits"];

const portable = (reason: string): { kind: "portable"; reason: string } => ({
  kind: "portable",
  reason,
});

function gridFits(grid: readonly number[], limits: Limits): boolean {
  return grid.every((g) => g <= limits.maxComputeWorkgroupsPerDimension);
}

/**
 * MatMul a (..., M, K) x b (..., K, N) as the tuned GEMM's (batch, M, K) x (K, N) or
 * (batch, K, N). A 2-D b (or one whose batch dims are all 1: the weights of a Linear) is shared
 * by every row, so a's leading dims fold into M (one tall GEMM, the best shape for the tiles);
 * equal batch dims on both sides (attention's score and value products) make a batch of GEMMs.
 * Batch dims that broadcast one operand against the other have no tuned form.
 */
export function gemmPlan(
  a: readonly number[],
  b: readonly number[],
  variant: KernelVariant,
  limits: Limits,
  tiling?: Tiling,
): TunedPlan<GemmShape> {
  if (a.length < 2 || b.length < 2) return portable("a 1-D operand");
  const [m, k] = a.slice(-2);
  const [kb, n] = b.slice(-2);
  if (k !== kb) return portable(`inner sizes ${k} and ${kb} differ`);
  if (sizeOf(a) === 0 || sizeOf(b) === 0) return portable("an empty operand");
  const aBatch = a.slice(0, -2);
  const bBatch = b.slice(0, -2);
  let shape: GemmShape;
  if (bBatch.every((d) => d === 1)) shape = { batch: 1, m: sizeOf(a) / k, n, k, sharedB: true };
  else {
    const rank = Math.max(aBatch.length, bBatch.length);
    const pad = (dims: readonly number[]) => [
      ...new Array<number>(rank - dims.length).fill(1),
      ...dims,
    ];
    const pa = pad(aBatch);
    const pb = pad(bBatch);
    if (pa.some((d, i) => d !== pb[i]))
      return portable(`batch dims [${aBatch.join(", ")}] and [${bBatch.join(", ")}] broadcast`);
    shape = { batch: sizeOf(pa), m, n, k, sharedB: false };
  }
  if (!gridFits(matmulGrid(gemmSpec(variant, shape, { tiling })), limits))
    return portable("more workgroups than the adapter dispatches per dimension");
  return { kind: "tuned", shape };
}

/** The Conv attributes a plan reads (ONNX defaults already applied). */
export interface ConvAttributes {
  readonly group: number;
  readonly autoPad: string;
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  /** [top, left, bottom, right]. */
  readonly pads: readonly number[];
}

/** A Conv as the tuned kernel runs it. */
export interface TunedConv {
  /** The kernel's shape; with `inputPads`, over the padded map and with padding 0. */
  readonly shape: ConvShape;
  /**
   * Zeros written around the input before the kernel runs ([top, left, bottom, right]), where
   * the node's padding is not the kernel's symmetric "same" padding; absent otherwise.
   */
  readonly inputPads?: readonly number[];
}

/**
 * Conv x (N, C, H, W), w (O, C, KH, KW) as the tuned NHWC convolution: square 3x3 or 1x1
 * kernels, stride 1 or 2, no dilation, one group: every convolution of the UNet and the VAE.
 * "Same" padding (1 for 3x3, 0 for 1x1) is the kernel's own; any other padding smaller than the
 * kernel (the VAE encoder's downsampling pads only the bottom and the right) is written as zeros
 * around the input while it is transposed to NHWC anyway, and the kernel runs without padding.
 */
export function convPlan(
  x: readonly number[],
  w: readonly number[],
  attributes: ConvAttributes,
  variant: KernelVariant,
  limits: Limits,
  tiling?: Tiling,
): TunedPlan<TunedConv> {
  if (x.length !== 4 || w.length !== 4) return portable(`a rank-${x.length} convolution`);
  const { group, autoPad, strides, dilations, pads } = attributes;
  if (group !== 1) return portable("a grouped convolution");
  if (autoPad !== "NOTSET") return portable(`auto_pad ${autoPad}`);
  const [batch, inChannels, height, width] = x;
  const [outChannels, wc, kh, kw] = w;
  if (wc !== inChannels) return portable(`weights for ${wc} channels, input of ${inChannels}`);
  if (kh !== kw || (kh !== 1 && kh !== 3)) return portable(`a ${kh}x${kw} kernel`);
  if (dilations.some((d) => d !== 1)) return portable("a dilated convolution");
  const stride = strides[0];
  if (strides.some((s) => s !== stride) || (stride !== 1 && stride !== 2))
    return portable(`strides [${strides.join(", ")}]`);
  const same = (kh - 1) / 2;
  if (pads.length !== 4 || pads.some((p) => !Number.isInteger(p) || p < 0 || p >= kh))
    return portable(`pads [${pads.join(", ")}] with a ${kh}x${kw} kernel`);
  const symmetric = pads.every((p) => p === same);
  const padding = symmetric ? same : 0;
  const [top, left, bottom, right] = symmetric ? [0, 0, 0, 0] : pads;
  if (sizeOf(x) === 0 || outChannels === 0) return portable("an empty operand");
  const shape: ConvShape = {
    batch,
    height: height + top + bottom,
    width: width + left + right,
    inChannels,
    outChannels,
    kernel: kh,
    stride,
    padding,
  };
  if (shape.height + 2 * padding < kh || shape.width + 2 * padding < kw)
    return portable(`a ${height}x${width} map smaller than the kernel`);
  if (!gridFits(matmulGrid(convSpec(variant, shape, { tiling })), limits))
    return portable("more workgroups than the adapter dispatches per dimension");
  return { kind: "tuned", shape: symmetric ? { shape } : { shape, inputPads: [...pads] } };
}

/**
 * Conv weights (O, C, KH, KW), ONNX's layout, are re-laid on the GPU as the tuned kernel's
 * (KH, KW, C, O): a (KH KW C) x O matrix whose row (ky KW + kx) C + c is the tap the implicit
 * GEMM's column k reads. These are the strides of ONNX's layout over the kernel's axes (ky, kx,
 * c, o), which the strided copy that re-lays them reads with.
 */
export function convWeightSourceStrides(dims: readonly number[]): number[] {
  const [, c, kh, kw] = dims;
  return [kw, 1, kh * kw, c * kh * kw];
}

/** The LayerNormalization inputs and attributes a plan reads. */
export interface LayerNormOperands {
  readonly x: readonly number[];
  /** The axis, already in [0, rank). */
  readonly axis: number;
  readonly scale: readonly number[];
  /** Absent when the node has no bias input. */
  readonly bias?: readonly number[];
  readonly epsilon: number;
  /** The node asks for its mean or inverse deviation outputs too. */
  readonly statistics: boolean;
}

/**
 * LayerNormalization over the last axis, with scale and bias of that axis's length (the
 * transformer blocks' form) as the tuned layer norm: x (rows, C).
 */
export function layerNormPlan(
  operands: LayerNormOperands,
  limits: Limits,
): TunedPlan<LayerNormShape> {
  const { x, scale, bias, epsilon } = operands;
  const channels = x[x.length - 1] ?? 0;
  if (operands.statistics) return portable("its statistics outputs");
  if (x.length === 0 || operands.axis !== x.length - 1)
    return portable("normalisation over more than the last axis");
  if (!bias) return portable("no bias");
  if (sizeOf(scale) !== channels || sizeOf(bias) !== channels)
    return portable(`scale or bias not of the ${channels} channels`);
  if (!(epsilon > 0)) return portable(`epsilon ${epsilon}`);
  const rows = sizeOf(x) / Math.max(channels, 1);
  if (channels === 0 || rows === 0) return portable("an empty operand");
  // The kernel's grid: workgroups of 8 rows, up to 32768 along x, the rest along y.
  const groups = Math.ceil(rows / 8);
  if (!gridFits([Math.min(groups, 32768), Math.ceil(groups / 32768)], limits))
    return portable("more workgroups than the adapter dispatches per dimension");
  return { kind: "tuned", shape: { rows, channels, eps: epsilon } };
}

/** The MultiHeadAttention inputs and attributes a plan reads. */
export interface AttentionOperands {
  readonly q: readonly number[];
  readonly k: readonly number[];
  readonly v: readonly number[];
  readonly heads: number;
  /** The `scale` attribute, when the node has one. */
  readonly scale?: number;
  /** Inputs past V the node has (packed bias, key padding mask, additive bias, past state). */
  readonly extraInputs: boolean;
}

/**
 * com.microsoft.MultiHeadAttention with q (B, Nq, H d), k and v (B, Nk, H d) as the tuned flash
 * attention: no bias, mask or past state, the same head width for K and V, d a multiple of 4,
 * and the default scale 1/sqrt(d) (the kernel folds it into its exp2 constant), which is the
 * scale the builders write. ToDo's downsampled K/V arrive as ordinary shorter K/V (the builders
 * downsample the tokens before the K/V projections), so no key grid is needed here.
 */
export function attentionPlan(
  operands: AttentionOperands,
  variant: KernelVariant,
  limits: Limits,
): TunedPlan<AttentionShape> {
  const { q, k, v, heads } = operands;
  if (operands.extraInputs) return portable("a bias, mask or past state");
  if (q.length !== 3 || k.length !== 3 || v.length !== 3) return portable("packed or 4-D inputs");
  const [batch, queries, width] = q;
  const kvTokens = k[1];
  if (k[0] !== batch || v[0] !== batch || v[1] !== kvTokens)
    return portable("batch or token counts that differ between Q, K and V");
  if (k[2] !== width || v[2] !== width) return portable("K or V of another width than Q");
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0)
    return portable(`${width} channels in ${heads} heads`);
  const headDim = width / heads;
  if (headDim % 4 !== 0) return portable(`head dim ${headDim} (not a multiple of 4)`);
  if (batch * queries * kvTokens === 0) return portable("an empty operand");
  if (
    operands.scale !== undefined &&
    Math.fround(operands.scale) !== Math.fround(1 / Math.sqrt(headDim))
  )
    return portable(`scale ${operands.scale} (the kernel applies 1/sqrt(${headDim}))`);
  const memory = limits.maxComputeWorkgroupStorageSize;
  let rows: number;
  if (variant.path === "tensor-core") {
    // prepareAttention takes the first of these, or a later one if the device refuses it: the
    // grid must fit with the fewest rows per workgroup among them.
    const fitting = TENSOR_CORE_ATTENTION_ORDER.filter(
      (t) => tensorCoreWorkgroupBytes(variant, headDim, t) <= memory,
    );
    if (fitting.length === 0 || !variant.matrix)
      return portable(`head dim ${headDim} outgrows workgroup memory`);
    rows = Math.min(...fitting.map((t) => tensorCoreRows(variant, t)));
  } else {
    if (2 * DEFAULT_ATTENTION_TILINGS.portable.keysPerTile * headDim * 4 > memory)
      return portable(`head dim ${headDim} outgrows workgroup memory`);
    rows = 64;
  }
  if (!gridFits([Math.ceil(queries / rows), batch * heads], limits))
    return portable("more workgroups than the adapter dispatches per dimension");
  return { kind: "tuned", shape: { batch, queries, heads, headDim, kvTokens } };
}
