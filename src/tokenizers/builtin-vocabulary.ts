/**
 * The CLIP BPE vocabulary and merges that ship with the package (Node only), for sources that
 * carry no tokenizer: single-file checkpoints and `builtin:*` models. SD 1.x, SD 2.x and both
 * SDXL text encoders use this same vocabulary; only the pad token differs (`padToken`).
 *
 * The data (OpenAI's CLIP tokenizer, MIT-licensed; see NOTICE) is stored gzipped in
 * `data/clip-tokenizer/` and unpacked once into a folder of the cache, so that everything that
 * reads tokenizer folders (the pipelines, the demo server) reads it like a model's own.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { temporaryName } from "../util/atomic-write.js";

const FILES = ["vocab.json", "merges.txt"] as const;

/** Where the packed files are: `data/` at the package root, from `src/` and from `dist/` alike. */
function packedPath(file: string): string {
  return fileURLToPath(new URL(`../../data/clip-tokenizer/${file}.gz`, import.meta.url));
}

/**
 * A folder holding the shipped `vocab.json` and `merges.txt`, unpacked under `root` (falling
 * back to the system's temporary folder when `root` cannot be written).
 */
export function builtinClipTokenizerDir(root: string): string {
  const packed = FILES.map((file) => {
    const path = packedPath(file);
    if (!existsSync(path))
      throw new Error(`the package's CLIP vocabulary is missing (${path}); reinstall todo-sd`);
    return readFileSync(path);
  });
  const hash = createHash("sha256");
  for (const bytes of packed) hash.update(bytes);
  const name = `clip-${hash.digest("hex").slice(0, 16)}`;
  try {
    return unpackInto(join(root, "tokenizers"), name, packed);
  } catch {
    return unpackInto(join(tmpdir(), "todo-sd-tokenizers"), name, packed);
  }
}

function unpackInto(parent: string, name: string, packed: readonly Buffer[]): string {
  const dir = join(parent, name);
  if (FILES.every((file) => existsSync(join(dir, file)))) return dir;
  mkdirSync(parent, { recursive: true });
  // Unpacked beside the target and renamed into place: readers never see half a folder.
  const temp = temporaryName(join(parent, `.${name}`));
  mkdirSync(temp);
  try {
    FILES.forEach((file, i) => {
      writeFileSync(join(temp, file), gunzipSync(packed[i]));
    });
    try {
      renameSync(temp, dir);
    } catch (error) {
      // Another process unpacked it first.
      if (!FILES.every((file) => existsSync(join(dir, file)))) throw error;
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  return dir;
}
