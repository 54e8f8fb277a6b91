/**
 * The CLI's vocabulary for token reduction (the flags of DESIGN.md): flags to library options,
 * with errors worded by flag (`--todo: ...`) where the library words them by option (`factor:`).
 */
import {
  activeMethods,
  parseReductionOptions,
  type ReductionMethod,
  type ReductionOptions,
} from "../reduce/options.js";

/** The option each flag sets, for rewording the library's errors. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = Object.freeze({
  method: "--tome",
  factor: "--todo",
  factorLevel2: "--todo-level2",
  mode: "--todo-mode",
  target: "--merge-target",
  ratio: "--tome",
  ratioLevel2: "--tome-level2",
  stride: "--tome-stride",
  random: "--tome-random",
  seed: "--tome-random",
  stopThreshold: "--todo-stop",
  switchThreshold: "--todo-switch",
  secondary: "--todo-secondary",
});

/** Runs a library parse, naming the flag instead of the option in its error. */
function withFlagNames<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    const match = /^([A-Za-z0-9]+): /.exec(error.message);
    const flag = match && FLAG_OF_OPTION[match[1]];
    if (!flag) throw error;
    throw new Error(`${flag}: ${error.message.slice(match[0].length)}`);
  }
}

function fail(flag: string, message: string, value: unknown): never {
  throw new Error(`${flag}: ${message}; got ${JSON.stringify(value)}`);
}

/** The CLI flags of DESIGN.md as a command-line parser hands them over (camel-cased names). */
export interface ReductionFlags {
  readonly todo?: string | number;
  readonly todoLevel2?: string | number;
  readonly todoMode?: string;
  readonly mergeTarget?: string;
  readonly tome?: string | number;
  readonly tomeLevel2?: string | number;
  readonly tomeStride?: string;
  /** `--tome-random` alone (true) or with a seed. */
  readonly tomeRandom?: boolean | string | number;
  readonly todoStop?: string | number;
  readonly todoSwitch?: string | number;
  readonly todoSecondary?: string;
}

/**
 * Maps the CLI flags of DESIGN.md onto options: `--tome R` selects ToMe as the primary method
 * with ratio R; everything else maps one to one.
 */
export function parseReductionFlags(flags: ReductionFlags): ReductionOptions {
  const random = flags.tomeRandom;
  const options = withFlagNames(() =>
    parseReductionOptions({
      method: primaryMethodOfFlags(flags),
      factor: flags.todo,
      factorLevel2: flags.todoLevel2,
      mode: flags.todoMode,
      target: flags.mergeTarget,
      ratio: flags.tome,
      ratioLevel2: flags.tomeLevel2,
      stride: flags.tomeStride,
      random: random === undefined || random === false ? undefined : true,
      seed: random === undefined || typeof random === "boolean" ? undefined : random,
      stopThreshold: flags.todoStop,
      switchThreshold: flags.todoSwitch,
      secondary: flags.todoSecondary,
    }),
  );
  checkFlagsTakeEffect(flags, options);
  return options;
}

const given = (value: unknown) => value !== undefined && value !== false;

/**
 * The primary method the flags choose. `--tome R` alone makes ToMe the method; with a switch to
 * ToMe (`--todo-secondary tome`) it is the ratio used after the switch, ToDo coming first (the
 * reference's "ToDo, then ToMe with ratio r"); with a switch to ToDo, ToMe comes first. `--todo`
 * and `--tome` together with no switch between them name two methods for one place: an error.
 */
function primaryMethodOfFlags(flags: ReductionFlags): ReductionMethod | undefined {
  if (!given(flags.tome)) return undefined;
  if (flags.todoSecondary === "tome") return "todo";
  if (flags.todoSecondary === "todo") return "tome";
  if (given(flags.todo))
    fail(
      "--tome",
      `--todo ${flags.todo} and --tome ${flags.tome} both choose the method; to run one after the other add --todo-switch T with --todo-secondary tome (ToDo first) or todo (ToMe first)`,
      flags.tome,
    );
  return "tome";
}

/** Refuses flags that the chosen schedule would ignore, naming them, instead of dropping them. */
function checkFlagsTakeEffect(flags: ReductionFlags, options: ReductionOptions): void {
  if (given(flags.todoSecondary) && !given(flags.todoSwitch))
    fail(
      "--todo-secondary",
      "the secondary method starts at the switch; give its threshold with --todo-switch T",
      flags.todoSecondary,
    );
  const switches = options.switchThreshold > 0;
  if (switches && options.switchThreshold <= options.stopThreshold)
    fail(
      "--todo-switch",
      `the switch at ${options.switchThreshold} comes at or after the stop at ${options.stopThreshold} (--todo-stop), so it never happens`,
      flags.todoSwitch ?? options.switchThreshold,
    );
  if (switches && options.secondary === options.method)
    fail(
      "--todo-switch",
      `the method after the switch is the method before it (${options.method}); name another with --todo-secondary`,
      flags.todoSwitch ?? options.switchThreshold,
    );
  const active = activeMethods(options);
  const tomeOnly: [keyof ReductionFlags, string][] = [
    ["tomeLevel2", "--tome-level2"],
    ["tomeStride", "--tome-stride"],
    ["tomeRandom", "--tome-random"],
  ];
  if (!active.includes("tome"))
    for (const [key, flag] of tomeOnly)
      if (given(flags[key]))
        fail(
          flag,
          "it is a ToMe setting, but ToMe is not in use; add --tome R (ToMe at level 1; --tome 0 for level 2 only), or switch to it with --todo-switch T --todo-secondary tome",
          String(flags[key]),
        );
  const todoOnly: [keyof ReductionFlags, string][] = [
    ["todo", "--todo"],
    ["todoLevel2", "--todo-level2"],
    ["todoMode", "--todo-mode"],
  ];
  if (!active.includes("todo"))
    for (const [key, flag] of todoOnly)
      if (given(flags[key]))
        fail(
          flag,
          "it is a ToDo setting, but ToMe is the method; drop it, or switch to ToDo with --todo-switch T --todo-secondary todo",
          String(flags[key]),
        );
}
