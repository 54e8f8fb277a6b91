/**
 * The graph builders (`todo-sd/builders`): each model's typed config, the weights it reads
 * (diffusers folders, single files, safetensors), the CLIP tokenizer, and the functions that
 * build each ONNX graph, with the graph builder and model I/O under them.
 */

export { type ClipTextConfig, parseClipTextConfig } from "./configs/clip-config.js";
export { parseConfigJson, readConfigFile } from "./configs/config-json.js";
export {
  parseUnetConfig,
  type UnetAttentionSite,
  type UnetConfig,
  unetAttentionSites,
} from "./configs/unet-config.js";
export { parseVaeConfig, type VaeConfig } from "./configs/vae-config.js";
export type { ClipTextEncoderOptions } from "./models/clip-text.js";
export { buildClipTextEncoder, clipSkipHiddenState } from "./models/clip-text.js";
export {
  type AttentionChunking,
  chooseOps,
  OP_CHOICES,
  type OpChoices,
} from "./models/layers.js";
export { buildUnet, UNET_INPUTS, UNET_OUTPUT } from "./models/unet.js";
export { buildVaeDecoder, buildVaeEncoder } from "./models/vae.js";
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
export type { ChunkOptions, TokenizedBatch, TokenizeOptions } from "./tokenizers/clip-tokenizer.js";
export { ClipTokenizer } from "./tokenizers/clip-tokenizer.js";
export { loadClipTokenizer } from "./tokenizers/load-folder.js";
export type { ModelFamily } from "./util/vocabulary.js";
export { BUILTIN_NAMES, openBuiltin } from "./weights/builtin.js";
export { openDiffusersComponent, openDiffusersFolder } from "./weights/diffusers-folder.js";
export {
  type ComponentName,
  componentClassName,
  type ModelFiles,
  type ModelIndex,
} from "./weights/model-files.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
export { openSingleFile } from "./weights/single-file.js";
