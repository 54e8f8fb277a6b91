/**
 * Reads a model's `tokenizer/` folder (Node only): `vocab.json` + `merges.txt`, or
 * `tokenizer.json` where a model ships only that, with `tokenizer_config.json` and
 * `special_tokens_map.json` when present.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ClipTokenizer, type TokenizerFolderFiles } from "./clip-tokenizer.js";

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
  const files = readTokenizerFolder(dir, defaults.padToken);
  let tokenizer: ClipTokenizer | undefined;
  try {
    tokenizer = ClipTokenizer.fromFolderFiles(files);
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (tokenizer) return tokenizer;
  const missing = ["vocab.json", "merges.txt"].filter((file) => !existsSync(join(dir, file)));
  throw new Error(
    `${dir}: ${missing.length === 2 ? "vocab.json and merges.txt are" : `${missing[0]} is`} missing and there is no tokenizer.json; a CLIP tokenizer folder needs vocab.json + merges.txt or tokenizer.json`,
  );
}

/**
 * The files of a tokenizer folder that are there, as text. A folder with neither a config nor a
 * special tokens map takes `padToken` (the model family's) as its pad token.
 */
export function readTokenizerFolder(
  dir: string,
  padToken: string | undefined,
): TokenizerFolderFiles {
  const read = (file: string) => {
    const path = join(dir, file);
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  };
  const vocabJson = read("vocab.json");
  const mergesTxt = read("merges.txt");
  const both = vocabJson !== undefined && mergesTxt !== undefined;
  const specialTokensMap = read("special_tokens_map.json");
  const config =
    read("tokenizer_config.json") ??
    (padToken !== undefined && specialTokensMap === undefined
      ? JSON.stringify({ pad_token: padToken })
      : undefined);
  return {
    vocabJson: both ? vocabJson : undefined,
    mergesTxt: both ? mergesTxt : undefined,
    tokenizerJson: both ? undefined : read("tokenizer.json"),
    config,
    specialTokensMap,
  };
}
