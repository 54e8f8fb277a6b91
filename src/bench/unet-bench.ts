/**
 * UNet benchmarks: one UNet call per image size and reduction method, timed as the median over
 * repeats after warm-up, with it/s, peak memory and (optionally) where the time goes by operator
 * type and which execution provider ran each node.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CompileSummary } from "../gpu/pipeline-cache.js";
import { crossAttentionWidth } from "../models/unet.js";
import { type LoadOptions, openModelFiles } from "../pipelines/load.js";
import { probeEngine, unetBuilds } from "../pipelines/plan-runners.js";
import {
  describeReduction,
  levelGrid,
  parseReductionOptions,
  type ReductionOptions,
  type ReductionSettings,
  reducesNothing,
  resolveAutoFactor,
  resolveReduction,
} from "../reduce/options.js";
import { type ProfileSummary, summariseProfile } from "../runtime/profile.js";
import { float32, type RunnerTensor } from "../runtime/types.js";
import { SeededRandom } from "../util/random.js";
import { modelDtype } from "../util/vocabulary.js";

/**
 * `none`: the plain UNet. `todo`: ToDo with the `auto` factors for the size (or the given
 * options). `tome`: ToMe at level 1 keeping the same share of tokens as ToDo's auto factor f
 * (ratio 1 - 1/f^2; 0.5 where ToDo would be off), or the given ratio. `todo-single-key`: level-1
 * keys and values reduced to a single token (the limit of ToDo's speedup, for context).
 * `off`: built with ToDo, but run at a timestep where it is switched off (the cost of the `If`).
 */
export type BenchMethod = "none" | "todo" | "tome" | "todo-single-key" | "off";
export const BENCH_METHODS: readonly BenchMethod[] = [
  "none",
  "todo",
  "tome",
  "todo-single-key",
  "off",
];

export interface BenchSize {
  readonly width: number;
  readonly height: number;
}

export interface UnetBenchOptions extends LoadOptions {
  readonly sizes: readonly BenchSize[];
  readonly methods: readonly BenchMethod[];
  readonly batch?: number;
  readonly warmup?: number;
  readonly repeats?: number;
  /** Summarise onnxruntime's profile of the timed runs. */
  readonly profile?: boolean;
  /** Keep the raw onnxruntime traces here, one per row (`<W>x<H>-<method>.json`). */
  readonly keepProfilesIn?: string;
  /** Options for `todo`/`tome` instead of the defaults described above. */
  readonly reduction?: ReductionOptions;
  readonly onResult?: (row: UnetBenchRow) => void;
  readonly onStatus?: (message: string) => void;
}

export interface UnetBenchRow {
  readonly model: string;
  readonly device: string;
  readonly dtype: string;
  /** The engine that ran the UNet (absent in files written before there were two). */
  readonly engine?: "kernels" | "onnxruntime";
  /** The kernels engine's path (`tensor cores, f16`, `portable, f32`, ...); absent otherwise. */
  readonly kernelPath?: string;
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  readonly method: BenchMethod;
  readonly reduction: string;
  /** False when the method resolved to no reduction at this size (the row times a plain UNet). */
  readonly reduces?: boolean;
  readonly medianMs: number;
  readonly minMs: number;
  readonly itPerSecond: number;
  readonly loadMs: number;
  /**
   * The runner's first call (warm-up or timed): on the kernels engine it also compiles every
   * kernel it meets, which a GPU driver's shader cache keeps for later processes.
   */
  readonly firstCallMs?: number;
  /**
   * The kernels engine: the pipelines this row compiled, the ms their compiles took summed, and
   * the ms from the first one's start to the last one's end (less where they overlapped).
   */
  readonly compiled?: { readonly pipelines: number; readonly ms: number; readonly wallMs: number };
  readonly peakRssMb: number;
  readonly profile?: ProfileSummary;
  readonly error?: string;
}

/**
 * `compiled 97 pipelines in 85.2 s (40.1 s from the first to the last): attention 12 in 14.1 s,
 * conv 30 in 40.2 s, ...` (the compiles' times summed, then the time they spanned).
 */
export function describeCompiles(c: CompileSummary): string {
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const kinds = c.byKind.map((k) => `${k.kind} ${k.count} in ${sec(k.ms)}`).join(", ");
  return `compiled ${c.pipelines} pipeline${c.pipelines === 1 ? "" : "s"} in ${sec(c.ms)} (${sec(c.wallMs)} from the first to the last)${kinds ? `: ${kinds}` : ""}`;
}

