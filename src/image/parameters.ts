// Generation parameters stored in PNG text chunks: the `parameters` text that the popular
// Stable Diffusion web UIs (AUTOMATIC1111's and those that read its format) show and re-use,
// and a `todo-sd` JSON record that holds everything needed to reproduce the image.
//
// The web UI text has up to three parts:
//   <prompt, possibly several lines>
//   Negative prompt: <negative prompt, possibly several lines>
//   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name, ...
// The last line holds `Key: value` settings separated by ", "; a value containing a comma,
// colon or line break is written as a JSON string (the web UI's own rule). A last line with fewer than three settings
// is read as part of the prompt, as the web UI does.

import type { JsonObject } from "../configs/config-json.js";

export const PARAMETERS_KEYWORD = "parameters";
export const RECORD_KEYWORD = "todo-sd";

export interface WebUiParameters {
  prompt: string;
  /** Empty or absent: no "Negative prompt:" line. */
  negativePrompt?: string;
  steps?: number;
  /** Web UI sampler name, e.g. "Euler a", "DPM++ 2M Karras"; see webUiSamplerName. */
  sampler?: string;
  /** "CFG scale". */
  cfgScale?: number;
  seed?: number;
  width?: number;
  height?: number;
  modelHash?: string;
  model?: string;
  denoisingStrength?: number;
  clipSkip?: number;
  /** Further settings in order, e.g. { ToDo: "2x nearest", Version: "todo-sd 0.1.0" }. */
  extra?: Record<string, string>;
}

type NumberField = "steps" | "cfgScale" | "seed" | "denoisingStrength" | "clipSkip";
type StringField = "sampler" | "modelHash" | "model";

// Web UI setting names, in the order the web UI writes them ("Size" sits after "Seed").
const FIELDS: ReadonlyArray<readonly [string, NumberField | StringField | "size"]> = [
  ["Steps", "steps"],
  ["Sampler", "sampler"],
  ["CFG scale", "cfgScale"],
  ["Seed", "seed"],
  ["Size", "size"],
  ["Model hash", "modelHash"],
  ["Model", "model"],
  ["Denoising strength", "denoisingStrength"],
  ["Clip skip", "clipSkip"],
];
const NUMBER_FIELDS = new Set<string>([
  "steps",
  "cfgScale",
  "seed",
  "denoisingStrength",
  "clipSkip",
]);

const NEGATIVE_PREFIX = "Negative prompt:";
const KEY_PATTERN = /^\w[\w \-/]+$/;
// One setting: a key, a colon, then a JSON string or anything up to the next comma.
const SETTING_PATTERN = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

// Also quoted: values that would read back differently (a leading quote, outer spaces).
function quoteValue(value: string): string {
  return /[,:\n\r]|^["\s]|\s$/.test(value) ? JSON.stringify(value) : value;
}

function formatNumber(name: string, value: number): string {
  if (!Number.isFinite(value))
    throw new Error(`web UI parameter ${name} must be finite, got ${value}`);
  return String(value);
}

/** Formats parameters as the web UI `parameters` text. */
export function formatWebUiParameters(params: WebUiParameters): string {
  const settings: string[] = [];
  for (const [name, field] of FIELDS) {
    if (field === "size") {
      if (params.width === undefined && params.height === undefined) continue;
      if (params.width === undefined || params.height === undefined) {
        throw new Error("web UI parameters need both width and height, or neither");
      }
      settings.push(
        `Size: ${formatNumber("width", params.width)}x${formatNumber("height", params.height)}`,
      );
      continue;
    }
    const value = params[field];
    if (value === undefined) continue;
    const text = typeof value === "number" ? formatNumber(name, value) : quoteValue(value);
    settings.push(`${name}: ${text}`);
  }
  for (const [name, value] of Object.entries(params.extra ?? {})) {
    if (!KEY_PATTERN.test(name) || FIELDS.some(([known]) => known === name)) {
      throw new Error(
        `web UI parameter name ${JSON.stringify(name)} is invalid: use letters, digits, spaces, - and /, and no name that has a field`,
      );
    }
    settings.push(`${name}: ${quoteValue(value)}`);
  }
  const lines = [params.prompt];
  if (params.negativePrompt) lines.push(`${NEGATIVE_PREFIX} ${params.negativePrompt}`);
  if (settings.length > 0) lines.push(settings.join(", "));
  return lines.join("\n");
}

function parseSettings(line: string): Array<[string, string]> {
  const settings: Array<[string, string]> = [];
  for (const match of line.matchAll(SETTING_PATTERN)) {
    let value = match[2].trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // Not valid JSON after all: keep the text as written.
      }
    }
    settings.push([match[1].trim(), value]);
  }
  return settings;
}

/**
 * Parses web UI `parameters` text. Settings this type has a field for fill that field (a
 * number that does not parse stays in `extra` as text); all others go to `extra`.
 */
