import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { runAttentionProbes } from "../bench/attention-probe.js";
import { runConvProbes } from "../bench/conv-probe.js";
import { plotBenchSvg } from "../bench/plot.js";
import {
  type BenchMethod,
  type BenchSize,
  benchUnet,
  parseBenchMethod,
  type UnetBenchRow,
} from "../bench/unet-bench.js";
import type { EngineChoice } from "../engine/select.js";
import { parseDevice } from "../index.js";
import { deviceUnavailableProbed } from "../runtime/device-check.js";
import { writeBytesAtomically } from "../util/atomic-write.js";
import {
  addModelFlags,
  addReductionFlags,
  engineArg,
  intArg,
  listArg,
  loadOptionsFromFlags,
  type ModelFlagValues,
  reductionFromFlags,
  sizeArg,
} from "./options.js";
import { checkOutputFile, writeJsonOutput, writeJsonProgress } from "./output-files.js";
import type { ReductionFlags } from "./reduction-flags.js";

interface BenchFlags extends ModelFlagValues, ReductionFlags {
  readonly sizes: { width: number; height: number }[];
  readonly methods: BenchMethod[];
  readonly batch: number;
  readonly warmup: number;
  readonly repeats: number;
  readonly profile?: boolean;
  readonly profileDir?: string;
  readonly json?: string;
  readonly engines?: EngineChoice[];
}

export function registerBench(program: Command): void {
  addReductionFlags(
    addModelFlags(
      program.command("bench").description("time one UNet call per size and reduction method"),
    ),
  )
    .option("--sizes <list>", "image sizes, e.g. 512,1024 or 1024x768", listArg(sizeArg), [
      { width: 512, height: 512 },
    ])
    .option(
      "--methods <list>",
      "none, todo, tome, todo-single-key, off (ToDo built in but switched off)",
      listArg(parseBenchMethod),
      ["none", "todo"] as BenchMethod[],
    )
    .option(
      "--engines <list>",
      "time each engine in one run, e.g. kernels,onnxruntime (instead of --engine)",
      listArg(engineArg),
    )
    .option("--batch <n>", "UNet batch (2 = one image with guidance)", intArg("--batch"), 2)
    .option("--warmup <n>", "untimed calls first", intArg("--warmup", 0), 2)
    .option("--repeats <n>", "timed calls (the median is reported)", intArg("--repeats"), 5)
    .option(
      "--profile",
      "summarise the profile: time per operator type and node placement (onnxruntime), GPU time per kernel (kernels engine)",
    )
    .option("--profile-dir <dir>", "with --profile: keep the raw onnxruntime traces in this folder")
    .option("--json <file>", "also write the results as JSON (- for stdout)")
    .action(async (flags: BenchFlags) => {
      await benchCommand(flags);
    });
  program
    .command("bench-attention")
    .description(
      "time attention built several ways (fused MultiHeadAttention, MatMul/Softmax, ...) on a device",
    )
    .option("--device <device>", "cpu, webgpu or cuda", "cpu")
    .action(async (flags: { device: string }) => {
      await printProbeRows(runAttentionProbes(flags.device), flags.device);
    });
  program
    .command("bench-plot")
    .description("plot time per UNet call against image size from bench --json files, as SVG")
    .argument("<json...>", "files written by bench --json")
    .requiredOption("-o, --out <file.svg>", "the SVG file")
    .option("--title <text>", "chart title", "UNet time per call")
    .action((files: string[], flags: { out: string; title: string }) => {
      checkOutputFile(flags.out, "--out");
      const rows = files.flatMap((file) => readBenchJson(file));
      writeBytesAtomically(flags.out, new TextEncoder().encode(plotBenchSvg(rows, flags.title)));
      process.stdout.write(`${flags.out}\n`);
    });
  program
    .command("bench-conv")
    .description("time a 3x3 convolution built as Conv and as im2col + MatMul on a device")
    .option("--device <device>", "cpu, webgpu or cuda", "cpu")
    .action(async (flags: { device: string }) => {
      await printProbeRows(runConvProbes(flags.device), flags.device);
    });
}

/** Prints each probe's JSON row; a row that failed makes the command fail after all are printed. */
async function printProbeRows(rows: AsyncIterable<string>, device: string): Promise<void> {
  const unavailable = await deviceUnavailableProbed(parseDevice(device));
  if (unavailable) throw new Error(unavailable);
  let count = 0;
  const failed: string[] = [];
  for await (const line of rows) {
    process.stdout.write(`${line}\n`);
    count++;
    const row = JSON.parse(line) as { error?: unknown };
    if (typeof row.error === "string") failed.push(row.error);
  }
  if (failed.length > 0)
    throw new Error(`${failed.length} of ${count} cases failed; the first: ${failed[0]}`);
}

