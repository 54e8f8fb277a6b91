/**
 * The WGSL generator behind GEMM and convolution: C[b] = epilogue(A[b] x B[b]) with A (M x K)
 * read through an operand description (a plain matrix for GEMM, an implicit im2col view of an
 * NHWC image for convolution), B (K x N) row-major, accumulation in f32, and a fused epilogue
 * (bias, GELU, GEGLU's gate, residual add). Two instruction paths share the loads and epilogue:
 *
 * - tensor-core: several subgroups per workgroup, each owning a (tileM / subgroupsM) x
 *   (tileN / subgroupsN) block of f32 subgroup-matrix accumulators; A and B tiles are staged in
 *   workgroup memory as f16, double-buffered (the next tile is fetched into registers while the
 *   current one is multiplied; one barrier per K step);
 * - portable: every thread owns threadM x threadN accumulators in registers (f32), tiles staged
 *   in workgroup memory as f32.
 *
 * Split-K (MatmulSpec.splitK): workgroups along z share out K's tiles and write f32 partial
 * sums; a second, elementwise launch adds them and applies the epilogue.
 *
 * Every dimension is a compile-time constant (pipelines are cached per shape), so the compiler
 * drops the bounds checks that a shape makes unnecessary. GEGLU: B has 2 * N columns (the hidden
 * half, then the gate half); a tile's columns are laid out as two halves, hidden then gate, and
 * each thread or subgroup owns matching columns of both, so the gate is applied in registers.
 */
import type { KernelVariant } from "../variants.js";
import {
  GELU_WGSL,
  type MatrixSpelling,
  matrixLoad,
  matrixStore,
  storagePreamble,
  u32Literal as u,
} from "../wgsl.js";
import { grid1d, WORKGROUP } from "./elementwise.js";

export type Epilogue = "none" | "gelu" | "geglu";

/** Tile shape of the portable path. */
export interface PortableTiling {
  readonly kind: "portable";
  readonly tileM: number;
  readonly tileN: number;
  readonly tileK: number;
  readonly threadM: number;
  readonly threadN: number;
}

/** Tile shape of the tensor-core path. */
export interface MatrixTiling {
  readonly kind: "tensor-core";
  readonly tileM: number;
  readonly tileN: number;
  readonly tileK: number;
  readonly subgroupsM: number;
  readonly subgroupsN: number;
  /** Extra f16 elements per staged row (against bank conflicts). */
  readonly pad: number;
  /**
   * Timing only, the results are wrong: leave out part of the work to measure what the rest
   * costs. `no-global-loads`: the tiles are staged once, then every K step reuses them (no loads
   * from storage, no stores to workgroup memory); `mma-only`: also the matrix fragments are loaded
   * once, so the loop is the multiply-accumulates alone (the instruction's own ceiling).
   */
  readonly ablation?: "no-global-loads" | "mma-only";
}

export type Tiling = PortableTiling | MatrixTiling;

/**
 * How A's tile is read. `rowSetup(j)` runs once per row a thread loads (`row_j`, the global row,
 * and `batch` are in scope) and `load(j, k)` is the statements that set `a_j` (a vector of
 * `vectorWidth` T, already zero) from column `k` when in bounds.
 */
export interface OperandA {
  readonly vectorWidth: 1 | 4;
  /** Elements per entry of A's binding (default vectorWidth): 1 where a vector is gathered. */
  readonly bindingWidth?: 1 | 4;
  /**
   * Threads take consecutive rows of the tile (default: consecutive vectors along K), for an A
   * whose rows are adjacent in memory at a fixed k (a channels-first image), so that a warp's
   * loads coalesce.
   */
  readonly rowsFastest?: boolean;
  readonly declarations: string;
  rowSetup(j: number): string;
  load(j: number, k: string): string;
}

