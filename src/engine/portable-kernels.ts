/**
 * Simple portable WGSL kernels (f32 or f16 storage, arithmetic in f32) for the operators that have no fused kernel in
 * src/gpu yet: broadcasting elementwise ops, strided copies (Transpose, Slice, Split, Concat,
 * Expand), Gather, nearest Resize, reductions over one axis, MatMul, direct convolution,
 * instance and layer normalisation, softmax and multi-head attention. One thread per output
 * element (per row for the normalisations, per query for attention); every kernel reads its
 * integer parameters from a small storage buffer `p`, floats bit-cast into it.
 *
 * Shape contracts (row-major):
 *   copy:      src -> dst, dst[dOff + sum c_d dS_d] = src[sOff + sum c_d sS_d] over `shape`
 *   concat:    first, second -> dst, contiguous, along one axis
 *   binary:    a, b broadcast to `shape` -> out (strides 0 along broadcast axes)
 *   matmul:    a (batch.., M, K), b (batch.., K, N) -> out (batch.., M, N)
 *   conv:      x (N, C, H, W), w (O, C, KH, KW), bias (O) -> out (N, O, OH, OW)
 *   norm:      rows of `length` elements at stride `inner`: (x - mean) / sqrt(var + eps)
 *   attention: q (B, Sq, H D), k (B, Sk, H D), v (B, Sk, H Dv) [, bias (B|1, H|1, Sq, Sk)]
 *              -> out (B, Sq, H Dv)
 */

export const WORKGROUP = 256;
/** Workgroups along x before the grid wraps into y (under every adapter's 65535). */
const GROUPS_X = 32768;

export function grid(items: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(items / WORKGROUP));
  const x = Math.min(groups, GROUPS_X);
  return [x, Math.ceil(groups / x), 1];
}

const HEADER = `
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let i = i32((wg.y * ${GROUPS_X}u + wg.x) * ${WORKGROUP}u + local);`;

type BindingKind = "in" | "out" | "ints" | "floatsIn" | "floatsOut";
const BINDING_TYPES: Readonly<Record<BindingKind, string>> = Object.freeze({
  in: "read> {}: array<T>",
  out: "read_write> {}: array<T>",
  ints: "read> {}: array<i32>",
  floatsIn: "read> {}: array<f32>",
  floatsOut: "read_write> {}: array<f32>",
});

/**
 * Element type of the float tensors: `T` in every kernel. Loads are widened to f32 (`f32(x)` is
 * an identity in f32 storage) and results narrowed to T, so sums, norms and exponentials run in
 * f32 either way.
 */
export type Storage = "f32" | "f16";

function typeHeader(storage: Storage): string {
  return storage === "f16" ? "enable f16;\nalias T = f16;" : "alias T = f32;";
}

/**
 * Storage bindings 0, 1, ... in the order given (a `false` entry, an optional input left out, is
 * skipped): `in` f32 inputs, `out` the f32 result, `ints` i32 inputs (indices, the parameters).
 */
function bindings(
  storage: Storage,
  ...vars: readonly (readonly [string, BindingKind] | false)[]
): string {
  return `${typeHeader(storage)}\n${vars
    .filter((v) => v !== false)
    .map(
      ([name, kind], i) =>
        `@group(0) @binding(${i}) var<storage, ${BINDING_TYPES[kind].replace("{}", name)};`,
    )
    .join("\n")}`;
}

/**
 * A kernel source made once per argument list: the executor asks for one on every launch, and
 * the same text also keys the pipeline cache, so it is not rebuilt a thousand times a call.
 */
function memoised<A extends readonly (string | boolean)[]>(
  make: (...args: A) => string,
): (...args: A) => string {
  const sources = new Map<string, string>();
  return (...args: A) => {
    const key = args.join(",");
    let code = sources.get(key);
    if (code === undefined) {
      code = make(...args);
      sources.set(key, code);
    }
    return code;
  };
}

/** The largest rank the index arithmetic unrolls for. */
export const MAX_RANK = 8;

