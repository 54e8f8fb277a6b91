/**
 * The platform-neutral core of the library: what runs the same in Node and in a browser. The
 * pipeline over components (however they were loaded), a call's options, defaults and plan, the
 * samplers, the token-reduction options, VAE tiling, the seeded random numbers, float images,
 * PNG and image metrics, and the names of devices, dtypes and model families. Nothing here
 * touches the filesystem or a runtime; the Node entry (index.ts) and the browser entry
 * (browser.ts) add those.
 */

export { type FloatImage, floatToRgb8, imagesFromBatch, rgb8ToFloat } from "./image/float-image.js";
export { compareImages, comparisonToJson, type ImageComparison } from "./image/metrics.js";
export { decodePng, encodePng } from "./image/png.js";
export {
  GENERATION_DEFAULTS,
  type GenerateOptions,
  type GenerateResult,
  type GenerateTimings,
  type GenerationParameters,
  type ImageBatch,
  type ProgressInfo,
} from "./pipelines/generate-options.js";
export { type GenerationPlan, planGeneration } from "./pipelines/generation-plan.js";
export type { AdaptedModels, PipelineParts } from "./pipelines/pipeline-parts.js";
export { encodeResultPng, TOOL_VERSION } from "./pipelines/result-png.js";
export { StableDiffusionPipeline } from "./pipelines/stable-diffusion.js";
export {
  AUTO_TILING_ABOVE,
  DEFAULT_VAE_TILING,
  type VaeTiling,
} from "./pipelines/vae-tiling.js";
export {
  DEFAULT_REDUCTION_OPTIONS,
  DOWNSAMPLE_MODES,
  type DownsampleMode,
  describeReduction,
  parseReductionOptions,
  type ReductionOptions,
  type ReductionOptionsInput,
  type ReductionSettings,
} from "./reduce/options.js";
export { createScheduler, listSchedulers } from "./schedulers/registry.js";
export type { Scheduler } from "./schedulers/types.js";
export {
  MAX_SEED,
  type NoiseSource,
  randomSeed,
  SeededRandom,
  seededNoise,
} from "./util/random.js";
export {
  DEVICES,
  type Device,
  type ModelDtype,
  type ModelFamily,
  parseDevice,
  parseDtype,
  type WebDevice,
} from "./util/vocabulary.js";
