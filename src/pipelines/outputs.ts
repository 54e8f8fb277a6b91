/**
 * Generated images as PNG files that carry their parameters (Node): see result-png.ts for the
 * encoding, which browsers use too.
 */
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeBytesExclusively } from "../util/atomic-write.js";
import type { GenerateResult } from "./generate-options.js";
import { encodeResultPng } from "./result-png.js";

/** Creates `dir` if needed and checks that files can be written there (before any work). */
export function ensureWritableFolder(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory())
      throw Object.assign(new Error("not a folder"), { code: "ENOTDIR" });
    accessSync(dir, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`output folder ${dir} is not writable (${code})`);
  }
}

/**
 * Writes every image of a result into `dir` as `<prefix>-<i>.png`, or as `name(i)` when a function
 * is given; returns the paths. Never overwrites: a taken name becomes `<name>-1.png`, ... (each
 * file is written under a temporary name and linked into place, so none is ever partial).
 */
export function writeResultPngs(
  result: GenerateResult,
  dir: string,
  prefix: string | ((index: number) => string),
  model: string,
): string[] {
  const paths: string[] = [];
  for (let i = 0; i < result.images.count; i++) {
    const name = typeof prefix === "string" ? `${prefix}-${i}.png` : prefix(i);
    paths.push(
      writeBytesExclusively(join(dir, name), encodeResultPng(result, i, model), { nextFree: true }),
    );
  }
  return paths;
}
