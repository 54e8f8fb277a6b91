/**
 * Jobs beyond the machine are refused before anything is built: `--max-pixels` bounds the image,
 * and the memory estimate (pipelines/memory-estimate.ts) must fit the device. onnxruntime-node
 * does not tell a GPU's memory, so there only the pixel bound applies; on the CPU the estimate is
 * held against the machine's memory.
 */
import { totalmem } from "node:os";
import { InvalidArgumentError } from "commander";
import type { Device, ModelDtype, ReductionSettings, StableDiffusionPipeline } from "../index.js";
import {
  estimateMemory,
  formatMemory,
  type MemoryEstimate,
  type MemoryShape,
  standardMemoryShape,
} from "../pipelines/memory-estimate.js";
import { modelDtype } from "../util/vocabulary.js";

/** 4096 x 4096: beyond what any released Stable Diffusion model makes sense at. */
export const DEFAULT_MAX_PIXELS = 4096 * 4096;

export function maxPixelsArg(value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 64)
    throw new InvalidArgumentError("--max-pixels must be a whole number of pixels >= 64");
  return n;
}

export interface MemoryJobFlags {
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  readonly guided: boolean;
  readonly device: Device;
  readonly dtype?: ModelDtype;
  readonly vaeTiling: "auto" | "on" | "off";
  readonly maxPixels?: number;
}

/** The VAE tiles' side, as the pipeline decodes (tiles of 768 px over 1024 px with auto). */
function vaeTile(mode: "auto" | "on" | "off", width: number, height: number): number | undefined {
  if (mode === "off") return undefined;
  if (mode === "on") return 768;
  return Math.max(width, height) > 1024 ? 768 : undefined;
}

export function estimateJob(
  shape: MemoryShape,
  job: MemoryJobFlags,
  reduction: ReductionSettings | undefined,
): MemoryEstimate {
  const dtype = modelDtype(job.device, job.dtype);
  const keyFactors =
    reduction?.method === "todo" ? [reduction.factor, reduction.factorLevel2] : undefined;
  return estimateMemory(shape, {
    width: job.width,
    height: job.height,
    batch: job.batch,
    guided: job.guided,
    activationBytes: dtype === "float16" ? 2 : 4,
    materialisedScores: job.device === "cpu",
    keyFactors,
    vaeTile: vaeTile(job.vaeTiling, job.width, job.height),
  });
}

export function describeEstimate(estimate: MemoryEstimate): string {
  return `about ${formatMemory(estimate.total)} (weights ${formatMemory(estimate.weights)}, UNet activations ${formatMemory(estimate.unet)}, attention scores ${formatMemory(estimate.attention)}, VAE ${formatMemory(estimate.vae)})`;
}

/** Refuses a job over --max-pixels or, on the CPU, over the machine's memory. */
export function checkJobFits(
  pipeline: StableDiffusionPipeline,
  job: MemoryJobFlags,
  reduction: ReductionSettings | undefined,
): MemoryEstimate {
  const { width, height } = job;
  const maxPixels = job.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (width * height > maxPixels)
    throw new Error(
      `${width}x${height} is ${((width * height) / 1e6).toFixed(1)} megapixels, over the ${(maxPixels / 1e6).toFixed(1)} allowed (--max-pixels ${maxPixels})`,
    );
  const shape =
    pipeline.parts.memoryShape ??
    standardMemoryShape(pipeline.family, job.dtype === "float16" ? 2 : 4);
  const estimate = estimateJob(shape, job, reduction);
  const available = job.device === "cpu" ? totalmem() : undefined;
  if (available !== undefined && estimate.total > available)
    throw new Error(
      `${width}x${height} needs ${describeEstimate(estimate)}, more than this machine's ${formatMemory(available)}; use a smaller size, ToDo (--todo), or a GPU`,
    );
  return estimate;
}
