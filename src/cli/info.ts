import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { parseUnetConfig } from "../configs/unet-config.js";
import { parseVaeConfig } from "../configs/vae-config.js";
import type { EngineChoice } from "../engine/select.js";
import { isLoraFile } from "../index.js";
import { classifySource, openModelFiles } from "../pipelines/load.js";
import { type MemoryShape, standardMemoryShape } from "../pipelines/memory-estimate.js";
import { modelMemoryShape } from "../pipelines/model-plan.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { Device } from "../util/vocabulary.js";
import { type EngineReport, engineReport, formatEngineReport } from "./info-engine.js";
import { formatLoraInfo, loraInfo } from "./info-lora.js";
import { type ComponentInfo, type ModelInfo, type TensorIo, weightsInfo } from "./info-model.js";
import { onnxFileInfo, onnxFolderInfo } from "./info-onnx.js";
import { describeEstimate, estimateJob } from "./memory-check.js";
import { deviceArg, engineArg, sizeArg } from "./options.js";
import { checkOutputFile, writeJsonOutput } from "./output-files.js";
import { table } from "./progress.js";

interface InfoFlags {
  readonly size?: { width: number; height: number };
  readonly json?: boolean | string;
  readonly configFrom?: string;
  readonly variant?: string;
  readonly revision?: string;
  readonly offline?: boolean;
  readonly model?: string;
  readonly device?: Device;
  readonly engine?: EngineChoice;
}

/** The loading options that say where the model's files come from. */
function sourceOptions({ configFrom, variant, revision, offline }: InfoFlags) {
  return { configFrom, variant, revision, offline };
}

export function registerInfo(program: Command): void {
  program
    .command("info")
    .description(
      "what a model holds: components, weights, attention levels and the tokens --todo auto reduces",
    )
    .argument(
      "<source>",
      "diffusers folder, .safetensors checkpoint or LoRA, ONNX export folder or .onnx file, Hub id or builtin:sd15|sd21|sdxl",
    )
    .option("-m, --model <source>", "LoRA files: count the keys that match this model")
    .option("--size <WxH>", "image size for the token counts (default: the model's)", sizeArg)
    .option("--json [file]", "print the report as JSON (or write it to a file)")
    .option(
      "--config-from <folder>",
      "single-file checkpoints: take configs from this diffusers folder",
    )
    .option("--variant <name>", "weight variant, e.g. fp16")
    .option("--revision <rev>", "Hub revision")
    .option("--offline", "never use the network; Hub models must be in the cache")
    .option(
      "--device <device>",
      "also report which engine runs float16 and float32 models on this device (cpu|webgpu|cuda|wasm), and the kernels' path on this machine's adapter",
      deviceArg,
    )
    .option(
      "--engine <engine>",
      "with --device: the engine choice to report (auto|kernels|onnxruntime)",
      engineArg,
    )
    .action(async (source: string, flags: InfoFlags) => {
      const json = flags.json === true ? "-" : flags.json || undefined;
      if (json && json !== "-") checkOutputFile(json, "--json");
      if (flags.engine && !flags.device)
        throw new Error("--engine needs --device: the engine depends on it");
      if (/\.safetensors$/i.test(source) && existsSync(source) && isLoraFile(source)) {
        const lora = await loraInfo(source, flags.model, sourceOptions(flags));
        if (json) writeJsonOutput(json, lora);
        if (json !== "-") process.stdout.write(formatLoraInfo(lora));
        return;
      }
      if (flags.model) throw new Error("-m/--model is for LoRA files; give the model as <source>");
      const info = withMemory(await inspect(source, flags));
      // The engine's adapter is opened only after the model was read, so a bad source fails first.
      const engine: EngineReport | undefined = flags.device
        ? await engineReport(flags.device, flags.engine ?? "auto")
        : undefined;
      if (json) writeJsonOutput(json, engine ? { ...info, engine } : info);
      if (json !== "-")
        process.stdout.write(
          formatInfo(info) + (engine ? `${formatEngineReport(engine).join("\n")}\n` : ""),
        );
    });
}

/** The shapes of models opened from weights, for their memory estimates. */
const shapes = new WeakMap<ModelInfo, MemoryShape>();

/**
 * The memory a generation at the report's size needs (batch 1 with guidance, --todo auto): on
 * the CPU in float32, and on a GPU in float16 with flash attention. ONNX exports carry no
 * configs: their family's released architecture stands in, with the exported weights' size.
 */
function withMemory(info: ModelInfo): ModelInfo {
  if (!info.size || !info.family) return info;
  const parameters = info.components.reduce((sum, c) => sum + (c.parameters ?? 0), 0);
  const shape = shapes.get(info) ?? {
    ...standardMemoryShape(info.family, 4),
    ...(parameters > 0 ? { weightBytes: parameters * 4 } : {}),
  };
  const reduction = info.auto
    ? ({
        method: "todo",
        factor: info.auto.factor,
        factorLevel2: info.auto.factorLevel2,
      } as ReductionSettings)
    : undefined;
  const job = { ...info.size, batch: 1, guided: true, vaeTiling: "auto" as const };
  return {
    ...info,
    memory: {
      cpu: estimateJob(shape, { ...job, device: "cpu", dtype: "float32" }, reduction),
      gpu: estimateJob(
        { ...shape, weightBytes: shape.weightBytes / 2 },
        { ...job, device: "webgpu", dtype: "float16" },
        reduction,
      ),
    },
  };
}

