/**
 * Flash attention (Dao et al., 2022, "FlashAttention"; Dao, 2023, "FlashAttention-2"): the
 * online softmax over tiles of keys, so the score matrix is never held, and ToDo's key/value
 * downsampling read straight from the full K/V.
 *
 * Shape contract (row-major, storage type T of the variant), as the UNet's projections produce
 * the tensors:
 *   q:   (B, Nq, H * d)   head h is columns [h d, (h + 1) d)
 *   k,v: (B, Nkv, H * d)  Nkv tokens; without a key grid every token is a key (Nk = Nkv);
 *        with `kvByHead`, (B, H, Nkv, d)
 *   out: (B, Nq, H * d) = softmax(q_h k_h^T / sqrt(d)) v_h per batch entry and head
 * Key grid (nearest ToDo): the Nkv = height x width tokens form a grid that is downsampled by
 * `factor` to floor(height / f) x floor(width / f) keys; key (i, j) of that grid is the token
 * (rowOf(i), colOf(j)) of the full one, with torch's nearest rule as src/reduce/resample.ts
 * follows it: floor(i * s) with s = height / floor(height / f) in float32, clamped to the last
 * row (i * f exactly when f divides the side). So nearest ToDo costs no extra pass.
 * d must be a multiple of 4 (every SD head dim is: 40, 64, 80, 160).
 *
 * Portable path: one query per thread, 64 queries per workgroup sharing tiles of keys and values
 * staged through workgroup memory in f32; scores, softmax and the weighted sum in f32.
 * Tensor-core path: each subgroup owns M query rows (M of the matrix shape); the workgroup
 * stages K and V tiles in f16; S = Q K^T and O += P V run on subgroup matrices with f32
 * accumulation; S goes through workgroup memory for the softmax (a result fragment's register
 * layout is opaque) and P is stored in f16. O is rescaled row by row through the same scratch
 * on every tile, or (tiling `rescale: "lazy"`) P V accumulates in result matrices: a row's
 * offset moves only when a tile exceeds it by RESCALE_MARGIN, and only on the tiles where some
 * row's offset moved is the accumulated P V flushed through the scratch into the lanes' O,
 * rescaled there (the conditional rescaling of FlashAttention-4, Dao et al. 2025: the output is
 * rescaled only when a row's max moved by more than a threshold).
 * d is padded with zeros to a multiple of the matrix K and N (40 -> 48 at 16x16x16: a fifth more
 * matrix work for the SD 1.x head).
 * Launch: ceil(Nq / rowsPerWorkgroup) x (B * H) workgroups (transposed for `headsFirst`).
 */
import { expectTensor, type GpuContext, type GpuTensor, type KernelLaunch } from "../context.js";
import type { KernelVariant } from "../variants.js";
import {
  checkPositiveSizes,
  f32Literal,
  MATRIX_SPELLINGS,
  type MatrixSpelling,
  matrixLoad,
  matrixStore,
  storagePreamble,
  u32Literal as u,
} from "../wgsl.js";

export interface KeyGrid {
  readonly height: number;
  readonly width: number;
  /** Nearest downsampling factor on both axes (1: every token). */
  readonly factor: number;
}

export interface AttentionShape {
  readonly batch: number;
  readonly queries: number;
  readonly heads: number;
  readonly headDim: number;
  /** Tokens of K and V as stored (the full grid when a key grid is given). */
  readonly kvTokens: number;
  readonly keyGrid?: KeyGrid;
  /**
   * K and V stored by head, (B, H, Nkv, d), instead of as the projections write them,
   * (B, Nkv, H d). In the projections' layout a head's d values are a fifth to a quarter of each
   * token's row at the SD 1.x heads, so its K/V touches every cache line of the whole tensor:
   * about 25 MB per head at 2 x 65536 tokens, 8 heads of 40 (2048 px), against 10.5 MB stored by
   * head. A candidate for K/V too large for the GPU's L2 cache (bench-kernels times both).
   */
  readonly kvByHead?: boolean;
}

/** Tile shape: keys per tile, and subgroups per workgroup on the tensor-core path. */
export interface AttentionTiling {
  readonly keysPerTile: number;
  readonly subgroups: number;
  /**
   * Timing only, the results are wrong: leave out part of the work to measure what the rest
   * costs. `o-in-matrices`: P V accumulates in result matrices without the per-tile rescale (no O
   * round trip through workgroup memory); `no-softmax`: also no softmax lane work (S is still
   * stored and P loaded); `mma-only`: also no S store and no K/V staging (the matrix loads and
   * multiplies alone); `no-kv-loads`: K/V staged from constants instead of global memory (what
   * the loads' latency costs).
   */
  readonly ablation?: "o-in-matrices" | "no-softmax" | "mma-only" | "no-kv-loads";
  /**
   * Tensor-core path: `lazy` (the default tilings) accumulates P V in result matrices and moves
   * a row's offset only when a tile's scores exceed it by more than RESCALE_MARGIN (log2 units),
   * so O goes through workgroup memory only on the rare tiles where some row's offset moved;
   * `every-tile` rescales O through workgroup memory on every tile (1.37x slower at 2 x 16384
   * tokens, 8 heads of 40, on an H100: BENCHMARKS.md).
   */
  readonly rescale?: "lazy" | "every-tile";
  /**
   * Tensor-core path: `double` keeps two K/V tiles in workgroup memory and loads the next tile's
   * K and V into registers while the current tile is multiplied, storing them into the other
   * buffer between the tile's barriers (the software pipelining of FlashAttention-2, Dao 2023),
   * so a tile waits neither on global memory nor on staging barriers of its own (the default
   * tilings, where both tiles fit workgroup memory); `single` (or no value) stages each tile
   * between two barriers of its own.
   */
  readonly staging?: "double" | "single";
  /**
   * Tensor-core path: blocks of M query rows each subgroup owns (1 or 2; 1 when left out). With
   * 2, every K and V fragment a subgroup loads from workgroup memory, and every barrier of a
   * tile, serves twice the query rows. A sweep candidate, not a default: at 2 x 16384 tokens,
   * 8 heads of 40 on an H100 it ran 12.5 ms (4 subgroups, double-staged) against the default's
   * 10.3 (BENCHMARKS.md), so fragment loads and barriers are not what bounds the kernel.
   */
  readonly rowBlocks?: 1 | 2;
  /**
   * Tensor-core path: f32 words of padding after each row of the score scratch (4 when left
   * out; a multiple of 4, since the matrix stores need 16-byte row strides). A sweep candidate:
   * where the driver stores a result matrix two words per lane, 8 spreads those stores over
   * every bank; 4 spreads the softmax lanes' reads.
   */
  readonly scorePad?: 4 | 8;
  /**
   * Lazy tensor-core path: how many adjacent keys of its row a softmax lane takes at a time (1
   * when left out: one at a time, interleaved with the row's other lanes). With 2 (the default
   * tiling's) a lane takes keys 2 part and 2 part + 1, then the pair a row's lanes further on,
   * so that its two reads and its two f16 writes are neighbours the compiler may issue as one:
   * 1.09x faster than interleaved lanes on an H100 (SCORE_SCRATCH_SWEEP). 4 makes them 16-byte
   * reads and 8-byte writes; with score rows padded by 8 words (scorePad), where the lanes of a
   * quarter-warp then read eight different rows' 16 bytes, no two of them share a bank.
   */
  readonly laneKeys?: 1 | 2 | 4;
  /**
   * Tensor-core path: f16 values of padding after each row of the Q/K/V tile (8 when left out;
   * 0 or 8, keeping rows 16-byte aligned for the matrix loads). 0 saves 16 bytes per row, which
   * lets the default's eight subgroups and double staging fit 48 KB at head dim 80 (the SD 1.x
   * level-2 attention), where the order without it fell back to four subgroups: on an H100 at
   * 2 x 16384 x 16384, 8 heads of 80, 12.8 ms (108 TFLOP/s) against about 49 ms (28 TFLOP/s,
   * inside a 2048 px call), BENCHMARKS.md. Second in TENSOR_CORE_ATTENTION_ORDER.
   */
  readonly kvPad?: 0 | 8;
  /**
   * Tensor-core path: the launch grid's x runs over the batch's heads and y over the query
   * tiles, so the workgroups resident at once spread over every head; without it (the default)
   * x runs over query tiles, and at 65536 queries the hundreds resident at once all read the
   * same head's K/V tile at about the same time. A sweep candidate at the 2048 px shapes.
   */
  readonly headsFirst?: boolean;
}

