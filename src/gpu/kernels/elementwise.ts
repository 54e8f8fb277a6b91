/**
 * Memory-bound kernels: elementwise add, mul, SiLU and GELU; nearest 2x upsampling; the
 * sinusoidal timestep embedding; and the f x f average pooling of ToDo's keys/values. One thread
 * per four elements (vec4 loads and stores) wherever the sizes allow (the upsample: one per 16
 * bytes of input, copied as words), on a 2-D grid so that large tensors stay within the 65535
 * workgroups a dimension allows.
 *
 * Shape contracts (row-major, storage type T of the variant):
 *   add, mul:  a, b (n) -> out (n)            silu, gelu: a (n) -> out (n)
 *   upsample:  x (B, H, W, C) -> out (B, 2H, 2W, C), out[b, y, x] = x[b, y/2, x/2] (NHWC)
 *   timestep:  t (N) float32 -> out (N, dim): diffusers' get_timestep_embedding as the UNet
 *              builder computes it (models/unet.ts: sinusoidalEmbedding): frequencies
 *              exp(-ln(10000) i / (dim/2 - freqShift)) in float32, sines then cosines (swapped with
 *              flipSinToCos), a zero column for an odd dim
 *   avgpool:   x (B, H W, C) -> out (B, floor(H/f) floor(W/f), C): the mean of each whole f x f
 *              cell (the last H mod f rows and W mod f columns dropped, as src/reduce does)
 */
import type { GpuContext, GpuTensor, KernelLaunch } from "../context.js";
import type { KernelVariant } from "../variants.js";
import {
  checkPositiveSizes,
  f32Literal,
  GELU_WGSL,
  storagePreamble,
  u32Literal as u,
} from "../wgsl.js";

export const WORKGROUP = 256;
const MAX_GROUPS_X = 32768;

/** A grid for `items` threads of `WORKGROUP`, and the WGSL that computes the item index. */
export function grid1d(items: number): { workgroups: [number, number, number]; index: string } {
  const groups = Math.max(1, Math.ceil(items / WORKGROUP));
  // Rows of equal length: 40,960 groups as 2 x 20,480, not 32,768 and a second row mostly idle.
  const x = Math.ceil(groups / Math.ceil(groups / MAX_GROUPS_X));
  return {
    workgroups: [x, Math.ceil(groups / x), 1],
    index: `(wg.y * ${u(x)} + wg.x) * ${u(WORKGROUP)} + local`,
  };
}

export interface SimpleKernel {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly workgroups: [number, number, number];
  /** Bytes read and written by one call (for GB/s). */
  readonly bytes: number;
  launch(buffers: readonly GPUBuffer[]): KernelLaunch;
}

async function simpleKernel(
  ctx: GpuContext,
  label: string,
  code: string,
  workgroups: [number, number, number],
  bytes: number,
): Promise<SimpleKernel> {
  const pipeline = await ctx.pipeline({ label, code });
  return {
    label,
    pipeline,
    workgroups,
    bytes,
    launch: (buffers) => ({ pipeline, buffers, workgroups }),
  };
}

function bytesOf(variant: KernelVariant): number {
  return variant.storage === "f16" ? 2 : 4;
}

export const ELEMENTWISE_OPS = Object.freeze(["add", "mul", "silu", "gelu"] as const);

export type ElementwiseOp = (typeof ELEMENTWISE_OPS)[number];

export function isBinary(op: ElementwiseOp): boolean {
  return op === "add" || op === "mul";
}

/** add / mul of two tensors of n elements, or SiLU / GELU of one. */
export async function prepareElementwise(
  ctx: GpuContext,
  variant: KernelVariant,
  op: ElementwiseOp,
  n: number,
): Promise<SimpleKernel> {
  checkPositiveSizes(`elementwise ${op}`, { n });
  const label = `elementwise ${op} ${n} ${variant.storage}`;
  ctx.checkSize(n, variant.storage, label);
  const width = n % 4 === 0 ? 4 : 1;
  const vt = width === 4 ? "T4" : "T";
  const ft = width === 4 ? "vec4<f32>" : "f32";
  const binary = isBinary(op);
  const g = grid1d(n / width);
  const expr: Record<ElementwiseOp, string> = {
    add: "x + y",
    mul: "x * y",
    silu: "x / (1.0 + exp(-x))",
    gelu:
      width === 4
        ? "vec4<f32>(gelu_f32(x[0]), gelu_f32(x[1]), gelu_f32(x[2]), gelu_f32(x[3]))"
        : "gelu_f32(x)",
  };
  const code = `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> a: array<${vt}>;
@group(0) @binding(${binary ? 2 : 1}) var<storage, read_write> out: array<${vt}>;
${binary ? `@group(0) @binding(1) var<storage, read> b: array<${vt}>;` : ""}
${op === "gelu" ? GELU_WGSL : ""}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = ${g.index};
  if (i >= ${u(n / width)}) { return; }
  let x = ${ft}(a[i]);
  ${binary ? `let y = ${ft}(b[i]);` : ""}
  out[i] = ${vt}(${expr[op]});
}
`;
  return simpleKernel(ctx, label, code, g.workgroups, (binary ? 3 : 2) * n * bytesOf(variant));
}