export interface MatmulSpec {
  readonly label: string;
  readonly variant: KernelVariant;
  readonly tiling: Tiling;
  readonly batch: number;
  readonly m: number;
  /** Output columns (for GEGLU, half of B's columns). */
  readonly n: number;
  readonly k: number;
  readonly a: OperandA;
  /** Elements between the B matrices of consecutive batches (0: one B for all). */
  readonly bBatchStride: number;
  readonly bias: boolean;
  readonly epilogue: Epilogue;
  readonly residual: boolean;
  /**
   * How the tensor-core path tells its subgroups apart. The matrix builtins need a pointer offset
   * that is uniform across the subgroup: `builtin` takes WGSL's subgroup_id (which the uniformity
   * analysis knows to be subgroup-uniform); `division` computes local_invocation_index / size and
   * switches the subgroup-uniformity diagnostic off (the index is uniform per subgroup on
   * hardware that forms subgroups from consecutive invocations, which every driver does).
   */
  readonly subgroupIndex?: "builtin" | "division";
  /** How the matrix loads and stores are spelled (wgsl.ts; default: Dawn's current form). */
  readonly matrixSpelling?: MatrixSpelling;
  /**
   * Channels-first output (a convolution's NCHW): row r of C is pixel r % planeSize of image
   * r / planeSize, column c its channel, and C (and the residual) are laid out (images, N,
   * planeSize). Left out: row-major (M, N).
   */
  readonly planeSize?: number;
  /**
   * Split-K (as in CUTLASS's split-K GEMMs): K's tiles are shared out over this many workgroups
   * per output tile, each writing its f32 partial sums; a second launch (matmulReduceWgsl) adds
   * them up and applies the epilogue. For problems whose output tiles alone leave most of the GPU
   * idle while K is long (the UNet's deep levels: 128 to 512 rows, K = 11,520). Default 1: one
   * launch, the epilogue in the kernel. Made with every split holding at least one K tile
   * (normalSplitK).
   */
  readonly splitK?: number;
}

/**
 * A split of K that leaves no split empty: K tiles per split rounded up, then only as many
 * splits as that takes. Returns 1 for a request of 1 or less.
 */
export function normalSplitK(kTiles: number, requested: number): number {
  if (!Number.isInteger(requested) || requested < 1)
    throw new Error(`split-K must be a whole number of 1 or more, not ${requested}`);
  const split = Math.min(requested, kTiles);
  return Math.ceil(kTiles / Math.ceil(kTiles / split));
}

/** How many workgroups share K: the spec's splitK, or 1. */
export function splitOf(spec: Pick<MatmulSpec, "splitK">): number {
  return spec.splitK ?? 1;
}

/** f32 values of a split-K kernel's partial sums (0 without a split). */
export function partialElements(spec: MatmulSpec): number {
  const split = splitOf(spec);
  return split === 1 ? 0 : split * spec.batch * spec.m * partialWidth(spec);
}

/** Columns of a partial-sum row: the output's, and GEGLU's gate columns after them. */
function partialWidth(spec: Pick<MatmulSpec, "n" | "epilogue">): number {
  return spec.epilogue === "geglu" ? 2 * spec.n : spec.n;
}

/** Binding order of a matmul kernel: A, B, C, then bias and residual when present. */
export function matmulBindings(spec: Pick<MatmulSpec, "bias" | "residual">): string[] {
  return ["a", "b", "c", ...(spec.bias ? ["bias"] : []), ...(spec.residual ? ["residual"] : [])];
}

/** Workgroups to dispatch: (column tiles, row tiles, batch). */
export function matmulGrid(spec: MatmulSpec): [number, number, number] {
  const outPerTile = spec.epilogue === "geglu" ? spec.tiling.tileN / 2 : spec.tiling.tileN;
  return [
    Math.ceil(spec.n / outPerTile),
    Math.ceil(spec.m / spec.tiling.tileM),
    spec.batch * splitOf(spec),
  ];
}

export function workgroupThreads(tiling: Tiling, subgroupSize: number): number {
  return tiling.kind === "portable"
    ? (tiling.tileM / tiling.threadM) * (tiling.tileN / tiling.threadN)
    : tiling.subgroupsM * tiling.subgroupsN * subgroupSize;
}

/** Bytes of workgroup memory the kernel declares. */
export function workgroupBytes(spec: MatmulSpec): number {
  const t = spec.tiling;
  if (t.kind === "portable") return 4 * t.tileK * (t.tileM + t.tileN);
  const shape = spec.variant.matrix;
  if (!shape) throw new Error(`${spec.label}: the tensor-core path needs a matrix shape`);
  const staged = 2 * 2 * (t.tileM * (t.tileK + t.pad) + t.tileK * (t.tileN + t.pad));
  return staged + 4 * t.subgroupsM * t.subgroupsN * shape.m * shape.n;
}