/**
 * Lazy rescaling's margin in log2 units: a row's probabilities are exp2(s - m) with s at most
 * m + 8, so they stay at most 256 (f16 holds up to 65504) and O, in f32, grows by the same
 * factor at most. Exact, not an approximation: the offset a row's exponents use need not be its
 * running max, only at least the first tile's max and at most MARGIN below any later score; the
 * final division by the row sum, made with the same offsets, cancels it.
 */
export const RESCALE_MARGIN = 8;

export const DEFAULT_ATTENTION_TILINGS: Readonly<{
  portable: AttentionTiling;
  tensorCore: AttentionTiling;
}> = Object.freeze({
  portable: { keysPerTile: 16, subgroups: 1 },
  tensorCore: {
    keysPerTile: 32,
    subgroups: 8,
    rescale: "lazy",
    staging: "double",
    laneKeys: 2,
  },
});

/**
 * Tensor-core tilings in the order they are tried without an explicit one: fastest first as
 * measured at 2 x 16384 x 16384, 8 heads of 40 (BENCHMARKS.md); the later ones for head dims whose
 * tiles outgrow workgroup memory with the first (the second is head dim 80's, 8 heads of 80; the
 * fifth head dim 160's).
 */
export const TENSOR_CORE_ATTENTION_ORDER: readonly AttentionTiling[] = Object.freeze([
  DEFAULT_ATTENTION_TILINGS.tensorCore,
  { ...DEFAULT_ATTENTION_TILINGS.tensorCore, kvPad: 0 },
  { keysPerTile: 32, subgroups: 8, rescale: "lazy" },
  { keysPerTile: 32, subgroups: 4, rescale: "lazy", staging: "double" },
  // Head dim 160's (SD 1.x level 3): 2 x 4096 tokens, 8 heads, 3.07 ms against 4.47 for the
  // next entry on an H100 (BENCHMARKS.md).
  { keysPerTile: 16, subgroups: 4, rescale: "lazy", staging: "double", laneKeys: 2 },
  { keysPerTile: 32, subgroups: 4, rescale: "lazy" },
  { keysPerTile: 16, subgroups: 8, rescale: "lazy" },
  { keysPerTile: 16, subgroups: 4, rescale: "lazy" },
]);

/**
 * The default tensor-core tiling with the score scratch's other candidates (scorePad 8, lanes one
 * key at a time interleaved, lanes on four adjacent keys), swept and checked on a GPU beside it.
 * On an H100 at 2 x 16384 x 16384, 8 heads of 40 (BENCHMARKS.md): paired lanes 9.14 ms,
 * interleaved 9.93, paired with scorePad 8 9.33, interleaved with scorePad 8 10.72; the two
 * four-key candidates not timed yet.
 */
export const SCORE_SCRATCH_SWEEP: readonly AttentionTiling[] = Object.freeze(
  [
    { scorePad: 8 as const },
    { laneKeys: 1 as const },
    { scorePad: 8 as const, laneKeys: 1 as const },
    { laneKeys: 4 as const },
    { scorePad: 8 as const, laneKeys: 4 as const },
  ].map((extra) => ({ ...DEFAULT_ATTENTION_TILINGS.tensorCore, ...extra })),
);

/**
 * Candidates for the wider SD 1.x heads, timed per head dim by `bench-kernels` beside the default
 * order's choice (at 2048 px, where level 2 has the 2 x 16384 tokens of the target shape with
 * heads of 80, and level 3 2 x 4096 with heads of 160) and checked on a GPU with the order.
 */
export const WIDE_HEAD_SWEEP: Readonly<Record<80 | 160, readonly AttentionTiling[]>> =
  Object.freeze({
    80: [
      // The order's choice at 80 before unpadded rows (kvPad 0) took its place.
      { keysPerTile: 32, subgroups: 4, rescale: "lazy", staging: "double" },
      { keysPerTile: 32, subgroups: 4, rescale: "lazy", staging: "double", laneKeys: 2 },
      { keysPerTile: 16, subgroups: 8, rescale: "lazy", staging: "double", laneKeys: 2 },
      // The default at 80 with the grid transposed (headsFirst).
      { ...DEFAULT_ATTENTION_TILINGS.tensorCore, kvPad: 0, headsFirst: true },
    ],
    160: [
      { keysPerTile: 32, subgroups: 4, rescale: "lazy", laneKeys: 2 },
      // The order's choice at 160 before the 16-key double-staged tiling took its place.
      { keysPerTile: 32, subgroups: 4, rescale: "lazy" },
    ],
  });

