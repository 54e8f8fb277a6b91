/**
 * Token-reduction options: ToDo (Smith, Saxena & Saha 2024, "ToDo: Token Downsampling for
 * Efficient Generation of High-Resolution Images", arXiv:2402.13573) and ToMe for Stable
 * Diffusion (Bolya & Hoffman 2023, "Token Merging for Fast Stable Diffusion", arXiv:2303.17604).
 *
 * The vocabulary follows the ToDo reference implementation; each option names the reference
 * argument and the CLI flag it stands for. `ReductionOptions` is what a user asks for (the ToDo
 * factor may be `auto`); `ReductionSettings` is what a model is built with (every number
 * resolved for an image size and an architecture).
 */
import { OptionError } from "../util/option-error.js";
import type { ModelFamily } from "../util/vocabulary.js";

export const DOWNSAMPLE_MODES = Object.freeze([
  "nearest",
  "nearest-exact",
  "bilinear",
  "bicubic",
  "area",
  "avg",
  "max",
] as const);
export type DownsampleMode = (typeof DOWNSAMPLE_MODES)[number];

/** `todo`: downsample the token grid; `tome`: bipartite soft matching by cosine similarity. */
export type ReductionMethod = "todo" | "tome";
/** `kv`: only keys/values of self-attention are reduced; `all`: its whole input, then restored. */
export type MergeTarget = "kv" | "all";
/** The method used once t/1000 <= the switch threshold. */
export type SecondaryMethod = ReductionMethod | "none";

export interface ReductionOptions {
  /** Primary method (reference `merge_method`: downsample = todo, similarity = tome). */
  readonly method: ReductionMethod;
  /** ToDo factor at level 1, `--todo` (reference `downsample_factor`); 1 = off. */
  readonly factor: number | "auto";
  /** ToDo factor at level 2, `--todo-level2` (`downsample_factor_level_2`). */
  readonly factorLevel2: number | "auto";
  /** `--todo-mode` (`downsample_method`; `avg`/`max` are its `avg_pool`/`max_pool`). */
  readonly mode: DownsampleMode;
  /** `--merge-target` (`merge_tokens`: keys/values or all). */
  readonly target: MergeTarget;
  /** ToMe ratio at level 1, `--tome` (`ratio`): r = floor(tokens * ratio) tokens merged. */
  readonly ratio: number;
  /** ToMe ratio at level 2, `--tome-level2` (`ratio_level_2`). */
  readonly ratioLevel2: number | "auto";
  /** ToMe destination grid, `--tome-stride SXxSY` (`sx`, `sy`). */
  readonly strideX: number;
  readonly strideY: number;
  /** `--tome-random [SEED]` (`use_rand`): a seeded choice of the destination in each cell. */
  readonly random: boolean;
  readonly seed: number;
  /** `--todo-stop` (`timestep_threshold_stop`): no reduction once t/1000 <= this. */
  readonly stopThreshold: number;
  /** `--todo-switch` (`timestep_threshold_switch`): the secondary method once t/1000 <= this. */
  readonly switchThreshold: number;
  /** `--todo-secondary` (`secondary_merge_method`). */
  readonly secondary: SecondaryMethod;
}

/** Options with every `auto` resolved: what a model is built with. */
export interface ReductionSettings extends ReductionOptions {
  readonly factor: number;
  readonly factorLevel2: number;
  readonly ratioLevel2: number;
}

export const DEFAULT_REDUCTION_OPTIONS: ReductionOptions = Object.freeze({
  method: "todo",
  factor: "auto",
  factorLevel2: "auto",
  mode: "nearest",
  target: "kv",
  ratio: 0.5,
  ratioLevel2: "auto",
  strideX: 2,
  strideY: 2,
  random: false,
  seed: 0,
  stopThreshold: 0,
  switchThreshold: 0,
  secondary: "tome",
});

