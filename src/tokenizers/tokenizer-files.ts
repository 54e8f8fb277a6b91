/**
 * Parsing of the files a model's `tokenizer/` folder holds, from their text (or already parsed
 * JSON), into a {@link ClipTokenizerDefinition}. Every error is one line that starts with the
 * file's name. No file system access here, so browsers can use it with fetched text.
 */
import type { ClipTokenizerDefinition, TokenSpec } from "./tokenizer-definition.js";

type JsonObject = Record<string, unknown>;

/** A file given as its text or as its parsed JSON. */
export type JsonInput = string | Readonly<JsonObject>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJsonObject(input: JsonInput, file: string): JsonObject {
  let value: unknown = input;
  if (typeof input === "string") {
    try {
      // A byte-order mark is legal in a UTF-8 file but not in JSON.parse's input.
      value = JSON.parse(input.charCodeAt(0) === 0xfeff ? input.slice(1) : input);
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(value)) throw new Error(`${file}: expected a JSON object`);
  return value;
}

function vocabFromObject(value: unknown, file: string): Map<string, number> {
  if (!isObject(value)) throw new Error(`${file}: the vocabulary must be an object of token -> id`);
  const vocab = new Map<string, number>();
  for (const token in value) {
    const id = value[token];
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new Error(`${file}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}`);
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new Error(`${file}: the vocabulary is empty`);
  return vocab;
}

/** `vocab.json`: an object of token -> id. */
export function parseVocabJson(input: JsonInput, file = "vocab.json"): Map<string, number> {
  return vocabFromObject(parseJsonObject(input, file), file);
}

/**
 * `merges.txt`: one merge per line, `left right`, highest priority first, after an optional
 * `#version` line.
 */
export function parseMergesTxt(text: string, file = "merges.txt"): [string, string][] {
  if (typeof text !== "string") throw new Error(`${file}: expected the file's text`);
  const lines = text.split("\n");
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    const space = line.indexOf(" ");
    if (space <= 0 || space === line.length - 1 || line.indexOf(" ", space + 1) >= 0) {
      throw new Error(
        `${file} line ${i + 1}: expected two symbols separated by one space, got ${JSON.stringify(line)}`,
      );
    }
    merges.push([line.slice(0, space), line.slice(space + 1)]);
  }
  if (merges.length === 0) throw new Error(`${file}: no merges`);
  return merges;
}

function mergesFromArray(value: unknown, file: string): [string, string][] {
  if (!Array.isArray(value)) throw new Error(`${file}: model.merges must be an array`);
  return value.map((entry, i): [string, string] => {
    const parts = typeof entry === "string" ? entry.split(" ") : entry;
    if (
      !Array.isArray(parts) ||
      parts.length !== 2 ||
      typeof parts[0] !== "string" ||
      typeof parts[1] !== "string" ||
      parts[0] === "" ||
      parts[1] === ""
    ) {
      throw new Error(
        `${file}: model.merges[${i}] must be "left right" or ["left", "right"], got ${JSON.stringify(entry)}`,
      );
    }
    return [parts[0], parts[1]];
  });
}

function tokenSpec(value: unknown, where: string, file: string): TokenSpec | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return { content: value };
  if (isObject(value) && typeof value.content === "string") {
    const normalized = value.normalized;
    if (normalized !== undefined && typeof normalized !== "boolean") {
      throw new Error(`${file}: ${where}.normalized must be true or false`);
    }
    return { content: value.content, normalized };
  }
  throw new Error(`${file}: ${where} must be a string or an object with a "content" string`);
}

const NAMED_TOKENS = [
  ["bos_token", "bosToken"],
  ["eos_token", "eosToken"],
  ["unk_token", "unkToken"],
  ["pad_token", "padToken"],
] as const;

type NamedTokens = {
  -readonly [K in "bosToken" | "eosToken" | "unkToken" | "padToken"]?: ClipTokenizerDefinition[K];
};

export interface ConfigPart extends NamedTokens {
  addedTokens: TokenSpec[];
  modelMaxLength?: number;
}