export function parseBenchMethod(value: string): BenchMethod {
  if (!(BENCH_METHODS as readonly string[]).includes(value)) {
    throw new Error(`unknown bench method "${value}"; expected ${BENCH_METHODS.join(", ")}`);
  }
  return value as BenchMethod;
}

/** The reduction a method stands for at a size, or undefined for the plain UNet. */
export function benchReduction(
  method: BenchMethod,
  size: BenchSize,
  architecture: "sd1" | "sd2" | "sdxl",
  given?: ReductionOptions,
): ReductionSettings | undefined {
  const target = { architecture, width: size.width, height: size.height };
  const auto = resolveAutoFactor(size.width, size.height, architecture);
  const firstLevel = architecture === "sdxl" ? 2 : 1;
  switch (method) {
    case "none":
      return undefined;
    case "todo":
    case "off": {
      const options = given ?? parseReductionOptions({ factor: "auto" });
      const settings = resolveReduction({ ...options, method: "todo" }, target);
      if (method === "off")
        return { ...settings, stopThreshold: Math.max(settings.stopThreshold, 0.5) };
      return settings;
    }
    case "tome": {
      const f = firstLevel === 1 ? auto.factor : auto.factorLevel2;
      const ratio = given?.method === "tome" ? given.ratio : f > 1 ? 1 - 1 / (f * f) : 0.5;
      const options = parseReductionOptions({
        method: "tome",
        ratio,
        ratioLevel2: firstLevel === 2 ? ratio : 0,
      });
      return resolveReduction(options, target);
    }
    case "todo-single-key": {
      const grid = levelGrid(Math.ceil(size.height / 8), Math.ceil(size.width / 8), firstLevel);
      const factor = Math.min(grid.height, grid.width);
      const options = parseReductionOptions({
        factor: firstLevel === 1 ? factor : 1,
        factorLevel2: firstLevel === 2 ? factor : 1,
        mode: "nearest",
      });
      return resolveReduction(options, target);
    }
  }
}

/** Seeded random inputs of one UNet call (the same on every run and engine). */
export function unetFeeds(
  batch: number,
  size: BenchSize,
  channels: number,
  contextDim: number,
  textTime: { textEmbeds: number; timeIds: number } | undefined,
  timestep: number,
): Record<string, RunnerTensor> {
  const random = new SeededRandom(1);
  const h = size.height / 8;
  const w = size.width / 8;
  const feeds: Record<string, RunnerTensor> = {
    sample: float32(random.normalArray(batch * channels * h * w), [batch, channels, h, w]),
    timestep: float32(new Float32Array(batch).fill(timestep), [batch]),
    encoder_hidden_states: float32(random.normalArray(batch * 77 * contextDim), [
      batch,
      77,
      contextDim,
    ]),
  };
  if (textTime) {
    feeds.text_embeds = float32(random.normalArray(batch * textTime.textEmbeds), [
      batch,
      textTime.textEmbeds,
    ]);
    const ids = new Float32Array(batch * textTime.timeIds);
    for (let b = 0; b < batch; b++)
      ids.set(
        [size.height, size.width, 0, 0, size.height, size.width].slice(0, textTime.timeIds),
        b * textTime.timeIds,
      );
    feeds.time_ids = float32(ids, [batch, textTime.timeIds]);
  }
  return feeds;
}

