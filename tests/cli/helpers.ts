// Running the command line in-process, and the bad inputs every command is tried with.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, vi } from "vitest";
import { main } from "../../src/cli/main.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { fixturePath } from "../fixtures.js";

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

type Write = typeof process.stdout.write;

/** Runs `todo-sd <args>` in this process, capturing what it writes. */
export async function runCli(args: readonly string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const capture = (into: string[]) =>
    ((chunk: string | Uint8Array) => {
      into.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      return true;
    }) as Write;
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation(capture(out));
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(capture(err));
  try {
    const code = await main(args);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

/** The toolkit's error contract: a non-zero exit and exactly one `todo-sd:` line on stderr. */
export function expectOneLineError(run: CliRun, pattern?: RegExp): void {
  expect(run.code, `stdout: ${run.stdout}\nstderr: ${run.stderr}`).not.toBe(0);
  expect(run.stderr.endsWith("\n")).toBe(true);
  const lines = run.stderr.slice(0, -1).split("\n");
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^todo-sd: \S/);
  if (pattern) expect(lines[0]).toMatch(pattern);
}

/** The files under `dir` (an absent folder counts as empty). */
export function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : [];
}

/** A temporary folder per test file, with the bad inputs the error tests use. */
export class Workspace {
  readonly root = mkdtempSync(join(tmpdir(), "todo-sd-cli-"));
  /** Built models, shared by every run of a test file. */
  readonly cache = join(this.root, "cache");
  private count = 0;

  /** A new, not yet existing, folder for one run's outputs. */
  outDir(): string {
    this.count++;
    return join(this.root, `out-${this.count}`);
  }

  path(name: string): string {
    return join(this.root, name);
  }

  /** A folder that cannot be created: its parent is a regular file. */
  underRegularFile(name = "sub"): string {
    const file = join(this.root, "regular-file");
    writeFileSync(file, "not a folder\n");
    return join(file, name);
  }

  /** The sd15-tiny single-file checkpoint cut in half. */
  truncatedCheckpoint(): string {
    const path = join(this.root, "truncated.safetensors");
    const bytes = readFileSync(fixturePath("checkpoints", "sd15-tiny.safetensors"));
    writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
    return path;
  }

  /** A text file named like a PNG. */
  textFileNamedPng(): string {
    const path = join(this.root, "not-an-image.png");
    writeFileSync(path, "this is text, not a PNG\n");
    return path;
  }

  write(name: string, bytes: Uint8Array | string): string {
    const path = join(this.root, name);
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, bytes);
    return path;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export const SD15 = fixturePath("pipelines", "sd15-tiny");
export const SD15_ONNX = fixturePath("onnx", "sd15-tiny");

/** The image a `--raw` file holds (float32, values in [0, 1]), as written by generate. */
export function readRawImage(path: string): Float32Array {
  const file = SafetensorsFile.open(path);
  try {
    return file.readFloat32("image").slice();
  } finally {
    file.close();
  }
}
