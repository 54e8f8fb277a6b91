/**
 * The library words its errors by option (`OptionError`: `out: ...`); the command line words
 * them by the flag that gives the option (`--out ...`). Errors from parsing the reduction flags
 * are reworded where they are parsed (`reduction-flags.ts`); the rest here, as they are printed.
 */
import { OptionError } from "../util/option-error.js";

/** The flag that gives each option a library `OptionError` can name. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = Object.freeze({
  factor: "--todo",
  stride: "--tome-stride",
  out: "--out",
  outPath: "--out",
  host: "--host",
  apiKeys: "--api-key",
  queue: "--queue",
});

/** The error's message as the command line words it: options named by their flags. */
export function flagWordedMessage(error: unknown): string {
  if (error instanceof OptionError)
    return error.wordedAs((option) => FLAG_OF_OPTION[option] ?? option);
  return error instanceof Error ? error.message : String(error);
}