async function inspect(source: string, flags: InfoFlags): Promise<ModelInfo> {
  if (/\.onnx$/i.test(source) && existsSync(source) && statSync(source).isFile())
    return onnxFileInfo(source, flags.size);
  const kind = classifySource(source);
  if (kind === "onnx-folder") return onnxFolderInfo(source, flags.size);
  const { files } = await openModelFiles(source, sourceOptions(flags), kind);
  try {
    const info = weightsInfo(source, kind, files, flags.size);
    const unet = files.configs.unet;
    const vae = files.configs.vae;
    if (!unet || !vae) return info;
    shapes.set(
      info,
      modelMemoryShape(
        files,
        parseUnetConfig(unet, `${source} unet/config.json`),
        parseVaeConfig(vae, `${source} vae/config.json`),
        "float32",
      ),
    );
    return info;
  } finally {
    files.close();
  }
}

const FAMILY_NAMES = Object.freeze({ sd1: "SD 1.x", sd2: "SD 2.x", sdxl: "SDXL" });

/** The report as text, one fact per line. */
export function formatInfo(info: ModelInfo): string {
  const lines: string[] = [];
  const family = info.family ? `${FAMILY_NAMES[info.family]} (${info.family})` : "unknown family";
  const pipeline = info.pipelineClass ? `, ${info.pipelineClass}` : "";
  lines.push(`${info.source}: ${info.kind}, ${family}${pipeline}`);
  lines.push("components:");
  const nameWidth = Math.max(...info.components.map((c) => c.name.length));
  const classWidth = Math.max(...info.components.map((c) => (c.className ?? "-").length));
  for (const component of info.components) {
    const parts = [
      component.name.padEnd(nameWidth),
      (component.className ?? "-").padEnd(classWidth),
    ];
    if (component.parameters !== undefined) parts.push(weightSummary(component));
    if (component.nodes !== undefined)
      parts.push(`${component.nodes} nodes, opset ${component.opset ?? "?"}`);
    lines.push(`  ${parts.join("  ").trimEnd()}`);
    for (const io of component.inputs ?? []) lines.push(`      in  ${formatIo(io)}`);
    for (const io of component.outputs ?? []) lines.push(`      out ${formatIo(io)}`);
  }
  if (info.unet) lines.push(`unet: ${formatUnet(info.unet)}`);
  const attention = info.attention;
  if (attention && info.size && info.latent) {
    const from = attention.from === "config" ? "unet config" : "the patch rules' matches";
    lines.push(
      `self-attention at ${info.size.width}x${info.size.height} (latent ${info.latent.width}x${info.latent.height}), from ${from}:`,
    );
    const rows = [["level", "grid", "tokens", "blocks", "--todo auto"]];
    for (const level of attention.levels) {
      rows.push([
        String(level.level),
        `${level.grid.width}x${level.grid.height}`,
        String(level.tokens),
        String(level.selfAttentionBlocks),
        level.auto
          ? `x${level.auto.factor}: keys/values ${level.tokens} -> ${level.auto.keyValueTokens}`
          : "-",
      ]);
    }
    lines.push(...table(rows).map((row) => `  ${row}`));
    if (attention.levels.length === 0) lines.push("  no self-attention blocks found");
    lines.push(`  ${attention.crossAttentionBlocks} cross-attention blocks (never reduced)`);
    for (const skipped of attention.skipped ?? [])
      lines.push(`  skipped ${skipped.name}: ${skipped.reason}`);
    const builtIn = attention.builtIn;
    if (builtIn) {
      const reduced = Object.entries(builtIn.reducedBlocksPerLevel)
        .map(([level, blocks]) => `level ${level}: ${blocks}`)
        .join(", ");
      lines.push(`token reduction built in: ${builtIn.description}`);
      lines.push(`  reduced blocks: ${reduced || "none"}`);
      lines.push(
        `  settings: ${Object.entries(builtIn.settings)
          .map(([key, value]) => `${key}=${value}`)
          .join(" ")}`,
      );
    }
  } else if (info.unet === null && info.kind.startsWith("onnx")) {
    lines.push("no UNet: no attention levels to report");
  }
  if (info.auto && info.size)
    lines.push(`--todo auto at ${info.size.width}x${info.size.height}: ${info.auto.description}`);
  if (info.memory && info.size)
    for (const [device, estimate] of Object.entries(info.memory))
      lines.push(
        `memory at ${info.size.width}x${info.size.height}, batch 1 with guidance, --todo auto, ${device}: ${describeEstimate(estimate)}`,
      );
  return `${lines.join("\n")}\n`;
}

function weightSummary(component: ComponentInfo): string {
  const dtypes = Object.entries(component.dtypes ?? {}).sort((a, b) => b[1] - a[1]);
  const types =
    dtypes.length === 1
      ? dtypes[0][0]
      : dtypes.map(([type, count]) => `${type} ${compactCount(count)}`).join(", ");
  return `${(component.parameters ?? 0).toLocaleString("en-US")} parameters${types ? ` (${types})` : ""}`;
}

function compactCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function formatIo(io: TensorIo): string {
  return `${io.name} ${io.type} [${io.shape.join(", ")}]`;
}

function formatUnet(unet: Readonly<Record<string, unknown>>): string {
  if ("blockOutChannels" in unet) {
    const channels = (unet.blockOutChannels as readonly number[]).join("/");
    const cross = unet.crossAttentionDim;
    const extra = unet.textTimeConditioning ? ", text_time conditioning" : "";
    return `channels ${channels}, cross-attention width ${Array.isArray(cross) ? cross.join("/") : String(cross)}, sample size ${String(unet.sampleSize)}${extra}`;
  }
  const fixed = unet.staticSize as { width: number; height: number } | null;
  return fixed ? `exported for ${fixed.width}x${fixed.height} only` : "exported for any size";
}