/** Loose input, as the library API or the command line hands it over (strings or numbers). */
export interface ReductionOptionsInput {
  readonly method?: string;
  readonly factor?: number | string;
  readonly factorLevel2?: number | string;
  readonly mode?: string;
  readonly target?: string;
  readonly ratio?: number | string;
  readonly ratioLevel2?: number | string;
  /** `SXxSY` (e.g. `2x2`) or one number for both; overridden by strideX/strideY. */
  readonly stride?: string | number;
  readonly strideX?: number | string;
  readonly strideY?: number | string;
  readonly random?: boolean;
  readonly seed?: number | string;
  readonly stopThreshold?: number | string;
  readonly switchThreshold?: number | string;
  readonly secondary?: string;
}

// ---- parsing and validation --------------------------------------------------------------

const MODE_ALIASES: Readonly<Record<string, DownsampleMode>> = Object.freeze({
  avg_pool: "avg",
  max_pool: "max",
});
const METHOD_ALIASES: Readonly<Record<string, ReductionMethod>> = Object.freeze({
  todo: "todo",
  downsample: "todo",
  tome: "tome",
  similarity: "tome",
});
const TARGET_ALIASES: Readonly<Record<string, MergeTarget>> = Object.freeze({
  kv: "kv",
  "keys/values": "kv",
  all: "all",
});

function fail(flag: string, message: string, value: unknown): never {
  throw new Error(`${flag}: ${message}; got ${JSON.stringify(value)}`);
}

function toNumber(value: number | string, flag: string, what: string): number {
  const n = typeof value === "number" ? value : value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isFinite(n)) fail(flag, `${what} must be a number`, value);
  return n;
}

function parseFactor(value: number | string, flag: string): number | "auto" {
  if (value === "auto") return "auto";
  const n = toNumber(value, flag, "the factor");
  if (!Number.isInteger(n) || n < 1)
    fail(flag, "the factor must be a whole number >= 1 or auto (1 turns ToDo off)", value);
  return n;
}

function parseRatio(value: number | string, flag: string): number {
  const n = toNumber(value, flag, "the ratio");
  if (n < 0 || n >= 1) fail(flag, "the ratio must be in [0, 1) (0 turns ToMe off)", value);
  return n;
}

function parseRatioOrAuto(value: number | string, flag: string): number | "auto" {
  return value === "auto" ? "auto" : parseRatio(value, flag);
}

function parseThreshold(value: number | string, flag: string): number {
  const n = toNumber(value, flag, "the threshold");
  if (n < 0 || n > 1) fail(flag, "the threshold is a fraction t/1000 in [0, 1]", value);
  return n;
}

function parseStrideValue(value: number | string, flag: string): number {
  const n = toNumber(value, flag, "the stride");
  if (!Number.isInteger(n) || n < 1 || n > 64)
    fail(flag, "the stride must be a whole number from 1 to 64", value);
  return n;
}

/** `SXxSY` or a single number for both. */
export function parseStride(value: string | number): { strideX: number; strideY: number } {
  const flag = "stride";
  const text = String(value).trim();
  const parts = text.split(/x/i);
  if (parts.length > 2 || parts.some((p) => p.trim() === ""))
    fail(flag, "the stride is SXxSY (e.g. 2x2) or one number", value);
  const strideX = parseStrideValue(parts[0], flag);
  const strideY = parts.length === 2 ? parseStrideValue(parts[1], flag) : strideX;
  return { strideX, strideY };
}

function parseMode(value: string): DownsampleMode {
  const mode = MODE_ALIASES[value] ?? value;
  if (!(DOWNSAMPLE_MODES as readonly string[]).includes(mode))
    fail("mode", `unknown mode; use one of ${DOWNSAMPLE_MODES.join(", ")}`, value);
  return mode as DownsampleMode;
}

function parseMethod(value: string, flag: string): ReductionMethod {
  const method = METHOD_ALIASES[value];
  if (!method) fail(flag, "unknown method; use todo or tome", value);
  return method;
}

function parseSecondary(value: string): SecondaryMethod {
  if (value === "none") return "none";
  const method = METHOD_ALIASES[value];
  if (!method) fail("secondary", "unknown method; use tome, todo or none", value);
  return method;
}

function parseTarget(value: string): MergeTarget {
  const target = TARGET_ALIASES[value];
  if (!target) fail("target", "unknown target; use kv or all", value);
  return target;
}