/** Checks a tiling against a problem and the variant; returns why it cannot be used. */
export function tilingProblem(
  spec: MatmulSpec,
  maxThreads: number,
  maxBytes: number,
): string | undefined {
  if (
    spec.tiling.kind === "tensor-core" &&
    (!spec.variant.matrix || spec.variant.path !== "tensor-core" || spec.variant.storage !== "f16")
  )
    return "the tensor-core tiling needs an f16 tensor-core variant";
  const t = spec.tiling;
  const kTiles = Math.ceil(spec.k / t.tileK);
  const split = splitOf(spec);
  if (split !== 1 && normalSplitK(kTiles, split) !== split)
    return `split-K ${split} leaves a split without K tiles (${kTiles} of ${t.tileK})`;
  const sgSize = spec.variant.subgroupSize ?? 32;
  const threads = workgroupThreads(t, sgSize);
  if (threads > maxThreads) return `${threads} threads per workgroup (limit ${maxThreads})`;
  const bytes = workgroupBytes(spec);
  if (bytes > maxBytes) return `${bytes} bytes of workgroup memory (limit ${maxBytes})`;
  const vb = bVectorWidth(spec);
  if (t.tileK % spec.a.vectorWidth !== 0 || t.tileN % (2 * vb) !== 0)
    return "tile not a multiple of the load width";
  if ((t.tileM * t.tileK) % (threads * spec.a.vectorWidth) !== 0)
    return "A tile does not split evenly over the threads";
  if ((t.tileK * t.tileN) % (threads * vb) !== 0)
    return "B tile does not split evenly over the threads";
  if (threads % (t.tileK / spec.a.vectorWidth) !== 0)
    return "threads not a multiple of A's vectors per row";
  if (threads % (t.tileN / vb) !== 0) return "threads not a multiple of B's vectors per row";
  if (t.kind === "portable") {
    if (t.tileM % t.threadM !== 0 || t.tileN % t.threadN !== 0 || t.threadN % 2 !== 0)
      return "thread tile does not divide the tile";
  } else {
    const s = spec.variant.matrix;
    if (!s || spec.variant.path !== "tensor-core" || spec.variant.storage !== "f16")
      return "the tensor-core tiling needs an f16 tensor-core variant";
    const wm = t.tileM / t.subgroupsM;
    const wn = t.tileN / t.subgroupsN;
    if (wm % s.m !== 0 || wn % (2 * s.n) !== 0 || t.tileK % s.k !== 0)
      return `subgroup block ${wm}x${wn}x${t.tileK} is not a multiple of the ${s.m}x${s.n}x${s.k} matrix`;
    if (t.tileN % (2 * t.subgroupsN) !== 0)
      return "tile columns do not split in halves per subgroup";
  }
  return undefined;
}

/** Width of B's vector loads: 4 when rows of B (and each half for GEGLU) are multiples of 4. */
export function bVectorWidth(spec: Pick<MatmulSpec, "n" | "epilogue">): 1 | 4 {
  const rowWidth = spec.epilogue === "geglu" ? spec.n : spec.n;
  return rowWidth % 4 === 0 ? 4 : 1;
}

function vecType(width: 1 | 4): string {
  return width === 4 ? "T4" : "T";
}

function components(width: 1 | 4, name: string): string[] {
  return width === 4 ? [0, 1, 2, 3].map((q) => `${name}[${q}]`) : [name];
}

/**
 * The epilogue's WGSL: writes output (row, col) from the accumulator value(s). A split-K kernel's
 * writes its raw sums to its split's partials instead (partialFunction).
 */
function epilogueFunction(spec: MatmulSpec, split = splitOf(spec)): string {
  if (split > 1) return partialFunction(spec);
  const { m, n, bias, residual, epilogue } = spec;
  const ld = epilogue === "geglu" ? 2 * n : n;
  const lines = [
    `fn write_out(batch: u32, row: u32, col: u32, value: f32, gate: f32) {`,
    `  if (row >= ${u(m)} || col >= ${u(n)}) { return; }`,
    `  var h = value;`,
    `  var g = gate;`,
  ];
  if (bias) {
    lines.push(`  h += f32(bias[col]);`);
    if (epilogue === "geglu") lines.push(`  g += f32(bias[col + ${u(n)}]);`);
  }
  if (epilogue === "gelu") lines.push("  h = gelu_f32(h);");
  if (epilogue === "geglu") lines.push("  h = h * gelu_f32(g);");
  const p = spec.planeSize;
  lines.push(
    p === undefined
      ? `  let index = batch * ${u(m * n)} + row * ${u(n)} + col;`
      : `  let index = batch * ${u(m * n)} + (row / ${u(p)}) * ${u(n * p)} + col * ${u(p)} + row % ${u(p)};`,
  );
  if (residual) lines.push("  h += f32(residual[index]);");
  lines.push("  c[index] = T(h);", "}");
  void ld;
  return lines.join("\n");
}

/**
 * A split-K kernel's write: split k_split's sums, row-major (GEGLU's gate sums n columns after
 * the hidden ones), for matmulReduceWgsl to add up. Bias, activation and residual wait for it.
 */
