/**
 * Runs one job spec on a loaded pipeline, in a generation process (the server's or a queue
 * worker's). Images are handed to the hooks as PNG bytes before the events that name them.
 */
import { rgb8ToFloat } from "../image/float-image.js";
import { decodePng } from "../image/png.js";
import { fitImage } from "../image/resize.js";
import { findLora } from "../lora/lora-folder.js";
import type { GenerateOptions } from "../pipelines/generate-options.js";
import { encodeResultPng } from "../pipelines/result-png.js";
import type { StableDiffusionPipeline } from "../pipelines/stable-diffusion.js";
import { runComparison } from "./comparison.js";
import {
  imageUrl,
  type JobContext,
  type JobHooks,
  type JobOutcome,
  type JobSpec,
  recordedSpec,
} from "./job-spec.js";
import { type GenerationParams, type GenerationResult, samplingOptions } from "./protocol.js";

export async function runJobSpec(
  pipeline: StableDiffusionPipeline,
  spec: JobSpec,
  context: JobContext,
  hooks: JobHooks,
  signal: AbortSignal,
): Promise<JobOutcome> {
  if (spec.kind === "compare") {
    const result = await runComparison(
      pipeline,
      {
        ...context,
        engine: "server",
        params: spec.params,
        loras: loraFiles(spec.params.loras, context.loraDir),
      },
      {
        signal,
        emit: (event) => hooks.emit(event),
        publish: (phase, generated) => {
          const name = `${phase}.png`;
          hooks.image(name, encodeResultPng(generated, 0, context.model));
          return imageUrl(context.id, name);
        },
      },
    );
    return { kind: "compare", result };
  }
  return {
    kind: "generate",
    result: await runGeneration(pipeline, spec.params, context, hooks, signal),
  };
}

/**
 * A job's LoRAs as files of this process's LoRA folder; undefined without LoRAs (the pipeline's
 * own models). The server checked the names, but a queue worker has its own folder.
 */
export function loraFiles(
  loras: GenerationParams["loras"],
  folder: string | undefined,
): GenerateOptions["loras"] {
  if (!loras || loras.length === 0) return undefined;
  if (folder === undefined)
    throw new Error(
      "this job asks for LoRAs; give the generation process a LoRA folder (--lora-dir)",
    );
  return loras.map(({ name, weight }) => ({ path: findLora(folder, name), weight }));
}

/** The init image as a batch of one at the asked size. */
export function decodeInitImage(
  base64: string,
  width: number,
  height: number,
): NonNullable<GenerateOptions["image"]> {
  const decoded = rgb8ToFloat(decodePng(Buffer.from(base64, "base64"), "init image"));
  const fitted =
    decoded.width === width && decoded.height === height
      ? decoded
      : fitImage(decoded, width, height);
  return { data: fitted.data, count: 1, width, height };
}

async function runGeneration(
  pipeline: StableDiffusionPipeline,
  params: GenerationParams,
  context: JobContext,
  hooks: JobHooks,
  signal: AbortSignal,
): Promise<GenerationResult> {
  const image =
    params.initImage === null
      ? undefined
      : decodeInitImage(params.initImage, params.width, params.height);
  const loras = loraFiles(params.loras, context.loraDir);
  const images: GenerationResult["images"][number][] = [];
  const timings: GenerationResult["timings"][number][] = [];
  for (let index = 0; index < params.count; index++) {
    const seed = params.seed + index;
    const result = await pipeline.generate({
      ...samplingOptions(params),
      seed,
      reduction: params.reduction ?? undefined,
      image,
      strength: params.strength ?? undefined,
      loras,
      signal,
      onProgress: (info) =>
        hooks.emit({
          type: "progress",
          phase: "generation",
          image: index,
          images: params.count,
          step: info.step,
          totalSteps: info.totalSteps,
          elapsedMs: info.elapsedMs,
        }),
    });
    const name = `${index}.png`;
    hooks.image(name, encodeResultPng(result, 0, context.model));
    images.push({ url: imageUrl(context.id, name), seed });
    timings.push(result.timings);
  }
  const recorded = recordedSpec({ kind: "generate", params });
  return {
    kind: "generation",
    id: context.id,
    createdAt: context.createdAt,
    model: context.model,
    device: context.device,
    params: recorded.params as GenerationParams,
    images,
    timings,
  };
}
