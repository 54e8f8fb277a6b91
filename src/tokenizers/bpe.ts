/**
 * Byte-pair encoding of one pre-token (Sennrich et al. 2016, "Neural Machine Translation of
 * Rare Words with Subword Units"), in CLIP's byte-level variant: the word's UTF-8 bytes are
 * the initial symbols, the last one carries an end-of-word suffix (`</w>`), and the
 * lowest-ranked adjacent pair is merged until no listed pair is left.
 *
 * Symbols are vocabulary ids throughout, so a merge is an integer lookup and loading builds
 * one map of numbers instead of tens of thousands of pair strings.
 */
import { BYTE_TO_CHAR } from "./byte-level.js";

/** Prompts repeat words; the cache keeps the cost of a long prompt near that of its lookups. */
const CACHE_LIMIT = 10_000;
const NO_SYMBOL = -1;

const utf8 = new TextEncoder();

export class BytePairEncoder {
  private readonly cache = new Map<string, readonly number[]>();
  /** (left id * pairBase + right id) -> merge rank. */
  private readonly rankOfPair = new Map<number, number>();
  /** Rank -> id of the merged symbol. */
  private readonly mergedIds: Int32Array;
  private readonly pairBase: number;
  /** Byte -> id of its symbol, and of its symbol with the end-of-word suffix (-1: not in vocab). */
  private readonly byteIds = new Int32Array(256);
  private readonly finalByteIds = new Int32Array(256);

  /**
   * @param vocab token string -> id
   * @param merges pairs in priority order (rank 0 first)
   * @param mergesFile names the merges' file in error messages
   */
  constructor(
    vocab: ReadonlyMap<string, number>,
    merges: readonly (readonly [string, string])[],
    endOfWordSuffix: string,
    private readonly unknownId: number,
    mergesFile: string,
  ) {
    let maxId = 0;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.pairBase = maxId + 1;
    this.mergedIds = new Int32Array(merges.length);
    for (let rank = 0; rank < merges.length; rank++) {
      const [left, right] = merges[rank];
      const leftId = vocab.get(left);
      const rightId = vocab.get(right);
      const mergedId = vocab.get(left + right);
      if (leftId === undefined || rightId === undefined || mergedId === undefined) {
        const missing = leftId === undefined ? left : rightId === undefined ? right : left + right;
        throw new Error(
          `${mergesFile}: merge ${rank + 1} ("${left} ${right}") needs ${JSON.stringify(missing)}, which is not in the vocabulary`,
        );
      }
      const key = leftId * this.pairBase + rightId;
      if (!this.rankOfPair.has(key)) this.rankOfPair.set(key, rank);
      this.mergedIds[rank] = mergedId;
    }
    for (let b = 0; b < 256; b++) {
      this.byteIds[b] = vocab.get(BYTE_TO_CHAR[b]) ?? NO_SYMBOL;
      this.finalByteIds[b] = vocab.get(BYTE_TO_CHAR[b] + endOfWordSuffix) ?? NO_SYMBOL;
    }
  }

  /** The ids of one pre-token (text without whitespace, already normalized). */
  encodeWord(word: string): readonly number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const ids = this.merge(word).map((id) => (id === NO_SYMBOL ? this.unknownId : id));
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  private merge(word: string): number[] {
    const bytes = utf8.encode(word);
    let symbols: number[] = new Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      symbols[i] = i + 1 < bytes.length ? this.byteIds[bytes[i]] : this.finalByteIds[bytes[i]];
    }
    while (symbols.length > 1) {
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.rankOf(symbols[i], symbols[i + 1]);
        if (rank !== undefined && rank < bestRank) bestRank = rank;
      }
      if (bestRank === Number.POSITIVE_INFINITY) break;
      // Every occurrence of the winning pair merges in this round, left to right; a merged
      // symbol always ranks after the pair that made it, so this equals merging one
      // occurrence at a time in rank order.
      const merged: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && this.rankOf(symbols[i], symbols[i + 1]) === bestRank) {
          merged.push(this.mergedIds[bestRank]);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols;
  }

  private rankOf(left: number, right: number): number | undefined {
    if (left === NO_SYMBOL || right === NO_SYMBOL) return undefined;
    return this.rankOfPair.get(left * this.pairBase + right);
  }
}
