import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ClipTokenizer } from "../../src/tokenizers/clip-tokenizer.js";
import { loadClipTokenizer } from "../../src/tokenizers/load-folder.js";
import { fixturePath, readCaseJson } from "../fixtures.js";

interface TokenizerCase {
  pad_token: string;
  padded_77: number[][];
  unpadded: number[][];
}
interface TokenizerCases {
  prompts: string[];
  cases: Record<"eos" | "bang", TokenizerCase>;
}

const reference = readCaseJson<TokenizerCases>("tokenizer");
const BOS = 49406;
const EOS = 49407;
const BANG = 0;
const WORD = 2653; // "word</w>"

const loaded = new Map<string, ClipTokenizer>();
function folder(...parts: string[]): ClipTokenizer {
  const dir = fixturePath(...parts);
  let tokenizer = loaded.get(dir);
  if (!tokenizer) {
    tokenizer = loadClipTokenizer(dir);
    loaded.set(dir, tokenizer);
  }
  return tokenizer;
}
const sd15 = () => folder("pipelines", "sd15-tiny", "tokenizer");
const sd21 = () => folder("pipelines", "sd21-tiny", "tokenizer");

const tempDirs: string[] = [];
function tempFolder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "clip-tokenizer-"));
  tempDirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function expectMatchesReference(tokenizer: ClipTokenizer, name: "eos" | "bang"): void {
  const expected = reference.cases[name];
  const padded = tokenizer.call(reference.prompts).inputIds;
  const unpadded = tokenizer.call(reference.prompts, {
    padding: false,
    truncation: false,
  }).inputIds;
  reference.prompts.forEach((prompt, i) => {
    expect(padded[i], `padded ${JSON.stringify(prompt)}`).toEqual(expected.padded_77[i]);
    expect(unpadded[i], `unpadded ${JSON.stringify(prompt)}`).toEqual(expected.unpadded[i]);
  });
}

const clipVocab = () => readFileSync(fixturePath("tokenizer", "clip", "vocab.json"), "utf8");
const clipMerges = () => readFileSync(fixturePath("tokenizer", "clip", "merges.txt"), "utf8");
const bangConfig = () =>
  readFileSync(fixturePath("pipelines", "sd21-tiny", "tokenizer", "tokenizer_config.json"), "utf8");

/** A tokenizer.json in the `tokenizers` library's format, from the vocab.json/merges.txt pair. */
function tokenizerJson(mergeStyle: "strings" | "pairs"): string {
  const merges = clipMerges()
    .split("\n")
    .slice(1)
    .filter((line) => line !== "")
    .map((line) => (mergeStyle === "strings" ? line : line.split(" ")));
  return JSON.stringify({
    version: "1.0",
    added_tokens: [
      { id: BOS, content: "<|startoftext|>", normalized: true, special: true },
      { id: EOS, content: "<|endoftext|>", normalized: false, special: true },
    ],
    normalizer: null,
    model: {
      type: "BPE",
      unk_token: "<|endoftext|>",
      end_of_word_suffix: "</w>",
      vocab: JSON.parse(clipVocab()),
      merges,
    },
  });
}