/** The vector a thread of an NHWC map moves: four channels where the count allows, else one. */
interface ChannelVector {
  /** Vectors per pixel. */
  readonly cv: number;
  /** The storage vector type and its f32 counterpart. */
  readonly vt: string;
  readonly ft: string;
}

/**
 * WGSL for a map from NHWC x to NHWC out (of shape `out`) with one thread per output vector: the
 * thread finds its output coordinates b, oy, ox and c (c in vectors), then runs `body`, which
 * reads x and writes out[i]. Bindings: x, out.
 */
function nhwcMapKernel(
  storage: KernelVariant["storage"],
  out: UpsampleShape,
  body: (v: ChannelVector) => string,
): { code: string; workgroups: [number, number, number] } {
  const width = out.channels % 4 === 0 ? 4 : 1;
  const v: ChannelVector = {
    cv: out.channels / width,
    vt: width === 4 ? "T4" : "T",
    ft: width === 4 ? "vec4<f32>" : "f32",
  };
  const vectors = out.batch * out.height * out.width * v.cv;
  const g = grid1d(vectors);
  const code = `${storagePreamble(storage)}
@group(0) @binding(0) var<storage, read> x: array<${v.vt}>;
@group(0) @binding(1) var<storage, read_write> out: array<${v.vt}>;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = ${g.index};
  if (i >= ${u(vectors)}) { return; }
  let c = i % ${u(v.cv)};
  let pixel = i / ${u(v.cv)};
  let ox = pixel % ${u(out.width)};
  let rest = pixel / ${u(out.width)};
  let oy = rest % ${u(out.height)};
  let b = rest / ${u(out.height)};
  ${body(v)}
}
`;
  return { code, workgroups: g.workgroups };
}

export interface UpsampleShape {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
}

/**
 * Nearest 2x upsampling of an NHWC map. Bindings: x, out. A copy of bits whatever the storage
 * type: each thread reads one word vector of an input pixel once (16 bytes where a pixel's bytes
 * allow, else 4) and writes it to the four output pixels of its 2x2 block, instead of one thread
 * per output vector reading its source again.
 */
export async function prepareUpsample2x(
  ctx: GpuContext,
  variant: KernelVariant,
  s: UpsampleShape,
): Promise<SimpleKernel> {
  checkPositiveSizes("upsample", { ...s });
  const label = `upsample2x ${s.batch}x${s.height}x${s.width}x${s.channels} ${variant.storage}`;
  const outSize = s.batch * 4 * s.height * s.width * s.channels;
  ctx.checkSize(outSize, variant.storage, label);
  const bytes = (outSize + outSize / 4) * bytesOf(variant);
  const pixelBytes = s.channels * bytesOf(variant);
  // A pixel's bytes are whole 4-byte words except for an odd channel count in f16.
  if (pixelBytes % 4 !== 0) {
    const { code, workgroups } = nhwcMapKernel(
      variant.storage,
      { batch: s.batch, height: 2 * s.height, width: 2 * s.width, channels: s.channels },
      ({ cv }) =>
        `out[i] = x[((b * ${u(s.height)} + oy / 2u) * ${u(s.width)} + ox / 2u) * ${u(cv)} + c];`,
    );
    return simpleKernel(ctx, label, code, workgroups, bytes);
  }
  const wide = pixelBytes % 16 === 0;
  const word = wide ? "vec4<u32>" : "u32";
  const wv = pixelBytes / (wide ? 16 : 4); // word vectors per pixel
  const vectors = s.batch * s.height * s.width * wv;
  const g = grid1d(vectors);
  const rowOut = 2 * s.width * wv; // word vectors in an output row
  const code = `@group(0) @binding(0) var<storage, read> x: array<${word}>;
@group(0) @binding(1) var<storage, read_write> out: array<${word}>;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = ${g.index};
  if (i >= ${u(vectors)}) { return; }
  let value = x[i];
  let c = i % ${u(wv)};
  let pixel = i / ${u(wv)};
  let px = pixel % ${u(s.width)};
  let rest = pixel / ${u(s.width)};
  let py = rest % ${u(s.height)};
  let b = rest / ${u(s.height)};
  let top = ((b * ${u(2 * s.height)} + 2u * py) * ${u(2 * s.width)} + 2u * px) * ${u(wv)} + c;
  out[top] = value;
  out[top + ${u(wv)}] = value;
  out[top + ${u(rowOut)}] = value;
  out[top + ${u(rowOut + wv)}] = value;
}
`;
  return simpleKernel(ctx, label, code, g.workgroups, bytes);
}

