/**
 * Output destinations are checked before any work starts, so that a run that cannot save its
 * result fails at once, with one line, instead of after minutes of computing.
 */
import { existsSync, statfsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { jsonNumbers } from "../image/parameters.js";
import { ensureWritableFolder } from "../pipelines/outputs.js";
import { writeBytesAtomically } from "../util/atomic-write.js";

/**
 * Kernel file systems (statfs magic numbers from Linux's magic.h) where nothing can be saved:
 * creating folders there fails or blocks, so they are refused by name first.
 */
const SPECIAL_FILE_SYSTEMS: Readonly<Record<number, string>> = Object.freeze({
  40864: "proc",
  1650812274: "sysfs",
  7377: "devpts",
  1684170528: "debugfs",
  1953653091: "tracefs",
  2613483: "cgroup",
  1667723888: "cgroup2",
  1935894131: "securityfs",
  3405662737: "bpf",
  1650812272: "configfs",
  1634035564: "pstore",
  1702057283: "fusectl",
});

/** The kernel file system `path` (or its nearest existing parent) is on, if it is one. */
function specialFileSystem(path: string): string | undefined {
  let existing = resolve(path);
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  try {
    return SPECIAL_FILE_SYSTEMS[statfsSync(existing).type];
  } catch {
    return undefined;
  }
}

/** Checks that files can be written in `dir`, creating it when missing. */
export function checkOutputFolder(dir: string, flag: string): void {
  const special = specialFileSystem(dir);
  if (special)
    throw new Error(
      `${flag}: ${dir} is on the ${special} kernel file system; no file can be saved there`,
    );
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

/**
 * A long run's `--json` so far, after each result: a file is rewritten whole and atomically, so
 * a run stopped or failed later keeps what it measured; stdout (`-`) and no `--json` get nothing
 * here (stdout takes the whole value once, from writeJsonOutput at the end).
 */
export function writeJsonProgress(destination: string | undefined, value: unknown): void {
  if (destination !== undefined && destination !== "-") writeJsonOutput(destination, value);
}

/** Where `--json` goes: `-` is stdout; anything else a file, written atomically. */
export function writeJsonOutput(destination: string, value: unknown): void {
  const text = `${JSON.stringify(value, jsonNumbers, 2)}\n`;
  if (destination === "-") process.stdout.write(text);
  else writeBytesAtomically(destination, new TextEncoder().encode(text));
}
