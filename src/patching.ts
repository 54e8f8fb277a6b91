/**
 * The rewrite rules (`todo-sd/patch`): ToDo added to UNet graphs exported elsewhere, with the
 * report of what each rule matched and why.
 */

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
