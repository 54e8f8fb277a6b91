/**
 * A compiled matmul kernel (GEMM or convolution): its spec, pipeline and grid, ready to launch
 * on buffers. Shared by gemm.ts and conv2d.ts.
 */
import { expectTensor, type GpuContext, type GpuTensor, type KernelLaunch } from "../context.js";
import type { KernelVariant } from "../variants.js";
import { MATRIX_SPELLINGS } from "../wgsl.js";
import {
  type MatmulSpec,
  type MatrixTiling,
  matmulGrid,
  matmulReduceGrid,
  matmulReduceWgsl,
  matmulWgsl,
  normalSplitK,
  type PortableTiling,
  partialElements,
  splitOf,
  type Tiling,
  tilingProblem,
} from "./matmul-wgsl.js";

/**
 * The portable tile for a fallback (CPU) adapter: on SwiftShader it compiles in about a second
 * and runs the engine's small test models faster than the default tile (BENCHMARKS.md), which a
 * CPU driver gains nothing from.
 */
export const SMALL_PORTABLE_TILING: PortableTiling = Object.freeze({
  kind: "portable",
  tileM: 32,
  tileN: 32,
  tileK: 8,
  threadM: 4,
  threadN: 4,
});

/**
 * The tilings used unless one is given, each measured at the SD 1.5 UNet's shapes on an H100
 * (BENCHMARKS.md, scripts/tile-sweep.mjs and whole UNet calls):
 * - `tensorCore`, convolutions: 128x128x32 on 2x4 subgroups. At 1024 px it ran the 128 x 128 maps'
 *   3x3 convolutions 1.23-1.26x faster than 64x128 on 2x4 subgroups (320 -> 320 channels:
 *   0.513 ms against 0.646).
 * - `gemm`, GEMMs narrower than WIDE_GEMM_COLUMNS: 64x128x32 on 2x4 subgroups, 1.6-3.2x faster
 *   than 128x128 where K is long (the feed-forward's second Linear: 32768 x 320 x 1280 took
 *   0.293 ms against 0.477; 2048 x 1280 x 5120 0.268 against 0.855), 10% slower on the 32768 x
 *   320 x 320 projections. With it (and the half-rows tile on 2x4 subgroups below) whole 1024 px
 *   UNet calls went from 169-173 ms to 154 ms, measured with the convolutions on this tile too;
 *   they keep 128x128 since, the faster at their large grids in the sweep of the same card.
 * - `wideGemm`, GEMMs of WIDE_GEMM_COLUMNS columns of B or more: 128x256x16 on 2x4 subgroups, the
 *   sweep's fastest at 4096^3.
 * Small problems step down to smaller tiles (SMALL_GRID_TILINGS).
 */
export const DEFAULT_TILINGS: Readonly<{
  portable: PortableTiling;
  tensorCore: MatrixTiling;
  gemm: MatrixTiling;
  wideGemm: MatrixTiling;
}> = Object.freeze({
  portable: { kind: "portable", tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4 },
  tensorCore: {
    kind: "tensor-core",
    tileM: 128,
    tileN: 128,
    tileK: 32,
    subgroupsM: 2,
    subgroupsN: 4,
    pad: 8,
  },
  gemm: {
    kind: "tensor-core",
    tileM: 64,
    tileN: 128,
    tileK: 32,
    subgroupsM: 2,
    subgroupsN: 4,
    pad: 8,
  },
  wideGemm: {
    kind: "tensor-core",
    tileM: 128,
    tileN: 256,
    tileK: 16,
    subgroupsM: 2,
    subgroupsN: 4,
    pad: 8,
  },
});

/**
 * B columns from which a GEMM counts as wide (default tile DEFAULT_TILINGS.wideGemm): 4096^3 and
 * GEGLU's 2 x 1280 ran on it in the measured sweep.
 */
export const WIDE_GEMM_COLUMNS = 2048;

