import type { Command } from "commander";
import {
  type KernelBenchReport,
  type KernelBenchRow,
  runKernelBenches,
} from "../bench/kernels/run.js";
import type { PathRequest, StorageType } from "../gpu/types.js";
import { intArg, listArg } from "./options.js";
import { checkOutputFile, writeJsonOutput, writeJsonProgress } from "./output-files.js";

interface BenchKernelsFlags {
  readonly device: string;
  readonly check?: boolean;
  readonly sweep?: boolean;
  readonly ort: boolean;
  readonly json?: string;
  readonly path: string;
  readonly dtype: string;
  readonly sizes: number[];
  readonly families?: string[];
  readonly repeat: number;
}

const PATHS = ["auto", "tensor-core", "portable"];

export function registerBenchKernels(program: Command): void {
  program
    .command("bench-kernels")
    .description(
      "time our WebGPU kernels at the UNet's shapes against onnxruntime's same operators on WebGPU",
    )
    .option("--device <device>", "webgpu (the only device these kernels run on)", "webgpu")
    .option(
      "--check",
      "first check every kernel path (f16, f32, tensor-core) against float64 references",
    )
    .option("--sweep", "check and time every candidate tiling, then use the fastest correct one")
    .option("--no-ort", "skip onnxruntime's operators")
    .option("--path <path>", "auto, tensor-core or portable", "auto")
    .option("--dtype <dtype>", "fp16 or fp32 storage", "fp16")
    .option(
      "--sizes <list>",
      "image sizes whose UNet shapes are timed",
      listArg(intArg("--sizes")),
      [512, 1024, 2048],
    )
    .option(
      "--families <list>",
      "kernel families (gemm, conv, ...)",
      listArg((v: string) => v),
    )
    .option("--repeat <n>", "calls per timing", intArg("--repeat"), 20)
    .option("--json <file>", "also write the results as JSON (- for stdout)")
    .action(async (flags: BenchKernelsFlags) => {
      await benchKernelsCommand(flags);
    });
}

function parseDtype(value: string): StorageType {
  if (value === "fp16" || value === "f16") return "f16";
  if (value === "fp32" || value === "f32") return "f32";
  throw new Error(`--dtype must be fp16 or fp32, got "${value}"`);
}

async function benchKernelsCommand(flags: BenchKernelsFlags): Promise<void> {
  if (flags.device !== "webgpu")
    throw new Error(`bench-kernels runs on webgpu only, got --device ${flags.device}`);
  if (!PATHS.includes(flags.path))
    throw new Error(`--path must be one of ${PATHS.join(", ")}, got "${flags.path}"`);
  const storage = parseDtype(flags.dtype);
  for (const size of flags.sizes)
    if (size % 64 !== 0) throw new Error(`--sizes: ${size} is not a multiple of 64`);
  if (flags.json && flags.json !== "-") checkOutputFile(flags.json, "--json");
  // With --json -, stdout carries the JSON alone and the tables go to stderr.
  const out = flags.json === "-" ? process.stderr : process.stdout;
  let headed = false;
  const report = await runKernelBenches({
    sizes: flags.sizes,
    path: flags.path as PathRequest,
    storage,
    families: flags.families,
    check: flags.check ?? false,
    sweep: flags.sweep ?? false,
    ort: flags.ort,
    repeat: flags.repeat,
    onStatus: (message) => process.stderr.write(`${message}\n`),
    onRow: (row, sofar) => {
      if (!headed) out.write(`${header()}\n`);
      headed = true;
      out.write(`${formatRow(row)}\n`);
      writeJsonProgress(flags.json, sofar);
    },
  });
  if (report.checks.length > 0) out.write(formatChecks(report));
  if (flags.json) writeJsonOutput(flags.json, report);
  if (report.checks.some((c) => !c.ok)) process.exitCode = 1;
}

const COLUMNS = [
  "kernel",
  "shape",
  "size",
  "ours ms",
  "TFLOP/s",
  "onnxruntime",
  "ort ms",
  "ort TFLOP/s",
  "speedup",
  "variant",
];

function header(): string {
  return COLUMNS.join(" | ");
}

function text(value: number | undefined): string {
  return value === undefined ? "-" : String(value);
}

function formatRow(row: KernelBenchRow): string {
  if (row.error && row.gpuMs === undefined && row.wallMs === undefined)
    return `${row.family} | ${row.name} | ${row.imageSize || "-"} | error: ${row.error}`;
  return [
    row.family,
    row.name,
    row.imageSize || "-",
    text(row.gpuMs ?? row.wallMs),
    text(row.tflops ?? row.gbps),
    row.ortOp ?? "-",
    text(row.ortMs),
    text(row.ortTflops),
    row.speedup === undefined ? "-" : `${row.speedup}x`,
    row.variant + (row.error ? ` (${row.error})` : ""),
  ].join(" | ");
}

function formatChecks(report: KernelBenchReport): string {
  const lines = ["", "check | variant | case | max |error| | worst error / bound | ok"];
  for (const c of report.checks)
    lines.push(
      [
        c.family,
        c.variant,
        c.name,
        c.maxAbsError?.toExponential(2) ?? "-",
        c.worstRatio?.toFixed(3) ?? "-",
        c.ok ? "yes" : `NO${c.error ? ` (${c.error})` : ""}`,
      ].join(" | "),
    );
  return `${lines.join("\n")}\n`;
}
