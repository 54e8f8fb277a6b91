/**
 * What a CLIP tokenizer is made of: vocabulary, merges and special tokens. Its own module so
 * the file parsers (tokenizer-files.ts) and the tokenizer (clip-tokenizer.ts) both depend on
 * it and not on each other.
 */

/** A token that is cut out of the text before BPE. */
export interface TokenSpec {
  readonly content: string;
  /** Matched in the normalized (lower-cased, whitespace-collapsed) text; default false. */
  readonly normalized?: boolean;
  /** Used when the content is not in the vocabulary. */
  readonly id?: number;
}

export interface ClipTokenizerDefinition {
  readonly vocab: ReadonlyMap<string, number>;
  /** Merge pairs in priority order, as in `merges.txt`. */
  readonly merges: readonly (readonly [string, string])[];
  /** Default `<|startoftext|>`. */
  readonly bosToken?: string | TokenSpec;
  /** Default `<|endoftext|>`. */
  readonly eosToken?: string | TokenSpec;
  /** Default `<|endoftext|>`. */
  readonly unkToken?: string | TokenSpec;
  /** Default `<|endoftext|>` (SD 1.x, SDXL's first tokenizer); SD 2.x uses `!`. */
  readonly padToken?: string | TokenSpec;
  /** Further tokens cut out of the text (`added_tokens_decoder`, `added_tokens`). */
  readonly addedTokens?: readonly TokenSpec[];
  /** Default 77, the text encoder's positions. */
  readonly modelMaxLength?: number;
  /** The file the merges came from, for error messages. */
  readonly mergesFile?: string;
}
