/**
 * `info --device`: which engine runs float16 and float32 models on this machine's device, and on
 * the kernels engine which path its tuned kernels take (tensor cores or portable), read from the
 * adapter the engine itself would open, with the features that decide it.
 */
import { type Engine, type EngineChoice, resolveEngine } from "../engine/select.js";
import { GpuContext } from "../gpu/context.js";
import { type GpuCapabilities, SUBGROUP_MATRIX_FEATURE } from "../gpu/types.js";
import { chooseKernelVariant, kernelPathLabel } from "../gpu/variants.js";
import { deviceUnavailableProbed } from "../runtime/device-check.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";

export interface EngineRow {
  readonly dtype: ModelDtype;
  readonly engine: Engine;
  /** The kernels engine's path: `tensor cores, f16`, `portable, f32`. */
  readonly kernelPath?: string;
  /** Why this engine (or why the kernels cannot run it), one line. */
  readonly reason: string;
}

export interface EngineReport {
  readonly device: Device;
  readonly choice: EngineChoice;
  /** The WebGPU adapter, where the device is webgpu. */
  readonly adapter?: {
    readonly description: string;
    readonly shaderF16: boolean;
    readonly subgroups: boolean;
    /** f16 -> f32 subgroup-matrix shapes, `MxNxK`. */
    readonly matrixShapes: readonly string[];
    readonly maxBindingBytes: number;
  };
  readonly rows: readonly EngineRow[];
}

const DTYPES: readonly ModelDtype[] = Object.freeze(["float16", "float32"]);

/** The report for a device and engine choice; `kernels` off WebGPU is resolveEngine's error. */
export async function engineReport(device: Device, choice: EngineChoice): Promise<EngineReport> {
  if (device !== "webgpu") {
    const rows = DTYPES.map((dtype) => ({
      dtype,
      engine: resolveEngine(choice, { device, dtype }),
      reason: "the kernels engine runs on WebGPU only",
    }));
    return { device, choice, rows };
  }
  const unavailable = await deviceUnavailableProbed(device);
  if (unavailable) throw new Error(unavailable);
  const ctx = await GpuContext.create();
  try {
    const caps = ctx.capabilities;
    return {
      device,
      choice,
      adapter: {
        description: caps.description,
        shaderF16: caps.features.has("shader-f16"),
        subgroups: caps.features.has("subgroups"),
        matrixShapes: caps.features.has(SUBGROUP_MATRIX_FEATURE)
          ? caps.matrixShapes.map((s) => `${s.m}x${s.n}x${s.k}`)
          : [],
        maxBindingBytes: caps.limits.maxStorageBufferBindingSize,
      },
      rows: DTYPES.map((dtype) => webgpuRow(caps, choice, dtype)),
    };
  } finally {
    ctx.destroy();
  }
}

function webgpuRow(caps: GpuCapabilities, choice: EngineChoice, dtype: ModelDtype): EngineRow {
  const shaderF16 = caps.features.has("shader-f16");
  const engine = resolveEngine(choice, { device: "webgpu", dtype, shaderF16 });
  if (engine === "onnxruntime")
    return {
      dtype,
      engine,
      reason:
        choice === "onnxruntime"
          ? "asked for"
          : dtype === "float32"
            ? "auto runs float32 on onnxruntime (--engine kernels runs it on the kernels)"
            : "auto needs shader-f16 for the kernels, and this adapter has none",
    };
  if (dtype === "float16" && !shaderF16)
    return {
      dtype,
      engine,
      reason: "cannot run here: the adapter has no shader-f16 (float32 can)",
    };
  try {
    const variant = chooseKernelVariant(caps, dtype === "float16" ? "f16" : "f32");
    return {
      dtype,
      engine,
      kernelPath: kernelPathLabel(variant),
      reason: choice === "kernels" ? "asked for" : "auto: float16 on an adapter with shader-f16",
    };
  } catch (error) {
    return { dtype, engine, reason: `cannot run here: ${(error as Error).message}` };
  }
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The report as text lines, after `info`'s model lines. */
export function formatEngineReport(report: EngineReport): string[] {
  const lines = [`engine on ${report.device} (--engine ${report.choice}):`];
  const a = report.adapter;
  if (a) {
    const matrices =
      a.matrixShapes.length > 0
        ? `subgroup matrices ${a.matrixShapes.join(", ")}`
        : "no subgroup matrices";
    lines.push(`  adapter: ${a.description}`);
    lines.push(
      `  features: ${a.shaderF16 ? "shader-f16" : "no shader-f16"}, ${a.subgroups ? "subgroups" : "no subgroups"}, ${matrices}; largest binding ${gib(a.maxBindingBytes)}`,
    );
  }
  for (const row of report.rows) {
    const engine = row.kernelPath ? `${row.engine} (${row.kernelPath})` : row.engine;
    lines.push(`  ${row.dtype.padEnd(8)} ${engine}: ${row.reason}`);
  }
  return lines;
}
