/**
 * Reads a model's `tokenizer/` folder (Node only): `vocab.json` + `merges.txt`, or
 * `tokenizer.json` where a model ships only that, with `tokenizer_config.json` and
 * `special_tokens_map.json` when present.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ClipTokenizer } from "./clip-tokenizer.js";

function readIfPresent(dir: string, file: string): string | undefined {
  const path = join(dir, file);
  return existsSync(path) ? readFileSync(path, "utf8") : undefined;
}

export interface TokenizerFolderDefaults {
  /** The pad token when the folder has no tokenizer config naming one (SD 2.x and SDXL's second: `!`). */
  readonly padToken?: string;
}

export function loadClipTokenizer(
  dir: string,
  defaults: TokenizerFolderDefaults = {},
): ClipTokenizer {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`${dir}: tokenizer folder not found`);
  }
  const vocabJson = readIfPresent(dir, "vocab.json");
  const mergesTxt = readIfPresent(dir, "merges.txt");
  const tokenizerJson =
    vocabJson === undefined || mergesTxt === undefined
      ? readIfPresent(dir, "tokenizer.json")
      : undefined;
  if ((vocabJson === undefined || mergesTxt === undefined) && tokenizerJson === undefined) {
    const missing =
      vocabJson === undefined && mergesTxt === undefined
        ? "vocab.json and merges.txt are"
        : `${vocabJson === undefined ? "vocab.json" : "merges.txt"} is`;
    throw new Error(
      `${dir}: ${missing} missing and there is no tokenizer.json; a CLIP tokenizer folder needs vocab.json + merges.txt or tokenizer.json`,
    );
  }
  const specialTokensMap = readIfPresent(dir, "special_tokens_map.json");
  const config =
    readIfPresent(dir, "tokenizer_config.json") ??
    (defaults.padToken !== undefined && specialTokensMap === undefined
      ? { pad_token: defaults.padToken }
      : undefined);
  try {
    if (vocabJson !== undefined && mergesTxt !== undefined) {
      return ClipTokenizer.fromFiles({ vocabJson, mergesTxt, config, specialTokensMap });
    }
    return ClipTokenizer.fromTokenizerJson(tokenizerJson!, { config, specialTokensMap });
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`, { cause: e });
  }
}
