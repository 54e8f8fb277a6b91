/**
 * Scheduler configuration: the `scheduler/scheduler_config.json` of a model folder (read by
 * the one config reader, `configs/config-json.ts`), keys as written (snake_case, as in the
 * file), with typed per-sampler fields and defaults.
 */
import {
  BETA_SCHEDULES,
  type BetaSchedule,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from "./noise-schedule.js";

/** A configuration as read from JSON: keys exactly as in the file. */
export type SchedulerConfigJson = Readonly<Record<string, unknown>>;

const NON_FINITE: Readonly<Record<string, number>> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
};

/** How one configuration key is read and what it defaults to. */
export interface FieldSpec<V> {
  readonly default: V;
  /** Returns the value or an error message. */
  parse(value: unknown): V | { readonly error: string };
}

export type FieldSpecs = Readonly<Record<string, FieldSpec<unknown>>>;
export type ConfigOf<S extends FieldSpecs> = {
  readonly [K in keyof S]: S[K] extends FieldSpec<infer V> ? V : never;
};

function toNumber(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  // The case files and some tools write non-finite numbers as strings.
  if (typeof value === "string" && value in NON_FINITE) return NON_FINITE[value];
  return undefined;
}

export function numberField(
  defaultValue: number,
  min = Number.NEGATIVE_INFINITY,
): FieldSpec<number> {
  return {
    default: defaultValue,
    parse(value) {
      const n = toNumber(value);
      if (n === undefined || Number.isNaN(n)) return { error: "must be a number" };
      return n >= min ? n : { error: `must be >= ${min}` };
    },
  };
}

export function nullableNumberField(defaultValue: number | null): FieldSpec<number | null> {
  return {
    default: defaultValue,
    parse(value) {
      if (value === null) return null;
      const n = toNumber(value);
      return n === undefined || Number.isNaN(n) ? { error: "must be a number or null" } : n;
    },
  };
}

export function integerField(
  defaultValue: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): FieldSpec<number> {
  return {
    default: defaultValue,
    parse(value) {
      if (typeof value !== "number" || !Number.isInteger(value))
        return { error: "must be an integer" };
      return value >= min && value <= max ? value : { error: `must be between ${min} and ${max}` };
    },
  };
}

export function booleanField(defaultValue: boolean): FieldSpec<boolean> {
  return {
    default: defaultValue,
    parse: (value) => (typeof value === "boolean" ? value : { error: "must be true or false" }),
  };
}

export function choiceField<C extends string>(
  defaultValue: C,
  choices: readonly C[],
): FieldSpec<C> {
  return {
    default: defaultValue,
    parse(value) {
      return typeof value === "string" && (choices as readonly string[]).includes(value)
        ? (value as C)
        : { error: `must be one of ${choices.map((c) => `"${c}"`).join(", ")}` };
    },
  };
}

export function numberListField(defaultValue: readonly number[]): FieldSpec<readonly number[]> {
  return {
    default: defaultValue,
    parse: (value) =>
      Array.isArray(value) && value.every((v) => typeof v === "number")
        ? (value as number[])
        : { error: "must be a list of numbers" },
  };
}

export function nullableNumberListField(
  defaultValue: readonly number[] | null,
): FieldSpec<readonly number[] | null> {
  const inner = numberListField([]);
  return {
    default: defaultValue,
    parse: (value) => (value === null ? null : inner.parse(value)),
  };
}

/** A key that must keep its default: present so a config may carry it, but only as is. */
export function fixedField<V>(value: V, reason: string): FieldSpec<V> {
  return {
    default: value,
    parse: (given) => (given === value ? value : { error: `is not supported (${reason})` }),
  };
}

export type PredictionType = "epsilon" | "v_prediction" | "sample";
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];

/** Defaults that differ between samplers for the keys every sampler has. */
export interface CommonDefaults {
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  readonly timestep_spacing: TimestepSpacing;
}

/** Keys of the training noise schedule and of what the model predicts. */
export function trainingFields(defaults: Omit<CommonDefaults, "timestep_spacing">) {
  return {
    num_train_timesteps: integerField(1000, 2),
    beta_start: numberField(defaults.beta_start, 0),
    beta_end: numberField(defaults.beta_end, 0),
    beta_schedule: choiceField(defaults.beta_schedule, BETA_SCHEDULES),
    trained_betas: nullableNumberListField(null),
    prediction_type: choiceField<PredictionType>("epsilon", PREDICTION_TYPES),
  };
}

/** Keys of the training schedule and of the choice of inference timesteps. */
export function scheduleFields(defaults: CommonDefaults) {
  return {
    ...trainingFields(defaults),
    timestep_spacing: choiceField(defaults.timestep_spacing, TIMESTEP_SPACINGS),
    steps_offset: integerField(0, 0),
  };
}

/** Lin et al. (2023)'s zero terminal SNR rescaling, on the samplers that offer it. */
export function zeroSnrField() {
  return { rescale_betas_zero_snr: booleanField(false) };
}

/** Keys that clip or threshold the predicted clean sample. */
export function clippingFields(clipSample: boolean) {
  return {
    clip_sample: booleanField(clipSample),
    clip_sample_range: numberField(1, 0),
    thresholding: booleanField(false),
    dynamic_thresholding_ratio: numberField(0.995, 0),
    sample_max_value: numberField(1, 0),
  };
}

/** Keys that replace the sigma ramp; only the Karras ramp is implemented. */
export function sigmaRampFields() {
  return {
    use_karras_sigmas: booleanField(false),
    use_exponential_sigmas: fixedField(false, "only the Karras sigma ramp is implemented"),
    use_beta_sigmas: fixedField(false, "only the Karras sigma ramp is implemented"),
  };
}

/**
 * Builds a sampler's configuration from a model's config and overrides. Keys the model config
 * marks as defaults (`_use_default_values`), private keys (`_...`) and keys this sampler does
 * not have are dropped from the model config, so a config written for another sampler loads
 * as is; an override this sampler does not have is an error.
 */
export function resolveConfig<S extends FieldSpecs>(
  className: string,
  specs: S,
  config: SchedulerConfigJson = {},
  overrides: SchedulerConfigJson = {},
): ConfigOf<S> {
  const usedDefaults = Array.isArray(config._use_default_values) ? config._use_default_values : [];
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) out[key] = spec.default;
  const apply = (key: string, value: unknown, origin: string) => {
    const spec = specs[key];
    const parsed = spec.parse(value);
    if (typeof parsed === "object" && parsed !== null && "error" in parsed) {
      throw new Error(`${className}: ${origin} ${key}=${JSON.stringify(value)} ${parsed.error}`);
    }
    out[key] = parsed;
  };
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("_") || usedDefaults.includes(key) || !(key in specs)) continue;
    apply(key, value, "config");
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in specs)) {
      throw new Error(
        `${className} has no option "${key}"; its options are: ${Object.keys(specs).join(", ")}`,
      );
    }
    apply(key, value, "override");
  }
  return out as ConfigOf<S>;
}