function partialFunction(spec: MatmulSpec): string {
  const pw = partialWidth(spec);
  return [
    "var<private> k_split: u32;",
    "fn write_out(batch: u32, row: u32, col: u32, value: f32, gate: f32) {",
    `  if (row >= ${u(spec.m)} || col >= ${u(spec.n)}) { return; }`,
    `  let at = ((k_split * ${u(spec.batch)} + batch) * ${u(spec.m)} + row) * ${u(pw)} + col;`,
    "  c[at] = value;",
    ...(spec.epilogue === "geglu" ? [`  c[at + ${u(spec.n)}] = gate;`] : []),
    "}",
  ].join("\n");
}

/**
 * The K tiles a workgroup multiplies, as WGSL expressions, and the statements that set them up:
 * all of them without a split (literals, so the loop is the same as ever), else its split's share.
 */
function kRange(
  spec: MatmulSpec,
  tileK: number,
): { setup: string; begin: string; end: string; split: boolean } {
  const kTiles = Math.ceil(spec.k / tileK);
  const split = splitOf(spec);
  if (split === 1) return { setup: "let batch = wg.z;", begin: "0u", end: u(kTiles), split: false };
  const perSplit = Math.ceil(kTiles / split);
  return {
    setup: [
      `let batch = wg.z % ${u(spec.batch)};`,
      // The loop bounds come from the workgroup id itself (uniform, as the barriers inside the
      // loop need); the private copy serves write_out.
      `let split_id = wg.z / ${u(spec.batch)};`,
      "k_split = split_id;",
      `let kt_begin = split_id * ${u(perSplit)};`,
      `let kt_end = min(kt_begin + ${u(perSplit)}, ${u(kTiles)});`,
    ].join("\n  "),
    begin: "kt_begin",
    end: "kt_end",
    split: true,
  };
}

function bindingsWgsl(spec: MatmulSpec, bWidth: 1 | 4): string {
  // A split-K kernel writes f32 partial sums in C's place and leaves bias and residual to the
  // reduction.
  if (splitOf(spec) > 1)
    return [
      `@group(0) @binding(0) var<storage, read> a: array<${vecType(spec.a.bindingWidth ?? spec.a.vectorWidth)}>;`,
      `@group(0) @binding(1) var<storage, read> b: array<${vecType(bWidth)}>;`,
      "@group(0) @binding(2) var<storage, read_write> c: array<f32>;",
    ].join("\n");
  const names = matmulBindings(spec);
  const types: Record<string, string> = {
    a: `array<${vecType(spec.a.bindingWidth ?? spec.a.vectorWidth)}>`,
    b: `array<${vecType(bWidth)}>`,
    c: "array<T>",
    bias: "array<T>",
    residual: "array<T>",
  };
  return names
    .map(
      (name, i) =>
        `@group(0) @binding(${i}) var<storage, ${name === "c" ? "read_write" : "read"}> ${name}: ${types[name]};`,
    )
    .join("\n");
}

/**
 * Loads of one K step from storage into registers: `a_j` for A's rows, `b_j` for B's rows.
 * `aRows` / `bRows` give the per-thread load counts; returns statements with `k0` in scope.
 */
function loadStatements(
  spec: MatmulSpec,
  threads: number,
  bWidth: 1 | 4,
): {
  setup: string;
  load: string;
  aLoads: number;
  bLoads: number;
  aVecsPerRow: number;
  bVecsPerRow: number;
} {
  const t = spec.tiling;
  const va = spec.a.vectorWidth;
  const aVecsPerRow = t.tileK / va;
  const aLoads = (t.tileM * t.tileK) / va / threads;
  const bVecsPerRow = t.tileN / bWidth;
  const bLoads = (t.tileK * t.tileN) / bWidth / threads;
  const bRowStep = threads / bVecsPerRow;
  const setup: string[] = [
    `let b_cv = (local % ${u(bVecsPerRow)}) * ${u(bWidth)};`,
    `let b_r = local / ${u(bVecsPerRow)};`,
  ];
  // Load j of a thread takes vector a_e_j of the tile: row a_r_j, column a_kv_j.
  for (let j = 0; j < aLoads; j++) {
    setup.push(
      `let a_e_${j} = local + ${u(j * threads)};`,
      spec.a.rowsFastest
        ? `let a_r_${j} = a_e_${j} % ${u(t.tileM)};
  let a_kv_${j} = (a_e_${j} / ${u(t.tileM)}) * ${u(va)};`
        : `let a_r_${j} = a_e_${j} / ${u(aVecsPerRow)};
  let a_kv_${j} = (a_e_${j} % ${u(aVecsPerRow)}) * ${u(va)};`,
      `let row_${j} = m0 + a_r_${j};`,
      spec.a.rowSetup(j),
    );
  }
  // B's column for this thread (fixed over K): GEGLU tiles take half their columns from the
  // hidden half of B and half from the gate half.
  const half = t.tileN / 2;
  const geglu = spec.epilogue === "geglu";
  const ldb = geglu ? 2 * spec.n : spec.n;
  if (geglu) {
    setup.push(
      `let b_half = b_cv / ${u(half)};`,
      `let b_col = tile_x * ${u(half)} + (b_cv % ${u(half)});`,
      `let b_col_ok = b_col < ${u(spec.n)};`,
      `let b_phys = b_col + b_half * ${u(spec.n)};`,
    );
  } else {
    setup.push(
      `let b_col = tile_x * ${u(t.tileN)} + b_cv;`,
      `let b_col_ok = b_col < ${u(spec.n)};`,
      "let b_phys = b_col;",
    );
  }
  setup.push(`let b_base = batch * ${u(spec.bBatchStride)} + b_phys;`);
  const load: string[] = [];
  const kExact = spec.k % t.tileK === 0;
  for (let j = 0; j < aLoads; j++) {
    load.push(`a_${j} = ${vecType(va)}();`, spec.a.load(j, `(k0 + a_kv_${j})`));
  }
  for (let j = 0; j < bLoads; j++) {
    const kr = `(k0 + b_r + ${u(j * bRowStep)})`;
    const cond = kExact ? "b_col_ok" : `b_col_ok && ${kr} < ${u(spec.k)}`;
    load.push(
      `b_${j} = ${vecType(bWidth)}();`,
      `if (${cond}) { b_${j} = b[(b_base + ${kr} * ${u(ldb)}) / ${u(bWidth)}]; }`,
    );
  }
  return {
    setup: setup.join("\n  "),
    load: load.join("\n    "),
    aLoads,
    bLoads,
    aVecsPerRow,
    bVecsPerRow,
  };
}