describe("reference fixture (cases/tokenizer.json)", () => {
  it("uses the pad token each config names", () => {
    expect(sd15().padToken).toBe(reference.cases.eos.pad_token);
    expect(sd15().padTokenId).toBe(EOS);
    expect(sd21().padToken).toBe(reference.cases.bang.pad_token);
    expect(sd21().padTokenId).toBe(BANG);
    expect([sd15().bosTokenId, sd15().eosTokenId, sd15().modelMaxLength]).toEqual([BOS, EOS, 77]);
  });

  it("matches end-of-text padding exactly (SD 1.x tokenizer)", () => {
    expectMatchesReference(sd15(), "eos");
  });

  it("matches `!` padding exactly (SD 2.x tokenizer), where `!` in a prompt is a special token", () => {
    expectMatchesReference(sd21(), "bang");
  });

  it("matches both of SDXL's tokenizers", () => {
    expectMatchesReference(folder("pipelines", "sdxl-tiny", "tokenizer"), "eos");
    expectMatchesReference(folder("pipelines", "sdxl-tiny", "tokenizer_2"), "bang");
  });

  it("defaults to end-of-text padding and 77 when a folder has no config", () => {
    const bare = folder("tokenizer", "clip");
    expect(bare.modelMaxLength).toBe(77);
    expectMatchesReference(bare, "eos");
  });

  it("takes a default pad token for a folder without a config (single-file SD 2.x / SDXL)", () => {
    const bang = loadClipTokenizer(fixturePath("tokenizer", "clip"), { padToken: "!" });
    expectMatchesReference(bang, "bang");
    // A folder's own config wins over the default.
    const own = loadClipTokenizer(fixturePath("pipelines", "sd15-tiny", "tokenizer"), {
      padToken: "!",
    });
    expectMatchesReference(own, "eos");
  });
});

describe("tokenizer.json", () => {
  it('loads a folder with only tokenizer.json (merges as "a b") and a config naming `!`', () => {
    const dir = tempFolder({
      "tokenizer.json": tokenizerJson("strings"),
      "tokenizer_config.json": bangConfig(),
    });
    expectMatchesReference(loadClipTokenizer(dir), "bang");
  });

  it("loads merges written as pairs, with no config at all", () => {
    expectMatchesReference(ClipTokenizer.fromTokenizerJson(tokenizerJson("pairs")), "eos");
  });

  it("takes the pad token from its padding section when no config names one", () => {
    const json = JSON.parse(tokenizerJson("strings"));
    json.padding = { pad_token: "!", pad_id: 0 };
    const tokenizer = ClipTokenizer.fromTokenizerJson(json);
    expect(tokenizer.padTokenId).toBe(BANG);
  });
});

describe("truncation and padding", () => {
  const long = reference.prompts[8]; // 90 words

  it("truncates to 77 keeping the end token, with or without padding", () => {
    for (const padding of ["max_length", false] as const) {
      const [ids] = sd15().call(long, { padding }).inputIds;
      expect(ids).toHaveLength(77);
      expect(ids[0]).toBe(BOS);
      expect(ids[76]).toBe(EOS);
    }
  });

  it("pads short prompts to maxLength and marks the padding in the attention mask", () => {
    const { inputIds, attentionMask } = sd21().call(["a cat", ""], { maxLength: 8 });
    expect(inputIds).toEqual([
      [BOS, 320, 2368, EOS, BANG, BANG, BANG, BANG],
      [BOS, EOS, BANG, BANG, BANG, BANG, BANG, BANG],
    ]);
    expect(attentionMask).toEqual([
      [1, 1, 1, 1, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0, 0, 0],
    ]);
  });

  it("rejects bad options", () => {
    expect(() => sd15().call("x", { maxLength: 1 })).toThrow(/maxLength must be an integer >= 2/);
    expect(() => sd15().call("x", { padding: "longest" as "max_length" })).toThrow(
      /padding must be/,
    );
    expect(() => sd15().encode(42 as unknown as string)).toThrow(/expected a string prompt/);
  });
});

