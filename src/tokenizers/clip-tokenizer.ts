/**
 * The CLIP text tokenizer (Radford et al. 2021, "Learning Transferable Visual Models From
 * Natural Language Supervision"): byte-level BPE over lower-cased text, wrapped in start and
 * end tokens, padded to the text encoder's 77 positions.
 *
 * It reproduces the reference CLIPTokenizer of transformers (the `tokenizers`-backed one):
 *   1. added tokens (the special tokens of the config, e.g. `<|endoftext|>`, and `!` where it
 *      is the pad token) are cut out of the text first and map to their ids directly: those
 *      marked `normalized` are matched after step 2, the others before it;
 *   2. normalization: NFC, every run of whitespace to one space, per-character lower case;
 *   3. pre-tokenization: contractions, runs of letters, single digits, runs of other
 *      non-space characters; whitespace is dropped;
 *   4. byte-level BPE of each piece, whose last symbol carries `</w>`.
 * Python's ftfy clean-up is not part of that reference, so it is not done here either.
 *
 * No file system access here: see load-folder.ts for reading a model's `tokenizer/` folder.
 */
import { BytePairEncoder } from "./bpe.js";
import { symbolsToText } from "./byte-level.js";
import type { ClipTokenizerDefinition, TokenSpec } from "./tokenizer-definition.js";
import {
  type JsonInput,
  parseMergesTxt,
  parseTokenizerConfig,
  parseTokenizerJson,
  parseVocabJson,
} from "./tokenizer-files.js";

/** The files of a `tokenizer/` folder, as text or parsed JSON. */
export interface ClipTokenizerFiles {
  readonly vocabJson: JsonInput;
  readonly mergesTxt: string;
  /** `tokenizer_config.json`. */
  readonly config?: JsonInput;
  /** `special_tokens_map.json`. */
  readonly specialTokensMap?: JsonInput;
}

/**
 * A `tokenizer/` folder's files as text, as read from disk or served to a browser: vocab.json and
 * merges.txt (both or neither), else tokenizer.json.
 */
export interface TokenizerFolderFiles {
  readonly vocabJson?: string;
  readonly mergesTxt?: string;
  /** Folders that ship only tokenizer.json. */
  readonly tokenizerJson?: string;
  readonly config?: string;
  readonly specialTokensMap?: string;
}

export interface TokenizeOptions {
  /** `"max_length"` (default) pads every sequence to `maxLength`; false leaves them as they are. */
  readonly padding?: "max_length" | false;
  /** Default: `modelMaxLength` (77). */
  readonly maxLength?: number;
  /**
   * Default true: sequences longer than `maxLength` lose their last content tokens and keep
   * their end token. See {@link ClipTokenizer.encodeChunked} for prompts meant to be longer.
   */
  readonly truncation?: boolean;
}

export interface TokenizedBatch {
  readonly inputIds: number[][];
  /** 1 for the start, content and end tokens, 0 for padding. */
  readonly attentionMask: number[][];
}

export interface ChunkOptions {
  /** Content tokens per chunk, default 75 (77 positions less the start and end tokens). */
  readonly chunkSize?: number;
}

/** The whitespace of the reference's regular expressions (Oniguruma's Unicode `\s`). */
const WHITESPACE =
  "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WHITESPACE_RUN = new RegExp(`[${WHITESPACE}]+`, "gu");
/**
 * CLIP's pre-tokenizer. The special-token alternatives only matter for text that reaches it
 * (they are normally cut out before), and they keep such text in one piece as the reference does.
 */
