/**
 * `bench-kernels`: our GPU kernels at the UNet's shapes, timed with GPU timestamps and against
 * the wall clock, beside onnxruntime-node's same operator on its WebGPU backend in the same
 * process; optionally every path checked against the float64 references first (`check`) and
 * every candidate tiling checked and timed (`sweep`), the fastest correct one then used.
 */
import type { CheckOutcome } from "../../gpu/check.js";
import { allKernelChecks } from "../../gpu/checks.js";
import { GpuContext } from "../../gpu/context.js";
import { matmulChecks } from "../../gpu/kernels/matmul-checks.js";
import { tilingName } from "../../gpu/kernels/matmul-kernel.js";
import type { Tiling } from "../../gpu/kernels/matmul-wgsl.js";
import {
  KERNEL_PATHS,
  type PathRequest,
  STORAGE_TYPES,
  type StorageType,
} from "../../gpu/types.js";
import { chooseKernelVariant, type KernelVariant } from "../../gpu/variants.js";
import { createSession, float32Tensor } from "../../runtime/session.js";
import { KERNEL_BENCHES } from "./index.js";
import type { KernelBenchCase } from "./types.js";

export interface KernelBenchOptions {
  readonly sizes: readonly number[];
  readonly path: PathRequest;
  readonly storage: StorageType;
  /** Families to run (all when absent). */
  readonly families?: readonly string[];
  readonly check: boolean;
  readonly sweep: boolean;
  /** Time onnxruntime's operator beside ours. */
  readonly ort: boolean;
  readonly repeat: number;
  readonly onStatus?: (message: string) => void;
  /** Each timed row as it is measured, with the report so far (checks, sweep and rows). */
  readonly onRow?: (row: KernelBenchRow, report: KernelBenchReport) => void;
}

export interface KernelBenchRow {
  readonly family: string;
  readonly name: string;
  readonly imageSize: number;
  readonly variant: string;
  /** GPU time of one call (timestamps), ms. */
  readonly gpuMs?: number;
  /** Wall time of one call, amortised over back-to-back calls ended by one wait, ms. */
  readonly wallMs?: number;
  readonly tflops?: number;
  readonly gbps?: number;
  readonly ortOp?: string;
  /** onnxruntime's median wall time of one call, ms. */
  readonly ortMs?: number;
  readonly ortTflops?: number;
  /** onnxruntime's time over ours (wall against wall). */
  readonly speedup?: number;
  readonly error?: string;
}

export interface CheckRow extends Partial<CheckOutcome> {
  readonly family: string;
  readonly name: string;
  readonly variant: string;
  readonly ok: boolean;
  readonly error?: string;
}

export interface SweepRow {
  readonly family: string;
  readonly variant: string;
  readonly tiling: string;
  readonly checked: boolean;
  readonly worstRatio?: number;
  readonly case?: string;
  readonly gpuMs?: number;
  readonly tflops?: number;
  readonly error?: string;
}

export interface KernelBenchReport {
  readonly adapter: string;
  readonly features: readonly string[];
  readonly matrixShapes: readonly string[];
  readonly checks: CheckRow[];
  readonly sweep: SweepRow[];
  readonly rows: KernelBenchRow[];
  /** Shader compiler warnings of the run (distinct first lines), e.g. deprecated builtins. */
  shaderWarnings: string[];
}

function describeVariant(v: KernelVariant): string {
  return `${v.storage} ${v.path}${v.matrix ? ` ${v.matrix.m}x${v.matrix.n}x${v.matrix.k}` : ""}`;
}

function firstLine(error: unknown): string {
  return ((error as Error).message ?? String(error)).split("\n")[0];
}

/** Every variant the adapter runs: both storage types, both paths, each matrix shape. */
export function availableVariants(ctx: GpuContext): KernelVariant[] {
  const out: KernelVariant[] = [];
  for (const storage of STORAGE_TYPES) {
    for (const path of KERNEL_PATHS) {
      let variant: KernelVariant;
      try {
        variant = chooseKernelVariant(ctx.capabilities, storage, path);
      } catch {
        continue;
      }
      if (path === "tensor-core")
        for (const matrix of ctx.capabilities.matrixShapes) out.push({ ...variant, matrix });
      else out.push(variant);
    }
  }
  return out;
}

