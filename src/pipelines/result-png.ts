/**
 * Generated images as PNG bytes that carry their parameters: a `parameters` text chunk in the
 * format the popular web UIs read, and the full generation record as JSON (`todo-sd` chunk).
 * No file system access here, so browsers can use it too.
 */
import type { JsonObject } from "../configs/config-json.js";
import { floatToRgb8, imagesFromBatch } from "../image/float-image.js";
import {
  generationTextChunks,
  type WebUiParameters,
  webUiSamplerName,
} from "../image/parameters.js";
import { encodePng } from "../image/png.js";
import type { AppliedLora } from "../lora/apply-loras.js";
import { describeReduction } from "../reduce/options.js";
import type { GenerateResult, GenerationParameters } from "./generate-options.js";

export const TOOL_VERSION = "todo-sd 0.1.0";

/**
 * The model as an image records it: a path (absolute, or starting with . or ..) is cut to its
 * last part, so images never carry the folders of the machine that made them.
 */
export function recordedModelName(model: string): string {
  if (!/^(\/|\\|[A-Za-z]:[\\/]|\.{1,2}([\\/]|$))/.test(model)) return model;
  const parts = model
    .split(/[\\/]+/)
    .filter((part) => part !== "" && part !== "." && part !== "..");
  return (parts.at(-1) ?? "model").replace(/\.safetensors$/i, "");
}

/** PNG bytes of image `index` of a result, with its parameters embedded (the model by name). */
export function encodeResultPng(
  result: GenerateResult,
  index: number,
  modelSource: string,
): Uint8Array {
  const model = recordedModelName(modelSource);
  const { images, parameters: p } = result;
  const image = imagesFromBatch(images.data, images.count, images.height, images.width)[index];
  const record: JsonObject = {
    ...(JSON.parse(JSON.stringify(p)) as JsonObject),
    model,
    imageIndex: index,
    timings: { ...result.timings },
  };
  const reduction = p.reduction ? describeReduction(p.reduction) : undefined;
  const promptIndex = Math.floor(index / p.imagesPerPrompt);
  const chunks = generationTextChunks(webUiParameters(p, promptIndex, model, reduction), record);
  return encodePng({ width: image.width, height: image.height, data: floatToRgb8(image) }, chunks);
}

/**
 * The web UIs' parameters of prompt `promptIndex` of a generation: its LoRAs as prompt tags and
 * hashes, the reduction as `ToDo`, then `more`, then the version.
 */
export function webUiParameters(
  p: GenerationParameters,
  promptIndex: number,
  model: string | undefined,
  reduction: string | undefined,
  more: Readonly<Record<string, string>> = {},
): WebUiParameters {
  const loras = loraParameters(p.loras);
  return {
    prompt: p.prompt[promptIndex] + loras.promptTags,
    negativePrompt: p.negativePrompt?.[p.negativePrompt.length === 1 ? 0 : promptIndex],
    steps: p.steps,
    sampler: webUiSamplerName(p.scheduler, p.schedulerConfig),
    cfgScale: p.guidanceScale,
    seed: p.seed ?? undefined,
    width: p.width,
    height: p.height,
    model,
    denoisingStrength: p.strength ?? undefined,
    clipSkip: p.clipSkip === null ? undefined : p.clipSkip + 1,
    extra: {
      ...(reduction === undefined ? {} : { ToDo: reduction }),
      ...loras.extra,
      ...more,
      Version: TOOL_VERSION,
    },
  };
}

/**
 * LoRAs as the web UIs write them: `<lora:name:weight>` tags in the prompt (which those UIs
 * take out before encoding, as todo-sd does) and `Lora hashes: "name: hash, ..."`.
 */
function loraParameters(loras: readonly AppliedLora[] | undefined): {
  promptTags: string;
  extra: Record<string, string>;
} {
  if (!loras || loras.length === 0) return { promptTags: "", extra: {} };
  const tags = loras.map((l) => `<lora:${l.name}:${l.weight}>`).join(" ");
  const hashes = [...new Map(loras.map((l) => [l.name, `${l.name}: ${l.hash}`])).values()];
  return { promptTags: ` ${tags}`, extra: { "Lora hashes": hashes.join(", ") } };
}
