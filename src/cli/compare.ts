import { join } from "node:path";
import type { Command } from "commander";
import { generationTextChunks, jsonNumbers } from "../image/parameters.js";
import {
  compareImages,
  comparisonToJson,
  describeReduction,
  encodePng,
  type FloatImage,
  floatToRgb8,
  type GenerateResult,
  type ImageComparison,
  type ReductionOptions,
  type ReductionSettings,
  randomSeed,
  sideBySide,
} from "../index.js";
import { webUiParameters } from "../pipelines/result-png.js";
import { writeBytesExclusively } from "../util/atomic-write.js";
import type { ModelFamily } from "../util/vocabulary.js";
import {
  addGenerationFlags,
  checkGenerationFlags,
  type GenerationFlags,
  generationOptions,
  loadModel,
  readSchedulerConfig,
} from "./generate.js";
import { warnLongPrompts } from "./input-checks.js";
import { checkJobFits } from "./memory-check.js";
import { intArg, reductionFromFlags } from "./options.js";
import { checkOutputFile, checkOutputFolder, writeJsonOutput } from "./output-files.js";
import { modelName, timestamp } from "./output-names.js";
import { ProgressBar, table } from "./progress.js";

interface CompareFlags extends GenerationFlags {
  readonly out: string;
  readonly json?: string;
  readonly warmup: number;
}

export function registerCompare(program: Command): void {
  addGenerationFlags(
    program
      .command("compare")
      .description(
        "generate the same image without and with token reduction; time both and measure the difference",
      )
      .argument("<prompt>", "the prompt"),
  )
    .option("-o, --out <dir>", "output folder for the side-by-side PNG", ".")
    .option("--json <file>", "also write the results as JSON (- for stdout)")
    .option(
      "--warmup <n>",
      "untimed one-step runs of each model first, so neither timing includes start-up",
      intArg("--warmup", 0),
      1,
    )
    .action(async (prompt: string, flags: CompareFlags) => {
      await compareCommand(prompt, flags);
    });
}

/** One line per run in the table, the JSON and the image labels. */
interface RunSummary {
  readonly label: string;
  readonly reduction: ReductionSettings | null;
  readonly description: string;
  readonly timeMs: number;
  readonly unetMs: number;
  readonly textEncoderMs: number;
  readonly vaeMs: number;
  readonly unetCalls: number;
  /** Where the latents were stepped: on the host, or kept on the device. */
  readonly denoisedOn: "host" | "device";
}

async function compareCommand(promptWithTags: string, flags: CompareFlags): Promise<void> {
  const { prompt, loras, ...asked } = await checkGenerationFlags(promptWithTags, flags);
  checkOutputFolder(flags.out, "--out");
  if (flags.json && flags.json !== "-") checkOutputFile(flags.json, "--json");
  const schedulerConfig = readSchedulerConfig(flags);
  const reduction = reductionFromFlags(flags, true);
  const seed = flags.seed ?? randomSeed();
  const pipeline = await loadModel(flags, loras);
  try {
    const call = { ...generationOptions(prompt, flags, seed, schedulerConfig), ...asked };
    const plan = pipeline.plan({ ...call, reduction });
    const { width, height } = plan;
    const family = pipeline.family;
    const settings = plan.reduction;
    if (!settings) throw new Error(nothingToCompare(reduction, width, height));
    // The baseline is the larger job.
    checkJobFits(pipeline, { ...flags, width, height, batch: 1, guided: plan.guided }, undefined);
    // With --json -, stdout carries the JSON alone.
    const report = flags.json === "-" ? process.stderr : process.stdout;
    process.stderr.write(
      `model ${pipeline.parts.label} (${family}); ${width}x${height}, ${plan.scheduler}, seed ${seed}; comparing no reduction with ${describeReduction(settings)}\n`,
    );
    warnLongPrompts(pipeline.parts.tokenizers[0], prompt, flags);
    for (let i = 0; i < flags.warmup; i++) {
      await pipeline.generate({ ...call, steps: 1 });
      await pipeline.generate({ ...call, steps: 1, reduction: settings });
    }
    const acceleratedName = shortLabel(settings, family);
    const run = (name: string, withReduction: ReductionSettings | undefined) => {
      const bar = new ProgressBar(name);
      return pipeline.generate({
        ...call,
        reduction: withReduction,
        onProgress: (info) => bar.update(info.step, info.totalSteps),
      });
    };
    const baseline = await run("baseline", undefined);
    const accelerated = await run(acceleratedName, settings);

    const baselineImage = firstImage(baseline);
    const acceleratedImage = firstImage(accelerated);
    const metrics = compareImages(baselineImage, acceleratedImage);
    const speedup = baseline.timings.totalMs / accelerated.timings.totalMs;
    const unetSpeedup = baseline.timings.unetMs / accelerated.timings.unetMs;
    const runs = [summary("baseline", baseline), summary(acceleratedName, accelerated)];
    const path = join(flags.out, `todo-sd-compare-${timestamp(new Date())}-${seed}.png`);
    const record = {
      kind: "compare",
      model: modelName(flags.model),
      image: path,
      prompt,
      negativePrompt: flags.negative ?? null,
      width,
      height,
      steps: accelerated.parameters.steps,
      guidanceScale: accelerated.parameters.guidanceScale,
      scheduler: accelerated.parameters.scheduler,
      schedulerConfig: accelerated.parameters.schedulerConfig,
      seed,
      family,
      loras: accelerated.parameters.loras,
      baseline: runs[0],
      accelerated: runs[1],
      speedup,
      unetSpeedup,
      metrics: comparisonToJson(metrics),
    };

    const labels = [
      `baseline ${seconds(baseline.timings.totalMs)}`,
      `${acceleratedName} ${seconds(accelerated.timings.totalMs)} (${speedup.toFixed(1)}x)`,
    ];
    const written = writeBytesExclusively(
      path,
      comparisonPng([baselineImage, acceleratedImage], labels, accelerated, settings, record),
      { nextFree: true },
    );
    report.write(formatTable(runs, speedup, unetSpeedup, metrics));
    if (flags.json) writeJsonOutput(flags.json, record);
    report.write(`${written}\n`);
  } finally {
    await pipeline.release();
  }
}

