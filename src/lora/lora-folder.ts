/**
 * LoRAs by name: the LoRA files of a folder, and the popular web UIs' prompt syntax
 * `<lora:name:weight>` (weight default 1), which names a file of that folder by its name without
 * the extension (or its path inside the folder, for files in sub-folders) and is removed from the
 * prompt text before the prompt is encoded.
 */
import { readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import type { ModelFamily } from "../util/vocabulary.js";
import type { LoraRequest } from "./apply-loras.js";
import { LoraFile, loraName } from "./lora-file.js";
import { guessLoraFamily } from "./lora-targets.js";

/** One LoRA file of a folder, as a list for choosing shows it. */
export interface LoraListing {
  readonly name: string;
  readonly path: string;
  /** The web UIs' short hash. */
  readonly hash: string;
  readonly sha256: string;
  /** The families it may be for (all three when its keys do not tell). */
  readonly families: readonly ModelFamily[];
  readonly layout: string;
  readonly modules: number;
}

/** Every `.safetensors` file under `folder` (sub-folders too), sorted by path. */
function loraPaths(folder: string): string[] {
  let entries: string[];
  try {
    if (!statSync(folder).isDirectory()) throw new Error("not a folder");
    entries = readdirSync(folder, { recursive: true }).map(String);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`LoRA folder ${folder} cannot be read (${code})`);
  }
  return entries
    .filter((entry) => /\.safetensors$/i.test(entry))
    .map((entry) => join(folder, entry))
    .sort();
}

/**
 * The LoRA files of a folder with their names, hashes and families. Files that are not LoRAs
 * (or not valid safetensors) are left out; `onSkip` is told why.
 */
export function listLoras(
  folder: string,
  onSkip?: (path: string, reason: string) => void,
): LoraListing[] {
  const out: LoraListing[] = [];
  for (const path of loraPaths(folder)) {
    let lora: LoraFile;
    try {
      lora = LoraFile.open(path);
    } catch (error) {
      onSkip?.(path, (error as Error).message);
      continue;
    }
    try {
      out.push({
        name: lora.name,
        path,
        hash: lora.hash,
        sha256: lora.sha256,
        families: guessLoraFamily(lora).families,
        layout: lora.layout,
        modules: lora.modules.length,
      });
    } finally {
      lora.close();
    }
  }
  return out;
}

/** The file a prompt's LoRA name means: by name, or by path inside the folder without extension. */
export function findLora(folder: string, name: string): string {
  const paths = loraPaths(folder);
  const inside = (path: string) =>
    relative(folder, path)
      .replace(/\.safetensors$/i, "")
      .split(sep)
      .join("/");
  const byPath = paths.filter((path) => inside(path) === name);
  if (byPath.length === 1) return byPath[0];
  const byName = paths.filter((path) => loraName(path) === name);
  if (byName.length === 1) return byName[0];
  if (byName.length > 1)
    throw new Error(
      `<lora:${name}>: ${byName.length} files in ${folder} have that name (${byName.map(inside).join(", ")}); name one by its path`,
    );
  const known = paths.map(inside);
  const list = known.length === 0 ? "it has no .safetensors files" : `it has ${known.join(", ")}`;
  throw new Error(`<lora:${name}>: no LoRA of that name in ${folder}; ${list}`);
}

/** A `<lora:...>` tag: name, then optional weight. */
const TAG = /<lora:([^>]*)>/gi;

export interface PromptLoras {
  /** The prompt with the tags removed. */
  readonly prompt: string;
  readonly loras: readonly (LoraRequest & { readonly name: string })[];
}

/**
 * Takes the `<lora:name[:weight]>` tags out of a prompt and resolves their names against
 * `folder`; a tag without a folder, an unknown name or a bad weight is an error (one line).
 */
export function extractPromptLoras(prompt: string, folder: string | undefined): PromptLoras {
  const loras: (LoraRequest & { name: string })[] = [];
  const text = prompt.replace(TAG, (tag, body: string) => {
    const fields = body.split(":");
    if (fields.length > 2 || fields[0].trim() === "")
      throw new Error(`${tag}: write <lora:name> or <lora:name:weight>`);
    const name = fields[0].trim();
    const weightText = fields[1]?.trim();
    const weight = weightText === undefined ? 1 : Number(weightText);
    if (weightText === "" || !Number.isFinite(weight))
      throw new Error(`${tag}: the weight must be a finite number`);
    if (folder === undefined)
      throw new Error(`the prompt names ${tag}; give a LoRA folder (--lora-dir) to load it from`);
    loras.push({ name, path: findLora(folder, name), weight });
    return " ";
  });
  if (loras.length === 0) return { prompt, loras };
  return {
    prompt: text
      .replace(/[ \t]{2,}/g, " ")
      .replace(/ ([,.;])/g, "$1")
      .trim(),
    loras,
  };
}