/**
 * Smaller tensor-core tiles for problems the default tile covers with few workgroups (the deep
 * levels' small maps, every level at 512 px), tried in this order: half the rows (on 8 subgroups,
 * as the GEMMs' default), then half the columns too. A GPU runs one workgroup of the default tile
 * per compute unit at a time or two, so a grid of a few dozen tiles leaves most units idle while
 * a smaller tile's grid fills them. On an H100, 64x128 on 2x4 subgroups ran every UNet shape
 * timed 1.1-2.7x (convolutions) and 1.8-5.9x (GEMMs) faster than on 2x2.
 */
export const SMALL_GRID_TILINGS: readonly MatrixTiling[] = Object.freeze([
  DEFAULT_TILINGS.gemm,
  { kind: "tensor-core", tileM: 64, tileN: 64, tileK: 32, subgroupsM: 2, subgroupsN: 2, pad: 8 },
]);

/** Workgroups below which a problem takes the next smaller tile (SMALL_GRID_TILINGS). */
export const SMALL_GRID_WORKGROUPS = 256;

/** The output size a default tiling is chosen for: rows (M), B columns and batch. */
export interface MatmulProblem {
  readonly rows: number;
  readonly columns: number;
  readonly batch: number;
  /** A convolution: never the wide tile (measured for GEMMs only). */
  readonly conv?: boolean;
}

/**
 * The default tiling of a variant for a problem (B's columns count both GEGLU halves): the
 * convolutions' tile, the wide tile for wide GEMMs or the GEMMs' tile, each stepping down to
 * SMALL_GRID_TILINGS while its grid has fewer than SMALL_GRID_WORKGROUPS workgroups. Without a
 * problem, the convolutions' tile.
 */
export function defaultTiling(variant: KernelVariant, problem?: MatmulProblem): Tiling {
  if (variant.path !== "tensor-core") return DEFAULT_TILINGS.portable;
  if (!problem) return DEFAULT_TILINGS.tensorCore;
  const workgroups = (t: MatrixTiling) =>
    Math.ceil(problem.rows / t.tileM) * Math.ceil(problem.columns / t.tileN) * problem.batch;
  let tiling = problem.conv
    ? DEFAULT_TILINGS.tensorCore
    : problem.columns >= WIDE_GEMM_COLUMNS
      ? DEFAULT_TILINGS.wideGemm
      : DEFAULT_TILINGS.gemm;
  for (const smaller of SMALL_GRID_TILINGS)
    if (workgroups(tiling) < SMALL_GRID_WORKGROUPS) tiling = smaller;
  return tiling;
}

/** The fewest values of K each split of a split-K matmul takes (defaultSplitK). */
export const MIN_SPLIT_K_LENGTH = 256;
/** The most splits defaultSplitK makes. */
export const MAX_SPLIT_K = 16;

/**
 * Output tiles below which a matmul splits K by default (defaultSplitK): about one workgroup per
 * multiprocessor of a large card (an H100 has 132). Measured on an H100 (BENCHMARKS.md): a
 * 1280-channel 3x3 convolution on 2 x 8 x 8 pixels (40 tiles) and a GEMM of 128 rows (10-40
 * tiles) ran 1.2x and 4x faster split, while splitting the 16 x 16 maps' 160 tiles made whole
 * 1024 px UNet calls slower (191 ms unsplit against 196-203 ms).
 */
export const SPLIT_K_BELOW_TILES = 128;

/**
 * How many workgroups share K by default: where the output tiles (after the small-grid tiles)
 * number fewer than SPLIT_K_BELOW_TILES, enough splits for the grid to reach
 * SMALL_GRID_WORKGROUPS, as long as each split keeps MIN_SPLIT_K_LENGTH values of K, so that the
 * partial sums' extra traffic (splits x M x N f32, written once and read once) stays small beside
 * the multiplies. The UNet's deepest convolutions are the case: at 512 px a 1280-channel 3x3
 * convolution on 2 x 8 x 8 pixels is 128 x 1280 outputs (40 tiles of 64 x 64) over K = 11,520,
 * which split 7 ways makes 280.
 */