/**
 * `tokenizer_config.json` and `special_tokens_map.json`: the special tokens (the second file
 * wins where both name one, as in the reference loader), added tokens, and the length limit.
 */
export function parseTokenizerConfig(
  config: JsonInput | undefined,
  specialTokensMap?: JsonInput,
): ConfigPart {
  const part: ConfigPart = { addedTokens: [] };
  const sources: [JsonObject, string][] = [];
  if (config !== undefined)
    sources.push([parseJsonObject(config, "tokenizer_config.json"), "tokenizer_config.json"]);
  if (specialTokensMap !== undefined) {
    sources.push([
      parseJsonObject(specialTokensMap, "special_tokens_map.json"),
      "special_tokens_map.json",
    ]);
  }
  for (const [json, file] of sources) {
    for (const [key, field] of NAMED_TOKENS) {
      const spec = tokenSpec(json[key], key, file);
      if (spec) part[field] = spec;
    }
  }
  const configJson = sources.find(([, file]) => file === "tokenizer_config.json")?.[0];
  if (!configJson) return part;

  const decoder = configJson.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (!isObject(decoder)) {
      throw new Error(
        "tokenizer_config.json: added_tokens_decoder must be an object of id -> token",
      );
    }
    for (const key in decoder) {
      const id = Number(key);
      const spec = tokenSpec(
        decoder[key],
        `added_tokens_decoder["${key}"]`,
        "tokenizer_config.json",
      );
      if (!spec || !Number.isInteger(id) || id < 0) {
        throw new Error(`tokenizer_config.json: added_tokens_decoder has a bad entry "${key}"`);
      }
      part.addedTokens.push({ ...spec, id });
    }
  }

  const maxLength = configJson.model_max_length;
  // Some configs write a huge placeholder (1e30) meaning "no limit"; CLIP's own is 77.
  if (
    typeof maxLength === "number" &&
    Number.isInteger(maxLength) &&
    maxLength >= 2 &&
    maxLength <= 1e6
  ) {
    part.modelMaxLength = maxLength;
  }
  return part;
}

/** Everything a vocab/merges pair gives, plus the tokens `tokenizer.json` itself lists. */
export interface TokenizerJsonPart {
  vocab: Map<string, number>;
  merges: [string, string][];
  addedTokens: TokenSpec[];
  padToken?: TokenSpec;
}

/**
 * `tokenizer.json` (the format of the `tokenizers` library): `model.vocab`, `model.merges`
 * (strings `"a b"` or pairs), `added_tokens`, and `padding.pad_token`. Its normalizer and
 * pre-tokenizer are not read: like the reference CLIPTokenizer, the CLIP pipeline is fixed and
 * only the vocabulary comes from the file.
 */
export function parseTokenizerJson(input: JsonInput, file = "tokenizer.json"): TokenizerJsonPart {
  const json = parseJsonObject(input, file);
  const model = json.model;
  if (!isObject(model)) throw new Error(`${file}: no "model" object`);
  if (model.type !== undefined && model.type !== "BPE") {
    throw new Error(
      `${file}: model type ${JSON.stringify(model.type)} is not BPE, which CLIP needs`,
    );
  }
  const part: TokenizerJsonPart = {
    vocab: vocabFromObject(model.vocab, file),
    merges: mergesFromArray(model.merges, file),
    addedTokens: [],
  };
  if (part.merges.length === 0) throw new Error(`${file}: model.merges is empty`);
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new Error(`${file}: added_tokens must be an array`);
    added.forEach((entry, i) => {
      const spec = tokenSpec(entry, `added_tokens[${i}]`, file);
      const id = isObject(entry) ? entry.id : undefined;
      if (!spec || typeof id !== "number" || !Number.isInteger(id) || id < 0) {
        throw new Error(`${file}: added_tokens[${i}] needs a "content" string and an integer "id"`);
      }
      part.addedTokens.push({ ...spec, id });
    });
  }
  const padding = json.padding;
  if (isObject(padding) && typeof padding.pad_token === "string") {
    part.padToken = { content: padding.pad_token };
  }
  return part;
}