/** Both images side by side, labelled, with the accelerated run's parameters and the record. */
function comparisonPng(
  images: readonly FloatImage[],
  labels: readonly string[],
  accelerated: GenerateResult,
  settings: ReductionSettings,
  record: Readonly<Record<string, unknown>>,
): Uint8Array {
  const composed = sideBySide(images, { labels });
  const model = typeof record.model === "string" ? record.model : undefined;
  const chunks = generationTextChunks(
    webUiParameters(accelerated.parameters, 0, model, describeReduction(settings), {
      Comparison: "baseline left, token reduction right",
    }),
    JSON.parse(JSON.stringify(record, jsonNumbers)),
  );
  const pixels = floatToRgb8(composed);
  return encodePng({ width: composed.width, height: composed.height, data: pixels }, chunks);
}

function nothingToCompare(reduction: ReductionOptions, width: number, height: number): string {
  if (reduction.method === "todo" && reduction.factor === "auto")
    return `--todo auto reduces nothing at ${width}x${height} (auto uses factor 1 at 768 px and below); pass --todo 2 to compare anyway`;
  return `the reduction flags reduce nothing at ${width}x${height} (${describeReduction(reduction)}); pass --todo 2 to compare`;
}

function firstImage(result: GenerateResult): FloatImage {
  const { images } = result;
  const size = images.width * images.height * 3;
  return { width: images.width, height: images.height, data: images.data.subarray(0, size) };
}

function summary(label: string, result: GenerateResult): RunSummary {
  const t = result.timings;
  return {
    label,
    reduction: result.parameters.reduction,
    description: describeReduction(result.parameters.reduction ?? undefined),
    timeMs: t.totalMs,
    unetMs: t.unetMs,
    textEncoderMs: t.textEncoderMs,
    vaeMs: t.vaeMs,
    unetCalls: t.unetCalls,
    denoisedOn: t.denoisedOn,
  };
}

/** "ToDo x2 nearest", "ToDo x3/x2 avg" (levels 1/2), "ToMe 0.5", for labels and the table. */
export function shortLabel(settings: ReductionSettings, family: ModelFamily): string {
  // SDXL has no attention at level 1: its reduction is named by level 2 alone.
  const levels = family === "sdxl" ? [2] : [1, 2];
  const values =
    settings.method === "todo"
      ? levels.map((level) => (level === 1 ? settings.factor : settings.factorLevel2))
      : levels.map((level) => (level === 1 ? settings.ratio : settings.ratioLevel2));
  const none = settings.method === "todo" ? 1 : 0;
  while (values.length > 1 && values[values.length - 1] === none) values.pop();
  let label =
    settings.method === "todo"
      ? `ToDo x${values.join("/x")} ${settings.mode}`
      : `ToMe ${values.join("/")}`;
  if (settings.target === "all") label += " all";
  if (settings.stopThreshold > 0) label += ` stop ${settings.stopThreshold}`;
  if (settings.switchThreshold > settings.stopThreshold && settings.secondary !== settings.method)
    label += ` then ${settings.secondary}`;
  return label;
}

function seconds(ms: number): string {
  const s = ms / 1000;
  return s < 100 ? `${s.toFixed(2)} s` : `${s.toFixed(0)} s`;
}

function formatTable(
  runs: readonly RunSummary[],
  speedup: number,
  unetSpeedup: number,
  metrics: ImageComparison,
): string {
  const rows = [
    ["run", "time/image", "UNet", "speedup", "UNet speedup", "MSE", "PSNR", "SSIM"],
    [
      runs[0].label,
      seconds(runs[0].timeMs),
      seconds(runs[0].unetMs),
      "1.00x",
      "1.00x",
      "-",
      "-",
      "-",
    ],
    [
      runs[1].label,
      seconds(runs[1].timeMs),
      seconds(runs[1].unetMs),
      `${speedup.toFixed(2)}x`,
      `${unetSpeedup.toFixed(2)}x`,
      metrics.mse.toExponential(2),
      Number.isFinite(metrics.psnr) ? `${metrics.psnr.toFixed(2)} dB` : "inf dB",
      metrics.ssim.toFixed(4),
    ],
  ];
  return `${table(rows).join("\n")}\n`;
}
