/**
 * Group norm (optionally with a fused SiLU) and layer norm.
 *
 * Group norm, NHWC: x (B, HW, C), gamma and beta (C), C channels in G groups of C/G consecutive
 * channels; out (B, HW, C) = silu?((x - mean_g) / sqrt(var_g + eps) * gamma + beta), the
 * statistics over the HW x C/G values of each (batch entry, group). Three launches, so that a
 * large map is spread over the whole card:
 *   1. partial sums: workgroups own a block of 64 channel vectors and a slice of the rows
 *      (enough slices for about a thousand workgroups); each thread sums x and x^2 of its
 *      channels over its rows (coalesced rows of C) into f32 partials (B, slices, C, 2);
 *   2. statistics: one workgroup per (batch entry, group) adds the partials of its channels and
 *      writes mean and 1/sqrt(var + eps) (B, G, 2) in f32;
 *   3. apply: one thread per 4 values, the normalisation, the affine map and SiLU.
 * x is read twice and written once: 3 x its size in memory traffic.
 * Layer norm: x (rows, C) -> (x - mean) / sqrt(var + eps) * gamma + beta over each row; 32
 * threads per row and 8 rows per workgroup, four channels per load where C allows, the row held
 * in registers, mean first and then the variance of the deviations (two passes over registers,
 * no cancellation).
 */
import { expectTensor, type GpuContext, type GpuTensor, type KernelLaunch } from "../context.js";
import type { KernelVariant } from "../variants.js";
import { checkPositiveSizes, f32Literal, storagePreamble, u32Literal as u } from "../wgsl.js";
import { grid1d, WORKGROUP } from "./elementwise.js";

export interface GroupNormShape {
  readonly batch: number;
  /** Spatial positions (H W). */
  readonly pixels: number;
  readonly channels: number;
  readonly groups: number;
  readonly eps: number;
  readonly silu: boolean;
}

const SILU_WGSL = "fn silu(x: f32) -> f32 { return x / (1.0 + exp(-x)); }";
const PARTIAL_COLUMNS = 64;
const TARGET_WORKGROUPS = 1024;

export interface GroupNormKernel {
  readonly label: string;
  readonly shape: GroupNormShape;
  readonly variant: KernelVariant;
  readonly slices: number;
  /** Bytes moved by one call (x twice, out once). */
  readonly bytes: number;
  /** Launches on (x, gamma, beta, out, partials, stats). */
  launches(buffers: {
    x: GPUBuffer;
    gamma: GPUBuffer;
    beta: GPUBuffer;
    out: GPUBuffer;
    partials: GPUBuffer;
    stats: GPUBuffer;
  }): KernelLaunch[];
}