/**
 * The second launch of a split-K matmul: each thread adds one output's partial sums over the
 * splits, in f32 and in split order, then applies the epilogue (bias, activation, residual) as
 * the one-launch kernel does. Bindings: the partials, C, then bias and residual when present.
 * Threads take consecutive columns of a row-major output and consecutive rows (pixels) of a
 * channels-first one, so that their writes coalesce.
 */
export function matmulReduceWgsl(spec: MatmulSpec): string {
  const split = splitOf(spec);
  if (split === 1) throw new Error(`${spec.label}: no split-K, nothing to reduce`);
  const { batch, m, n } = spec;
  const pw = partialWidth(spec);
  const g = grid1d(batch * m * n);
  const bindings = ["@group(0) @binding(0) var<storage, read> partials: array<f32>;"];
  for (const [i, name] of matmulBindings(spec).slice(2).entries())
    bindings.push(
      `@group(0) @binding(${i + 1}) var<storage, ${name === "c" ? "read_write" : "read"}> ${name}: array<T>;`,
    );
  const [row, col] =
    spec.planeSize === undefined
      ? [`rest / ${u(n)}`, `rest % ${u(n)}`]
      : [`rest % ${u(m)}`, `rest / ${u(m)}`];
  return `${storagePreamble(spec.variant.storage)}
${bindings.join("\n")}
${spec.epilogue !== "none" ? GELU_WGSL : ""}
${epilogueFunction(spec, 1)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let e = ${g.index};
  if (e >= ${u(batch * m * n)}) { return; }
  let batch = e / ${u(m * n)};
  let rest = e % ${u(m * n)};
  let row = ${row};
  let col = ${col};
  var value = 0.0;
  var gate = 0.0;
  for (var s = 0u; s < ${u(split)}; s++) {
    let at = ((s * ${u(batch)} + batch) * ${u(m)} + row) * ${u(pw)} + col;
    value += partials[at];${
      spec.epilogue === "geglu"
        ? `
    gate += partials[at + ${u(n)}];`
        : ""
    }
  }
  write_out(batch, row, col, value, gate);
}
`;
}

/** Workgroups of a split-K matmul's reduction (matmulReduceWgsl). */
export function matmulReduceGrid(spec: MatmulSpec): [number, number, number] {
  return grid1d(spec.batch * spec.m * spec.n).workgroups;
}

/** WGSL for one matmul kernel. */
export function matmulWgsl(spec: MatmulSpec): string {
  return spec.tiling.kind === "portable"
    ? portableWgsl(spec, spec.tiling)
    : matrixWgsl(spec, spec.tiling);
}