function readBenchJson(file: string): UnetBenchRow[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(
      `${file}: cannot read benchmark results (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  if (!Array.isArray(parsed))
    throw new Error(`${file}: not a bench --json file (expected a list of rows)`);
  return parsed as UnetBenchRow[];
}

async function benchCommand(flags: BenchFlags): Promise<void> {
  if (flags.json && flags.json !== "-") checkOutputFile(flags.json, "--json");
  const reduction = reductionFromFlags(flags, false);
  // With --json -, stdout carries the JSON alone and the table goes to stderr.
  const table = flags.json === "-" ? process.stderr : process.stdout;
  const rows: UnetBenchRow[] = [];
  for (const engine of flags.engines ?? [flags.engine ?? "auto"])
    await benchUnet(flags.model, {
      ...loadOptionsFromFlags(flags),
      engine,
      // A kernel path is the kernels engine's: the onnxruntime rows of --engines run without it.
      kernelPath: engine === "onnxruntime" ? undefined : flags.kernelPath,
      sizes: flags.sizes as BenchSize[],
      methods: flags.methods,
      batch: flags.batch,
      warmup: flags.warmup,
      repeats: flags.repeats,
      profile: flags.profile || flags.profileDir !== undefined,
      keepProfilesIn: flags.profileDir,
      reduction,
      onStatus: (message) => process.stderr.write(`${message}\n`),
      onResult: (row) => {
        if (rows.length === 0) table.write(`${header()}\n`);
        rows.push(row);
        table.write(`${formatRow(row, rows)}\n`);
        if (row.profile) table.write(formatProfile(row));
        // A later failure (a second engine this device lacks, a size past its limits, a kill)
        // keeps the rows measured.
        writeJsonProgress(flags.json, rows);
      },
    });
  if (flags.json) writeJsonOutput(flags.json, rows);
}

function header(): string {
  return [
    "size",
    "engine",
    "method",
    "median ms",
    "min ms",
    "it/s",
    "speedup",
    "load s",
    "peak RSS MB",
    "reduction",
  ].join(" | ");
}

/** The engine column: the engine, and for the kernels engine the path its tuned kernels took. */
export function engineLabel(row: Pick<UnetBenchRow, "engine" | "kernelPath">): string {
  if (!row.engine) return "-";
  return row.kernelPath ? `${row.engine} (${row.kernelPath})` : row.engine;
}

function formatRow(row: UnetBenchRow, rows: readonly UnetBenchRow[]): string {
  if (row.error)
    return `${row.width}x${row.height} | ${engineLabel(row)} | ${row.method} | error: ${row.error}`;
  const baseline = rows.find(
    (r) =>
      r.width === row.width &&
      r.height === row.height &&
      r.engine === row.engine &&
      r.method === "none" &&
      !r.error,
  );
  const speedup =
    baseline && row.reduces !== false ? `${(baseline.medianMs / row.medianMs).toFixed(2)}x` : "-";
  return [
    `${row.width}x${row.height}`,
    engineLabel(row),
    row.method,
    row.medianMs.toFixed(1),
    row.minMs.toFixed(1),
    row.itPerSecond.toFixed(2),
    speedup,
    (row.loadMs / 1000).toFixed(1),
    row.peakRssMb.toFixed(0),
    row.reduction,
  ].join(" | ");
}

function formatProfile(row: UnetBenchRow): string {
  const profile = row.profile!;
  const total = profile.byOpType.reduce((s, o) => s + o.totalMs, 0);
  const lines = profile.byOpType
    .slice(0, 12)
    .map(
      (o) =>
        `    ${o.opType}: ${o.totalMs.toFixed(1)} ms (${((100 * o.totalMs) / total).toFixed(1)}%, ${o.count} ${profile.timeSource === "device" ? "programs" : "nodes"}, ${o.providers.join("+")})`,
    );
  const placement = Object.entries(profile.placement)
    .map(([p, n]) => `${p} ${n}`)
    .join(", ");
  const source = profile.timeSource === "device" ? "GPU kernel time" : "kernel time (host)";
  const shapes = (profile.byKernel ?? [])
    .slice(0, 20)
    .map((o) => `    ${o.opType}: ${o.totalMs.toFixed(2)} ms (${o.count} per call)`);
  const byShape = shapes.length > 0 ? `\n  largest kernels by shape:\n${shapes.join("\n")}` : "";
  return `  ${source} ${total.toFixed(1)} ms per call; nodes by provider: ${placement}\n${lines.join("\n")}${byShape}\n`;
}