export const copyKernel = memoised(function copyKernel(storage: Storage, scaled: boolean): string {
  const value = scaled ? `T(f32(src[s]) * bitcast<f32>(p[${4 + 3 * MAX_RANK}]))` : "src[s]";
  return `
${bindings(storage, ["src", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  var rem = i;
  var s = p[3];
  var d = p[2];
  for (var k = p[1] - 1; k >= 0; k--) {
    let c = rem % p[4 + k];
    rem = rem / p[4 + k];
    s += c * p[${4 + MAX_RANK} + k];
    d += c * p[${4 + 2 * MAX_RANK} + k];
  }
  dst[d] = ${value};
}`;
});

/**
 * Concat of two contiguous tensors along one axis into a contiguous output, in one launch (the
 * UNet's skip connections: the decoder's map and the encoder's, along channels). p: count, rank,
 * axis, the first part's extent along the axis, the output's dims, then each part's strides.
 */
export const concatPairKernel = memoised(function concatPairKernel(storage: Storage): string {
  return `
${bindings(storage, ["first", "in"], ["second", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  var rem = i;
  var a = 0;
  var b = 0;
  var inFirst = true;
  for (var k = p[1] - 1; k >= 0; k--) {
    var c = rem % p[4 + k];
    rem = rem / p[4 + k];
    if (k == p[2]) {
      inFirst = c < p[3];
      if (!inFirst) { c -= p[3]; }
    }
    a += c * p[${4 + MAX_RANK} + k];
    b += c * p[${4 + 2 * MAX_RANK} + k];
  }
  if (inFirst) { dst[i] = first[a]; } else { dst[i] = second[b]; }
}`;
});

/**
 * Converts a float tensor between storage types (f16 to f32 or back), element by element: the
 * hand-over between a float16 model's executor and a float32 one's on the same device (the
 * UNet's prediction into the sampler step, the next sample back). p: count.
 */
export const convertStorageKernel = memoised(function convertStorageKernel(
  from: Storage,
  to: Storage,
): string {
  const half = from === "f16" || to === "f16";
  return `${half ? "enable f16;\n" : ""}@group(0) @binding(0) var<storage, read> src: array<${from}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${to}>;
@group(0) @binding(2) var<storage, read> p: array<i32>;
${HEADER}
  if (i >= p[0]) { return; }
  dst[i] = ${to}(src[i]);
}`;
});

/** Fills `dst` with one value (bits in p[1]): Pad's border. p: count, value bits. */
export const fillKernel = memoised(function fillKernel(storage: Storage): string {
  return `
${bindings(storage, ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  dst[i] = T(bitcast<f32>(p[1]));
}`;
});

/** WGSL for erf: Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), enough for float32 GELU. */
const ERF = `
fn erf_approx(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
  return select(-y, y, x >= 0.0);
}`;

export const UNARY_EXPRESSIONS: Readonly<Record<string, string>> = {
  Sigmoid: "1.0 / (1.0 + exp(-x))",
  Erf: "erf_approx(x)",
  Sin: "sin(x)",
  Cos: "cos(x)",
  Neg: "-x",
  Sqrt: "sqrt(x)",
  Exp: "exp(x)",
  Floor: "floor(x)",
  Abs: "abs(x)",
  Identity: "x",
  Cast: "x",
  Clip: "clamp(x, bitcast<f32>(p[1]), bitcast<f32>(p[2]))",
};

export const unaryKernel = memoised(function unaryKernel(op: string, storage: Storage): string {
  return `${bindings(storage, ["src", "in"], ["dst", "out"], ["p", "ints"])}
${op === "Erf" ? ERF : ""}
${HEADER}
  if (i >= p[0]) { return; }
  let x = f32(src[i]);
  dst[i] = T(${UNARY_EXPRESSIONS[op]});
}`;
});

export const BINARY_EXPRESSIONS: Readonly<Record<string, string>> = {
  Add: "x + y",
  Sub: "x - y",
  Mul: "x * y",
  Div: "x / y",
  Pow: "pow(x, y)",
  Max: "max(x, y)",
  Min: "min(x, y)",
};

export const binaryKernel = memoised(function binaryKernel(op: string, storage: Storage): string {
  return `
${bindings(storage, ["a", "in"], ["b", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  var rem = i;
  var ia = 0;
  var ib = 0;
  for (var k = p[1] - 1; k >= 0; k--) {
    let c = rem % p[2 + k];
    rem = rem / p[2 + k];
    ia += c * p[${2 + MAX_RANK} + k];
    ib += c * p[${2 + 2 * MAX_RANK} + k];
  }
  let x = f32(a[ia]);
  let y = f32(b[ib]);
  dst[i] = T(${BINARY_EXPRESSIONS[op]});
}`;
});

