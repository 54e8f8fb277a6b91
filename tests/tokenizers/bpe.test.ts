import { describe, expect, it } from "vitest";
import { BytePairEncoder } from "../../src/tokenizers/bpe.js";

const tokens = ["a", "b", "c", "a</w>", "b</w>", "c</w>", "aa", "ab", "bc</w>", "aa</w>", "<unk>"];
const vocab = new Map(tokens.map((t, i) => [t, i]));
const id = (token: string) => vocab.get(token)!;
const UNK = id("<unk>");

function encoder(merges: [string, string][]): BytePairEncoder {
  return new BytePairEncoder(vocab, merges, "</w>", UNK, "merges.txt");
}

describe("BytePairEncoder", () => {
  it("marks the last symbol with the end-of-word suffix", () => {
    expect(encoder([["a", "b"]]).encodeWord("abc")).toEqual([id("ab"), id("c</w>")]);
    expect(encoder([["a", "b"]]).encodeWord("c")).toEqual([id("c</w>")]);
  });

  it("merges the lowest-ranked pair first", () => {
    const bFirst = encoder([
      ["b", "c</w>"],
      ["a", "b"],
    ]);
    expect(bFirst.encodeWord("abc")).toEqual([id("a"), id("bc</w>")]);
    const aFirst = encoder([
      ["a", "b"],
      ["b", "c</w>"],
    ]);
    expect(aFirst.encodeWord("abc")).toEqual([id("ab"), id("c</w>")]);
  });

  it("merges repeated pairs left to right without overlap", () => {
    expect(encoder([["a", "a"]]).encodeWord("aaab")).toEqual([id("aa"), id("a"), id("b</w>")]);
    expect(
      encoder([
        ["a", "a"],
        ["a", "a</w>"],
      ]).encodeWord("aaa"),
    ).toEqual([id("aa"), id("a</w>")]);
  });

  it("gives the unknown id to a byte that is not in the vocabulary", () => {
    expect(encoder([["a", "b"]]).encodeWord("azb")).toEqual([id("a"), UNK, id("b</w>")]);
  });

  it("answers a repeated word from its cache", () => {
    const bpe = encoder([["a", "b"]]);
    expect(bpe.encodeWord("abab")).toBe(bpe.encodeWord("abab"));
  });

  it("refuses a merge whose result is not in the vocabulary, naming the file and merge", () => {
    expect(() =>
      encoder([
        ["a", "b"],
        ["b", "c"],
      ]),
    ).toThrow('merges.txt: merge 2 ("b c") needs "bc", which is not in the vocabulary');
    expect(() => encoder([["x", "a"]])).toThrow(/merge 1 \("x a"\) needs "x"/);
  });
});