function portableWgsl(spec: MatmulSpec, t: PortableTiling): string {
  const threadsN = t.tileN / t.threadN;
  const threads = (t.tileM / t.threadM) * threadsN;
  const bWidth = bVectorWidth(spec);
  const va = spec.a.vectorWidth;
  const loads = loadStatements(spec, threads, bWidth);
  const bRowStep = threads / loads.bVecsPerRow;
  const half = t.tileN / 2;
  const rnHalf = t.threadN / 2;
  const store: string[] = [];
  for (let j = 0; j < loads.aLoads; j++) {
    components(va, `a_${j}`).forEach((value, q) => {
      store.push(`a_tile[(a_kv_${j} + ${u(q)}) * ${u(t.tileM)} + a_r_${j}] = f32(${value});`);
    });
  }
  for (let j = 0; j < loads.bLoads; j++) {
    components(bWidth, `b_${j}`).forEach((value, q) => {
      store.push(
        `b_tile[(b_r + ${u(j * bRowStep)}) * ${u(t.tileN)} + b_cv + ${u(q)}] = f32(${value});`,
      );
    });
  }
  const decls = [
    ...Array.from({ length: loads.aLoads }, (_, j) => `var a_${j}: ${vecType(va)};`),
    ...Array.from({ length: loads.bLoads }, (_, j) => `var b_${j}: ${vecType(bWidth)};`),
  ];
  const geglu = spec.epilogue === "geglu";
  // Thread column j of tx: the first threadN/2 in the tile's first half, the rest in the second.
  const colOf = (j: number) =>
    `${u(Math.floor(j / rnHalf) * half)} + tx * ${u(rnHalf)} + ${u(j % rnHalf)}`;
  const epilogue: string[] = [];
  for (let i = 0; i < t.threadM; i++) {
    epilogue.push(`let out_row_${i} = m0 + ty * ${u(t.threadM)} + ${u(i)};`);
    if (geglu) {
      for (let j = 0; j < rnHalf; j++)
        epilogue.push(
          `write_out(batch, out_row_${i}, tile_x * ${u(half)} + tx * ${u(rnHalf)} + ${u(j)}, acc[${i * t.threadN + j}], acc[${i * t.threadN + j + rnHalf}]);`,
        );
    } else {
      for (let j = 0; j < t.threadN; j++)
        epilogue.push(
          `write_out(batch, out_row_${i}, tile_x * ${u(t.tileN)} + ${colOf(j)}, acc[${i * t.threadN + j}], 0.0);`,
        );
    }
  }
  const range = kRange(spec, t.tileK);
  return `${storagePreamble(spec.variant.storage)}
${bindingsWgsl(spec, bWidth)}
${spec.a.declarations}
${spec.epilogue !== "none" ? GELU_WGSL : ""}
${epilogueFunction(spec)}

var<workgroup> a_tile: array<f32, ${t.tileK * t.tileM}>;
var<workgroup> b_tile: array<f32, ${t.tileK * t.tileN}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let tile_x = wg.x;
  let m0 = wg.y * ${u(t.tileM)};
  ${range.setup}
  let tx = local % ${u(threadsN)};
  let ty = local / ${u(threadsN)};
  ${loads.setup}
  ${decls.join("\n  ")}
  var acc: array<f32, ${t.threadM * t.threadN}>;
  var a_reg: array<f32, ${t.threadM}>;
  var b_reg: array<f32, ${t.threadN}>;
  for (var kt = ${range.begin}; kt < ${range.end}; kt++) {
    let k0 = kt * ${u(t.tileK)};
    ${loads.load}
    workgroupBarrier();
    ${store.join("\n    ")}
    workgroupBarrier();
    for (var kk = 0u; kk < ${u(t.tileK)}; kk++) {
      for (var i = 0u; i < ${u(t.threadM)}; i++) {
        a_reg[i] = a_tile[kk * ${u(t.tileM)} + ty * ${u(t.threadM)} + i];
      }
      for (var j = 0u; j < ${u(t.threadN)}; j++) {
        b_reg[j] = b_tile[kk * ${u(t.tileN)} + (j / ${u(rnHalf)}) * ${u(half)} + tx * ${u(rnHalf)} + (j % ${u(rnHalf)})];
      }
      for (var i = 0u; i < ${u(t.threadM)}; i++) {
        for (var j = 0u; j < ${u(t.threadN)}; j++) {
          acc[i * ${u(t.threadN)} + j] = fma(a_reg[i], b_reg[j], acc[i * ${u(t.threadN)} + j]);
        }
      }
    }
  }
  ${epilogue.join("\n  ")}
}
`;
}

