// LoRA: reading kohya and diffusers/PEFT files, matching them to a model, merging them.
export {
  type AppliedLora,
  type ApplyLoraOptions,
  applyLoras,
  checkLoraMatch,
  checkLoraRequests,
  type LoraApplication,
  type LoraRequest,
  loraModelOf,
  loraSetKey,
} from "./apply-loras.js";
export {
  isLoraFile,
  type LoraComponent,
  LoraFile,
  type LoraLayout,
  type LoraModule,
  loraHashes,
  loraName,
  type SkippedKey,
} from "./lora-file.js";
export {
  extractPromptLoras,
  findLora,
  type LoraListing,
  listLoras,
  type PromptLoras,
} from "./lora-folder.js";
export { type LoraPatch, LoraWeightSource, mergeDeltas } from "./lora-source.js";
export {
  describeFamilies,
  guessLoraFamily,
  type LoraFamilyGuess,
  type LoraMatch,
  type LoraModel,
  type LoraTarget,
  matchLora,
} from "./lora-targets.js";