describe("chunked encoding of long prompts", () => {
  const long = reference.prompts[8]; // 90 words

  it("cuts the content every 75 tokens and wraps each chunk in start/end, padded to 77", () => {
    for (const tokenizer of [sd15(), sd21()]) {
      const pad = tokenizer.padTokenId;
      const chunks = tokenizer.encodeChunked(long);
      expect(chunks).toEqual([
        [BOS, ...new Array(75).fill(WORD), EOS],
        [BOS, ...new Array(15).fill(WORD), EOS, ...new Array(60).fill(pad)],
      ]);
    }
  });

  it("gives one chunk equal to the normal encoding for a prompt that fits, and for an empty one", () => {
    for (const prompt of [reference.prompts[0], ""]) {
      expect(sd21().encodeChunked(prompt)).toEqual(sd21().call(prompt).inputIds);
    }
  });

  it("takes a smaller chunk size and still pads every chunk to 77", () => {
    const chunks = sd15().encodeChunked(long, { chunkSize: 8 });
    expect(chunks).toHaveLength(12);
    expect(chunks.every((c) => c.length === 77)).toBe(true);
    expect(chunks[0].slice(0, 11)).toEqual([BOS, ...new Array(8).fill(WORD), EOS, EOS]);
    expect(chunks[11].slice(0, 5)).toEqual([BOS, WORD, WORD, EOS, EOS]);
    expect(() => sd15().encodeChunked(long, { chunkSize: 76 })).toThrow(/chunkSize must be/);
    expect(() => sd15().encodeChunked(long, { chunkSize: 0 })).toThrow(/chunkSize must be/);
  });
});

describe("normalization as the reference does it", () => {
  it("lower-cases one character at a time (a final capital sigma becomes σ, not ς)", () => {
    expect(sd15().encode("ΟΔΟΣ")).toEqual(sd15().encode("οδοσ"));
    expect(sd15().encode("ΟΔΟΣ")).not.toEqual(sd15().encode("οδος"));
  });

  it("treats NEL as whitespace and the byte-order mark as not", () => {
    expect(sd15().encode("cat\u0085dog")).toEqual(sd15().encode("cat dog"));
    // U+FEFF is a format character: a piece of its own, three byte tokens, between the words.
    expect(sd15().encode("cat\ufeffdog")).toEqual([2368, 171, 119, 379, 1929]);
  });

  it("composes to NFC first", () => {
    expect(sd15().encode("cafe\u0301")).toEqual(sd15().encode("café"));
  });

  it("matches special tokens marked `normalized` in any case, the others only as written", () => {
    // The SD configs mark <|endoftext|> normalized; without a config it is a plain string.
    expect(sd15().encode("<|ENDOFTEXT|>")).toEqual([EOS]);
    const bare = folder("tokenizer", "clip");
    expect(bare.encode("<|endoftext|>")).toEqual([EOS]);
    expect(bare.encode("<|ENDOFTEXT|>").length).toBeGreaterThan(1);
  });
});

