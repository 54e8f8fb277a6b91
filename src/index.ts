/**
 * The Node entry (`todo-sd`): the platform-neutral core plus what needs Node: loading model
 * folders, single files and downloads into a pipeline on onnxruntime-node, converting models,
 * reading and writing images, LoRA files, and the server. The graph builders are under
 * `todo-sd/builders`, the rewrite rules for graphs exported elsewhere under `todo-sd/patch`;
 * everything else is internal.
 */

export * from "./core.js";
export { type DownloadOptions, downloadFile } from "./hub/download-file.js";
export { downloadPipeline, type PipelineDownloadOptions } from "./hub/download-pipeline.js";
export { HubError, type HubErrorCode } from "./hub/errors.js";
export { isHubId, parseHubId } from "./hub/hub-id.js";
export type { ProgressCallback } from "./hub/transfer.js";
export { sideBySide } from "./image/compose.js";
export {
  formatWebUiParameters,
  parseWebUiParameters,
  readGenerationInfo,
} from "./image/parameters.js";
export { readPngFile, writePngFile } from "./image/png-file.js";
export { type FitMode, fitImage, type ResampleFilter, resizeImage } from "./image/resize.js";
export {
  type AppliedLora,
  type ApplyLoraOptions,
  applyLoras,
  type LoraRequest,
} from "./lora/apply-loras.js";
export { isLoraFile, LoraFile } from "./lora/lora-file.js";
export {
  extractPromptLoras,
  findLora,
  type LoraListing,
  listLoras,
  type PromptLoras,
} from "./lora/lora-folder.js";
export { type LoraMatch, matchLora } from "./lora/lora-targets.js";
export {
  CONVERT_COMPONENTS,
  type ConvertComponent,
  type ConvertedFile,
  type ConvertOptions,
  convertModel,
} from "./pipelines/convert.js";
export { type LoadOptions, loadPipeline } from "./pipelines/load.js";
export { defaultCacheDir, ModelCache } from "./pipelines/model-cache.js";
export { writeResultPngs } from "./pipelines/outputs.js";
export {
  WEBGPU_BUFFER_CACHE_MODES,
  type WebGpuBufferCache,
  type WebGpuTuning,
} from "./runtime/session.js";
export type { JobEvent, JobRequest, JobResult, ServerInfo } from "./serve/protocol.js";
export {
  type QueueWorkerOptions,
  type RunningWorker,
  startQueueWorker,
} from "./serve/queue-worker.js";
export { type RunningServer, type ServeOptions, startServer } from "./serve/server.js";