/** Wall time of back-to-back work before timing: the card's clocks ramp up under load. */
const WARMUP_MS = 250;
/** Timed passes of `repeat` calls each; the median pass is reported. */
const TIMED_PASSES = 3;

async function timeOurs(
  ctx: GpuContext,
  launches: Parameters<GpuContext["dispatch"]>[0],
  repeat: number,
): Promise<{ gpuMs?: number; wallMs: number }> {
  // A launch the device rejects (an invalid bind group, say) would otherwise time as 0 ms.
  ctx.device.pushErrorScope("validation");
  ctx.dispatch(launches);
  await ctx.finish();
  const invalid = await ctx.device.popErrorScope();
  if (invalid) throw new Error(`the device rejected the launch: ${invalid.message.split("\n")[0]}`);
  const warmStart = performance.now();
  do {
    ctx.dispatch(launches, { repeat });
    await ctx.finish();
  } while (performance.now() - warmStart < WARMUP_MS);
  let gpuMs: number | undefined;
  if (ctx.hasTimestamps) {
    const timer = ctx.createTimer(TIMED_PASSES);
    for (let p = 0; p < TIMED_PASSES; p++)
      ctx.dispatch(launches, { timer, repeat, label: `bench ${p}` });
    const passes = (await timer.read()).map((pass) => pass.ms / repeat).sort((a, b) => a - b);
    timer.destroy();
    gpuMs = passes[Math.floor(passes.length / 2)];
  }
  const start = performance.now();
  for (let i = 0; i < repeat; i++) ctx.dispatch(launches);
  await ctx.finish();
  return { gpuMs, wallMs: (performance.now() - start) / repeat };
}