/** Gather along an axis: out (outer, count, inner) = x (outer, length, inner) at indices. */
export const gatherKernel = memoised(function gatherKernel(storage: Storage): string {
  return `
${bindings(storage, ["src", "in"], ["indices", "ints"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  let inner = p[3];
  let count = p[2];
  let e = i % inner;
  let j = (i / inner) % count;
  let o = i / (inner * count);
  dst[i] = src[(o * p[1] + indices[j]) * inner + e];
}`;
});

/** Nearest resize, asymmetric coordinates, floor rounding: src = floor(dst / scale) per axis. */
export const resizeNearestKernel = memoised(function resizeNearestKernel(storage: Storage): string {
  return `
${bindings(storage, ["src", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  var rem = i;
  var s = 0;
  var stride = 1;
  for (var k = p[1] - 1; k >= 0; k--) {
    let c = rem % p[2 + k];
    rem = rem / p[2 + k];
    let inDim = p[${2 + MAX_RANK} + k];
    let scale = bitcast<f32>(p[${2 + 2 * MAX_RANK} + k]);
    let ci = min(i32(floor(f32(c) / scale)), inDim - 1);
    s += ci * stride;
    stride *= inDim;
  }
  dst[i] = src[s];
}`;
});

export type ReduceKind = "ReduceMean" | "ReduceMax" | "ReduceSum";

/** Reduction over one axis: x (outer, length, inner) -> out (outer, inner). */
export const reduceKernel = memoised(function reduceKernel(
  kind: ReduceKind,
  storage: Storage,
): string {
  const init = kind === "ReduceMax" ? "-3.4028234e38" : "0.0";
  const step = kind === "ReduceMax" ? "acc = max(acc, v);" : "acc += v;";
  const finish = kind === "ReduceMean" ? "acc / f32(length)" : "acc";
  return `
${bindings(storage, ["src", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  let length = p[1];
  let inner = p[2];
  let o = i / inner;
  let e = i % inner;
  var acc = ${init};
  for (var j = 0; j < length; j++) {
    let v = f32(src[(o * length + j) * inner + e]);
    ${step}
  }
  dst[i] = T(${finish});
}`;
});

/** p: count, M, N, K, batch rank, batch shape[8], a batch strides[8], b batch strides[8]. */
export const matmulKernel = memoised(function matmulKernel(storage: Storage): string {
  return `
${bindings(storage, ["a", "in"], ["b", "in"], ["dst", "out"], ["p", "ints"])}
${HEADER}
  if (i >= p[0]) { return; }
  let M = p[1];
  let N = p[2];
  let K = p[3];
  let n = i % N;
  let m = (i / N) % M;
  var rem = i / (M * N);
  var ia = 0;
  var ib = 0;
  for (var k = p[4] - 1; k >= 0; k--) {
    let c = rem % p[5 + k];
    rem = rem / p[5 + k];
    ia += c * p[${5 + MAX_RANK} + k];
    ib += c * p[${5 + 2 * MAX_RANK} + k];
  }
  var acc = 0.0;
  for (var k = 0; k < K; k++) {
    acc += f32(a[ia + m * K + k]) * f32(b[ib + k * N + n]);
  }
  dst[i] = T(acc);
}`;
});

/** p: count, C, H, W, O, OH, OW, KH, KW, strideY, strideX, padTop, padLeft, dilY, dilX. */
export const convKernel = memoised(function convKernel(bias: boolean, storage: Storage): string {
  return `
${bindings(storage, ["x", "in"], ["w", "in"], ["dst", "out"], ["p", "ints"], bias && ["bias", "in"])}
${HEADER}
  if (i >= p[0]) { return; }
  let C = p[1]; let H = p[2]; let W = p[3]; let O = p[4]; let OH = p[5]; let OW = p[6];
  let KH = p[7]; let KW = p[8];
  let ox = i % OW;
  let oy = (i / OW) % OH;
  let o = (i / (OW * OH)) % O;
  let n = i / (OW * OH * O);
  var acc = ${bias ? "f32(bias[o])" : "0.0"};
  for (var c = 0; c < C; c++) {
    for (var ky = 0; ky < KH; ky++) {
      let y = oy * p[9] - p[11] + ky * p[13];
      if (y < 0 || y >= H) { continue; }
      for (var kx = 0; kx < KW; kx++) {
        let xx = ox * p[10] - p[12] + kx * p[14];
        if (xx < 0 || xx >= W) { continue; }
        acc += f32(x[((n * C + c) * H + y) * W + xx]) * f32(w[((o * C + c) * KH + ky) * KW + kx]);
      }
    }
  }
  dst[i] = T(acc);
}`;
});

