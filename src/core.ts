/**
 * The platform-neutral core of the library: what runs the same in Node and in a browser. The
 * pipeline over components (however they were loaded), a call's options, defaults and plan, the
 * token-reduction options, the seeded random numbers, and float images to PNG. Nothing here
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
  DEFAULT_REDUCTION_OPTIONS,
  DOWNSAMPLE_MODES,
  type DownsampleMode,
  describeReduction,
  parseReductionOptions,
  type ReductionOptions,
  type ReductionOptionsInput,
  type ReductionSettings,
} from "./reduce/options.js";
export {
  MAX_SEED,
  type NoiseSource,
  randomSeed,
  SeededRandom,
  seededNoise,
} from "./util/random.js";