function matrixWgsl(spec: MatmulSpec, t: MatrixTiling): string {
  const s = spec.variant.matrix;
  const sgSize = spec.variant.subgroupSize;
  if (!s || !sgSize) throw new Error(`${spec.label}: the tensor-core path needs a matrix shape`);
  const subgroups = t.subgroupsM * t.subgroupsN;
  const threads = subgroups * sgSize;
  const bWidth = bVectorWidth(spec);
  const va = spec.a.vectorWidth;
  const loads = loadStatements(spec, threads, bWidth);
  const bRowStep = threads / loads.bVecsPerRow;
  const strideA = t.tileK + t.pad;
  const strideB = t.tileN + t.pad;
  const aSize = t.tileM * strideA;
  const bSize = t.tileK * strideB;
  const wm = t.tileM / t.subgroupsM;
  const wn = t.tileN / t.subgroupsN;
  const fm = wm / s.m;
  const fn = wn / s.n;
  const fnHalf = fn / 2;
  const half = t.tileN / 2;
  const geglu = spec.epilogue === "geglu";
  const range = kRange(spec, t.tileK);
  const store: string[] = [];
  for (let j = 0; j < loads.aLoads; j++) {
    components(va, `a_${j}`).forEach((value, q) => {
      store.push(
        `a_tile[buf * ${u(aSize)} + a_r_${j} * ${u(strideA)} + a_kv_${j} + ${u(q)}] = f16(${value});`,
      );
    });
  }
  for (let j = 0; j < loads.bLoads; j++) {
    components(bWidth, `b_${j}`).forEach((value, q) => {
      store.push(
        `b_tile[buf * ${u(bSize)} + (b_r + ${u(j * bRowStep)}) * ${u(strideB)} + b_cv + ${u(q)}] = f16(${value});`,
      );
    });
  }
  const decls = [
    ...Array.from({ length: loads.aLoads }, (_, j) => `var a_${j}: ${vecType(va)};`),
    ...Array.from({ length: loads.bLoads }, (_, j) => `var b_${j}: ${vecType(bWidth)};`),
  ];
  const sp = spec.matrixSpelling ?? "template";
  const left = `subgroup_matrix_left<f16, ${s.k}, ${s.m}>`;
  const right = `subgroup_matrix_right<f16, ${s.n}, ${s.k}>`;
  const result = `subgroup_matrix_result<f32, ${s.n}, ${s.m}>`;
  // Fragment column f of a subgroup: the first fn/2 in the tile's first half, the rest in the
  // second, so GEGLU's hidden and gate fragments sit in the same subgroup.
  const fragCol = (f: number) =>
    `${u(Math.floor(f / fnHalf) * half)} + sg_n * ${u(fnHalf * s.n)} + ${u((f % fnHalf) * s.n)}`;
  const accDecls: string[] = [];
  for (let i = 0; i < fm; i++)
    for (let f = 0; f < fn; f++) accDecls.push(`var acc_${i}_${f} = ${result}();`);
  const compute: string[] = [];
  const fragmentLoads: string[] = [];
  const multiplies: string[] = [];
  for (let kk = 0; kk < t.tileK; kk += s.k) {
    for (let i = 0; i < fm; i++)
      compute.push(
        `let l_${kk}_${i} = ${matrixLoad(sp, left, "&a_tile", `a_off + ${u(i * s.m * strideA + kk)}`, false, u(strideA))};`,
      );
    for (let f = 0; f < fn; f++)
      compute.push(
        `let r_${kk}_${f} = ${matrixLoad(sp, right, "&b_tile", `b_off + ${u(kk * strideB)} + ${fragCol(f)}`, false, u(strideB))};`,
      );
    for (let i = 0; i < fm; i++)
      for (let f = 0; f < fn; f++)
        compute.push(
          `acc_${i}_${f} = subgroupMatrixMultiplyAccumulate(l_${kk}_${i}, r_${kk}_${f}, acc_${i}_${f});`,
        );
  }
  for (const line of compute) (line.startsWith("let ") ? fragmentLoads : multiplies).push(line);
  const ablation = t.ablation;
  const frag = s.m * s.n;
  const perLane = frag / sgSize;
  // Each subgroup passes its accumulators through a scratch fragment of its own in workgroup
  // memory (a subgroup matrix's layout in registers is opaque); for GEGLU the hidden fragment's
  // values are held in registers while its gate fragment takes the scratch.
  // Row-major output: the scratch holds the fragment row-major and consecutive lanes take
  // consecutive columns (adjacent in C). Channels-first output: column-major, so consecutive
  // lanes take consecutive rows (adjacent pixels of one channel plane) and the writes coalesce.
  // (A split-K kernel writes row-major partial sums whatever the output's layout.)
  const channelsFirst = spec.planeSize !== undefined && !range.split;
  const [rowOfE, colOfE] = channelsFirst
    ? [`e % ${u(s.m)}`, `e / ${u(s.m)}`]
    : [`e / ${u(s.n)}`, `e % ${u(s.n)}`];
  const epilogue: string[] = [];
  const stash = (i: number, f: number) => [
    "workgroupBarrier();",
    matrixStore(
      sp,
      "&scratch",
      `sg * ${u(frag)}`,
      `acc_${i}_${f}`,
      channelsFirst,
      u(channelsFirst ? s.m : s.n),
    ),
    "workgroupBarrier();",
  ];
  for (let i = 0; i < fm; i++) {
    const pairs = geglu ? fnHalf : fn;
    for (let f = 0; f < pairs; f++) {
      if (geglu) {
        epilogue.push(...stash(i, f));
        epilogue.push(
          `for (var q = 0u; q < ${u(perLane)}; q++) { hidden[q] = scratch[sg * ${u(frag)} + lane + q * ${u(sgSize)}]; }`,
        );
        epilogue.push(...stash(i, f + fnHalf));
      } else {
        epilogue.push(...stash(i, f));
      }
      const colBase = geglu
        ? `tile_x * ${u(half)} + sg_n * ${u(fnHalf * s.n)} + ${u(f * s.n)}`
        : `tile_x * ${u(t.tileN)} + ${fragCol(f)}`;
      epilogue.push(
        `for (var q = 0u; q < ${u(perLane)}; q++) {`,
        `  let e = lane + q * ${u(sgSize)};`,
        `  let value = ${geglu ? "hidden[q]" : `scratch[sg * ${u(frag)} + e]`};`,
        `  let gate = ${geglu ? `scratch[sg * ${u(frag)} + e]` : "0.0"};`,
        `  write_out(batch, m0 + sg_m * ${u(wm)} + ${u(i * s.m)} + ${rowOfE}, ${colBase} + ${colOfE}, value, gate);`,
        "}",
      );
    }
  }
  const builtinIndex = (spec.subgroupIndex ?? "builtin") === "builtin";
  return `${builtinIndex ? "" : "diagnostic(off, subgroup_uniformity);\n"}${storagePreamble(spec.variant.storage, ["chromium_experimental_subgroup_matrix", ...(builtinIndex ? ["subgroups"] : [])])}
${bindingsWgsl(spec, bWidth)}
${spec.a.declarations}
${spec.epilogue !== "none" ? GELU_WGSL : ""}
${epilogueFunction(spec)}

var<workgroup> a_tile: array<f16, ${2 * aSize}>;
var<workgroup> b_tile: array<f16, ${2 * bSize}>;
var<workgroup> scratch: array<f32, ${subgroups * frag}>;

@compute @workgroup_size(${threads})
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  ${builtinIndex ? "@builtin(subgroup_id) subgroup_id: u32,\n  @builtin(subgroup_invocation_id) subgroup_lane: u32," : ""}
) {
  let tile_x = wg.x;
  let m0 = wg.y * ${u(t.tileM)};
  ${range.setup}
  let sg = ${builtinIndex ? "subgroup_id" : `local / ${u(sgSize)}`};
  let lane = ${builtinIndex ? "subgroup_lane" : `local % ${u(sgSize)}`};
  let sg_m = sg / ${u(t.subgroupsN)};
  let sg_n = sg % ${u(t.subgroupsN)};
  ${loads.setup}
  ${decls.join("\n  ")}
  ${accDecls.join("\n  ")}
  var hidden: array<f32, ${perLane}>;
  // Prologue: the first K step into buffer 0.
  {
    let k0 = ${range.split ? `${range.begin} * ${u(t.tileK)}` : "0u"};
    let buf = 0u;
    ${loads.load}
    ${store.join("\n    ")}
  }
  workgroupBarrier();
  ${
    ablation === "mma-only"
      ? `let a_off = sg_m * ${u(wm * strideA)};
  let b_off = 0u;
  ${fragmentLoads.join("\n  ")}
  for (var kt = ${range.begin}; kt < ${range.end}; kt++) {
    ${multiplies.join("\n    ")}
  }`
      : ablation === "no-global-loads"
        ? `for (var kt = ${range.begin}; kt < ${range.end}; kt++) {
    let a_off = sg_m * ${u(wm * strideA)};
    let b_off = 0u;
    ${compute.join("\n    ")}
    workgroupBarrier();
  }`
        : `for (var kt = ${range.begin}; kt < ${range.end}; kt++) {
    let cur = ${range.split ? `(kt - ${range.begin})` : "kt"} % 2u;
    let more = kt + 1u < ${range.end};
    if (more) {
      let k0 = (kt + 1u) * ${u(t.tileK)};
      ${loads.load}
    }
    let a_off = cur * ${u(aSize)} + sg_m * ${u(wm * strideA)};
    let b_off = cur * ${u(bSize)};
    ${compute.join("\n    ")}
    if (more) {
      let buf = 1u - cur;
      ${store.join("\n      ")}
    }
    workgroupBarrier();
  }`
  }
  ${epilogue.join("\n  ")}
}
`;
}