/** `reduce_sum(local, v)`: the workgroup's sum of one f32 per thread, in every thread. */
const REDUCE_SUM = `var<workgroup> partial: array<f32, ${WORKGROUP}>;

fn reduce_sum(local: u32, v: f32) -> f32 {
  partial[local] = v;
  workgroupBarrier();
  for (var s = ${WORKGROUP / 2}u; s > 0u; s = s >> 1u) {
    if (local < s) { partial[local] += partial[local + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}`;

/**
 * For the kernels that run a workgroup per row of `x`: reduce_sum, and a row's mean and
 * 1 / sqrt(variance + eps), the row's `length` values `stride` apart from `base`. Two passes over
 * the row (mean, then centred squares) keep float32 variance accurate.
 */
const ROW_STATS = `${REDUCE_SUM}

fn row_stats(local: u32, base: i32, length: i32, stride: i32, eps: f32) -> vec2<f32> {
  var s = 0.0;
  for (var j = i32(local); j < length; j += ${WORKGROUP}) { s += f32(x[base + j * stride]); }
  let mean = reduce_sum(local, s) / f32(length);
  var q = 0.0;
  for (var j = i32(local); j < length; j += ${WORKGROUP}) {
    let d = f32(x[base + j * stride]) - mean;
    q += d * d;
  }
  return vec2<f32>(mean, 1.0 / sqrt(reduce_sum(local, q) / f32(length) + eps));
}`;

/**
 * Normalisation of rows: p: rows, length, inner, channels, eps bits. Row r covers elements
 * (r / inner) * length * inner + j * inner + r % inner; scale and bias are indexed by
 * `(r / inner) % channels` for instance norm (inner = 1) or by j for layer norm.
 */
export const normKernel = memoised(function normKernel(
  kind: "instance" | "layer",
  bias: boolean,
  storage: Storage,
): string {
  const affine =
    kind === "instance"
      ? `let ch = row % p[3]; let sc = f32(scale[ch]); let sh = ${bias ? "f32(shift[ch])" : "0.0"};`
      : "";
  const apply =
    kind === "instance"
      ? "(v - mean) * inv * sc + sh"
      : `(v - mean) * inv * f32(scale[j])${bias ? " + f32(shift[j])" : ""}`;
  return `
${bindings(storage, ["x", "in"], ["scale", "in"], ["dst", "out"], ["p", "ints"], bias && ["shift", "in"])}
${ROW_STATS}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let row = i32(wg.y * ${GROUPS_X}u + wg.x);
  if (row >= p[0]) { return; }
  let length = p[1];
  let inner = p[2];
  let base = (row / inner) * length * inner + row % inner;
  let stats = row_stats(local, base, length, inner, bitcast<f32>(p[4]));
  let mean = stats.x;
  let inv = stats.y;
  ${affine}
  for (var j = i32(local); j < length; j += ${WORKGROUP}) {
    let v = f32(x[base + j * inner]);
    dst[base + j * inner] = T(${apply});
  }
}`;
});

/**
 * `group_norm_range`: a group norm row's values [begin, end), a workgroup's threads in turn,
 * normalised with the row's statistics, scaled and shifted per channel, and SiLU'd if asked.
 */
function groupNormRange(silu: boolean): string {
  return `fn group_norm_range(base: i32, first: i32, pixels: i32, begin: i32, end: i32, mean: f32, inv: f32) {
  for (var j = begin; j < end; j += ${WORKGROUP}) {
    let c = first + j / pixels;
    let y = (f32(x[base + j]) - mean) * inv * f32(gamma[c]) + f32(beta[c]);
    dst[base + j] = T(${silu ? "y / (1.0 + exp(-y))" : "y"});
  }
}`;
}