/** Keys actually attended to (after the key grid's downsampling). */
export function attentionKeys(shape: AttentionShape): number {
  const g = shape.keyGrid;
  return g ? Math.floor(g.height / g.factor) * Math.floor(g.width / g.factor) : shape.kvTokens;
}

/** Multiply-adds of QK^T and PV: 4 B H Nq Nk d floating-point operations. */
export function attentionFlops(shape: AttentionShape): number {
  return 4 * shape.batch * shape.heads * shape.queries * attentionKeys(shape) * shape.headDim;
}

function validate(shape: AttentionShape): void {
  checkPositiveSizes("attention", {
    batch: shape.batch,
    queries: shape.queries,
    heads: shape.heads,
    headDim: shape.headDim,
    kvTokens: shape.kvTokens,
  });
  if (shape.headDim % 4 !== 0)
    throw new Error(`attention: head dim ${shape.headDim} is not a multiple of 4`);
  const g = shape.keyGrid;
  if (g) {
    if (g.height * g.width !== shape.kvTokens)
      throw new Error(
        `attention: key grid ${g.height}x${g.width} does not hold the ${shape.kvTokens} K/V tokens`,
      );
    if (!Number.isInteger(g.factor) || g.factor < 1 || g.factor > Math.min(g.height, g.width))
      throw new Error(
        `attention: downsampling factor ${g.factor} does not fit a ${g.height}x${g.width} grid`,
      );
  }
}

/** `fn kv_row(b, h, token) -> u32`: where head h of a K/V token starts, in elements. */
function kvRowWgsl(shape: AttentionShape): string {
  const d = u(shape.headDim);
  const at = shape.kvByHead
    ? `((b * ${u(shape.heads)} + h) * ${u(shape.kvTokens)} + token) * ${d}`
    : `(b * ${u(shape.kvTokens)} + token) * ${u(shape.heads * shape.headDim)} + h * ${d}`;
  return `fn kv_row(b: u32, h: u32, token: u32) -> u32 { return ${at}; }`;
}

/** `fn key_token(j) -> u32`: the K/V token of key j (the key grid's nearest rule). */
function keyTokenWgsl(shape: AttentionShape): string {
  const g = shape.keyGrid;
  if (!g || g.factor === 1) return "fn key_token(j: u32) -> u32 { return j; }";
  const oh = Math.floor(g.height / g.factor);
  const ow = Math.floor(g.width / g.factor);
  const axis = (index: string, side: number, out: number) =>
    side % g.factor === 0
      ? `${index} * ${u(g.factor)}`
      : `min(u32(floor(f32(${index}) * ${f32Literal(side / out)})), ${u(side - 1)})`;
  return `fn key_token(j: u32) -> u32 {
  let ky = j / ${u(ow)};
  let kx = j % ${u(ow)};
  return (${axis("ky", g.height, oh)}) * ${u(g.width)} + ${axis("kx", g.width, ow)};
}`;
}

const LOG2E = Math.LOG2E;
const NEG_BIG = "-3.0e38";

function portableWgsl(variant: KernelVariant, shape: AttentionShape, t: AttentionTiling): string {
  const d = shape.headDim;
  const dv = d / 4;
  const nk = attentionKeys(shape);
  const bc = t.keysPerTile;
  const br = 64;
  const hd = shape.heads * d;
  return `${storagePreamble(variant.storage)}
@group(0) @binding(0) var<storage, read> q: array<T4>;
@group(0) @binding(1) var<storage, read> k: array<T4>;
@group(0) @binding(2) var<storage, read> v: array<T4>;
@group(0) @binding(3) var<storage, read_write> out: array<T4>;

var<workgroup> k_tile: array<vec4<f32>, ${bc * dv}>;
var<workgroup> v_tile: array<vec4<f32>, ${bc * dv}>;

${keyTokenWgsl(shape)}
${kvRowWgsl(shape)}

@compute @workgroup_size(${br})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let b = wg.y / ${u(shape.heads)};
  let h = wg.y % ${u(shape.heads)};
  let qi = wg.x * ${u(br)} + local;
  let q_ok = qi < ${u(shape.queries)};
  var qr: array<vec4<f32>, ${dv}>;
  var acc: array<vec4<f32>, ${dv}>;
  // Scores in log2 units: q scaled by log2(e) / sqrt(d) once, then exp2.
  if (q_ok) {
    let base = ((b * ${u(shape.queries)} + qi) * ${u(hd)} + h * ${u(d)}) / 4u;
    for (var c = 0u; c < ${u(dv)}; c++) { qr[c] = vec4<f32>(q[base + c]) * ${f32Literal(LOG2E / Math.sqrt(d))}; }
  }
  var m = ${NEG_BIG};
  var l = 0.0;
  var s: array<f32, ${bc}>;
  for (var kt = 0u; kt < ${u(Math.ceil(nk / bc))}; kt++) {
    let j0 = kt * ${u(bc)};
    workgroupBarrier();
    for (var e = local; e < ${u(bc * dv)}; e += ${u(br)}) {
      let j = j0 + e / ${u(dv)};
      var kv = vec4<f32>();
      var vv = vec4<f32>();
      if (j < ${u(nk)}) {
        let at = kv_row(b, h, key_token(j)) / 4u + e % ${u(dv)};
        kv = vec4<f32>(k[at]);
        vv = vec4<f32>(v[at]);
      }
      k_tile[e] = kv;
      v_tile[e] = vv;
    }
    workgroupBarrier();
    var tile_max = ${NEG_BIG};
    for (var jr = 0u; jr < ${u(bc)}; jr++) {
      var dot_qk = 0.0;
      for (var c = 0u; c < ${u(dv)}; c++) { dot_qk += dot(qr[c], k_tile[jr * ${u(dv)} + c]); }
      s[jr] = select(${NEG_BIG}, dot_qk, j0 + jr < ${u(nk)});
      tile_max = max(tile_max, s[jr]);
    }
    let m_new = max(m, tile_max);
    let alpha = exp2(m - m_new);
    l *= alpha;
    for (var c = 0u; c < ${u(dv)}; c++) { acc[c] *= alpha; }
    for (var jr = 0u; jr < ${u(bc)}; jr++) {
      let p = select(0.0, exp2(s[jr] - m_new), j0 + jr < ${u(nk)});
      l += p;
      for (var c = 0u; c < ${u(dv)}; c++) { acc[c] = fma(vec4<f32>(p), v_tile[jr * ${u(dv)} + c], acc[c]); }
    }
    m = m_new;
  }
  if (q_ok) {
    let base = ((b * ${u(shape.queries)} + qi) * ${u(hd)} + h * ${u(d)}) / 4u;
    let inv = 1.0 / l;
    for (var c = 0u; c < ${u(dv)}; c++) { out[base + c] = T4(acc[c] * inv); }
  }
}
`;
}

