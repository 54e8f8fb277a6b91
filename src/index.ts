// Public API of todo-sd. Everything a user imports comes through here.

export { runAttentionProbes } from "./bench/attention-probe.js";
export { runConvProbes } from "./bench/conv-probe.js";
export {
  type KernelBenchOptions,
  type KernelBenchReport,
  type KernelBenchRow,
  runKernelBenches,
} from "./bench/kernels/run.js";
export { plotBenchSvg } from "./bench/plot.js";
export {
  BENCH_METHODS,
  type BenchMethod,
  type BenchSize,
  benchReduction,
  benchUnet,
  parseBenchMethod,
  type UnetBenchOptions,
  type UnetBenchRow,
} from "./bench/unet-bench.js";
export { createKernelRunner, type KernelRunner } from "./engine/runner.js";
export {
  ENGINE_CHOICES,
  type Engine,
  type EngineChoice,
  parseEngine,
  resolveEngine,
} from "./engine/select.js";
export { GpuContext, type GpuTensor } from "./gpu/context.js";
export type { KernelPath, PathRequest, StorageType } from "./gpu/types.js";
export { chooseKernelVariant, type KernelVariant } from "./gpu/variants.js";
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
export { sideBySide } from "./image/compose.js";
export { type FloatImage, floatToRgb8, imagesFromBatch, rgb8ToFloat } from "./image/float-image.js";
export {
  compareImages,
  comparisonToJson,
  type ImageComparison,
  meanSquaredError,
  peakSignalToNoiseRatio,
  structuralSimilarity,
} from "./image/metrics.js";
export {
  formatWebUiParameters,
  generationTextChunks,
  parseWebUiParameters,
  readGenerationInfo,
  webUiSamplerName,
} from "./image/parameters.js";
export {
  type DecodedPng,
  decodePng,
  encodePng,
  type Image8,
  type PngEncodeOptions,
} from "./image/png.js";
export { readPngFile, writePngFile } from "./image/png-file.js";
export { type FitMode, fitImage, type ResampleFilter, resizeImage } from "./image/resize.js";
export * from "./lora/index.js";
export { type ClipTextConfig, parseClipTextConfig } from "./models/clip-config.js";
export type { ClipTextEncoderOptions } from "./models/clip-text.js";
export { buildClipTextEncoder, clipSkipHiddenState } from "./models/clip-text.js";
export {
  type AttentionChunking,
  chooseOps,
  OP_CHOICES,
  type OpBackend,
  type OpChoices,
} from "./models/layers.js";
export { buildUnet, UNET_INPUTS, UNET_OUTPUT } from "./models/unet.js";
export { parseUnetConfig, type UnetConfig } from "./models/unet-config.js";
export { buildVaeDecoder, buildVaeEncoder } from "./models/vae.js";
export { parseVaeConfig, type VaeConfig } from "./models/vae-config.js";
export { attr, GraphBuilder, MS_DOMAIN } from "./onnx/builder.js";
export {
  buildModelBytes,
  formatBytes,
  readModel,
  saveModel,
  writeModel,
} from "./onnx/model-io.js";
export {
  type GraphProto,
  type ModelProto,
  TensorDataType,
  type TensorProto,
  type ValueInfoProto,
} from "./onnx/proto.js";
export {
  ATTENTION_RULES,
  applyRules,
  describeReport,
  findSelfAttention,
  type PatchReport,
} from "./patch/apply-rules.js";
export { GraphIndex } from "./patch/graph-index.js";
export {
  type PatchOptions,
  type PatchResult,
  patchModel,
  patchUnet,
} from "./patch/patch-model.js";
export {
  countDownBlocks,
  levelFromName,
  type UnetSignature,
  unetSignature,
} from "./patch/unet-levels.js";
export {
  type ComponentBackend,
  type ComponentModelFile,
  type ComponentModelOptions,
  type ComponentModels,
  openComponentModels,
  type PipelineManifest,
} from "./pipelines/component-models.js";
export {
  CONVERT_COMPONENTS,
  type ConvertComponent,
  type ConvertedFile,
  type ConvertOptions,
  convertModel,
  parseConvertComponent,
} from "./pipelines/convert.js";
export {
  classifySource,
  familyOf,
  type LoadOptions,
  loadPipeline,
  openModelFiles,
  type SourceKind,
} from "./pipelines/load.js";
export { defaultCacheDir, ModelCache } from "./pipelines/model-cache.js";
export {
  type OnnxFolder,
  type OnnxFolderOptions,
  openOnnxFolder,
} from "./pipelines/onnx-folder.js";
export {
  encodeResultPng,
  ensureWritableFolder,
  TOOL_VERSION,
  writeResultPngs,
} from "./pipelines/outputs.js";
export { loraParameters } from "./pipelines/result-png.js";
export {
  type AdaptedModels,
  type GenerateOptions,
  type GenerateResult,
  type GenerationParameters,
  type ImageBatch,
  type PipelineParts,
  type ProgressInfo,
  StableDiffusionPipeline,
} from "./pipelines/stable-diffusion.js";
export {
  AUTO_TILING_ABOVE,
  DEFAULT_VAE_TILING,
  decodeInTiles,
  type VaeTiling,
} from "./pipelines/vae-tiling.js";
export {
  DEFAULT_REDUCTION_OPTIONS,
  DOWNSAMPLE_MODES,
  type DownsampleMode,
  describeReduction,
  levelGrid,
  METADATA_PREFIX,
  parseReductionFlags,
  parseReductionOptions,
  type ReductionOptions,
  type ReductionOptionsInput,
  type ReductionSettings,
  reductionFromMetadata,
  reductionMetadata,
  resolveAutoFactor,
  resolveReduction,
  settingsFromReferenceArgs,
} from "./reduce/index.js";
export { deviceUnavailable } from "./runtime/device-check.js";
export { DEVICES, type Device, parseDevice } from "./runtime/devices.js";
export { type ProfileSummary, summariseProfile } from "./runtime/profile.js";
export {
  WEBGPU_BUFFER_CACHE_MODES,
  type WebGpuBufferCache,
  type WebGpuTuning,
} from "./runtime/session.js";
export {
  createScheduler,
  listSchedulerClasses,
  listSchedulers,
  loadSchedulerConfig,
  type Scheduler,
} from "./schedulers/index.js";
export type {
  GenerationParams,
  GenerationResult,
  JobEvent,
  JobParams,
  JobRequest,
  JobResult,
  Limits,
  ServerInfo,
} from "./serve/protocol.js";
export {
  type QueueWorkerOptions,
  type RunningWorker,
  startQueueWorker,
} from "./serve/queue-worker.js";
export { type RunningServer, type ServeOptions, startServer } from "./serve/server.js";
export type { ChunkOptions, TokenizedBatch, TokenizeOptions } from "./tokenizers/clip-tokenizer.js";
export { ClipTokenizer } from "./tokenizers/clip-tokenizer.js";
export { loadClipTokenizer } from "./tokenizers/load-folder.js";
export {
  removeStaleTemporaries,
  staleTemporaries,
  writeBytesAtomically,
  writeBytesExclusively,
  writeFileAtomically,
} from "./util/atomic-write.js";
export { type NoiseSource, recordedNoise, SeededRandom, seededNoise } from "./util/random.js";
export { BUILTIN_NAMES, openBuiltin } from "./weights/builtin.js";
export { parseConfigJson, readConfigFile } from "./weights/config-json.js";
export { openDiffusersComponent, openDiffusersFolder } from "./weights/diffusers-folder.js";
export {
  type ComponentName,
  componentClassName,
  type ModelFamily,
  type ModelFiles,
  type ModelIndex,
} from "./weights/model-files.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
export { openSingleFile } from "./weights/single-file.js";