/**
 * Values of a group norm row the channels-last form transposes at a time through workgroup
 * memory: 8 KiB of f32 with the reduction's 1 KiB, well inside the 16 KiB every WebGPU adapter
 * gives a workgroup.
 */
export const GROUP_NORM_TILE = 2048;

/**
 * `group_norm_pixels`: the same for a row's pixels [begin, end) (the same for the whole
 * workgroup), written channels-last: dst is (B, H W, C), where a pixel's C/G channels of the
 * group lie side by side. The pixels go a tile at a time through workgroup memory: the threads
 * read the tile one channel plane after another (consecutive threads, consecutive pixels) and
 * write it pixel after pixel (consecutive threads, consecutive channels of a pixel), so both the
 * loads and the stores of a subgroup touch a few runs of memory rather than one address per thread.
 */
function groupNormPixels(silu: boolean): string {
  return `var<workgroup> gn_tile: array<f32, ${GROUP_NORM_TILE}>;

fn group_norm_pixels(local: i32, row: i32, groups: i32, pixels: i32, cpg: i32, begin: i32, end: i32, mean: f32, inv: f32) {
  let first = (row % groups) * cpg;
  let channels = groups * cpg;
  let image = row / groups;
  let src = row * cpg * pixels;
  let tilePixels = ${GROUP_NORM_TILE} / cpg;
  for (var start = begin; start < end; start += tilePixels) {
    let count = min(tilePixels, end - start);
    let values = count * cpg;
    for (var e = local; e < values; e += ${WORKGROUP}) {
      let k = e / count;
      let c = first + k;
      let y = (f32(x[src + k * pixels + start + e % count]) - mean) * inv * f32(gamma[c]) + f32(beta[c]);
      gn_tile[(e % count) * cpg + k] = ${silu ? "y / (1.0 + exp(-y))" : "y"};
    }
    workgroupBarrier();
    let at = (image * pixels + start) * channels + first;
    for (var e = local; e < values; e += ${WORKGROUP}) {
      dst[at + (e / cpg) * channels + e % cpg] = T(gn_tile[e]);
    }
    workgroupBarrier();
  }
}`;
}

/**
 * Group norm (Wu and He, 2018) of NCHW data with its affine map and optional SiLU, one workgroup
 * per (batch entry, group): a group's C/G channels of H W values are one contiguous row of
 * `length`, so the statistics are a row's, and each value's channel is its row's first plus its offset / (H W).
 * The result is NCHW, or with `channelsLast` (B, H W, C): what a convolution reading NHWC or a
 * transformer's tokens take, without a transposing copy.
 * gamma and beta: (C). p: rows, length, pixels per channel (H W), groups, eps bits.
 */
export const groupNormKernel = memoised(function groupNormKernel(
  silu: boolean,
  storage: Storage,
  channelsLast: boolean,
): string {
  return `
${bindings(storage, ["x", "in"], ["gamma", "in"], ["beta", "in"], ["dst", "out"], ["p", "ints"])}
${ROW_STATS}
${channelsLast ? groupNormPixels(silu) : groupNormRange(silu)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let row = i32(wg.y * ${GROUPS_X}u + wg.x);
  if (row >= p[0]) { return; }
  let length = p[1];
  let pixels = p[2];
  let base = row * length;
  let stats = row_stats(local, base, length, 1, bitcast<f32>(p[4]));
  ${
    channelsLast
      ? "group_norm_pixels(i32(local), row, p[3], pixels, length / pixels, 0, pixels, stats.x, stats.y);"
      : `let first = (row % p[3]) * (length / pixels);
  group_norm_range(base, first, pixels, i32(local), length, stats.x, stats.y);`
  }
}`;
});

/**
 * Elements of a group norm row one workgroup of the split kernels takes: rows longer than this
 * (a group of a large map: 4 M values per group for the VAE's last level at 1024 px) are split
 * into up to WORKGROUP chunks, so that a map's few rows (B G of them: 32 for one image) keep the
 * whole GPU busy rather than one workgroup per row.
 */
export const GROUP_NORM_CHUNK = 8192;