export function parseWebUiParameters(text: string): WebUiParameters {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let settings: Array<[string, string]> = [];
  if (lines.length > 0) {
    const last = parseSettings(lines[lines.length - 1]);
    if (last.length >= 3) {
      settings = last;
      lines.pop();
    }
  }
  const promptLines: string[] = [];
  const negativeLines: string[] = [];
  let inNegative = false;
  for (const line of lines) {
    if (!inNegative && line.startsWith(NEGATIVE_PREFIX)) {
      inNegative = true;
      negativeLines.push(line.slice(NEGATIVE_PREFIX.length).replace(/^ /, ""));
    } else {
      (inNegative ? negativeLines : promptLines).push(line);
    }
  }
  const result: WebUiParameters = { prompt: promptLines.join("\n") };
  if (inNegative) result.negativePrompt = negativeLines.join("\n");
  const extra: Record<string, string> = {};
  for (const [name, value] of settings) {
    const field = FIELDS.find(([known]) => known === name)?.[1];
    const size = /^(\d+)x(\d+)$/.exec(value);
    if (field === "size" && size) {
      result.width = Number(size[1]);
      result.height = Number(size[2]);
    } else if (field && field !== "size" && NUMBER_FIELDS.has(field)) {
      const number = Number(value);
      if (value !== "" && Number.isFinite(number)) result[field as NumberField] = number;
      else extra[name] = value;
    } else if (field && field !== "size") {
      result[field as StringField] = value;
    } else {
      extra[name] = value;
    }
  }
  if (Object.keys(extra).length > 0) result.extra = extra;
  return result;
}

// Web UI sampler names for diffusers scheduler classes (the names its sampler menu uses).
const SAMPLER_NAMES: Readonly<Record<string, string>> = Object.freeze({
  DDIMScheduler: "DDIM",
  DDPMScheduler: "DDPM",
  DEISMultistepScheduler: "DEIS",
  DPMSolverMultistepScheduler: "DPM++ 2M",
  DPMSolverSinglestepScheduler: "DPM++ SDE",
  EulerAncestralDiscreteScheduler: "Euler a",
  EulerDiscreteScheduler: "Euler",
  HeunDiscreteScheduler: "Heun",
  KDPM2AncestralDiscreteScheduler: "DPM2 a",
  KDPM2DiscreteScheduler: "DPM2",
  LCMScheduler: "LCM",
  LMSDiscreteScheduler: "LMS",
  PNDMScheduler: "PLMS",
  UniPCMultistepScheduler: "UniPC",
});

/**
 * The web UI sampler name of a diffusers scheduler class and config; the class name itself
 * when there is no equivalent. Karras sigmas append " Karras", the form every reader of the
 * format understands.
 */
export function webUiSamplerName(
  className: string,
  config: Readonly<Record<string, unknown>> = {},
): string {
  let name = SAMPLER_NAMES[className] ?? className;
  if (
    className === "DPMSolverMultistepScheduler" &&
    config["algorithm_type"] === "sde-dpmsolver++"
  ) {
    name = "DPM++ 2M SDE";
  }
  if (config["use_karras_sigmas"] === true) name += " Karras";
  return name;
}

/**
 * A replacer for JSON.stringify: non-finite numbers, which JSON cannot hold, are written as the
 * strings "Infinity", "-Infinity" and "NaN" (as in the project's fixtures); they read back as
 * those strings.
 */
export function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? String(value) : value;
}

/** The `todo-sd` record as JSON text, non-finite numbers as strings (`jsonNumbers`). */
export function encodeGenerationRecord(record: JsonObject): string {
  return JSON.stringify(record, jsonNumbers);
}

export function decodeGenerationRecord(text: string, label: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${label}: the ${RECORD_KEYWORD} record is not valid JSON (${reason})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${label}: the ${RECORD_KEYWORD} record is not a JSON object`);
  }
  return value as JsonObject;
}

/** Text chunk options for encodePng: `parameters` (tEXt, or iTXt if not Latin-1) and the record (iTXt). */
export function generationTextChunks(
  params: WebUiParameters,
  record?: JsonObject,
): { text: Record<string, string>; itxt: Record<string, string> } {
  const itxt: Record<string, string> = {};
  if (record) itxt[RECORD_KEYWORD] = encodeGenerationRecord(record);
  return { text: { [PARAMETERS_KEYWORD]: formatWebUiParameters(params) }, itxt };
}

export interface GenerationInfo {
  parameters?: WebUiParameters;
  record?: JsonObject;
}

/** Reads what generationTextChunks wrote (or a web UI wrote) from decodePng's `text`. */
export function readGenerationInfo(text: Record<string, string>, label: string): GenerationInfo {
  const info: GenerationInfo = {};
  if (text[PARAMETERS_KEYWORD] !== undefined) {
    info.parameters = parseWebUiParameters(text[PARAMETERS_KEYWORD]);
  }
  if (text[RECORD_KEYWORD] !== undefined) {
    info.record = decodeGenerationRecord(text[RECORD_KEYWORD], label);
  }
  return info;
}
