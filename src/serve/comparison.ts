/**
 * One job of the web demo: the same prompt and seed generated twice, with the plain UNet and with
 * token reduction, then compared. Both engines (the Node server and the in-browser one) run it,
 * so it only uses the platform-neutral pipeline.
 */
import { compareImages, comparisonToJson } from "../image/metrics.js";
import type { GenerateOptions, GenerateResult } from "../pipelines/generate-options.js";
import type { StableDiffusionPipeline } from "../pipelines/stable-diffusion.js";
import { describeReduction } from "../reduce/options.js";
import {
  type EngineName,
  type JobEvent,
  type JobParams,
  type JobResult,
  type Phase,
  samplingOptions,
} from "./protocol.js";

export interface ComparisonJob {
  readonly id: string;
  readonly engine: EngineName;
  readonly device: string;
  readonly createdAt: string;
  /** The model's name as the user gave it (recorded in the PNGs). */
  readonly model: string;
  readonly params: JobParams;
  /** The job's LoRAs as files (params.loras resolved where they are found); absent: none. */
  readonly loras?: GenerateOptions["loras"];
}

export interface ComparisonHooks {
  readonly signal?: AbortSignal;
  emit(event: JobEvent): void;
  /** Stores a finished generation (e.g. as a PNG) and returns the URL it can be fetched from. */
  publish(phase: Phase, result: GenerateResult): string | Promise<string>;
  /** Where both runs step the latents (default `auto`: on the device where the runtime can). */
  readonly latentsOnDevice?: GenerateOptions["latentsOnDevice"];
}

/** Warm-up calls already made per pipeline, keyed by what they initialised. */
const warmed = new WeakMap<StableDiffusionPipeline, Set<string>>();

/**
 * Builds and initialises every model the two runs use, so that neither timed run pays for a
 * build, a download or a session's creation: one tiny guided step initialises the text encoders
 * (with this clip skip), the baseline UNet and the VAE decoder; the accelerated UNet is built
 * (its graph depends on the reduction settings).
 */
async function prepare(
  pipeline: StableDiffusionPipeline,
  params: JobParams,
  loras: GenerateOptions["loras"],
  signal: AbortSignal | undefined,
): Promise<void> {
  const key = JSON.stringify([params.clipSkip, params.guidanceScale > 1, loras ?? null]);
  const done = warmed.get(pipeline) ?? new Set<string>();
  warmed.set(pipeline, done);
  if (!done.has(key)) {
    // 64 px: one 8x8 latent for every SD family, the smallest size every UNet level accepts.
    const size = 8 * pipeline.parts.vaeScale;
    await pipeline.generate({
      ...samplingOptions(params),
      width: size,
      height: size,
      steps: 1,
      scheduler: "EulerDiscreteScheduler",
      seed: 0,
      loras,
      signal,
    });
    done.add(key);
  }
  await pipeline.parts.unet(params.settings);
}

/** Runs the baseline, then the accelerated generation, and compares them. */
export async function runComparison(
  pipeline: StableDiffusionPipeline,
  job: ComparisonJob,
  hooks: ComparisonHooks,
): Promise<JobResult> {
  const { params } = job;
  const { signal } = hooks;
  hooks.emit({ type: "preparing", what: "models" });
  await prepare(pipeline, params, job.loras, signal);
  const common: GenerateOptions = {
    ...samplingOptions(params),
    latentsOnDevice: hooks.latentsOnDevice,
    loras: job.loras,
    signal,
  };
  const results: Partial<Record<Phase, { result: GenerateResult; url: string }>> = {};
  for (const phase of ["baseline", "accelerated"] as const) {
    const result = await pipeline.generate({
      ...common,
      reduction: phase === "accelerated" ? params.reduction : undefined,
      onProgress: (info) =>
        hooks.emit({
          type: "progress",
          phase,
          step: info.step,
          totalSteps: info.totalSteps,
          elapsedMs: info.elapsedMs,
        }),
    });
    const url = await hooks.publish(phase, result);
    hooks.emit({ type: "image", phase, url, timings: result.timings });
    results[phase] = { result, url };
  }
  const baseline = results.baseline!;
  const accelerated = results.accelerated!;
  const image = (r: GenerateResult) => ({
    width: r.images.width,
    height: r.images.height,
    data: r.images.data,
  });
  const metrics = comparisonToJson(
    compareImages(image(baseline.result), image(accelerated.result)),
  );
  return {
    id: job.id,
    engine: job.engine,
    device: job.device,
    createdAt: job.createdAt,
    model: job.model,
    params,
    reductionLabel: describeReduction(accelerated.result.parameters.reduction ?? undefined),
    baseline: { url: baseline.url, timings: baseline.result.timings },
    accelerated: { url: accelerated.url, timings: accelerated.result.timings },
    speedup: {
      total: baseline.result.timings.totalMs / accelerated.result.timings.totalMs,
      unet: baseline.result.timings.unetMs / accelerated.result.timings.unetMs,
    },
    metrics,
  };
}