/** Chunks and chunk length of a group norm row of `length` (1 chunk: the one-kernel form). */
export function groupNormChunks(length: number): { chunks: number; chunkLength: number } {
  const chunks = Math.min(WORKGROUP, Math.ceil(length / GROUP_NORM_CHUNK));
  const chunkLength = Math.ceil(length / chunks);
  return { chunks: Math.ceil(length / chunkLength), chunkLength };
}

/**
 * Split group norm, first launch: each workgroup (chunk, row) writes its chunk's mean and sum of
 * squared deviations from that mean (two passes over the chunk, which the second finds in cache).
 * p: rows, length, chunks, chunk length. part: (rows, chunks, 2) f32.
 */
export const groupNormPartialsKernel = memoised(function groupNormPartialsKernel(
  storage: Storage,
): string {
  return `
${bindings(storage, ["x", "in"], ["part", "floatsOut"], ["p", "ints"])}
${REDUCE_SUM}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let row = i32(wg.y);
  let chunk = i32(wg.x);
  if (row >= p[0] || chunk >= p[2]) { return; }
  let start = chunk * p[3];
  let n = min(p[3], p[1] - start);
  let base = row * p[1] + start;
  var s = 0.0;
  for (var j = i32(local); j < n; j += ${WORKGROUP}) { s += f32(x[base + j]); }
  let mean = reduce_sum(local, s) / f32(n);
  var q = 0.0;
  for (var j = i32(local); j < n; j += ${WORKGROUP}) {
    let d = f32(x[base + j]) - mean;
    q += d * d;
  }
  let m2 = reduce_sum(local, q);
  if (local == 0u) {
    let at = (row * p[2] + chunk) * 2;
    part[at] = mean;
    part[at + 1] = m2;
  }
}`;
});

/**
 * Split group norm, second launch: each workgroup (chunk, row) merges its row's chunk
 * statistics (Chan, Golub and LeVeque 1979: the row's mean from the chunks' weighted means, its
 * squared deviations as each chunk's plus n_c (mean_c - mean)^2), then normalises its chunk with
 * the affine map and optional SiLU, as groupNormKernel does a whole row (and likewise NCHW or
 * channels-last).
 * p: rows, length, pixels per channel, groups, eps bits, chunks, chunk length.
 */
export const groupNormApplyKernel = memoised(function groupNormApplyKernel(
  silu: boolean,
  storage: Storage,
  channelsLast: boolean,
): string {
  return `
${bindings(storage, ["x", "in"], ["gamma", "in"], ["beta", "in"], ["part", "floatsIn"], ["dst", "out"], ["p", "ints"])}
${REDUCE_SUM}
${channelsLast ? groupNormPixels(silu) : groupNormRange(silu)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let row = i32(wg.y);
  let chunk = i32(wg.x);
  let chunks = p[5];
  let chunkLength = p[6];
  if (row >= p[0] || chunk >= chunks) { return; }
  let length = p[1];
  let t = i32(local);
  var weighted = 0.0;
  var count = 0.0;
  var chunkMean = 0.0;
  if (t < chunks) {
    count = f32(min(chunkLength, length - t * chunkLength));
    chunkMean = part[(row * chunks + t) * 2];
    weighted = count * chunkMean;
  }
  let mean = reduce_sum(local, weighted) / f32(length);
  var q = 0.0;
  if (t < chunks) {
    let d = chunkMean - mean;
    q = part[(row * chunks + t) * 2 + 1] + count * d * d;
  }
  let inv = 1.0 / sqrt(reduce_sum(local, q) / f32(length) + bitcast<f32>(p[4]));
  let pixels = p[2];
  ${
    channelsLast
      ? `// Channels-last: chunk c normalises the c-th share of the row's pixels, every channel of each.
  let share = (pixels + chunks - 1) / chunks;
  let start = chunk * share;
  group_norm_pixels(t, row, p[3], pixels, length / pixels, start, min(start + share, pixels), mean, inv);`
      : `let first = (row % p[3]) * (length / pixels);
  let start = chunk * chunkLength;
  group_norm_range(row * length, first, pixels, start + t, min(start + chunkLength, length), mean, inv);`
  }
}`;
});

/**
 * softmax(scale x) over rows of `length` contiguous elements, one workgroup per row: each thread
 * keeps a running maximum and a sum of exponentials rescaled to it over its strided share of the
 * row (the online softmax's normaliser: Milakov and Gimelshein 2018), the pairs are merged in a
 * tree, and a second pass writes exp(scale x - max) / sum. Reads are coalesced across the
 * workgroup. Dispatched as a grid of rows (`x` wraps into `y` past GROUPS_X).
 * p: rows, length, scale bits.
 */
