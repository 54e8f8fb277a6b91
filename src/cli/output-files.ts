/**
 * Output destinations are checked before any work starts, so that a run that cannot save its
 * result fails at once, with one line, instead of after minutes of computing.
 */
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { ensureWritableFolder, writeBytesAtomically } from "../index.js";

/** Checks that files can be written in `dir`, creating it when missing. */
export function checkOutputFolder(dir: string, flag: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new Error(`${flag}: ${dir} is a file, not a folder`);
  try {
    ensureWritableFolder(dir);
  } catch (error) {
    throw new Error(`${flag}: ${(error as Error).message}`);
  }
}

/** Checks that `path` can be written as a file (its folder is created when missing). */
export function checkOutputFile(path: string, flag: string): void {
  if (path === "") throw new Error(`${flag} needs a file name`);
  if (existsSync(path) && statSync(path).isDirectory())
    throw new Error(`${flag}: ${path} is a folder; give a file name`);
  checkOutputFolder(dirname(path), flag);
}

/** Where `--json` goes: `-` is stdout; anything else a file, written atomically. */
export function writeJsonOutput(destination: string, value: unknown): void {
  const text = `${JSON.stringify(value, jsonNumbers, 2)}\n`;
  if (destination === "-") process.stdout.write(text);
  else writeBytesAtomically(destination, new TextEncoder().encode(text));
}

/** JSON has no infinities or NaN: they are written as strings, as in the project's fixtures. */
export function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? String(value) : value;
}