function parseSeed(value: number | string): number {
  const n = toNumber(value, "seed", "the seed");
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    fail("seed", "the seed must be a whole number from 0 to 4294967295", value);
  return n;
}

/** Validates loose input and fills in the defaults; throws a one-line error on bad values. */
export function parseReductionOptions(input: ReductionOptionsInput = {}): ReductionOptions {
  const d = DEFAULT_REDUCTION_OPTIONS;
  // A given value goes through its parser; an absent one takes the default.
  const pick = <T, V>(value: V | undefined, fallback: T, parse: (value: V) => T): T =>
    value === undefined ? fallback : parse(value);
  const stride = pick(input.stride, { strideX: d.strideX, strideY: d.strideY }, parseStride);
  const options: ReductionOptions = {
    method: pick(input.method, d.method, (v) => parseMethod(v, "method")),
    factor: pick(input.factor, d.factor, (v) => parseFactor(v, "factor")),
    factorLevel2: pick(input.factorLevel2, d.factorLevel2, (v) => parseFactor(v, "factorLevel2")),
    mode: pick(input.mode, d.mode, parseMode),
    target: pick(input.target, d.target, parseTarget),
    ratio: pick(input.ratio, d.ratio, (v) => parseRatio(v, "ratio")),
    ratioLevel2: pick(input.ratioLevel2, d.ratioLevel2, (v) => parseRatioOrAuto(v, "ratioLevel2")),
    strideX: pick(input.strideX, stride.strideX, (v) => parseStrideValue(v, "stride")),
    strideY: pick(input.strideY, stride.strideY, (v) => parseStrideValue(v, "stride")),
    random: input.random ?? d.random,
    seed: pick(input.seed, d.seed, parseSeed),
    stopThreshold: pick(input.stopThreshold, d.stopThreshold, (v) =>
      parseThreshold(v, "stopThreshold"),
    ),
    switchThreshold: pick(input.switchThreshold, d.switchThreshold, (v) =>
      parseThreshold(v, "switchThreshold"),
    ),
    secondary: pick(input.secondary, d.secondary, parseSecondary),
  };
  validateReductionOptions(options);
  return options;
}

/** Checks a complete options object (for options built in code rather than parsed). */
export function validateReductionOptions(options: ReductionOptions): void {
  parseMethod(options.method, "method");
  parseFactor(options.factor, "factor");
  parseFactor(options.factorLevel2, "factorLevel2");
  parseMode(options.mode);
  parseTarget(options.target);
  parseRatio(options.ratio, "ratio");
  parseRatioOrAuto(options.ratioLevel2, "ratioLevel2");
  parseStrideValue(options.strideX, "stride");
  parseStrideValue(options.strideY, "stride");
  if (options.strideX * options.strideY < 2)
    fail(
      "stride",
      "a 1x1 stride makes every token a destination, so nothing can merge; use at least 2 cells",
      `${options.strideX}x${options.strideY}`,
    );
  if (typeof options.random !== "boolean") fail("random", "must be true or false", options.random);
  parseSeed(options.seed);
  parseThreshold(options.stopThreshold, "stopThreshold");
  parseThreshold(options.switchThreshold, "switchThreshold");
  parseSecondary(options.secondary);
}

// ---- auto factor and resolution ----------------------------------------------------------

/**
 * The default ToDo factors for an image size, after the reference demo: by the longer side,
 * 1 (off) up to 768 px, 2 up to 1024 px, 3 up to 1536 px, 4 above. SD 1.x/2.x apply it at
 * level 1 and, above 1536 px, also factor 2 at level 2 (as the demo does at 2048 px). SDXL has
 * no attention at level 1, so it gets the same factor at level 2.
 */
export function resolveAutoFactor(
  width: number,
  height: number,
  architecture: ModelFamily,
): { factor: number; factorLevel2: number } {
  if (!(width > 0 && height > 0))
    throw new Error(`image size must be positive; got ${width}x${height}`);
  const side = Math.max(width, height);
  const factor = side <= 768 ? 1 : side <= 1024 ? 2 : side <= 1536 ? 3 : 4;
  if (architecture === "sdxl") return { factor, factorLevel2: factor };
  return { factor, factorLevel2: side > 1536 ? 2 : 1 };
}

