// Public API of todo-sd. Everything a user imports comes through here.

export { type ClipTextConfig, parseClipTextConfig } from "./models/clip-config.js";
export type { ClipTextEncoderOptions } from "./models/clip-text.js";
export { buildClipTextEncoder, clipSkipHiddenState } from "./models/clip-text.js";
export type { ChunkOptions, TokenizedBatch, TokenizeOptions } from "./tokenizers/clip-tokenizer.js";
export { ClipTokenizer } from "./tokenizers/clip-tokenizer.js";
export { loadClipTokenizer } from "./tokenizers/load-folder.js";
export { type NoiseSource, recordedNoise, SeededRandom, seededNoise } from "./util/random.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
export {
  downloadFile,
  downloadPipeline,
  HubError,
  isHubId,
  parseHubId,
  resolveHubSettings,
  type DownloadOptions,
  type PipelineDownloadOptions,
  type ProgressCallback,
  type HubErrorCode,
} from "./hub/index.js";
export { openDiffusersFolder, openDiffusersComponent } from "./weights/diffusers-folder.js";
export { openSingleFile } from "./weights/single-file.js";
export { openBuiltin, BUILTIN_NAMES } from "./weights/builtin.js";
export type { ModelFiles, ComponentName, ModelFamily, ModelIndex } from "./weights/model-files.js";
export { parseConfigJson } from "./weights/config-json.js";
