/**
 * Where generated images go: `-o` is a folder (names from `--name`'s pattern) or, for one image,
 * a `.png` file. Nothing is ever overwritten: a taken name in a folder becomes `name-1.png`, ...;
 * a taken `-o` file is refused before any work.
 */
import { existsSync, statSync } from "node:fs";
import { basename } from "node:path";
import { InvalidArgumentError } from "commander";

export const DEFAULT_NAME_PATTERN = "todo-sd-{date}-{time}-{seed}-{index}";

/** What a name pattern may use. */
export interface NameFields {
  readonly seed: number;
  readonly index: number;
  readonly prompt: string;
  readonly model: string;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly date: Date;
}

const FIELDS: readonly string[] = [
  "seed",
  "index",
  "prompt",
  "model",
  "width",
  "height",
  "steps",
  "date",
  "time",
];

/** `--name`: checked when parsed, so a bad pattern fails before any work. */
export function namePatternArg(value: string): string {
  if (value.trim() === "") throw new InvalidArgumentError("the pattern is empty");
  if (/[/\\]/.test(value) || value === "." || value === "..")
    throw new InvalidArgumentError(
      `"${value}" is a file name pattern, not a path; give the folder with -o`,
    );
  for (const match of value.matchAll(/\{([^}]*)\}/g))
    if (!FIELDS.includes(match[1]))
      throw new InvalidArgumentError(
        `unknown field {${match[1]}}; fields: ${FIELDS.map((f) => `{${f}}`).join(" ")}`,
      );
  return value;
}

/** The prompt as a file name part: letters, digits and dashes, at most 60 characters. */
export function promptSlug(prompt: string): string {
  const slug = prompt
    .normalize("NFKD")
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60)
    .replace(/-+$/, "");
  return slug === "" ? "image" : slug;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** YYYYMMDD-HHMMSS in local time (a name's `{date}` and `{time}`). */
export function timestamp(d: Date): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** The file name of one image (with `.png`). */
export function fileName(pattern: string, fields: NameFields): string {
  const [date, time] = timestamp(fields.date).split("-");
  const values: Record<string, string> = {
    seed: String(fields.seed),
    index: String(fields.index),
    prompt: promptSlug(fields.prompt),
    model: promptSlug(fields.model),
    width: String(fields.width),
    height: String(fields.height),
    steps: String(fields.steps),
    date,
    time,
  };
  const name = pattern.replace(/\{([^}]*)\}/g, (_, field: string) => values[field]);
  return /\.png$/i.test(name) ? name : `${name}.png`;
}

/** Whether `-o` names one PNG file rather than a folder. */
export function isPngFileTarget(out: string): boolean {
  return /\.png$/i.test(out) && !(existsSync(out) && statSync(out).isDirectory());
}

/** A model source as PNGs record it: its name, never a path of this machine. */
export function modelName(source: string): string {
  if (!existsSync(source)) return source;
  return basename(source.replace(/[/\\]+$/, "")).replace(/\.safetensors$/i, "");
}