/** What a model is built for: its architecture and, when known, the image size in pixels. */
export interface BuildTarget {
  readonly architecture: ModelFamily;
  readonly width?: number;
  readonly height?: number;
}

/**
 * Resolves `auto`: factors from `resolveAutoFactor`; an explicit `--todo F` with level 2 on
 * `auto` means F at the highest attention level, so level 2 gets F on SDXL and 1 elsewhere;
 * `--tome-level2 auto` is the level-1 ratio on SDXL and 0 elsewhere. When the image size is
 * known, it also checks that every reduction fits the token grid of its level.
 */
export function resolveReduction(
  options: ReductionOptions,
  target: BuildTarget,
): ReductionSettings {
  validateReductionOptions(options);
  const { architecture, width, height } = target;
  const sized = width !== undefined && height !== undefined;
  const usesTodo = activeMethods(options).includes("todo");
  if (options.factor === "auto" && !sized && usesTodo)
    throw new OptionError(
      (name) =>
        `${name("factor")} auto needs the image size; give a factor or the width and height`,
    );
  // Without ToDo in the schedule its factors are never used: `auto` stays off.
  const auto = sized
    ? resolveAutoFactor(width, height, architecture)
    : { factor: 1, factorLevel2: 1 };
  const factor = options.factor === "auto" ? auto.factor : options.factor;
  const factorLevel2 =
    options.factorLevel2 !== "auto"
      ? options.factorLevel2
      : options.factor === "auto"
        ? auto.factorLevel2
        : architecture === "sdxl"
          ? factor
          : 1;
  const ratioLevel2 =
    options.ratioLevel2 !== "auto"
      ? options.ratioLevel2
      : architecture === "sdxl"
        ? options.ratio
        : 0;
  const settings: ReductionSettings = { ...options, factor, factorLevel2, ratioLevel2 };
  if (sized) checkFitsImage(settings, { architecture, width, height });
  return settings;
}

/** The token grid of a spatial level for a latent (image / 8) grid: each level halves, rounding up. */
export function levelGrid(
  latentHeight: number,
  latentWidth: number,
  level: number,
): { height: number; width: number } {
  let height = latentHeight;
  let width = latentWidth;
  for (let l = 1; l < level; l++) {
    height = Math.ceil(height / 2);
    width = Math.ceil(width / 2);
  }
  return { height, width };
}

function checkFitsImage(
  settings: ReductionSettings,
  image: { architecture: ModelFamily; width: number; height: number },
): void {
  const latentHeight = Math.ceil(image.height / 8);
  const latentWidth = Math.ceil(image.width / 8);
  const firstLevel = image.architecture === "sdxl" ? 2 : 1;
  for (const level of [1, 2]) {
    if (level < firstLevel) continue;
    const grid = levelGrid(latentHeight, latentWidth, level);
    const where = `the ${grid.width}x${grid.height} token grid at level ${level} (image ${image.width}x${image.height})`;
    for (const method of activeMethods(settings)) {
      const plan = levelPlan(settings, level, method);
      if (plan.kind === "todo" && (plan.factor > grid.height || plan.factor > grid.width))
        throw new OptionError(
          (name) =>
            `${name("factor")}: factor ${plan.factor} does not fit ${where}; use a smaller factor`,
        );
      if (plan.kind === "tome" && (settings.strideX > grid.width || settings.strideY > grid.height))
        throw new OptionError(
          (name) =>
            `${name("stride")}: ${settings.strideX}x${settings.strideY} does not fit ${where}; use a smaller stride`,
        );
    }
  }
}

/** The methods some phase of the schedule uses. */
export function activeMethods(settings: ReductionOptions): ReductionMethod[] {
  const methods: ReductionMethod[] = [settings.method];
  if (
    settings.secondary !== "none" &&
    settings.secondary !== settings.method &&
    settings.switchThreshold > settings.stopThreshold
  )
    methods.push(settings.secondary);
  return methods;
}

// ---- per-level plans ---------------------------------------------------------------------