export const softmaxKernel = memoised(function softmaxKernel(storage: Storage): string {
  return `
${bindings(storage, ["x", "in"], ["dst", "out"], ["p", "ints"])}
var<workgroup> partialMax: array<f32, ${WORKGROUP}>;
var<workgroup> partialSum: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let row = i32(wg.y * ${GROUPS_X}u + wg.x);
  if (row >= p[0]) { return; }
  let L = p[1];
  let scale = bitcast<f32>(p[2]);
  let base = row * L;
  var m = -3.4028234e38;
  var s = 0.0;
  for (var j = i32(local); j < L; j += ${WORKGROUP}) {
    let v = scale * f32(x[base + j]);
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  partialMax[local] = m;
  partialSum[local] = s;
  workgroupBarrier();
  for (var k = ${WORKGROUP / 2}u; k > 0u; k = k >> 1u) {
    if (local < k) {
      let m1 = partialMax[local];
      let m2 = partialMax[local + k];
      let top = max(m1, m2);
      partialSum[local] = partialSum[local] * exp(m1 - top) + partialSum[local + k] * exp(m2 - top);
      partialMax[local] = top;
    }
    workgroupBarrier();
  }
  let top = partialMax[0];
  let inv = 1.0 / partialSum[0];
  for (var j = i32(local); j < L; j += ${WORKGROUP}) {
    dst[base + j] = T(exp(scale * f32(x[base + j]) - top) * inv);
  }
}`;
});

/** The workgroups of a kernel that runs one workgroup per row (`x` wraps into `y`). */
export function rowGrid(rows: number): [number, number, number] {
  const x = Math.max(1, Math.min(rows, GROUPS_X));
  return [x, Math.ceil(rows / x), 1];
}

/** The widest head the attention kernel keeps in registers. */
export const MAX_HEAD = 128;

/**
 * Attention, one thread per (batch, head, query): two passes over the keys (the row maximum,
 * then exp-weighted sums), so the result matches a plain softmax without rescaling.
 * p: count, B, H, Sq, Sk, D, Dv, scale bits, bias batch stride, bias head stride.
 */
export const attentionKernel = memoised(function attentionKernel(
  bias: boolean,
  storage: Storage,
): string {
  const addBias = bias ? " + f32(bias[b * p[8] + h * p[9] + q * Sk + j])" : "";
  return `
${bindings(storage, ["Q", "in"], ["K", "in"], ["V", "in"], ["dst", "out"], ["p", "ints"], bias && ["bias", "in"])}
${HEADER}
  if (i >= p[0]) { return; }
  let H = p[2]; let Sq = p[3]; let Sk = p[4]; let D = p[5]; let Dv = p[6];
  let scale = bitcast<f32>(p[7]);
  let q = i % Sq;
  let h = (i / Sq) % H;
  let b = i / (Sq * H);
  let qBase = (b * Sq + q) * H * D + h * D;
  var m = -3.4028234e38;
  for (var j = 0; j < Sk; j++) {
    let kBase = (b * Sk + j) * H * D + h * D;
    var s = 0.0;
    for (var d = 0; d < D; d++) { s += f32(Q[qBase + d]) * f32(K[kBase + d]); }
    m = max(m, s * scale${addBias});
  }
  var acc: array<f32, ${MAX_HEAD}>;
  var l = 0.0;
  for (var j = 0; j < Sk; j++) {
    let kBase = (b * Sk + j) * H * D + h * D;
    var s = 0.0;
    for (var d = 0; d < D; d++) { s += f32(Q[qBase + d]) * f32(K[kBase + d]); }
    let e = exp(s * scale${addBias} - m);
    l += e;
    let vBase = (b * Sk + j) * H * Dv + h * Dv;
    for (var d = 0; d < Dv; d++) { acc[d] += e * f32(V[vBase + d]); }
  }
  let oBase = (b * Sq + q) * H * Dv + h * Dv;
  for (var d = 0; d < Dv; d++) { dst[oBase + d] = T(acc[d] / l); }
}`;
});