describe("added tokens", () => {
  const vocabJson = { a: 0, "a</w>": 1, "aa</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4 };
  const mergesTxt = "a a</w>\n";

  it("matches an added token marked `normalized` in its normalized form, the others as written", () => {
    const tokenizer = ClipTokenizer.fromFiles({
      vocabJson,
      mergesTxt,
      config: {
        added_tokens_decoder: {
          "5": { content: "<Cat>", normalized: true },
          "6": { content: "<Dog>", normalized: false },
        },
      },
    });
    expect(tokenizer.encode("aa<CAT>a <cat>")).toEqual([2, 5, 1, 5]);
    expect(tokenizer.encode("<Dog>aa")).toEqual([6, 2]);
    expect(tokenizer.encode("<dog>")).not.toContain(6);
  });

  it("lets the first entry of a repeated token decide how it is matched (eos before pad)", () => {
    const plain = { content: "<|endoftext|>", normalized: false };
    const normalized = { content: "<|endoftext|>", normalized: true };
    const eosFirst = ClipTokenizer.fromFiles({
      vocabJson,
      mergesTxt,
      config: { eos_token: plain, pad_token: normalized },
    });
    expect(eosFirst.encode("<|ENDOFTEXT|>").length).toBeGreaterThan(1);
    const normalizedFirst = ClipTokenizer.fromFiles({
      vocabJson,
      mergesTxt,
      config: { eos_token: normalized, pad_token: plain },
    });
    expect(normalizedFirst.encode("<|ENDOFTEXT|>")).toEqual([4]);
  });
});

describe("decode", () => {
  it("gives the normalized text back, without start/end/pad tokens", () => {
    const [ids] = sd15().call("A  Photo of a CAT, café 日本 🐱").inputIds;
    expect(sd15().decode(ids)).toBe("a photo of a cat , café 日本 🐱");
    expect(sd15().decode([BOS, 320, EOS], { skipSpecialTokens: false })).toBe(
      "<|startoftext|>a <|endoftext|>",
    );
    expect(() => sd15().decode([123456])).toThrow(/id 123456 is not in the vocabulary/);
  });
});

describe("bad files", () => {
  const vocab = JSON.stringify({
    a: 0,
    b: 1,
    "a</w>": 2,
    "b</w>": 3,
    "ab</w>": 4,
    "<|startoftext|>": 5,
    "<|endoftext|>": 6,
  });
  const merges = "#version: 0.2\na b</w>\n";

  it("loads a small valid folder (the base for the cases below)", () => {
    const tokenizer = loadClipTokenizer(tempFolder({ "vocab.json": vocab, "merges.txt": merges }));
    expect(tokenizer.call("ab a", { padding: false }).inputIds).toEqual([[5, 4, 2, 6]]);
  });

  it("names a missing folder or missing files", () => {
    expect(() => loadClipTokenizer(join(tmpdir(), "no-such-tokenizer-folder"))).toThrow(
      /no-such-tokenizer-folder: tokenizer folder not found/,
    );
    expect(() => loadClipTokenizer(tempFolder({}))).toThrow(
      /vocab\.json and merges\.txt are missing and there is no tokenizer\.json/,
    );
    expect(() => loadClipTokenizer(tempFolder({ "vocab.json": vocab }))).toThrow(
      /merges\.txt is missing/,
    );
  });

  it("names the malformed file in one line", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ "vocab.json": "{nope", "merges.txt": merges }, /vocab\.json: not valid JSON/],
      [{ "vocab.json": "[1,2]", "merges.txt": merges }, /vocab\.json: expected a JSON object/],
      [{ "vocab.json": '{"a": "x"}', "merges.txt": merges }, /vocab\.json: token "a" has id "x"/],
      [
        { "vocab.json": vocab, "merges.txt": "#version: 0.2\na b\nab\n" },
        /merges\.txt line 3: expected two symbols/,
      ],
      [{ "vocab.json": vocab, "merges.txt": "#version: 0.2\n" }, /merges\.txt: no merges/],
      [{ "vocab.json": vocab, "merges.txt": "a b\n" }, /merges\.txt: merge 1 \("a b"\) needs "ab"/],
      [
        { "vocab.json": vocab, "merges.txt": merges, "tokenizer_config.json": "{" },
        /tokenizer_config\.json: not valid JSON/,
      ],
      [
        {
          "vocab.json": vocab,
          "merges.txt": merges,
          "tokenizer_config.json": '{"pad_token": "<pad>"}',
        },
        /pad_token "<pad>" is not in the vocabulary/,
      ],
      [
        {
          "vocab.json": vocab,
          "merges.txt": merges,
          "special_tokens_map.json": '{"bos_token": 3}',
        },
        /special_tokens_map\.json: bos_token must be a string/,
      ],
      [
        { "tokenizer.json": '{"model": {"type": "Unigram"}}' },
        /tokenizer\.json: model type "Unigram" is not BPE/,
      ],
      [
        { "tokenizer.json": `{"model": {"vocab": ${vocab}, "merges": ["a b c"]}}` },
        /tokenizer\.json: model\.merges\[0\] must be/,
      ],
    ];
    for (const [files, message] of cases) {
      const dir = tempFolder(files);
      let error: Error | undefined;
      try {
        loadClipTokenizer(dir);
      } catch (e) {
        error = e as Error;
      }
      expect(error?.message, JSON.stringify(files)).toMatch(message);
      expect(error?.message.startsWith(dir), error?.message).toBe(true);
      expect(error?.message).not.toContain("\n");
    }
  });
});