/** Head dim padded for the matrix shape, and the workgroup-memory row stride (+ kvPad halves). */
function paddedDims(
  variant: KernelVariant,
  d: number,
  t: AttentionTiling,
): { dp: number; stride: number } {
  const s = variant.matrix;
  if (!s) throw new Error("attention: the tensor-core path needs a matrix shape");
  const step = Math.max(s.k, s.n, 8);
  const dp = Math.ceil(d / step) * step;
  return { dp, stride: dp + (t.kvPad ?? 8) };
}

/** Whether a tensor-core tiling double-buffers its K/V tiles (not with the MMA-only ablation). */
function doubleStaged(t: AttentionTiling): boolean {
  return t.staging === "double" && t.ablation !== "mma-only";
}

/** Blocks of M query rows per subgroup. */
function rowBlocks(t: AttentionTiling): number {
  return t.rowBlocks ?? 1;
}

/** Query rows per workgroup of a tensor-core tiling (one workgroup per block of them). */
export function tensorCoreRows(variant: KernelVariant, t: AttentionTiling): number {
  return t.subgroups * rowBlocks(t) * (variant.matrix?.m ?? 0);
}

/** Words of padding after each row of the score scratch. */
function scorePad(t: AttentionTiling): number {
  return t.scorePad ?? 4;
}

/**
 * f32 words of the score scratch for `rows` query rows: each row keysPerTile words and its
 * padding, less the last row's padding, which nothing reads or writes (the scores' matrix stores
 * and the O flush stay within a row's first keysPerTile, and at most sStride - 4, words). 16
 * bytes that let head dim 80 fit 48 KB with kvPad 0.
 */
function scoreWords(rows: number, t: AttentionTiling): number {
  return rows * (t.keysPerTile + scorePad(t)) - scorePad(t);
}

/** Rows of the f16 tile buffer: Q's rows once, K and V of one tile (two when double-staged). */
function kvTileRows(variant: KernelVariant, t: AttentionTiling): number {
  const rows = tensorCoreRows(variant, t);
  return Math.max(rows, (doubleStaged(t) ? 4 : 2) * t.keysPerTile);
}

/** Workgroup bytes of the tensor-core kernel (checked against the adapter's limit). */
export function tensorCoreWorkgroupBytes(
  variant: KernelVariant,
  d: number,
  t: AttentionTiling,
): number {
  const s = variant.matrix;
  if (!s) return 0;
  const { stride } = paddedDims(variant, d, t);
  const kv = kvTileRows(variant, t) * stride * 2;
  const rows = t.subgroups * rowBlocks(t) * s.m;
  const scores = scoreWords(rows, t) * 4;
  const probs = rows * (t.keysPerTile + 8) * 2;
  // + the lazy rescale's flag, 16 bytes like every workgroup variable here: NVIDIA's driver may
  // lay the variables out in another order than declared, and a 4-byte flag among them left the
  // f16 tiles where the matrix loads read wrong values (every lazy check failed on an H100).
  return kv + scores + probs + 16;
}