export async function benchUnet(
  source: string,
  options: UnetBenchOptions,
): Promise<UnetBenchRow[]> {
  const batch = options.batch ?? 2;
  const warmup = options.warmup ?? 2;
  const repeats = options.repeats ?? 5;
  const device = options.device ?? "cpu";
  const { files } = await openModelFiles(source, options);
  const rows: UnetBenchRow[] = [];
  try {
    const unet = unetBuilds(files, await probeEngine(options));
    const config = unet.config;
    const dtype = modelDtype(device, options.dtype);
    const contextDim = crossAttentionWidth(config) ?? 768;
    const addition = config.addition;
    const textTime = addition
      ? { textEmbeds: addition.projectionInputDim - 6 * addition.timeEmbedDim, timeIds: 6 }
      : undefined;
    for (const size of options.sizes) {
      for (const method of options.methods) {
        const base = {
          model: source,
          device,
          dtype,
          // unetBuilds has resolved the choice: kernels only where it can run.
          engine: unet.engine,
          width: size.width,
          height: size.height,
          batch,
          method,
        };
        // A row that has no timings, only why.
        const failed = (reduction: string, loadMs: number, peakRssMb: number, error: string) => ({
          ...base,
          reduction,
          medianMs: Number.NaN,
          minMs: Number.NaN,
          itPerSecond: Number.NaN,
          loadMs,
          peakRssMb,
          error,
        });
        let reduction: ReductionSettings | undefined;
        try {
          reduction = benchReduction(method, size, unet.family, options.reduction);
        } catch (error) {
          const row = failed("-", 0, 0, (error as Error).message);
          rows.push(row);
          options.onResult?.(row);
          continue;
        }
        // A method that resolves to no reduction at this size (ToDo's auto factor below 768 px,
        // say) is timed as the plain UNet and says so: it has no speedup to report.
        const reduces =
          method === "none" || (reduction !== undefined && !reducesNothing(reduction));
        if (!reduces) reduction = undefined;
        const label = !reduces
          ? `no reduction: ${method} reduces nothing at ${size.width}x${size.height}`
          : method === "off"
            ? `built with ToDo, run with it off`
            : describeReduction(reduction);
        options.onStatus?.(`${size.width}x${size.height} ${method}: building/loading`);
        const profileDir = options.profile
          ? mkdtempSync(join(tmpdir(), "todo-sd-profile-"))
          : undefined;
        const loadStart = performance.now();
        let row: UnetBenchRow;
        try {
          const runner = await unet.runner(
            reduction,
            profileDir ? { profilePrefix: join(profileDir, "unet") } : {},
          );
          const loadMs = performance.now() - loadStart;
          // t = 999 keeps every reduction active; the `off` method runs at t = 1, below its stop threshold.
          const feeds = unetFeeds(
            batch,
            size,
            config.inChannels,
            contextDim,
            textTime,
            method === "off" ? 1 : 999,
          );
          // Where a slow row spends its time shows on stderr: loading, the warm-up calls (the
          // first compiles the kernels it meets), or the timed ones.
          const at = `${size.width}x${size.height} ${method}`;
          options.onStatus?.(
            `${at}: loaded in ${(loadMs / 1000).toFixed(1)} s; ${warmup} warm-up, ${repeats} timed calls`,
          );
          const timeCalls = async (count: number) => {
            const times: number[] = [];
            for (let i = 0; i < count; i++) {
              const start = performance.now();
              await runner.run(feeds);
              times.push(performance.now() - start);
            }
            return times;
          };
          const warmups = await timeCalls(warmup);
          if (warmup > 0)
            options.onStatus?.(
              `${at}: warm-up calls ${warmups.map((ms) => (ms / 1000).toFixed(1)).join(", ")} s (the first compiles the kernels it meets)`,
            );
          const times = await timeCalls(repeats);
          const firstCallMs = warmups[0] ?? times[0];
          // Every pipeline a call needs is compiled by its end: the first call's, here.
          const compiles = runner.compileSummary?.();
          if (compiles) options.onStatus?.(`${at}: ${describeCompiles(compiles)}`);
          const { kernelPath } = runner;
          let profile: ProfileSummary | undefined = runner.profileSummary?.();
          if (profileDir && runner.endProfiling) {
            runner.endProfiling();
            const file = readdirSync(profileDir).find((f) => f.endsWith(".json"));
            if (file) {
              profile = summariseProfile(join(profileDir, file));
              if (options.keepProfilesIn) {
                mkdirSync(options.keepProfilesIn, { recursive: true });
                copyFileSync(
                  join(profileDir, file),
                  join(options.keepProfilesIn, `${size.width}x${size.height}-${method}.json`),
                );
              }
            }
            rmSync(profileDir, { recursive: true, force: true });
          }
          await runner.release();
          times.sort((a, b) => a - b);
          const median = times[Math.floor(times.length / 2)];
          row = {
            ...base,
            ...(kernelPath === undefined ? {} : { kernelPath }),
            reduction: label,
            ...(method === "none" ? {} : { reduces }),
            medianMs: median,
            minMs: times[0],
            itPerSecond: 1000 / median,
            loadMs,
            ...(firstCallMs === undefined ? {} : { firstCallMs }),
            ...(compiles
              ? {
                  compiled: {
                    pipelines: compiles.pipelines,
                    ms: compiles.ms,
                    wallMs: compiles.wallMs,
                  },
                }
              : {}),
            peakRssMb: process.resourceUsage().maxRSS / 1024,
            profile,
          };
        } catch (error) {
          row = failed(
            label,
            performance.now() - loadStart,
            process.resourceUsage().maxRSS / 1024,
            (error as Error).message.split("\n")[0],
          );
        }
        rows.push(row);
        options.onResult?.(row);
      }
    }
  } finally {
    files.close();
  }
  return rows;
}