export async function prepareGroupNorm(
  ctx: GpuContext,
  variant: KernelVariant,
  s: GroupNormShape,
): Promise<GroupNormKernel> {
  checkPositiveSizes("group norm", {
    batch: s.batch,
    pixels: s.pixels,
    channels: s.channels,
    groups: s.groups,
  });
  if (s.channels % s.groups !== 0)
    throw new Error(`group norm: ${s.channels} channels do not split into ${s.groups} groups`);
  if (!(s.eps > 0)) throw new Error(`group norm: eps must be positive, got ${s.eps}`);
  const label = `groupnorm ${s.batch}x${s.pixels}x${s.channels}/${s.groups}${s.silu ? " silu" : ""} ${variant.storage}`;
  ctx.checkSize(s.batch * s.pixels * s.channels, variant.storage, label);
  const width = s.channels % 4 === 0 ? 4 : 1;
  const vt = width === 4 ? "T4" : "T";
  const ft = width === 4 ? "vec4<f32>" : "f32";
  const cv = s.channels / width;
  const colBlocks = Math.ceil(cv / PARTIAL_COLUMNS);
  const slices = Math.max(
    1,
    Math.min(s.pixels, Math.ceil(TARGET_WORKGROUPS / (colBlocks * s.batch))),
  );
  const rowsPerSlice = Math.ceil(s.pixels / slices);
  const cpg = s.channels / s.groups;
  const partialCode = `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> x: array<${vt}>;
@group(0) @binding(1) var<storage, read_write> partials: array<${ft}>;
@compute @workgroup_size(${PARTIAL_COLUMNS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let col = wg.x * ${u(PARTIAL_COLUMNS)} + local;
  let slice = wg.y;
  let b = wg.z;
  if (col >= ${u(cv)}) { return; }
  var sum = ${ft}();
  var sumsq = ${ft}();
  let r0 = slice * ${u(rowsPerSlice)};
  let r1 = min(r0 + ${u(rowsPerSlice)}, ${u(s.pixels)});
  for (var r = r0; r < r1; r++) {
    let value = ${ft}(x[(b * ${u(s.pixels)} + r) * ${u(cv)} + col]);
    sum += value;
    sumsq += value * value;
  }
  let at = ((b * ${u(slices)} + slice) * ${u(cv)} + col) * 2u;
  partials[at] = sum;
  partials[at + 1u] = sumsq;
}
`;
  // Partials hold vectors of `width` channels: channel ch is component ch % width of vector ch / width.
  const statsCode = `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
var<workgroup> sums: array<f32, 64>;
var<workgroup> squares: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = wg.x;
  let b = wg.y;
  var sum = 0.0;
  var sumsq = 0.0;
  for (var e = local; e < ${u(slices * cpg)}; e += 64u) {
    let slice = e / ${u(cpg)};
    let ch = g * ${u(cpg)} + e % ${u(cpg)};
    let at = ((b * ${u(slices)} + slice) * ${u(cv)} + ch / ${u(width)}) * ${u(2 * width)} + ch % ${u(width)};
    sum += partials[at];
    sumsq += partials[at + ${u(width)}];
  }
  sums[local] = sum;
  squares[local] = sumsq;
  for (var step = 32u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (local < step) {
      sums[local] += sums[local + step];
      squares[local] += squares[local + step];
    }
  }
  if (local == 0u) {
    let n = ${f32Literal(s.pixels * cpg)};
    let mean = sums[0] / n;
    let variance = max(squares[0] / n - mean * mean, 0.0);
    stats[(b * ${u(s.groups)} + g) * 2u] = mean;
    stats[(b * ${u(s.groups)} + g) * 2u + 1u] = inverseSqrt(variance + ${f32Literal(s.eps)});
  }
}
`;
  const total = s.batch * s.pixels * cv;
  const g = grid1d(total);
  const component = (q: number) => {
    const ch = width === 4 ? `c * 4u + ${u(q)}` : "c";
    return `{
    let ch = ${ch};
    let at = (b * ${u(s.groups)} + ch / ${u(cpg)}) * 2u;
    let y = (${width === 4 ? `value[${q}]` : "value"} - stats[at]) * stats[at + 1u] * f32(gamma[ch]) + f32(beta[ch]);
    result${width === 4 ? `[${q}]` : ""} = ${s.silu ? "silu(y)" : "y"};
  }`;
  };
  const applyCode = `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> x: array<${vt}>;
@group(0) @binding(1) var<storage, read> gamma: array<T>;
@group(0) @binding(2) var<storage, read> beta: array<T>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<${vt}>;
${SILU_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = ${g.index};
  if (i >= ${u(total)}) { return; }
  let c = i % ${u(cv)};
  let b = i / ${u(s.pixels * cv)};
  let value = ${ft}(x[i]);
  var result = ${ft}();
  ${Array.from({ length: width }, (_, q) => component(q)).join("\n  ")}
  out[i] = ${vt}(result);
}
`;
  const [partial, stats, apply] = await Promise.all([
    ctx.pipeline({ label: `${label} partials`, code: partialCode }),
    ctx.pipeline({ label: `${label} stats`, code: statsCode }),
    ctx.pipeline({ label: `${label} apply`, code: applyCode }),
  ]);
  const bytes = 3 * s.batch * s.pixels * s.channels * (variant.storage === "f16" ? 2 : 4);
  return {
    label,
    shape: s,
    variant,
    slices,
    bytes,
    launches: (bf) => [
      { pipeline: partial, buffers: [bf.x, bf.partials], workgroups: [colBlocks, slices, s.batch] },
      { pipeline: stats, buffers: [bf.partials, bf.stats], workgroups: [s.groups, s.batch, 1] },
      {
        pipeline: apply,
        buffers: [bf.x, bf.gamma, bf.beta, bf.stats, bf.out],
        workgroups: g.workgroups,
      },
    ],
  };
}

/** Runs group norm into a new tensor (B, HW, C); its scratch buffers go back to the pool. */
export function runGroupNorm(
  ctx: GpuContext,
  kernel: GroupNormKernel,
  inputs: { x: GpuTensor; gamma: GpuTensor; beta: GpuTensor },
): GpuTensor {
  const s = kernel.shape;
  const storage = kernel.variant.storage;
  const expect = (t: GpuTensor, n: number, name: string) =>
    expectTensor(kernel.label, t, n, storage, name);
  expect(inputs.x, s.batch * s.pixels * s.channels, "x");
  expect(inputs.gamma, s.channels, "gamma");
  expect(inputs.beta, s.channels, "beta");
  const out = ctx.allocate([s.batch, s.pixels, s.channels], storage, "groupnorm output");
  const partials = ctx.allocate(
    [s.batch, kernel.slices, s.channels, 2],
    "f32",
    "groupnorm partials",
  );
  const stats = ctx.allocate([s.batch, s.groups, 2], "f32", "groupnorm stats");
  ctx.dispatch(
    kernel.launches({
      x: inputs.x.buffer,
      gamma: inputs.gamma.buffer,
      beta: inputs.beta.buffer,
      out: out.buffer,
      partials: partials.buffer,
      stats: stats.buffer,
    }),
  );
  ctx.release(partials);
  ctx.release(stats);
  return out;
}

