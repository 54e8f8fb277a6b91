// Public API of todo-sd. Everything a user imports comes through here.

export {
  type DownloadOptions,
  downloadFile,
  downloadPipeline,
  HubError,
  type HubErrorCode,
  isHubId,
  type PipelineDownloadOptions,
  type ProgressCallback,
  parseHubId,
  resolveHubSettings,
} from "./hub/index.js";
export { type ClipTextConfig, parseClipTextConfig } from "./models/clip-config.js";
export type { ClipTextEncoderOptions } from "./models/clip-text.js";
export { buildClipTextEncoder, clipSkipHiddenState } from "./models/clip-text.js";
export type { ChunkOptions, TokenizedBatch, TokenizeOptions } from "./tokenizers/clip-tokenizer.js";
export { ClipTokenizer } from "./tokenizers/clip-tokenizer.js";
export { loadClipTokenizer } from "./tokenizers/load-folder.js";
export { type NoiseSource, recordedNoise, SeededRandom, seededNoise } from "./util/random.js";
export { BUILTIN_NAMES, openBuiltin } from "./weights/builtin.js";
export { parseConfigJson } from "./weights/config-json.js";
export { openDiffusersComponent, openDiffusersFolder } from "./weights/diffusers-folder.js";
export type { ComponentName, ModelFamily, ModelFiles, ModelIndex } from "./weights/model-files.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
export { openSingleFile } from "./weights/single-file.js";
export { encodePng, decodePng, type Image8, type DecodedPng, type PngEncodeOptions } from "./image/png.js";
export { floatToRgb8, rgb8ToFloat, imagesFromBatch, type FloatImage } from "./image/float-image.js";
export { resizeImage, fitImage, type ResampleFilter, type FitMode } from "./image/resize.js";
export {
  compareImages,
  comparisonToJson,
  meanSquaredError,
  peakSignalToNoiseRatio,
  structuralSimilarity,
  type ImageComparison,
} from "./image/metrics.js";
export {
  formatWebUiParameters,
  parseWebUiParameters,
  webUiSamplerName,
  generationTextChunks,
  readGenerationInfo,
} from "./image/parameters.js";
export { sideBySide } from "./image/compose.js";
export { readPngFile, writePngFile } from "./image/png-file.js";
export { buildUnet, UNET_INPUTS, UNET_OUTPUT } from "./models/unet.js";
export { parseUnetConfig, type UnetConfig } from "./models/unet-config.js";
export { buildVaeDecoder, buildVaeEncoder } from "./models/vae.js";
export { parseVaeConfig, type VaeConfig } from "./models/vae-config.js";
export { OP_CHOICES, chooseOps, type OpBackend, type OpChoices } from "./models/layers.js";
export { GraphBuilder, attr, MS_DOMAIN } from "./onnx/builder.js";
export { saveModel, buildModelBytes, readModel, writeModel } from "./onnx/model-io.js";
export {
  createScheduler,
  listSchedulers,
  listSchedulerClasses,
  loadSchedulerConfig,
  type Scheduler,
} from "./schedulers/index.js";