/** What one self-attention does in one phase of the schedule. */
export type LevelPlan =
  | { readonly kind: "none" }
  | { readonly kind: "todo"; readonly factor: number; readonly mode: DownsampleMode }
  | { readonly kind: "tome"; readonly ratio: number };

const NO_REDUCTION: LevelPlan = Object.freeze({ kind: "none" });

/** The plan of `method` at a spatial level (levels beyond 2 are never reduced). */
export function levelPlan(
  settings: ReductionSettings,
  level: number,
  method: SecondaryMethod,
): LevelPlan {
  if (method === "none" || level < 1 || level > 2) return NO_REDUCTION;
  if (method === "todo") {
    const factor = level === 1 ? settings.factor : settings.factorLevel2;
    return factor > 1 ? { kind: "todo", factor, mode: settings.mode } : NO_REDUCTION;
  }
  const ratio = level === 1 ? settings.ratio : settings.ratioLevel2;
  return ratio > 0 ? { kind: "tome", ratio } : NO_REDUCTION;
}

export function samePlan(a: LevelPlan, b: LevelPlan): boolean {
  if (a.kind === "none" || b.kind === "none") return a.kind === b.kind;
  if (a.kind === "todo" && b.kind === "todo") return a.factor === b.factor && a.mode === b.mode;
  if (a.kind === "tome" && b.kind === "tome") return a.ratio === b.ratio;
  return false;
}

/** True when no level and no phase reduces anything. */
export function reducesNothing(settings: ReductionSettings): boolean {
  return [1, 2].every((level) =>
    activeMethods(settings).every((method) => levelPlan(settings, level, method).kind === "none"),
  );
}

// ---- description and metadata ------------------------------------------------------------

function methodName(method: SecondaryMethod): string {
  return method === "todo" ? "ToDo" : method === "tome" ? "ToMe" : "none";
}

function describeMethod(options: ReductionOptions, method: ReductionMethod): string {
  if (method === "todo") {
    const level2 = options.factorLevel2 === 1 ? "" : `, ${options.factorLevel2} at level 2`;
    return `ToDo ${options.mode} factor ${options.factor} at level 1${level2}`;
  }
  const level2 = options.ratioLevel2 === 0 ? "" : `, ${options.ratioLevel2} at level 2`;
  const choice = options.random ? `random (seed ${options.seed})` : "top-left";
  return `ToMe ratio ${options.ratio} at level 1${level2}, stride ${options.strideX}x${options.strideY} ${choice}`;
}

/** One line that says what a model reduces, for printing and for metadata. */
export function describeReduction(options: ReductionOptions | undefined): string {
  if (!options) return "token reduction off";
  if (
    typeof options.factor === "number" &&
    typeof options.factorLevel2 === "number" &&
    typeof options.ratioLevel2 === "number" &&
    reducesNothing(options as ReductionSettings)
  )
    return "token reduction off";
  const target = options.target === "kv" ? "keys/values" : "all tokens (restored after)";
  let text = `${describeMethod(options, options.method)}; ${target}; none once t/1000 <= ${options.stopThreshold}`;
  if (options.switchThreshold > options.stopThreshold && options.secondary !== options.method) {
    text +=
      options.secondary === "none"
        ? `; none once t/1000 <= ${options.switchThreshold}`
        : `; ${methodName(options.secondary)} once t/1000 <= ${options.switchThreshold} (${describeMethod(options, options.secondary)})`;
  }
  return text;
}

/**
 * metadata_props of a converted model, so any host can tell how it was built:
 *   todo_sd.reduction               one-line description (describeReduction)
 *   todo_sd.reduction.method        todo | tome (primary method)
 *   todo_sd.reduction.factor        ToDo factor at level 1 (an integer, or auto)
 *   todo_sd.reduction.factor_level2 ToDo factor at level 2
 *   todo_sd.reduction.mode          nearest | nearest-exact | bilinear | bicubic | area | avg | max
 *   todo_sd.reduction.target        kv | all
 *   todo_sd.reduction.ratio         ToMe ratio at level 1
 *   todo_sd.reduction.ratio_level2  ToMe ratio at level 2
 *   todo_sd.reduction.stride        ToMe destination grid, SXxSY
 *   todo_sd.reduction.random        true | false (seeded destination choice)
 *   todo_sd.reduction.seed          the seed of that choice
 *   todo_sd.reduction.stop          no reduction once t/1000 <= this
 *   todo_sd.reduction.switch        the secondary method once t/1000 <= this
 *   todo_sd.reduction.secondary     tome | todo | none
 * Numbers are written as JavaScript prints them; `reductionFromMetadata` reads them back.
 */