export function defaultSplitK(
  tiling: Tiling,
  operation: Pick<MatmulSpec, "batch" | "m" | "n" | "k" | "epilogue">,
): number {
  const columns = operation.epilogue === "geglu" ? tiling.tileN / 2 : tiling.tileN;
  const tiles =
    Math.ceil(operation.m / tiling.tileM) * Math.ceil(operation.n / columns) * operation.batch;
  if (tiles >= SPLIT_K_BELOW_TILES) return 1;
  const kTiles = Math.ceil(operation.k / tiling.tileK);
  const most = Math.floor(operation.k / MIN_SPLIT_K_LENGTH);
  const wanted = Math.min(Math.ceil(SMALL_GRID_WORKGROUPS / tiles), most, MAX_SPLIT_K);
  return wanted <= 1 ? 1 : normalSplitK(kTiles, wanted);
}

export function tilingName(tiling: Tiling): string {
  return tiling.kind === "portable"
    ? `${tiling.tileM}x${tiling.tileN}x${tiling.tileK}/${tiling.threadM}x${tiling.threadN}`
    : `${tiling.tileM}x${tiling.tileN}x${tiling.tileK}/${tiling.subgroupsM}x${tiling.subgroupsN}sg/p${tiling.pad}${tiling.ablation ? ` ablation:${tiling.ablation}` : ""}`;
}

/**
 * A matmul spec from what the operation decides (its sizes, A's addressing, B's batch stride and
 * the epilogue) and what the caller asks (tiling, bias, residual). The label reads `head` (the
 * operation and its sizes), then the variant, the tiling, the epilogue and the options.
 */
export function matmulSpec(
  head: string,
  variant: KernelVariant,
  tiling: Tiling,
  options: { readonly bias?: boolean; readonly residual?: boolean; readonly splitK?: number },
  operation: Pick<MatmulSpec, "batch" | "m" | "n" | "k" | "a" | "bBatchStride" | "epilogue"> &
    Partial<Pick<MatmulSpec, "planeSize">>,
): MatmulSpec {
  const splitK =
    options.splitK === undefined
      ? defaultSplitK(tiling, operation)
      : normalSplitK(Math.ceil(operation.k / tiling.tileK), options.splitK);
  const label = [
    head,
    variant.storage,
    variant.path,
    tilingName(tiling),
    operation.epilogue === "none" ? "" : operation.epilogue,
    options.bias ? "bias" : "",
    options.residual ? "residual" : "",
    operation.planeSize === undefined ? "" : "channels-first",
    splitK > 1 ? `split-k ${splitK}` : "",
  ];
  return {
    label: label.filter(Boolean).join(" "),
    variant,
    tiling,
    ...operation,
    bias: options.bias ?? false,
    residual: options.residual ?? false,
    ...(splitK > 1 ? { splitK } : {}),
  };
}

/** An operand as handed to a matmul kernel, with the element count the kernel reads. */
export interface MatmulOperand {
  readonly tensor: GpuTensor;
  readonly size: number;
  /** Its name in errors. */
  readonly name: string;
}

/** One run of a matmul kernel: its operands and the output tensor to make. */
export interface MatmulRun {
  readonly a: MatmulOperand;
  readonly b: MatmulOperand;
  /** Present exactly when the spec asks for them; the residual has the output's size. */
  readonly bias?: GpuTensor;
  readonly biasSize: number;
  readonly residual?: GpuTensor;
  readonly outShape: readonly number[];
  readonly outLabel: string;
}

/**
 * Runs a prepared matmul kernel into a new output tensor, after checking every operand's size
 * and storage type (launching on a wrong buffer would read garbage, not fail).
 */
