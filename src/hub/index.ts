// Model download from the Hugging Face Hub into the cache the Python tools share.
export { type DownloadOptions, downloadFile } from "./download-file.js";
export { downloadPipeline, type PipelineDownloadOptions } from "./download-pipeline.js";
export { HubError, type HubErrorCode } from "./errors.js";
export { type HubId, isHubId, parseHubId } from "./hub-id.js";
export {
  type PipelineFilePlan,
  pipelineComponents,
  planPipelineFiles,
} from "./pipeline-files.js";
export { type HubSettings, type HubSettingsOptions, resolveHubSettings } from "./settings.js";
export type { ProgressCallback } from "./transfer.js";