export function reductionMetadata(options: ReductionOptions): Record<string, string> {
  const p = METADATA_PREFIX;
  return {
    [p]: describeReduction(options),
    [`${p}.method`]: options.method,
    [`${p}.factor`]: String(options.factor),
    [`${p}.factor_level2`]: String(options.factorLevel2),
    [`${p}.mode`]: options.mode,
    [`${p}.target`]: options.target,
    [`${p}.ratio`]: String(options.ratio),
    [`${p}.ratio_level2`]: String(options.ratioLevel2),
    [`${p}.stride`]: `${options.strideX}x${options.strideY}`,
    [`${p}.random`]: String(options.random),
    [`${p}.seed`]: String(options.seed),
    [`${p}.stop`]: String(options.stopThreshold),
    [`${p}.switch`]: String(options.switchThreshold),
    [`${p}.secondary`]: options.secondary,
  };
}

export const METADATA_PREFIX = "todo_sd.reduction";

/** Reads `reductionMetadata` back; undefined when the model carries no reduction settings. */
export function reductionFromMetadata(
  props: Readonly<Record<string, string>>,
): ReductionOptions | undefined {
  const p = METADATA_PREFIX;
  if (props[`${p}.method`] === undefined) return undefined;
  const random = props[`${p}.random`];
  if (random !== undefined && random !== "true" && random !== "false")
    throw new Error(`${p}.random: must be true or false; got ${JSON.stringify(random)}`);
  return parseReductionOptions({
    method: props[`${p}.method`],
    factor: props[`${p}.factor`],
    factorLevel2: props[`${p}.factor_level2`],
    mode: props[`${p}.mode`],
    target: props[`${p}.target`],
    ratio: props[`${p}.ratio`],
    ratioLevel2: props[`${p}.ratio_level2`],
    stride: props[`${p}.stride`],
    random: random === undefined ? undefined : random === "true",
    seed: props[`${p}.seed`],
    stopThreshold: props[`${p}.stop`],
    switchThreshold: props[`${p}.switch`],
    secondary: props[`${p}.secondary`],
  });
}

/** The argument dictionary of the ToDo reference implementation (as the fixtures record it). */
export interface ReferenceReductionArgs {
  readonly ratio?: number;
  readonly sx?: number;
  readonly sy?: number;
  readonly use_rand?: boolean;
  readonly merge_tokens?: string;
  readonly merge_method?: string;
  readonly downsample_method?: string;
  readonly downsample_factor?: number;
  readonly timestep_threshold_switch?: number;
  readonly timestep_threshold_stop?: number;
  readonly secondary_merge_method?: string;
  readonly downsample_factor_level_2?: number;
  readonly ratio_level_2?: number;
}

/** Settings equivalent to a reference argument dictionary (the reference's defaults fill gaps). */
export function settingsFromReferenceArgs(args: ReferenceReductionArgs): ReductionSettings {
  const options = parseReductionOptions({
    method: args.merge_method ?? "downsample",
    factor: args.downsample_factor ?? 2,
    factorLevel2: args.downsample_factor_level_2 ?? 1,
    mode: args.downsample_method ?? "nearest-exact",
    target: args.merge_tokens ?? "keys/values",
    ratio: args.ratio ?? 0.5,
    ratioLevel2: args.ratio_level_2 ?? 0.5,
    strideX: args.sx ?? 2,
    strideY: args.sy ?? 2,
    random: args.use_rand ?? true,
    stopThreshold: args.timestep_threshold_stop ?? 0,
    switchThreshold: args.timestep_threshold_switch ?? 0.2,
    secondary: args.secondary_merge_method ?? "similarity",
  });
  return resolveReduction(options, { architecture: "sd1" });
}