async function timeOrt(c: KernelBenchCase, storage: StorageType, repeat: number): Promise<number> {
  if (!c.ort) throw new Error("no onnxruntime model");
  const session = await createSession(c.ort.build(storage), { device: "webgpu" });
  try {
    const feeds = { bias: float32Tensor(Float32Array.of(0), [1]) };
    for (let i = 0; i < 3; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < Math.max(5, Math.min(repeat, 20)); i++) {
      const start = performance.now();
      await session.run(feeds);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  } finally {
    await session.release();
  }
}

const round = (x: number | undefined, digits: number) =>
  x === undefined ? undefined : Number(x.toFixed(digits));

export async function runKernelBenches(options: KernelBenchOptions): Promise<KernelBenchReport> {
  const status = options.onStatus ?? (() => {});
  const ctx = await GpuContext.create({ bench: true });
  const caps = ctx.capabilities;
  const report: KernelBenchReport = {
    adapter: caps.description,
    features: [...caps.features].sort(),
    matrixShapes: caps.matrixShapes.map((s) => `${s.m}x${s.n}x${s.k}`),
    checks: [],
    sweep: [],
    rows: [],
    shaderWarnings: [],
  };
  status(
    `adapter: ${caps.description}; f16 -> f32 matrix shapes: ${report.matrixShapes.join(", ") || "none"}`,
  );
  const benches = KERNEL_BENCHES.filter(
    (b) => !options.families || options.families.includes(b.family),
  );
  try {
    if (options.check) {
      for (const variant of availableVariants(ctx)) {
        for (const check of allKernelChecks()) {
          if (options.families && !options.families.includes(check.family)) continue;
          if (check.appliesTo && !check.appliesTo(ctx, variant)) continue;
          try {
            const outcome = await check.run(ctx, variant);
            report.checks.push({
              family: check.family,
              name: check.name,
              variant: describeVariant(variant),
              ok: outcome.worstRatio <= 1 && outcome.nonFinite === 0,
              ...outcome,
            });
          } catch (error) {
            report.checks.push({
              family: check.family,
              name: check.name,
              variant: describeVariant(variant),
              ok: false,
              error: firstLine(error),
            });
          }
        }
      }
      const failed = report.checks.filter((c) => !c.ok).length;
      status(
        `checks: ${report.checks.length - failed} of ${report.checks.length} within their error bounds`,
      );
    }
    const variant = chooseKernelVariant(caps, options.storage, options.path);
    const variants =
      variant.path === "tensor-core"
        ? caps.matrixShapes.map((matrix) => ({ ...variant, matrix }))
        : [variant];
    const best = new Map<string, { variant: KernelVariant; tiling: Tiling; ms: number }>();
    if (options.sweep) {
      for (const bench of benches) {
        if (!bench.tilings) continue;
        // The sweep times each tiling on the family's first case at the largest requested size
        // class that holds the issue's target shape.
        const target =
          bench.cases(options.sizes).find((c) => c.imageSize === 0 || c.imageSize === 1024) ??
          bench.cases(options.sizes)[0];
        for (const v of variants) {
          for (const tiling of bench.tilings(v)) {
            const row: { -readonly [K in keyof SweepRow]: SweepRow[K] } = {
              family: bench.family,
              variant: describeVariant(v),
              tiling: tilingName(tiling),
              checked: false,
              case: target.name,
            };
            try {
              let worst = 0;
              // An ablation leaves out work on purpose: timed, never checked nor chosen.
              const ablated = tiling.kind === "tensor-core" && tiling.ablation !== undefined;
              if (ablated) worst = Number.POSITIVE_INFINITY;
              for (const check of ablated
                ? []
                : matmulChecks(tiling).filter((c) => c.family === bench.family)) {
                const outcome = await check.run(ctx, v);
                worst = Math.max(
                  worst,
                  outcome.nonFinite > 0 ? Number.POSITIVE_INFINITY : outcome.worstRatio,
                );
              }
              row.worstRatio = round(worst, 4);
              row.checked = worst <= 1;
              const prepared = await target.prepare(ctx, v, tiling);
              const t = await timeOurs(ctx, prepared.launches, options.repeat);
              prepared.release();
              const ms = t.gpuMs ?? t.wallMs;
              row.gpuMs = round(ms, 4);
              row.tflops = target.flops ? round(target.flops / ms / 1e9, 1) : undefined;
              const current = best.get(bench.family);
              if (row.checked && (!current || ms < current.ms))
                best.set(bench.family, { variant: v, tiling, ms });
            } catch (error) {
              row.error = firstLine(error);
            }
            report.sweep.push(row);
            status(
              `sweep ${row.family} ${row.variant} ${row.tiling}: ${row.error ?? `${row.gpuMs} ms, ${row.tflops} TFLOP/s, worst error/bound ${row.worstRatio}`}`,
            );
          }
        }
      }
    }
    for (const bench of benches) {
      const chosen = best.get(bench.family);
      for (const c of bench.cases(options.sizes)) {
        const v = chosen?.variant ?? variant;
        let row: KernelBenchRow = {
          family: c.family,
          name: c.name,
          imageSize: c.imageSize,
          variant: describeVariant(v),
        };
        try {
          const prepared = await c.prepare(ctx, v, chosen?.tiling);
          const t = await timeOurs(ctx, prepared.launches, options.repeat);
          prepared.release();
          const ms = t.gpuMs ?? t.wallMs;
          row = {
            ...row,
            variant: prepared.detail,
            gpuMs: round(t.gpuMs, 4),
            wallMs: round(t.wallMs, 4),
            tflops: c.flops ? round(c.flops / ms / 1e9, 1) : undefined,
            gbps: c.bytes ? round(c.bytes / ms / 1e6, 1) : undefined,
          };
        } catch (error) {
          row = { ...row, error: firstLine(error) };
        }
        if (options.ort && c.ort) {
          try {
            const ortMs = await timeOrt(c, v.storage, options.repeat);
            row = {
              ...row,
              ortOp: c.ort.op,
              ortMs: round(ortMs, 4),
              ortTflops: c.flops ? round(c.flops / ortMs / 1e9, 1) : undefined,
              speedup: row.wallMs ? round(ortMs / row.wallMs, 2) : undefined,
            };
          } catch (error) {
            row = {
              ...row,
              ortOp: c.ort.op,
              error: [row.error, `onnxruntime: ${firstLine(error)}`].filter(Boolean).join("; "),
            };
          }
        }
        report.rows.push(row);
        options.onRow?.(row, report);
      }
    }
  } finally {
    report.shaderWarnings = [...new Set(ctx.pipelines.warnings)];
    status(`shader compiler warnings: ${report.shaderWarnings.length}`);
    for (const w of report.shaderWarnings.slice(0, 5)) status(`  ${w}`);
    ctx.destroy();
  }
  return report;
}
