/**
 * 2D convolution, NHWC, as an implicit GEMM (the im2col matrix is never written: A's tile loads
 * address the image directly), with fused bias and optional residual add.
 *
 * Shape contract (row-major, storage type T of the variant):
 *   x: (B, H, W, Cin)
 *   w: (KH, KW, Cin, Cout)             i.e. a (KH*KW*Cin) x Cout matrix, tap-major
 *   bias: (Cout)                       optional
 *   residual: (B, Ho, Wo, Cout)        optional, added last
 *   y: (B, Ho, Wo, Cout), Ho = floor((H + 2*pad - KH) / stride) + 1 (likewise Wo)
 * With `channelsFirstOutput`, y and the residual are (B, Cout, Ho, Wo) instead: the NCHW the
 * ONNX graphs hold, written by the epilogue (no transposing copy after the convolution). With
 * `channelsFirstInput`, x is (B, Cin, H, W): the tile loads gather a pixel's four channels from
 * four planes, threads taking consecutive pixels so that each load coalesces across a warp.
 * GEMM view: M = B*Ho*Wo output pixels, N = Cout, K = KH*KW*Cin; row m reads the receptive
 * field of its pixel, column k = (ky*KW + kx)*Cin + c. Zero padding comes from the bounds checks.
 * Launch: ceil(Cout / tileN) x ceil(M / tileM) x 1 workgroups; with split-K (the deep levels'
 * small maps), x splits, then the reduction (matmul-wgsl.ts).
 */
import type { GpuContext, GpuTensor } from "../context.js";
import type { ConvShape } from "../types.js";
import type { KernelVariant } from "../variants.js";
import { u32Literal as u } from "../wgsl.js";
import { defaultTiling, MatmulKernel, matmulSpec, runMatmul } from "./matmul-kernel.js";
import type { MatmulSpec, OperandA, Tiling } from "./matmul-wgsl.js";

/**
 * A convolution that keeps the map's size at stride 1 (3x3 with padding 1, or 1x1 without), the
 * kind the UNet and the VAE use.
 */
export function sameConv(
  map: Pick<ConvShape, "batch" | "height" | "width" | "inChannels" | "outChannels">,
  kernel: 1 | 3 = 3,
  stride = 1,
): ConvShape {
  return { ...map, kernel, stride, padding: (kernel - 1) / 2 };
}

export interface ConvOptions {
  readonly bias?: boolean;
  readonly residual?: boolean;
  readonly tiling?: Tiling;
  /** Workgroups sharing K (split-K; default: defaultSplitK's choice for the problem). */
  readonly splitK?: number;
  /** Output (and residual) channels-first, (B, Cout, Ho, Wo); default (B, Ho, Wo, Cout). */
  readonly channelsFirstOutput?: boolean;
  /** Input channels-first, (B, Cin, H, W); default (B, H, W, Cin). */
  readonly channelsFirstInput?: boolean;
}

export function convOutputSize(shape: ConvShape): { height: number; width: number } {
  return {
    height: Math.floor((shape.height + 2 * shape.padding - shape.kernel) / shape.stride) + 1,
    width: Math.floor((shape.width + 2 * shape.padding - shape.kernel) / shape.stride) + 1,
  };
}

/** A as the implicit im2col matrix of an NHWC image (or an NCHW one: `channelsFirst`). */
export function imageOperand(shape: ConvShape, channelsFirst = false): OperandA {
  const { height: h, width: w, inChannels: cin, kernel: kw, stride, padding } = shape;
  const out = convOutputSize(shape);
  const m = shape.batch * out.height * out.width;
  const kTotal = kw * kw * cin;
  // Four consecutive k stay within one tap (and one pixel) when Cin is a multiple of 4.
  const width = cin % 4 === 0 ? 4 : 1;
  const vector = width === 4 ? "T4" : "T";
  // NHWC: the vector at (pixel, channel c) is one entry; NCHW: `width` entries a plane apart.
  const element = channelsFirst
    ? `let at = base + (kk % ${u(cin)}) * ${u(h * w)} + u32(iy) * ${u(w)} + u32(ix);
  let index = select(0u, at, inside);
  return select(${vector}(), ${vector}(${Array.from({ length: width }, (_, q) => `a[index + ${u(q * h * w)}]`).join(", ")}), inside);`
    : `let index = select(0u, (base + (u32(iy) * ${u(w)} + u32(ix)) * ${u(cin)} + kk % ${u(cin)}) / ${u(width)}, inside);
  return select(${vector}(), a[index], inside);`;
  return {
    vectorWidth: width,
    ...(channelsFirst ? { bindingWidth: 1 as const, rowsFastest: true } : {}),
    // One function for every load of a thread (rather than each load written out) keeps the
    // shader small for drivers that compile slowly.
    declarations: `
fn load_image(ok: bool, base: u32, iy0: i32, ix0: i32, kk: u32) -> ${vector} {
  let tap = kk / ${u(cin)};
  let iy = iy0 + i32(tap / ${u(kw)});
  let ix = ix0 + i32(tap % ${u(kw)});
  // Branch-free: out-of-bounds taps read element 0 and are replaced by zero.
  let inside = ok && kk < ${u(kTotal)} && iy >= 0 && iy < ${h} && ix >= 0 && ix < ${w};
  ${element}
}`,
    rowSetup: (j) =>
      [
        `let a_ok_${j} = row_${j} < ${u(m)};`,
        `let a_pix_${j} = row_${j} % ${u(out.height * out.width)};`,
        `let a_base_${j} = (row_${j} / ${u(out.height * out.width)}) * ${u(h * w * cin)};`,
        `let a_iy_${j} = i32(a_pix_${j} / ${u(out.width)}) * ${stride} - ${padding};`,
        `let a_ix_${j} = i32(a_pix_${j} % ${u(out.width)}) * ${stride} - ${padding};`,
      ].join("\n  "),
    load: (j, kExpr) =>
      `a_${j} = load_image(a_ok_${j}, a_base_${j}, a_iy_${j}, a_ix_${j}, ${kExpr});`,
  };
}