/** The frequencies of the sinusoidal embedding, in float32 as the UNet builder computes them. */
export function timestepFrequencies(dim: number, freqShift: number): number[] {
  const half = Math.floor(dim / 2);
  const logMax = Math.fround(-Math.log(10000));
  return Array.from({ length: half }, (_, i) =>
    Math.fround(Math.exp(Math.fround(Math.fround(logMax * i) / (half - freqShift)))),
  );
}

/** Cody-Waite split of 2 pi: C1 has 8 significant bits (k C1 is exact for k < 2^16). */
export const TWO_PI_HI = 6.28125;
export const TWO_PI_LO = Math.fround(2 * Math.PI - TWO_PI_HI);

/**
 * The timestep embedding. Bindings: t (float32 whatever the storage type), out (T). Arguments are
 * reduced to [-pi, pi] before sin/cos (WGSL bounds their error only there).
 */
export async function prepareTimestepEmbedding(
  ctx: GpuContext,
  variant: KernelVariant,
  count: number,
  dim: number,
  flipSinToCos: boolean,
  freqShift: number,
): Promise<SimpleKernel> {
  checkPositiveSizes("timestep embedding", { count, dim });
  const half = Math.floor(dim / 2);
  if (half < 1 || half - freqShift <= 0)
    throw new Error(`timestep embedding: dim ${dim} is too small for frequency shift ${freqShift}`);
  const label = `timestep ${count}x${dim} ${flipSinToCos ? "cos,sin" : "sin,cos"} shift ${freqShift} ${variant.storage}`;
  const freqs = timestepFrequencies(dim, freqShift);
  const g = grid1d(count * dim);
  const code = `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
const FREQS = array<f32, ${half}>(${freqs.map(f32Literal).join(", ")});
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = ${g.index};
  if (i >= ${u(count * dim)}) { return; }
  let n = i / ${u(dim)};
  let col = i % ${u(dim)};
  if (col >= ${u(2 * half)}) { out[i] = T(0.0); return; }
  let arg = t[n] * FREQS[col % ${u(half)}];
  let k = round(arg * ${f32Literal(1 / (2 * Math.PI))});
  let r = (arg - k * ${f32Literal(TWO_PI_HI)}) - k * ${f32Literal(TWO_PI_LO)};
  let first = col < ${u(half)};
  out[i] = T(select(sin(r), cos(r), first == ${flipSinToCos}));
}
`;
  return simpleKernel(ctx, label, code, g.workgroups, count * 4 + count * dim * bytesOf(variant));
}

export interface AvgPoolShape {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly factor: number;
}

/** ToDo's average pooling of K or V (token layout). Bindings: x, out. */
export async function prepareAvgPool(
  ctx: GpuContext,
  variant: KernelVariant,
  s: AvgPoolShape,
): Promise<SimpleKernel> {
  checkPositiveSizes("avgpool", { ...s });
  const label = `avgpool ${s.batch}x${s.height}x${s.width}x${s.channels}/${s.factor} ${variant.storage}`;
  if (s.factor > Math.min(s.height, s.width))
    throw new Error(`${label}: factor ${s.factor} leaves no token`);
  const oh = Math.floor(s.height / s.factor);
  const ow = Math.floor(s.width / s.factor);
  const outSize = s.batch * oh * ow * s.channels;
  const f = s.factor;
  const { code, workgroups } = nhwcMapKernel(
    variant.storage,
    { batch: s.batch, height: oh, width: ow, channels: s.channels },
    ({ cv, vt, ft }) => `var sum = ${ft}();
  for (var dy = 0u; dy < ${u(f)}; dy++) {
    for (var dx = 0u; dx < ${u(f)}; dx++) {
      sum += ${ft}(x[((b * ${u(s.height)} + oy * ${u(f)} + dy) * ${u(s.width)} + ox * ${u(f)} + dx) * ${u(cv)} + c]);
    }
  }
  out[i] = ${vt}(sum * ${(1 / (f * f)).toPrecision(9)});`,
  );
  const inRead = s.batch * oh * ow * f * f * s.channels;
  return simpleKernel(ctx, label, code, workgroups, (inRead + outSize) * bytesOf(variant));
}

/** Dispatches one simple kernel into a new output tensor of `shape`. */
export function runSimple(
  ctx: GpuContext,
  kernel: SimpleKernel,
  inputs: readonly GpuTensor[],
  shape: readonly number[],
  storage: KernelVariant["storage"],
): GpuTensor {
  const out = ctx.allocate(shape, storage, kernel.label);
  ctx.dispatch([kernel.launch([...inputs.map((t) => t.buffer), out.buffer])]);
  return out;
}
