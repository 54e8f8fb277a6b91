// A new user's first hour: every model source works without extra flags (the CLIP vocabulary
// ships with the package), and the README's quickstart commands run as written on the fixtures.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadPipeline } from "../../src/index.js";
import { builtinClipTokenizerDir } from "../../src/tokenizers/builtin-vocabulary.js";
import { loadClipTokenizer } from "../../src/tokenizers/load-folder.js";
import { fixturePath } from "../fixtures.js";
import { filesIn, runCli, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const reference = loadClipTokenizer(fixturePath("tokenizer", "clip"));
const CHECKPOINT = fixturePath("checkpoints", "sd15-tiny.safetensors");

describe("the shipped CLIP vocabulary", () => {
  it("unpacks to the CLIP tokenizer files", () => {
    const dir = builtinClipTokenizerDir(ws.path("unpack"));
    for (const file of ["vocab.json", "merges.txt"])
      expect(
        readFileSync(join(dir, file)).equals(readFileSync(fixturePath("tokenizer", "clip", file))),
        file,
      ).toBe(true);
    // A second call reuses the folder.
    expect(builtinClipTokenizerDir(ws.path("unpack"))).toBe(dir);
  });

  it("gives builtin models their tokenizers, with each family's pad token", async () => {
    for (const [source, pads] of [
      ["builtin:sd15", ["<|endoftext|>"]],
      ["builtin:sd21", ["!"]],
      ["builtin:sdxl", ["<|endoftext|>", "!"]],
    ] as const) {
      const pipeline = await loadPipeline(source, { cacheDir: ws.cache });
      try {
        expect(
          pipeline.parts.tokenizers.map((t) => t.padToken),
          source,
        ).toEqual(pads);
        const prompt = "a lighthouse at dusk, oil painting";
        for (const tokenizer of pipeline.parts.tokenizers)
          expect(tokenizer.encode(prompt)).toEqual(reference.encode(prompt));
      } finally {
        await pipeline.release();
      }
    }
  });

  it("lets a single-file checkpoint generate with no --tokenizer", async () => {
    const out = ws.outDir();
    const run = await runCli([
      "generate",
      "a red cube",
      "-m",
      CHECKPOINT,
      "--size",
      "64",
      "--steps",
      "2",
      "--seed",
      "1",
      "--cache-dir",
      ws.cache,
      "-o",
      out,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(filesIn(out).filter((f) => f.endsWith(".png"))).toHaveLength(1);
  });
});