export function convSpec(
  variant: KernelVariant,
  shape: ConvShape,
  options: ConvOptions = {},
): MatmulSpec {
  for (const [name, value] of Object.entries(shape))
    if (!Number.isInteger(value) || value < 0)
      throw new Error(`conv2d: ${name} must be a non-negative integer, got ${value}`);
  if (
    shape.kernel < 1 ||
    shape.stride < 1 ||
    shape.batch < 1 ||
    shape.inChannels < 1 ||
    shape.outChannels < 1
  )
    throw new Error("conv2d: batch, channels, kernel and stride must be at least 1");
  const out = convOutputSize(shape);
  if (out.height < 1 || out.width < 1)
    throw new Error(
      `conv2d: a ${shape.height}x${shape.width} map is smaller than the ${shape.kernel}x${shape.kernel} kernel`,
    );
  const tiling =
    options.tiling ??
    defaultTiling(variant, {
      rows: shape.batch * out.height * out.width,
      columns: shape.outChannels,
      batch: 1,
      conv: true,
    });
  const head = `conv${shape.kernel}x${shape.kernel}/${shape.stride} ${shape.batch}x${shape.height}x${shape.width}x${shape.inChannels}->${shape.outChannels}${options.channelsFirstInput ? " channels-first-in" : ""}`;
  return matmulSpec(head, variant, tiling, options, {
    batch: 1,
    m: shape.batch * out.height * out.width,
    n: shape.outChannels,
    k: shape.kernel * shape.kernel * shape.inChannels,
    a: imageOperand(shape, options.channelsFirstInput),
    bBatchStride: 0,
    epilogue: "none",
    ...(options.channelsFirstOutput ? { planeSize: out.height * out.width } : {}),
  });
}

export function prepareConv(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: ConvShape,
  options: ConvOptions = {},
): Promise<MatmulKernel> {
  const spec = convSpec(variant, shape, options);
  ctx.checkSize(
    shape.batch * shape.height * shape.width * shape.inChannels,
    variant.storage,
    `${spec.label}: input`,
  );
  ctx.checkSize(spec.k * spec.n, variant.storage, `${spec.label}: weights`);
  ctx.checkSize(spec.m * spec.n, variant.storage, `${spec.label}: output`);
  return MatmulKernel.prepare(ctx, spec);
}

export interface ConvInputs {
  readonly x: GpuTensor;
  readonly w: GpuTensor;
  readonly bias?: GpuTensor;
  readonly residual?: GpuTensor;
}

/** Runs a prepared convolution into a new tensor (B, Ho, Wo, Cout), or (B, Cout, Ho, Wo). */
export function runConv(
  ctx: GpuContext,
  kernel: MatmulKernel,
  shape: ConvShape,
  inputs: ConvInputs,
): GpuTensor {
  const { spec } = kernel;
  const out = convOutputSize(shape);
  return runMatmul(ctx, kernel, {
    a: {
      tensor: inputs.x,
      size: shape.batch * shape.height * shape.width * shape.inChannels,
      name: "input",
    },
    b: { tensor: inputs.w, size: spec.k * spec.n, name: "weights" },
    bias: inputs.bias,
    biasSize: spec.n,
    residual: inputs.residual,
    outShape:
      spec.planeSize === undefined
        ? [shape.batch, out.height, out.width, shape.outChannels]
        : [shape.batch, shape.outChannels, out.height, out.width],
    outLabel: "conv output",
  });
}
