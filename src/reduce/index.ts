// Token reduction (ToDo, ToMe): options for the library API and the CLI, and the graph pieces
// that model builders (models/) and graph rewrites (patch/) use.
export {
  destinationMask,
  type MatchOptions,
  type MergedTokens,
  mergeTokens,
  randomCellChoice,
  restoreTokens,
  saltOf,
} from "./bipartite-merge.js";
export {
  type BuildTarget,
  DEFAULT_REDUCTION_OPTIONS,
  DOWNSAMPLE_MODES,
  type DownsampleMode,
  describeReduction,
  type LevelPlan,
  levelGrid,
  levelPlan,
  METADATA_PREFIX,
  type MergeTarget,
  parseReductionOptions,
  parseStride,
  type ReductionMethod,
  type ReductionOptions,
  type ReductionOptionsInput,
  type ReductionSettings,
  type ReferenceReductionArgs,
  reducesNothing,
  reductionFromMetadata,
  reductionMetadata,
  resolveAutoFactor,
  resolveReduction,
  type SecondaryMethod,
  settingsFromReferenceArgs,
  validateReductionOptions,
} from "./options.js";
export { downsampleTokens, upsampleTokens } from "./resample.js";
export {
  type Attend,
  type AttentionSite,
  type Schedule,
  scheduleFor,
  selfAttentionWithReduction,
} from "./self-attention.js";
export { firstTimestep, timestepAbove, timestepCutoff } from "./timestep.js";