function tensorCoreWgsl(
  variant: KernelVariant,
  shape: AttentionShape,
  t: AttentionTiling,
  sp: MatrixSpelling,
): string {
  const s = variant.matrix;
  const sgSize = variant.subgroupSize;
  if (!s || !sgSize) throw new Error("attention: the tensor-core path needs a matrix shape");
  const d = shape.headDim;
  const { dp, stride } = paddedDims(variant, d, t);
  const nk = attentionKeys(shape);
  const bc = t.keysPerTile;
  const sg = t.subgroups;
  const blocks = rowBlocks(t);
  const rows = sg * blocks * s.m;
  const threads = sg * sgSize;
  const hd = shape.heads * d;
  const lpr = sgSize / s.m; // lanes per query row in the softmax
  const keysPerLane = bc / lpr;
  const colsPerLane = s.n / lpr;
  const pStride = bc + 8;
  const kvRows = kvTileRows(variant, t);
  // Row strides padded by scorePad words (4 by default: a subgroup's lanes then read rows in
  // different banks).
  const sStride = bc + scorePad(t);
  const oStride = s.n + 4;
  const sRegion = s.m * sStride;
  const pRegion = s.m * pStride;
  const left = (k: number, m: number) => `subgroup_matrix_left<f16, ${k}, ${m}>`;
  const right = `subgroup_matrix_right<f16, ${s.n}, ${s.k}>`;
  const result = `subgroup_matrix_result<f32, ${s.n}, ${s.m}>`;
  const qFrags = dp / s.k;
  const sFrags = bc / s.n;
  const oFrags = dp / s.n;
  const batchFrags = Math.max(1, Math.floor(sStride / oStride)); // P V fragments the scratch holds
  // Each subgroup owns `blocks` blocks of M query rows (r = 0 .. blocks - 1): every K and V
  // fragment loaded from workgroup memory serves all of them, and every barrier their tiles.
  const rb = Array.from({ length: blocks }, (_, r) => r);
  const shuffles: string[] = [];
  for (let o = 1; o < lpr; o *= 2) shuffles.push(`${u(o)}`);
  const reduce = (name: string, op: "max" | "add") =>
    shuffles
      .map((o) =>
        op === "max"
          ? `${name} = max(${name}, subgroupShuffleXor(${name}, ${o}));`
          : `${name} += subgroupShuffleXor(${name}, ${o});`,
      )
      .join(" ");
  // O lives in registers, each lane holding colsPerLane columns of its row in every fragment
  // (constant indices keep the array in registers): each tile's P V is computed into fresh
  // fragments, passed through the score scratch and added to the rescaled O.
  const lines = rb.map((r) => `var o_acc_${r}: array<f32, ${oFrags * colsPerLane}>;`);
  const oRound = (
    each: (r: number, f: number, c: number, at: string, col: string) => string,
  ): string[] => {
    const out: string[] = [];
    for (let f0 = 0; f0 < oFrags; f0 += batchFrags) {
      const frags = Array.from({ length: Math.min(batchFrags, oFrags - f0) }, (_, i) => f0 + i);
      out.push("workgroupBarrier();");
      for (const r of rb)
        for (const [i, f] of frags.entries())
          out.push(
            matrixStore(
              sp,
              "&s_buf",
              `s_base + ${u(r * sRegion + i * s.m * oStride)}`,
              `pv_${r}_${f}`,
              false,
              u(oStride),
            ),
          );
      out.push("workgroupBarrier();");
      for (const r of rb)
        for (const [i, f] of frags.entries())
          for (let c = 0; c < colsPerLane; c++)
            out.push(
              each(
                r,
                f,
                c,
                `s_buf[s_base + ${u(r * sRegion + i * s.m * oStride + c * lpr)} + row * ${u(oStride)} + part]`,
                `${u(f * s.n + c * lpr)} + part`,
              ),
            );
    }
    return out;
  };
  const ablation = t.ablation;
  const lazy = lazyRescale({ variant, tiling: t });
  const run = t.laneKeys ?? 1; // adjacent keys a softmax lane takes at a time
  const oInMatrices = (ablation !== undefined && ablation !== "no-kv-loads") || lazy;
  const noSoftmax = ablation === "no-softmax" || ablation === "mma-only";
  const mmaOnly = ablation === "mma-only";
  const scoreMma: string[] = [];
  for (let f = 0; f < sFrags; f++) {
    if (!mmaOnly) for (const r of rb) scoreMma.push(`var sf_${r}_${f} = ${result}();`);
    for (let i = 0; i < qFrags; i++) {
      scoreMma.push(
        `let kf_${f}_${i} = ${matrixLoad(sp, right, "&kv_tile", `kv_cur + ${u(f * s.n * stride + i * s.k)}`, true, u(stride))};`,
      );
      for (const r of rb)
        scoreMma.push(
          `sf_${r}_${f} = subgroupMatrixMultiplyAccumulate(qf_${r}_${i}, kf_${f}_${i}, sf_${r}_${f});`,
        );
    }
    if (!mmaOnly)
      for (const r of rb)
        scoreMma.push(
          matrixStore(
            sp,
            "&s_buf",
            `s_base + ${u(r * sRegion + f * s.n)}`,
            `sf_${r}_${f}`,
            false,
            u(sStride),
          ),
        );
  }
  const pvNames = rb.flatMap((r) => Array.from({ length: oFrags }, (_, f) => `pv_${r}_${f}`));
  const pvDecls = pvNames.map((name) => `var ${name} = ${result}();`);
  const pvMma: string[] = oInMatrices ? [] : [...pvDecls];
  for (let kk = 0; kk < bc; kk += s.k) {
    for (const r of rb)
      pvMma.push(
        `let pf_${r}_${kk} = ${matrixLoad(sp, left(s.k, s.m), "&p_buf", `p_base + ${u(r * pRegion + kk)}`, false, u(pStride))};`,
      );
    for (let f = 0; f < oFrags; f++) {
      pvMma.push(
        `let vf_${kk}_${f} = ${matrixLoad(sp, right, "&kv_tile", `kv_cur + ${u(bc * stride + kk * stride + f * s.n)}`, false, u(stride))};`,
      );
      for (const r of rb)
        pvMma.push(
          `pv_${r}_${f} = subgroupMatrixMultiplyAccumulate(pf_${r}_${kk}, vf_${kk}_${f}, pv_${r}_${f});`,
        );
    }
  }
  // K rows [0, bc), V rows [bc, 2 bc) of a tile, in f16; with double staging two such tiles,
  // the one at kv_cur read while the next is loaded into registers and stored into the other.
  const double = doubleStaged(t);
  const kvCount = (2 * bc * dp) / 4;
  const perThread = Math.ceil(kvCount / threads);
  const kvElement = (i: number, body: string): string => {
    const guard = (i + 1) * threads > kvCount;
    return `{
      let e = local + ${u(i * threads)};${guard ? `\n      if (e < ${u(kvCount)}) {` : ""}
      let r = e / ${u(dp / 4)};
      let c = (e % ${u(dp / 4)}) * 4u;
      ${body}${guard ? "\n      }" : ""}
    }`;
  };
  const loadBody = (first: string, i: number): string => `let j = ${first} + r % ${u(bc)};
      kv_pre_${i} = T4();
      if (j < ${u(nk)} && c < ${u(d)}) {
        ${
          ablation === "no-kv-loads"
            ? `kv_pre_${i} = T4(T(f32(j) * 1e-3));`
            : `let src = (kv_row(b, h, key_token(j)) + c) / 4u;
        if (r < ${u(bc)}) { kv_pre_${i} = k[src]; } else { kv_pre_${i} = v[src]; }`
        }
      }`;
  const storeBody = (
    buffer: string,
    i: number,
  ): string => `let at = ${buffer} + r * ${u(stride)} + c;
      let x = kv_pre_${i};
      kv_tile[at] = f16(x[0]); kv_tile[at + 1u] = f16(x[1]); kv_tile[at + 2u] = f16(x[2]); kv_tile[at + 3u] = f16(x[3]);`;
  const eachElement = (body: (i: number) => string): string =>
    Array.from({ length: perThread }, (_, i) => kvElement(i, body(i))).join("\n    ");
  const kvLoad = (first: string): string => eachElement((i) => loadBody(first, i));
  const kvStore = (buffer: string): string => eachElement((i) => storeBody(buffer, i));
  const kvBuffer = 2 * bc * stride;
  const kvDecls = Array.from({ length: perThread }, (_, i) => `var kv_pre_${i}: T4;`).join(" ");
  // Single staging: each element loaded and stored in turn (one register's worth in flight, as
  // wide head dims need: 20 elements per thread at d = 160).
  const kvStage = double
    ? ""
    : `    workgroupBarrier();
    ${eachElement((i) => `${loadBody("j0", i)}\n      ${storeBody("0u", i)}`)}
    workgroupBarrier();
`;
  // Double staging: the first tile before the loop; in the loop the next tile's loads go out
  // before the score multiplies and land in the other buffer after the barrier that follows them
  // (every subgroup has then finished the previous tile, the last to read that buffer); the
  // barrier before P V makes them visible to the next tile.
  const kvPrologue = double
    ? `workgroupBarrier();
  ${kvLoad("0u")}
  ${kvStore("0u")}
  workgroupBarrier();`
    : "";
  const kvPrefetch = double ? kvLoad(`j0 + ${u(bc)}`) : "";
  const kvPrefetchStore = double ? kvStore(`${u(kvBuffer)} - kv_cur`) : "";
  const scale = f32Literal(LOG2E / Math.sqrt(d));
  // Online softmax of row block r: lanes [row * lpr, row * lpr + lpr) share a query row.
  const softmax = (r: number) => `    {
    let s_at = s_base + ${u(r * sRegion)} + row * ${u(sStride)};
    let p_at = p_base + ${u(r * pRegion)} + row * ${u(pStride)};
    var tile_max = ${NEG_BIG};
    for (var c = 0u; c < ${u(keysPerLane)}; c++) {
      let jr = c * ${u(lpr)} + part;
      let x = select(${NEG_BIG}, s_buf[s_at + jr] * ${scale}, j0 + jr < ${u(nk)});
      s_buf[s_at + jr] = x;
      tile_max = max(tile_max, x);
    }
    ${reduce("tile_max", "max")}
    let m_new = max(m_${r}, tile_max);
    alpha_${r} = exp2(m_${r} - m_new);
    var row_sum = 0.0;
    for (var c = 0u; c < ${u(keysPerLane)}; c++) {
      let jr = c * ${u(lpr)} + part;
      let p = select(0.0, exp2(s_buf[s_at + jr] - m_new), j0 + jr < ${u(nk)});
      let p16 = f16(p);
      p_buf[p_at + jr] = p16;
      row_sum += f32(p16);
    }
    ${reduce("row_sum", "add")}
    l_${r} = l_${r} * alpha_${r} + row_sum;
    m_${r} = m_new;
    }
`;
  // Lazy rescaling: the scores stay in registers between the max and the exponentials; a row's
  // offset m moves only past RESCALE_MARGIN, and a tile where some row's moved (after the first)
  // raises rescale_at[0] to kt + 1, read back uniformly so that every subgroup takes the same
  // branch.
  // A lane's keys sit at `lane_key` plus these offsets: `run` adjacent keys at a time, the row's
  // other lanes taking the runs between (run 1: one key at a time interleaved). Where the keys
  // fill every tile no key is past the end and the bounds check goes.
  const keyOffsets = Array.from(
    { length: keysPerLane },
    (_, c) => Math.floor(c / run) * run * lpr + (c % run),
  );
  const fullTiles = nk % bc === 0;
  const score = (c: number) => `s_buf[s_at + ${u(keyOffsets[c])}] * ${scale}`;
  const lazySoftmax = (r: number) => `    {
    let s_at = s_row + ${u(r * sRegion)};
    let p_at = p_row + ${u(r * pRegion)};
    ${Array.from({ length: keysPerLane }, (_, c) => (fullTiles ? `let x_${c} = ${score(c)};` : `let x_${c} = select(${NEG_BIG}, ${score(c)}, j0 + ${u(keyOffsets[c])} + lane_key < ${u(nk)});`)).join("\n    ")}
    var tile_max = ${Array.from({ length: keysPerLane }, (_, c) => `x_${c}`).reduce((a, b) => `max(${a}, ${b})`)};
    ${reduce("tile_max", "max")}
    let grow = tile_max > m_${r} + ${f32Literal(RESCALE_MARGIN)};
    let m_new = select(m_${r}, tile_max, grow);
    alpha_${r} = exp2(m_${r} - m_new);
    if (grow && kt > 0u) { atomicMax(&rescale_at[0], kt + 1u); }
    var row_sum = 0.0;
    ${Array.from({ length: keysPerLane }, (_, c) => `let p_${c} = f16(exp2(x_${c} - m_new)); p_buf[p_at + ${u(keyOffsets[c])}] = p_${c}; row_sum += f32(p_${c});`).join("\n    ")}
    ${reduce("row_sum", "add")}
    l_${r} = l_${r} * alpha_${r} + row_sum;
    m_${r} = m_new;
    }
`;
  // Lazy tail: O is the sum of o_acc (lane registers, relative to the row's current offset) and
  // P V accumulated in result matrices since the last move. On a tile where some row's offset
  // moved, P V so far is flushed through the scratch into o_acc, both scaled by the row's alpha
  // (1 where the offset stayed), and the matrices are zeroed by a scalar multiply done on every
  // tile (1 where nothing moved), so the branch holds only stores and lane arithmetic.
  // workgroupUniformLoad synchronises the workgroup before it reads (it is a barrier, a load and
  // a barrier), which is also what makes this tile's P visible to the P V loads below.
  const tail = lazy
    ? `let rescale = workgroupUniformLoad(&rescale_at[0]) == kt + 1u;
    if (rescale) {
      ${oRound((r, f, c, at) => `o_acc_${r}[${f * colsPerLane + c}] = (o_acc_${r}[${f * colsPerLane + c}] + ${at}) * alpha_${r};`).join("\n      ")}
      workgroupBarrier();
    }
    let keep = select(1.0, 0.0, rescale);
    ${pvNames.map((name) => `${name} = subgroupMatrixScalarMultiply(${name}, keep);`).join("\n    ")}`
    : "workgroupBarrier();";
  return `${storagePreamble(variant.storage, ["subgroups", "chromium_experimental_subgroup_matrix"])}
@group(0) @binding(0) var<storage, read> q: array<T4>;
@group(0) @binding(1) var<storage, read> k: array<T4>;
@group(0) @binding(2) var<storage, read> v: array<T4>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;

var<workgroup> kv_tile: array<f16, ${kvRows * stride}>;
var<workgroup> s_buf: array<f32, ${scoreWords(rows, t)}>;
var<workgroup> p_buf: array<f16, ${sg * blocks * pRegion}>;
${lazy ? "var<workgroup> rescale_at: array<atomic<u32>, 4>; // 16 bytes: see tensorCoreWorkgroupBytes" : ""}

${keyTokenWgsl(shape)}
${kvRowWgsl(shape)}

@compute @workgroup_size(${threads})
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  @builtin(subgroup_id) subgroup_id: u32,
  @builtin(subgroup_invocation_id) subgroup_lane: u32,
) {
  ${mmaOnly || ablation === "no-kv-loads" ? "// K and V stay bound (the launch binds them) though this ablation never reads them.\n  _ = &k;\n  _ = &v;" : ""}
  let bh = ${t.headsFirst ? "wg.x" : "wg.y"};
  let b = bh / ${u(shape.heads)};
  let h = bh % ${u(shape.heads)};
  let q0 = ${t.headsFirst ? "wg.y" : "wg.x"} * ${u(rows)};
  // The matrix builtins need offsets the uniformity analysis knows to be subgroup-uniform:
  // subgroup_id is, local_invocation_index / ${sgSize} is not (to the analysis).
  let sg = subgroup_id;
  let lane = subgroup_lane;
  let row = lane / ${u(lpr)};
  let part = lane % ${u(lpr)};
  let s_base = sg * ${u(blocks * sRegion)};
  let p_base = sg * ${u(blocks * pRegion)};
  // The first of this lane's keys in its row (the lazy softmax's; see keyOffsets).
  let lane_key = ${run > 1 ? `part * ${u(run)}` : "part"};
  let s_row = s_base + row * ${u(sStride)} + lane_key;
  let p_row = p_base + row * ${u(pStride)} + lane_key;
  ${lines.join("\n  ")}
  // Q once, through the K/V tile (rows past Nq and dims past d are zeros).
  for (var e = local; e < ${u((rows * dp) / 4)}; e += ${u(threads)}) {
    let r = e / ${u(dp / 4)};
    let c = (e % ${u(dp / 4)}) * 4u;
    var x = vec4<f32>();
    if (q0 + r < ${u(shape.queries)} && c < ${u(d)}) {
      x = vec4<f32>(q[((b * ${u(shape.queries)} + q0 + r) * ${u(hd)} + h * ${u(d)} + c) / 4u]);
    }
    let at = r * ${u(stride)} + c;
    kv_tile[at] = f16(x[0]); kv_tile[at + 1u] = f16(x[1]); kv_tile[at + 2u] = f16(x[2]); kv_tile[at + 3u] = f16(x[3]);
  }
  workgroupBarrier();
  ${rb.flatMap((r) => Array.from({ length: qFrags }, (_, i) => `let qf_${r}_${i} = ${matrixLoad(sp, left(s.k, s.m), "&kv_tile", `sg * ${u(blocks * s.m * stride)} + ${u(r * s.m * stride + i * s.k)}`, false, u(stride))};`)).join("\n  ")}
  ${rb.map((r) => `var m_${r} = ${NEG_BIG};\n  var l_${r} = 0.0;\n  var alpha_${r} = 1.0;`).join("\n  ")}
  ${oInMatrices ? pvDecls.join("\n  ") : ""}
  ${mmaOnly ? rb.flatMap((r) => Array.from({ length: sFrags }, (_, f) => `var sf_${r}_${f} = ${result}();`)).join("\n  ") : ""}
  ${mmaOnly ? "" : kvDecls}
  ${kvPrologue}
  for (var kt = 0u; kt < ${u(Math.ceil(nk / bc))}; kt++) {
    let j0 = kt * ${u(bc)};
    let kv_cur = ${double ? `(kt & 1u) * ${u(kvBuffer)}` : "0u"};
${mmaOnly ? "" : kvStage}
    ${kvPrefetch}
    ${scoreMma.join("\n    ")}
    ${mmaOnly ? "" : "workgroupBarrier();"}
${noSoftmax ? rb.map((r) => `    l_${r} = 1.0;`).join("\n") : rb.map((r) => (lazy ? lazySoftmax(r) : softmax(r))).join("")}
    ${kvPrefetchStore}
    ${mmaOnly ? "" : tail}
    ${pvMma.join("\n    ")}
    ${oInMatrices ? "" : oRound((r, f, c, at) => `o_acc_${r}[${f * colsPerLane + c}] = fma(o_acc_${r}[${f * colsPerLane + c}], alpha_${r}, ${at});`).join("\n    ")}
  }
  ${oInMatrices ? oRound((r, f, c, at) => `o_acc_${r}[${f * colsPerLane + c}] ${lazy ? "+=" : "="} ${at};`).join("\n  ") : ""}
  ${mmaOnly ? `${rb.map((r) => matrixStore(sp, "&s_buf", `s_base + ${u(r * sRegion)}`, `sf_${r}_0`, false, u(sStride))).join("\n  ")}\n  workgroupBarrier();\n  ${rb.map((r) => `o_acc_${r}[0] += s_buf[s_row + ${u(r * sRegion)}];`).join("\n  ")}` : ""}
  ${rb
    .map((r) => {
      const writes = Array.from({ length: oFrags }, (_, f) =>
        Array.from({ length: colsPerLane }, (_, c) => {
          const col = `${u(f * s.n + c * lpr)} + part`;
          return `if (${col} < ${u(d)}) { out[base + ${col}] = T(o_acc_${r}[${f * colsPerLane + c}] * inv); }`;
        }).join("\n      "),
      ).join("\n      ");
      return `{
    let inv = 1.0 / l_${r};
    let q_row = q0 + (sg * ${u(blocks)} + ${u(r)}) * ${u(s.m)} + row;
    if (q_row < ${u(shape.queries)}) {
      let base = (b * ${u(shape.queries)} + q_row) * ${u(hd)} + h * ${u(d)};
      ${writes}
    }
  }`;
    })
    .join("\n  ")}
}
`;
}

export interface AttentionKernel {
  readonly label: string;
  readonly shape: AttentionShape;
  readonly variant: KernelVariant;
  readonly tiling: AttentionTiling;
  /** The subgroup-matrix spelling the tensor-core shader compiled with. */
  readonly matrixSpelling?: MatrixSpelling;
  readonly pipeline: GPUComputePipeline;
  readonly workgroups: [number, number, number];
  launch(buffers: readonly GPUBuffer[]): KernelLaunch;
}

/** Whether a kernel rescales lazily (a tensor-core tiling that asks for it, not an ablation). */
export function lazyRescale(kernel: Pick<AttentionKernel, "variant" | "tiling">): boolean {
  return (
    kernel.variant.path === "tensor-core" &&
    (kernel.tiling.ablation === undefined || kernel.tiling.ablation === "no-kv-loads") &&
    kernel.tiling.rescale === "lazy"
  );
}

export function attentionTilingName(t: AttentionTiling, path: string): string {
  return path === "tensor-core"
    ? `${t.subgroups}sg${rowBlocks(t) > 1 ? ` x ${rowBlocks(t)} row blocks` : ""} x ${t.keysPerTile} keys${t.rescale === "lazy" ? " rescale:lazy" : ""}${t.staging === "double" ? " staging:double" : ""}${t.scorePad ? ` score-pad:${t.scorePad}` : ""}${t.laneKeys === 2 ? " lanes:paired" : t.laneKeys === 4 ? " lanes:quads" : ""}${t.kvPad !== undefined ? ` kv-pad:${t.kvPad}` : ""}${t.headsFirst ? " heads-first" : ""}${t.ablation ? ` ablation:${t.ablation}` : ""}`
    : `${t.keysPerTile} keys`;
}

/**
 * Compiles (or reuses) the attention kernel for a shape. Without a tiling: the fastest measured
 * one that fits workgroup memory at this head dim, and should the device still refuse its
 * pipeline (a driver that lays workgroup memory out with more than our count), the next one in
 * TENSOR_CORE_ATTENTION_ORDER that fits; an explicit tiling gets no fallback.
 */
export async function prepareAttention(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: AttentionShape,
  tiling?: AttentionTiling,
): Promise<AttentionKernel> {
  validate(shape);
  if (tiling) return prepareTiling(ctx, variant, shape, tiling);
  if (variant.path !== "tensor-core")
    return prepareTiling(ctx, variant, shape, DEFAULT_ATTENTION_TILINGS.portable);
  const limit = ctx.capabilities.limits.maxComputeWorkgroupStorageSize;
  const fitting = TENSOR_CORE_ATTENTION_ORDER.filter(
    (c) => tensorCoreWorkgroupBytes(variant, shape.headDim, c) <= limit,
  );
  const candidates = fitting.length > 0 ? fitting : [DEFAULT_ATTENTION_TILINGS.tensorCore];
  for (const [i, t] of candidates.entries()) {
    try {
      return await prepareTiling(ctx, variant, shape, t);
    } catch (error) {
      if (i === candidates.length - 1 || !String(error).includes("cannot create the pipeline"))
        throw error;
    }
  }
  throw new Error("attention: no tiling"); // unreachable: the loop returns or throws
}

async function prepareTiling(
  ctx: GpuContext,
  variant: KernelVariant,
  shape: AttentionShape,
  t: AttentionTiling,
): Promise<AttentionKernel> {
  const tc = variant.path === "tensor-core";
  const limits = ctx.capabilities.limits;
  const g = shape.keyGrid;
  const label = [
    `attention ${shape.batch}x${shape.queries}x${shape.heads}x${shape.headDim}`,
    `keys ${attentionKeys(shape)}${g && g.factor > 1 ? ` (${g.height}x${g.width}/${g.factor})` : ""}${shape.kvByHead ? " K/V by head" : ""}`,
    variant.storage,
    variant.path,
    attentionTilingName(t, variant.path),
  ].join(" ");
  const elements =
    shape.batch * Math.max(shape.queries, shape.kvTokens) * shape.heads * shape.headDim;
  ctx.checkSize(elements, variant.storage, label);
  let rows = 64;
  if (tc) {
    const s = variant.matrix;
    const sgSize = variant.subgroupSize ?? 0;
    if (!s || sgSize % s.m !== 0 || t.keysPerTile % s.n !== 0 || t.keysPerTile % s.k !== 0)
      throw new Error(`${label}: tiling does not fit the matrix shape`);
    if (rowBlocks(t) !== 1 && rowBlocks(t) !== 2)
      throw new Error(`${label}: ${rowBlocks(t)} row blocks per subgroup (1 or 2)`);
    const lpr = sgSize / s.m;
    if ((lpr & (lpr - 1)) !== 0 || t.keysPerTile % lpr !== 0 || s.n % lpr !== 0)
      throw new Error(`${label}: ${lpr} lanes per row do not split the tile`);
    const run = t.laneKeys ?? 1;
    if (run > 1 && (!lazyRescale({ variant, tiling: t }) || (t.keysPerTile / lpr) % run !== 0))
      throw new Error(
        `${label}: softmax lanes on ${run} adjacent keys need a lazy tiling and a multiple of ${run} keys per lane`,
      );
    const bytes = tensorCoreWorkgroupBytes(variant, shape.headDim, t);
    if (bytes > limits.maxComputeWorkgroupStorageSize)
      throw new Error(
        `${label}: needs ${bytes} bytes of workgroup memory, the adapter has ${limits.maxComputeWorkgroupStorageSize}`,
      );
    rows = tensorCoreRows(variant, t);
  } else if (2 * t.keysPerTile * shape.headDim * 4 > limits.maxComputeWorkgroupStorageSize) {
    throw new Error(`${label}: ${t.keysPerTile} keys per tile do not fit workgroup memory`);
  }
  let pipeline: GPUComputePipeline | undefined;
  let spelling: MatrixSpelling | undefined;
  if (tc) {
    // Dawn's current load/store spelling, else the first one (older implementations).
    const errors: string[] = [];
    for (const sp of MATRIX_SPELLINGS) {
      try {
        pipeline = await ctx.pipeline({ label, code: tensorCoreWgsl(variant, shape, t, sp) });
        spelling = sp;
        break;
      } catch (error) {
        errors.push((error as Error).message);
      }
    }
    if (!pipeline) throw new Error(errors.join("; "));
  } else {
    pipeline = await ctx.pipeline({ label, code: portableWgsl(variant, shape, t) });
  }
  const compiled = pipeline;
  const tiles = Math.ceil(shape.queries / rows);
  const workgroups: [number, number, number] =
    tc && t.headsFirst
      ? [shape.batch * shape.heads, tiles, 1]
      : [tiles, shape.batch * shape.heads, 1];
  return {
    label,
    shape,
    variant,
    tiling: t,
    matrixSpelling: spelling,
    pipeline: compiled,
    workgroups,
    launch: (buffers) => ({ pipeline: compiled, buffers, workgroups }),
  };
}

/** Runs a prepared attention kernel into a new tensor (B, Nq, H d). */
export function runAttention(
  ctx: GpuContext,
  kernel: AttentionKernel,
  inputs: { q: GpuTensor; k: GpuTensor; v: GpuTensor },
): GpuTensor {
  const s = kernel.shape;
  const hd = s.heads * s.headDim;
  expectTensor(kernel.label, inputs.q, s.batch * s.queries * hd, kernel.variant.storage, "q");
  expectTensor(kernel.label, inputs.k, s.batch * s.kvTokens * hd, kernel.variant.storage, "k");
  expectTensor(kernel.label, inputs.v, s.batch * s.kvTokens * hd, kernel.variant.storage, "v");
  const out = ctx.allocate([s.batch, s.queries, hd], kernel.variant.storage, "attention output");
  ctx.dispatch([kernel.launch([inputs.q.buffer, inputs.k.buffer, inputs.v.buffer, out.buffer])]);
  return out;
}