export interface LayerNormShape {
  readonly rows: number;
  readonly channels: number;
  readonly eps: number;
}

/** Layer norm: threads sharing a row, and rows per workgroup. */
const LN_ROW_THREADS = 32;
const LN_ROWS = 8;

export interface LayerNormKernel {
  readonly label: string;
  readonly shape: LayerNormShape;
  readonly variant: KernelVariant;
  readonly bytes: number;
  /** Launch on (x, gamma, beta, out). */
  launch(buffers: readonly GPUBuffer[]): KernelLaunch;
}

export async function prepareLayerNorm(
  ctx: GpuContext,
  variant: KernelVariant,
  s: LayerNormShape,
): Promise<LayerNormKernel> {
  checkPositiveSizes("layer norm", { rows: s.rows, channels: s.channels });
  if (!(s.eps > 0)) throw new Error(`layer norm: eps must be positive, got ${s.eps}`);
  const label = `layernorm ${s.rows}x${s.channels} ${variant.storage}`;
  ctx.checkSize(s.rows * s.channels, variant.storage, label);
  const width = s.channels % 4 === 0 ? 4 : 1;
  const vt = width === 4 ? "T4" : "T";
  const ft = width === 4 ? "vec4<f32>" : "f32";
  const cv = s.channels / width;
  const per = Math.ceil(cv / LN_ROW_THREADS);
  const all = (name: string) => (width === 4 ? `dot(${name}, vec4<f32>(1.0))` : name);
  // A row's 32 partial sums folded in workgroup memory: every thread reaches every barrier
  // (rows past the end carry zeros), so the control flow stays uniform.
  const reduce = (name: string) => `
  partial[local] = ${name};
  for (var step = ${u(LN_ROW_THREADS / 2)}; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (lane < step) { partial[local] += partial[local + step]; }
  }
  workgroupBarrier();
  let ${name}_all = partial[local - lane];
  workgroupBarrier();`;
  const groups = Math.ceil(s.rows / LN_ROWS);
  const maxX = 32768;
  const gx = Math.min(groups, maxX);
  const code = `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> x: array<${vt}>;
@group(0) @binding(1) var<storage, read> gamma: array<${vt}>;
@group(0) @binding(2) var<storage, read> beta: array<${vt}>;
@group(0) @binding(3) var<storage, read_write> out: array<${vt}>;
var<workgroup> partial: array<f32, ${LN_ROWS * LN_ROW_THREADS}>;
@compute @workgroup_size(${LN_ROWS * LN_ROW_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let lane = local % ${u(LN_ROW_THREADS)};
  let row = (wg.y * ${u(gx)} + wg.x) * ${u(LN_ROWS)} + local / ${u(LN_ROW_THREADS)};
  let in_rows = row < ${u(s.rows)};
  let base = row * ${u(cv)};
  var values: array<${ft}, ${per}>;
  var sum = ${ft}();
  for (var j = 0u; j < ${u(per)}; j++) {
    let c = lane + j * ${u(LN_ROW_THREADS)};
    if (in_rows && c < ${u(cv)}) { values[j] = ${ft}(x[base + c]); sum += values[j]; }
  }
  var total = ${all("sum")};
  ${reduce("total")}
  let mean = total_all / ${f32Literal(s.channels)};
  var dev2 = ${ft}();
  for (var j = 0u; j < ${u(per)}; j++) {
    let c = lane + j * ${u(LN_ROW_THREADS)};
    if (in_rows && c < ${u(cv)}) { let dev = values[j] - mean; dev2 += dev * dev; }
  }
  var squares = ${all("dev2")};
  ${reduce("squares")}
  let rstd = inverseSqrt(squares_all / ${f32Literal(s.channels)} + ${f32Literal(s.eps)});
  for (var j = 0u; j < ${u(per)}; j++) {
    let c = lane + j * ${u(LN_ROW_THREADS)};
    if (in_rows && c < ${u(cv)}) { out[base + c] = ${vt}((values[j] - mean) * rstd * ${ft}(gamma[c]) + ${ft}(beta[c])); }
  }
}
`;
  const pipeline = await ctx.pipeline({ label, code });
  const workgroups: [number, number, number] = [gx, Math.ceil(groups / gx), 1];
  return {
    label,
    shape: s,
    variant,
    bytes: 2 * s.rows * s.channels * (variant.storage === "f16" ? 2 : 4),
    launch: (buffers) => ({ pipeline, buffers, workgroups }),
  };
}
