/** The LoRA flags: `--lora <file>[:<weight>]` (repeatable) and `--lora-dir` for `<lora:...>` tags. */
import { type Command, InvalidArgumentError } from "commander";
import { extractPromptLoras, type LoraRequest } from "../index.js";

export interface LoraFlagValues {
  readonly lora?: readonly LoraRequest[];
  readonly loraDir?: string;
}

/** A text after the last colon that is meant as a weight (a number, or inf/nan spelt out). */
const WEIGHT_SUFFIX = /:([-+]?(?:\d|\.\d|inf|nan)[^:/\\]*)$/i;

/** `style.safetensors`, `style.safetensors:0.8`, `style.safetensors:-1`; repeated flags add up. */
export function loraArg(value: string, previous: readonly LoraRequest[] = []): LoraRequest[] {
  const match = WEIGHT_SUFFIX.exec(value);
  const path = match ? value.slice(0, match.index) : value;
  const weight = match ? Number(match[1]) : 1;
  if (!Number.isFinite(weight))
    throw new InvalidArgumentError(
      `the weight of ${path} must be a finite number; got "${match?.[1]}"`,
    );
  if (path === "") throw new InvalidArgumentError("give a LoRA file, e.g. style.safetensors:0.8");
  return [...previous, { path, weight }];
}

export function addLoraFlags(command: Command, options: { promptTags: boolean }): Command {
  command.option(
    "--lora <file[:weight]>",
    "merge a LoRA (kohya or diffusers .safetensors) at a weight (default 1; repeat for more)",
    loraArg,
  );
  if (options.promptTags)
    command.option(
      "--lora-dir <folder>",
      "where <lora:name:weight> tags in the prompt find their files (tags are removed from the prompt)",
    );
  return command;
}

/** The prompt without its `<lora:...>` tags, and every LoRA asked for (flags first). */
export function resolveLoraFlags(
  prompt: string,
  flags: LoraFlagValues,
): { prompt: string; loras: LoraRequest[] } {
  const fromPrompt = extractPromptLoras(prompt, flags.loraDir);
  const loras = [
    ...(flags.lora ?? []),
    ...fromPrompt.loras.map(({ path, weight }) => ({ path, weight })),
  ];
  return { prompt: fromPrompt.prompt, loras };
}

/** LoRA warnings (keys that land on no weight) on stderr. */
export function warn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}
