/**
 * Generated images as PNG files that carry their parameters: a `parameters` text chunk in the
 * format the popular web UIs read, and the full generation record as JSON (`todo-sd` chunk).
 */
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { floatToRgb8, imagesFromBatch } from "../image/float-image.js";
import { generationTextChunks, type JsonObject, webUiSamplerName } from "../image/parameters.js";
import { encodePng } from "../image/png.js";
import { writePngFile } from "../image/png-file.js";
import { describeReduction } from "../reduce/options.js";
import type { GenerateResult } from "./stable-diffusion.js";

export const TOOL_VERSION = "todo-sd 0.1.0";

/** Creates `dir` if needed and checks that files can be written there (before any work). */
export function ensureWritableFolder(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory())
      throw Object.assign(new Error("not a folder"), { code: "ENOTDIR" });
    accessSync(dir, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`output folder ${dir} is not writable (${code})`);
  }
}

/** PNG bytes of image `index` of a result, with its parameters embedded. */
export function encodeResultPng(result: GenerateResult, index: number, model: string): Uint8Array {
  const { images, parameters: p } = result;
  const image = imagesFromBatch(images.data, images.count, images.height, images.width)[index];
  const promptIndex = Math.floor(index / p.imagesPerPrompt);
  const extra: Record<string, string> = {};
  if (p.reduction) extra.ToDo = describeReduction(p.reduction);
  extra.Version = TOOL_VERSION;
  const record: JsonObject = {
    ...(JSON.parse(JSON.stringify(p)) as JsonObject),
    model,
    imageIndex: index,
    timings: { ...result.timings },
  };
  const chunks = generationTextChunks(
    {
      prompt: p.prompt[promptIndex],
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
      extra,
    },
    record,
  );
  return encodePng({ width: image.width, height: image.height, data: floatToRgb8(image) }, chunks);
}

/** Writes every image of a result as `<dir>/<prefix>-<i>.png` (atomically); returns the paths. */
export function writeResultPngs(
  result: GenerateResult,
  dir: string,
  prefix: string,
  model: string,
): string[] {
  const paths: string[] = [];
  for (let i = 0; i < result.images.count; i++) {
    const path = join(dir, `${prefix}-${i}.png`);
    writePngFile(path, encodeResultPng(result, i, model));
    paths.push(path);
  }
  return paths;
}
