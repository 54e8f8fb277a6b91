// Writes the shipped CLIP tokenizer data (vocab.json.gz, merges.txt.gz beside this script) from
// a CLIP tokenizer folder holding vocab.json and merges.txt, e.g. one of openai/clip-vit-large-patch14.
//   node data/clip-tokenizer/make.mjs <tokenizer folder>
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const source = process.argv[2];
if (!source) {
  process.stderr.write("usage: node data/clip-tokenizer/make.mjs <tokenizer folder>\n");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
for (const file of ["vocab.json", "merges.txt"]) {
  const bytes = readFileSync(join(source, file));
  // A stable file: no name or time in the gzip header.
  const packed = gzipSync(bytes, { level: 9 });
  packed.fill(0, 4, 8);
  writeFileSync(join(here, `${file}.gz`), packed);
  process.stdout.write(`${file}: ${bytes.length} -> ${packed.length} bytes\n`);
}