export function runMatmul(ctx: GpuContext, kernel: MatmulKernel, run: MatmulRun): GpuTensor {
  const { spec } = kernel;
  const expect = (tensor: GpuTensor, size: number, name: string) =>
    expectTensor(spec.label, tensor, size, spec.variant.storage, name);
  expect(run.a.tensor, run.a.size, run.a.name);
  expect(run.b.tensor, run.b.size, run.b.name);
  const buffers = [run.a.tensor.buffer, run.b.tensor.buffer];
  if (spec.bias !== (run.bias !== undefined))
    throw new Error(`${spec.label}: bias ${spec.bias ? "missing" : "not expected"}`);
  if (run.bias) expect(run.bias, run.biasSize, "bias");
  if (spec.residual !== (run.residual !== undefined))
    throw new Error(`${spec.label}: residual ${spec.residual ? "missing" : "not expected"}`);
  if (run.residual) expect(run.residual, spec.batch * spec.m * spec.n, "residual");
  const out = ctx.allocate(run.outShape, spec.variant.storage, run.outLabel);
  buffers.push(out.buffer);
  if (run.bias) buffers.push(run.bias.buffer);
  if (run.residual) buffers.push(run.residual.buffer);
  const partials = kernel.partials ? ctx.allocate([kernel.partials], "f32", "partial sums") : null;
  ctx.dispatch(kernel.launches(buffers, partials?.buffer));
  if (partials) ctx.release(partials);
  return out;
}

export class MatmulKernel {
  private constructor(
    readonly spec: MatmulSpec,
    readonly pipeline: GPUComputePipeline,
    readonly workgroups: [number, number, number],
    /** A split-K kernel's second launch: the partial sums added and the epilogue applied. */
    private readonly reduce: GPUComputePipeline | null,
  ) {}

  private static async create(
    ctx: GpuContext,
    spec: MatmulSpec,
    pipeline: GPUComputePipeline,
  ): Promise<MatmulKernel> {
    const reduce =
      splitOf(spec) > 1
        ? await ctx.pipeline({ label: `${spec.label} reduce`, code: matmulReduceWgsl(spec) })
        : null;
    return new MatmulKernel(spec, pipeline, matmulGrid(spec), reduce);
  }

  /** f32 values of scratch a launch needs for its partial sums (0: none, no split-K). */
  get partials(): number {
    return partialElements(this.spec);
  }

  /** Checks the spec against the adapter and compiles (or reuses) its pipeline. */
  static async prepare(ctx: GpuContext, spec: MatmulSpec): Promise<MatmulKernel> {
    const limits = ctx.capabilities.limits;
    const problem = tilingProblem(
      spec,
      limits.maxComputeInvocationsPerWorkgroup,
      limits.maxComputeWorkgroupStorageSize,
    );
    if (problem)
      throw new Error(`${spec.label}: tiling ${tilingName(spec.tiling)} unusable: ${problem}`);
    if (spec.tiling.kind === "portable") {
      const pipeline = await ctx.pipeline({ label: spec.label, code: matmulWgsl(spec) });
      return MatmulKernel.create(ctx, spec, pipeline);
    }
    // The tensor-core path: subgroup_id where the compiler has it, else the division; the
    // current load/store spelling, else the first one.
    const errors: string[] = [];
    for (const subgroupIndex of ["builtin", "division"] as const)
      for (const matrixSpelling of MATRIX_SPELLINGS) {
        const candidate = { ...spec, subgroupIndex, matrixSpelling };
        try {
          const pipeline = await ctx.pipeline({ label: spec.label, code: matmulWgsl(candidate) });
          return MatmulKernel.create(ctx, candidate, pipeline);
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    throw new Error(errors.join("; "));
  }

  get variant(): KernelVariant {
    return this.spec.variant;
  }

  /**
   * The launches on buffers in binding order (A, B, C, bias?, residual?): one, or for a split-K
   * kernel the split multiplies into `partials` (an f32 buffer of at least `partials` values,
   * free for the kernel until its launches have run) and the reduction into C.
   */
  launches(buffers: readonly GPUBuffer[], partials?: GPUBuffer): KernelLaunch[] {
    if (!this.reduce) return [{ pipeline: this.pipeline, buffers, workgroups: this.workgroups }];
    if (!partials)
      throw new Error(`${this.spec.label}: split-K needs a buffer for its partial sums`);
    return [
      {
        pipeline: this.pipeline,
        buffers: [buffers[0], buffers[1], partials],
        workgroups: this.workgroups,
      },
      {
        pipeline: this.reduce,
        buffers: [partials, ...buffers.slice(2)],
        workgroups: matmulReduceGrid(this.spec),
      },
    ];
  }
}
