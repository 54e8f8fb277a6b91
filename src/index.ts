// Public API of todo-sd. Everything a user imports comes through here.
export { type NoiseSource, recordedNoise, SeededRandom, seededNoise } from "./util/random.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
export { ClipTokenizer } from "./tokenizers/clip-tokenizer.js";
export type { TokenizeOptions, TokenizedBatch, ChunkOptions } from "./tokenizers/clip-tokenizer.js";
export { loadClipTokenizer } from "./tokenizers/load-folder.js";
export { buildClipTextEncoder, clipSkipHiddenState } from "./models/clip-text.js";
export type { ClipTextEncoderOptions } from "./models/clip-text.js";
export { parseClipTextConfig, type ClipTextConfig } from "./models/clip-config.js";