const PRE_TOKEN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WHITESPACE}\\p{L}\\p{N}]+`,
  "gu",
);
const END_OF_WORD = "</w>";

function normalize(text: string): string {
  // The reference lower-cases one character at a time, so a final capital sigma becomes σ;
  // String.prototype.toLowerCase would write ς there. No other mapping depends on context.
  return text.normalize("NFC").replace(WHITESPACE_RUN, " ").replaceAll("Σ", "σ").toLowerCase();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/** A matcher of added tokens: the longest one wins where several start at the same place. */
function addedTokenPattern(contents: Iterable<string>): RegExp | undefined {
  const sorted = [...new Set(contents)].sort((a, b) => b.length - a.length);
  return sorted.length > 0 ? new RegExp(sorted.map(escapeRegExp).join("|"), "gu") : undefined;
}

/** Calls `onText` for the text between matches and `onToken` for each match, in order. */
function splitOn(
  text: string,
  pattern: RegExp | undefined,
  onText: (piece: string) => void,
  onToken: (token: string) => void,
): void {
  if (!pattern) {
    onText(text);
    return;
  }
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) onText(text.slice(last, match.index));
    onToken(match[0]);
    last = match.index + match[0].length;
  }
  if (last < text.length) onText(text.slice(last));
}

function specOf(token: string | TokenSpec | undefined, fallback: string): TokenSpec {
  if (token === undefined) return { content: fallback };
  return typeof token === "string" ? { content: token } : token;
}

export class ClipTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly padTokenId: number;
  readonly padToken: string;
  readonly modelMaxLength: number;
  readonly vocabSize: number;

  private readonly vocab: ReadonlyMap<string, number>;
  private readonly bpe: BytePairEncoder;
  /** Content of each added token -> its id. */
  private readonly addedIds = new Map<string, number>();
  /** Text the added-token patterns match -> id (normalized tokens in normalized form). */
  private readonly idOfMatch = new Map<string, number>();
  private readonly rawAddedPattern: RegExp | undefined;
  private readonly normalizedAddedPattern: RegExp | undefined;
  private idToToken: Map<number, string> | undefined;

  constructor(definition: ClipTokenizerDefinition) {
    const { vocab, merges } = definition;
    if (merges.length === 0) throw new Error(`${definition.mergesFile ?? "merges"}: no merges`);
    this.vocab = vocab;
    this.vocabSize = vocab.size;
    this.modelMaxLength = definition.modelMaxLength ?? 77;
    if (!Number.isInteger(this.modelMaxLength) || this.modelMaxLength < 2) {
      throw new Error(
        `tokenizer: modelMaxLength must be an integer >= 2, got ${this.modelMaxLength}`,
      );
    }

    const named: [string, TokenSpec][] = [
      ["bos_token", specOf(definition.bosToken, "<|startoftext|>")],
      ["eos_token", specOf(definition.eosToken, "<|endoftext|>")],
      ["unk_token", specOf(definition.unkToken, "<|endoftext|>")],
      ["pad_token", specOf(definition.padToken, "<|endoftext|>")],
    ];
    // Listed added tokens first: they may give the id of a named token the vocabulary lacks.
    const added = definition.addedTokens ?? [];
    for (const spec of added) this.addToken(spec, `added token ${JSON.stringify(spec.content)}`);
    const namedIds = named.map(([name, spec]) => this.addToken(spec, name));
    [this.bosTokenId, this.eosTokenId, this.unkTokenId, this.padTokenId] = namedIds;
    this.padToken = named[3][1].content;
    // Where one content comes several times (end-of-text as eos, unk and pad), its first
    // entry decides how it is matched, as in the reference: the listed added tokens first,
    // then bos, eos, unk, pad.
    const matchNormalized = new Map<string, boolean>();
    for (const spec of [...added, ...named.map(([, s]) => s)]) {
      if (!matchNormalized.has(spec.content)) matchNormalized.set(spec.content, !!spec.normalized);
    }
    const byMatching = (normalized: boolean) =>
      [...matchNormalized].filter(([, n]) => n === normalized).map(([content]) => content);
    this.rawAddedPattern = addedTokenPattern(byMatching(false));
    // Normalized tokens are looked for in their own normalized form.
    this.normalizedAddedPattern = addedTokenPattern(byMatching(true).map(normalize));
    for (const content of byMatching(false)) {
      this.idOfMatch.set(content, this.addedIds.get(content)!);
    }
    for (const content of byMatching(true)) {
      this.idOfMatch.set(normalize(content), this.addedIds.get(content)!);
    }
    this.bpe = new BytePairEncoder(
      vocab,
      merges,
      END_OF_WORD,
      this.unkTokenId,
      definition.mergesFile ?? "merges",
    );
  }

  private addToken(spec: TokenSpec, name: string): number {
    if (typeof spec.content !== "string" || spec.content === "") {
      throw new Error(`tokenizer: ${name} must be a non-empty string`);
    }
    const id = this.vocab.get(spec.content) ?? this.addedIds.get(spec.content) ?? spec.id;
    if (id === undefined) {
      throw new Error(
        `tokenizer: ${name} ${JSON.stringify(spec.content)} is not in the vocabulary`,
      );
    }
    this.addedIds.set(spec.content, id);
    return id;
  }

  /** From the text (or parsed JSON) of `vocab.json`, `merges.txt` and the config files. */
  static fromFiles(files: ClipTokenizerFiles): ClipTokenizer {
    const config = parseTokenizerConfig(files.config, files.specialTokensMap);
    return new ClipTokenizer({
      ...config,
      vocab: parseVocabJson(files.vocabJson),
      merges: parseMergesTxt(files.mergesTxt),
      mergesFile: "merges.txt",
    });
  }

  /** From a `tokenizer.json` (for models that ship only that) and the optional config files. */
  static fromTokenizerJson(
    tokenizerJson: JsonInput,
    files: Pick<ClipTokenizerFiles, "config" | "specialTokensMap"> = {},
  ): ClipTokenizer {
    const model = parseTokenizerJson(tokenizerJson);
    const config = parseTokenizerConfig(files.config, files.specialTokensMap);
    return new ClipTokenizer({
      ...config,
      vocab: model.vocab,
      merges: model.merges,
      mergesFile: "tokenizer.json",
      padToken: config.padToken ?? model.padToken,
      addedTokens: [...config.addedTokens, ...model.addedTokens],
    });
  }

  /** From a folder's files (vocab.json and merges.txt first); undefined when there is no vocabulary. */
  static fromFolderFiles(files: TokenizerFolderFiles): ClipTokenizer | undefined {
    const { vocabJson, mergesTxt, tokenizerJson, ...configFiles } = files;
    if (vocabJson !== undefined && mergesTxt !== undefined)
      return ClipTokenizer.fromFiles({ vocabJson, mergesTxt, ...configFiles });
    return tokenizerJson === undefined
      ? undefined
      : ClipTokenizer.fromTokenizerJson(tokenizerJson, configFiles);
  }

  /** The ids of a text, without start and end tokens and without any length limit. */
  encode(text: string): number[] {
    if (typeof text !== "string") {
      throw new TypeError(`tokenizer: expected a string prompt, got ${typeof text}`);
    }
    const ids: number[] = [];
    const onToken = (token: string) => ids.push(this.idOfMatch.get(token)!);
    splitOn(
      text,
      this.rawAddedPattern,
      (raw) =>
        splitOn(
          normalize(raw),
          this.normalizedAddedPattern,
          (normalized) => {
            for (const match of normalized.matchAll(PRE_TOKEN)) {
              for (const id of this.bpe.encodeWord(match[0])) ids.push(id);
            }
          },
          onToken,
        ),
      onToken,
    );
    return ids;
  }

  /**
   * The text encoder's input ids for a batch: `[start, ...content, end]`, truncated and padded
   * as `options` say (by default to 77 with the config's pad token).
   */
  call(texts: string | readonly string[], options: TokenizeOptions = {}): TokenizedBatch {
    const padding = options.padding ?? "max_length";
    const truncation = options.truncation ?? true;
    const maxLength = options.maxLength ?? this.modelMaxLength;
    if (padding !== "max_length" && padding !== false) {
      throw new Error(
        `tokenizer: padding must be "max_length" or false, got ${JSON.stringify(padding)}`,
      );
    }
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new Error(
        `tokenizer: maxLength must be an integer >= 2 (room for start and end), got ${maxLength}`,
      );
    }
    const batch = typeof texts === "string" ? [texts] : texts;
    if (!Array.isArray(batch))
      throw new TypeError("tokenizer: expected a string or an array of strings");
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const text of batch) {
      let content = this.encode(text);
      if (truncation && content.length > maxLength - 2) content = content.slice(0, maxLength - 2);
      const ids = [this.bosTokenId, ...content, this.eosTokenId];
      const mask = ids.map(() => 1);
      if (padding === "max_length") {
        while (ids.length < maxLength) {
          ids.push(this.padTokenId);
          mask.push(0);
        }
      }
      inputIds.push(ids);
      attentionMask.push(mask);
    }
    return { inputIds, attentionMask };
  }

  /**
   * A prompt of any length as 77-token chunks, the way the popular web UIs encode long prompts:
   * the content is cut every `chunkSize` tokens and each piece is wrapped as
   * `[start, ...piece, end, pad...]`. The text encoder runs on each chunk and the embeddings
   * are concatenated along the sequence. A prompt that fits gives one chunk, equal to
   * `call(text).inputIds[0]`; an empty prompt gives one chunk too.
   */
  encodeChunked(text: string, options: ChunkOptions = {}): number[][] {
    const chunkSize = options.chunkSize ?? this.modelMaxLength - 2;
    if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > this.modelMaxLength - 2) {
      throw new Error(
        `tokenizer: chunkSize must be an integer from 1 to ${this.modelMaxLength - 2}, got ${chunkSize}`,
      );
    }
    const content = this.encode(text);
    const chunks: number[][] = [];
    for (let start = 0; start < content.length || chunks.length === 0; start += chunkSize) {
      const ids = [this.bosTokenId, ...content.slice(start, start + chunkSize), this.eosTokenId];
      while (ids.length < this.modelMaxLength) ids.push(this.padTokenId);
      chunks.push(ids);
    }
    return chunks;
  }

  /**
   * Text back from ids: words are separated by single spaces (the `</w>` marks), so the
   * result is the normalized prompt, not the original. Start, end and pad tokens are left
   * out unless `skipSpecialTokens` is false.
   */
  decode(ids: readonly number[], { skipSpecialTokens = true } = {}): string {
    if (!this.idToToken) {
      this.idToToken = new Map();
      for (const [token, id] of this.vocab) this.idToToken.set(id, token);
      for (const [token, id] of this.addedIds) this.idToToken.set(id, token);
    }
    const skipped = new Set([this.bosTokenId, this.eosTokenId, this.padTokenId]);
    let symbols = "";
    for (const id of ids) {
      if (skipSpecialTokens && skipped.has(id)) continue;
      const token = this.idToToken.get(id);
      if (token === undefined) throw new Error(`tokenizer: id ${id} is not in the vocabulary`);
      symbols += token;
    }
    return symbolsToText(symbols.replaceAll(END_OF_WORD, " ")).trim();
  }
}
