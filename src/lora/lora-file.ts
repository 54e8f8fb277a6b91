/**
 * Reading LoRA files (Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, 2021):
 * low-rank weight deltas `W' = W + (alpha / rank) * up @ down` for some Linear and Conv2d layers
 * of the UNet and text encoders. Two layouts are in use:
 * - kohya (the community files of the popular trainers): `lora_unet_<module>`, `lora_te_<module>`
 *   (SD 1.x/2.x), `lora_te1_` / `lora_te2_` (SDXL), each with `.lora_down.weight`,
 *   `.lora_up.weight` and a scalar `.alpha`; module names are the model's dotted names with
 *   dots turned into underscores, in diffusers' UNet naming or the original LDM one;
 * - diffusers/PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight`, `text_encoder.`,
 *   `text_encoder_2.`, with the adapter config (`r`, `lora_alpha`, `alpha_pattern`) as JSON in
 *   the safetensors metadata key `lora_adapter_metadata`; older diffusers files spell the pair
 *   `.lora.down/up.weight`, `.lora_linear_layer.down/up.weight` or
 *   `.processor.to_q_lora.down/up.weight`.
 * Only headers and the scalar alphas are read when a file opens; the matrices are read when a
 * weight they change is built.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";
import { fileIdentity } from "../util/file-identity.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { Shape } from "../weights/weight-modules.js";

/** The components a LoRA changes, named as in diffusers. */
export type LoraComponent = "unet" | "text_encoder" | "text_encoder_2";

export const LORA_COMPONENTS: readonly LoraComponent[] = Object.freeze([
  "unet",
  "text_encoder",
  "text_encoder_2",
]);

export type LoraLayout = "kohya" | "peft" | "diffusers-legacy";

export interface LoraModule {
  readonly component: LoraComponent;
  /** The module as the file names it (`lora_unet_down_blocks_0_...`, `unet.down_blocks.0...`). */
  readonly name: string;
  /**
   * The module's path inside its component, as the file spells it: underscored for kohya
   * (`down_blocks_0_attentions_0_..._to_q`), dotted otherwise (`down_blocks.0.attentions.0...`).
   */
  readonly path: string;
  readonly layout: LoraLayout;
  readonly downKey: string;
  readonly upKey: string;
  /** [rank, in] or [rank, in, kh, kw]. */
  readonly down: Shape;
  /** [out, rank] or [out, rank, 1, 1]. */
  readonly up: Shape;
  readonly rank: number;
  /** The delta is scaled by alpha / rank (alpha = rank when the file gives none). */
  readonly alpha: number;
  /** Every key of the file that belongs to this module. */
  readonly keys: readonly string[];
}

/** A key of the file that is not part of a usable LoRA module, and why. */
export interface SkippedKey {
  readonly key: string;
  readonly reason: string;
}

const KOHYA_KEY =
  /^(lora_unet|lora_te1|lora_te2|lora_te)_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const KOHYA_COMPONENT: Readonly<Record<string, LoraComponent>> = {
  lora_unet: "unet",
  lora_te: "text_encoder",
  lora_te1: "text_encoder",
  lora_te2: "text_encoder_2",
};
const DIFFUSERS_KEY =
  /^(unet|text_encoder_2|text_encoder)\.(.+?)\.(lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight|alpha)$/;
const PROCESSOR_KEY = /^(unet)\.(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
/** Adapter kinds of the LyCORIS family and relatives, which are not plain LoRAs. */
const OTHER_ADAPTERS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\.hada_w[12]_[ab]$/, "LoHa"],
  [/\.lokr_w[12](_[ab])?$/, "LoKr"],
  [/\.lora_mid\.weight$/, "LoCon with a CP-decomposed middle (LyCORIS)"],
  [/\.(dora_scale|lora_magnitude_vector)(\.weight)?$/, "DoRA"],
  [/\.oft_(blocks|diag)$/, "OFT"],
  [/\.diff(_b)?$/, "full weight differences"],
];

/** Whether a safetensors file holds LoRA (or other adapter) keys, from its header alone. */
export function isLoraFile(path: string): boolean {
  const file = SafetensorsFile.open(path);
  try {
    return file
      .keys()
      .some(
        (key) =>
          KOHYA_KEY.test(key) ||
          DIFFUSERS_KEY.test(key) ||
          PROCESSOR_KEY.test(key) ||
          OTHER_ADAPTERS.some(([pattern]) => pattern.test(key)),
      );
  } finally {
    file.close();
  }
}

/** The web UIs' name of a LoRA: its file name without the extension. */
export function loraName(path: string): string {
  return basename(path).replace(/\.safetensors$/i, "");
}

/** One opened LoRA file. */
export class LoraFile {
  readonly name: string;
  readonly modules: readonly LoraModule[];
  /** Keys that hold no usable LoRA weight (unknown names, incomplete pairs, other adapters). */
  readonly skipped: readonly SkippedKey[];
  /** The layouts present, in the order met. */
  readonly layouts: readonly LoraLayout[];
  /** Adapter kinds found that are not plain LoRAs (LoHa, LoKr, ...). */
  readonly otherAdapters: readonly string[];

  private constructor(
    readonly path: string,
    readonly file: SafetensorsFile,
    readonly hashes: LoraHashes,
  ) {
    this.name = loraName(path);
    const parsed = parseModules(file);
    this.modules = parsed.modules;
    this.skipped = parsed.skipped;
    this.layouts = [...new Set(parsed.modules.map((m) => m.layout))];
    this.otherAdapters = parsed.otherAdapters;
  }

  /** Opens and parses a LoRA file; an invalid file, or one with no LoRA weights, is an error. */
  static open(path: string): LoraFile {
    const file = SafetensorsFile.open(path);
    try {
      const lora = new LoraFile(path, file, loraHashes(path));
      if (lora.modules.length === 0) throw new Error(lora.noModulesMessage());
      return lora;
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** The web UIs' short hash (first 12 hex digits of the sha256 of the data after the header). */
  get hash(): string {
    return this.hashes.short;
  }

  /** The sha256 of the whole file, which keys built models. */
  get sha256(): string {
    return this.hashes.sha256;
  }

  get layout(): string {
    return this.layouts.join("+");
  }

  /** The matrices of a module as float32. */
  readMatrices(module: LoraModule): { down: Float32Array; up: Float32Array } {
    return { down: this.file.readFloat32(module.downKey), up: this.file.readFloat32(module.upKey) };
  }

  close(): void {
    this.file.close();
  }

  private noModulesMessage(): string {
    if (this.otherAdapters.length > 0)
      return `${this.path}: holds ${this.otherAdapters.join(", ")} weights, which are not supported; only LoRA (lora_down/lora_up, lora_A/lora_B) files are`;
    const sample = this.file.keys().slice(0, 3).join(", ");
    return `${this.path}: no LoRA weights in this file (expected kohya lora_unet_*/lora_te_* .lora_down/.lora_up keys or diffusers unet.*.lora_A/lora_B keys; first keys: ${sample || "none"})`;
  }
}

interface ModuleParts {
  component: LoraComponent;
  path: string;
  layout: LoraLayout;
  down?: string;
  up?: string;
  alpha?: string;
  keys: string[];
}

/** Groups the file's keys into modules. */
function parseModules(file: SafetensorsFile): {
  modules: LoraModule[];
  skipped: SkippedKey[];
  otherAdapters: string[];
} {
  const parts = new Map<string, ModuleParts>();
  const skipped: SkippedKey[] = [];
  const otherAdapters = new Set<string>();
  const part = (name: string, component: LoraComponent, path: string, layout: LoraLayout) => {
    let entry = parts.get(name);
    if (!entry) {
      entry = { component, path, layout, keys: [] };
      parts.set(name, entry);
    }
    return entry;
  };
  for (const key of file.keys()) {
    const kohya = KOHYA_KEY.exec(key);
    if (kohya) {
      const [, prefix, path, role] = kohya;
      const entry = part(`${prefix}_${path}`, KOHYA_COMPONENT[prefix], path, "kohya");
      entry.keys.push(key);
      if (role === "alpha") entry.alpha = key;
      else if (role === "lora_down.weight") entry.down = key;
      else entry.up = key;
      continue;
    }
    const processor = PROCESSOR_KEY.exec(key);
    if (processor) {
      const [, component, at, projection, role] = processor;
      const path = `${at}.${projection === "to_out" ? "to_out.0" : projection}`;
      const entry = part(`${component}.${path}`, "unet", path, "diffusers-legacy");
      entry.keys.push(key);
      if (role === "down") entry.down = key;
      else entry.up = key;
      continue;
    }
    const diffusers = DIFFUSERS_KEY.exec(key);
    if (diffusers) {
      const [, component, path, role] = diffusers;
      const layout: LoraLayout =
        role.startsWith("lora_A") || role.startsWith("lora_B") ? "peft" : "diffusers-legacy";
      const entry = part(`${component}.${path}`, component as LoraComponent, path, layout);
      entry.keys.push(key);
      if (role === "alpha") entry.alpha = key;
      else if (role === "lora_A.weight" || role.endsWith("down.weight")) entry.down = key;
      else {
        entry.up = key;
        // A module's layout is that of its matrices, not of a separate alpha key.
        entry.layout = layout;
      }
      continue;
    }
    const other = OTHER_ADAPTERS.find(([pattern]) => pattern.test(key));
    if (other) otherAdapters.add(other[1]);
    skipped.push({ key, reason: other ? `${other[1]} is not supported` : "not a LoRA key" });
  }

  const peft = peftConfigs(file.metadata, file.label);
  const modules: LoraModule[] = [];
  for (const [name, entry] of parts) {
    if (!entry.down || !entry.up) {
      const missing = entry.down ? "up" : "down";
      for (const key of entry.keys)
        skipped.push({ key, reason: `the module has no ${missing} matrix` });
      continue;
    }
    const down = file.info(entry.down).shape;
    const up = file.info(entry.up).shape;
    const problem = pairProblem(down, up);
    if (problem) {
      for (const key of entry.keys) skipped.push({ key, reason: problem });
      continue;
    }
    const rank = down[0];
    let alpha = rank;
    if (entry.alpha) {
      const values = file.readFloat32(entry.alpha);
      if (values.length !== 1 || !Number.isFinite(values[0])) {
        for (const key of entry.keys)
          skipped.push({ key, reason: "its alpha is not one finite number" });
        continue;
      }
      alpha = values[0];
    } else if (entry.layout !== "kohya") {
      alpha = peft[entry.component]?.alphaFor(entry.path) ?? rank;
    }
    modules.push({
      component: entry.component,
      name,
      path: entry.path,
      layout: entry.layout,
      downKey: entry.down,
      upKey: entry.up,
      down,
      up,
      rank,
      alpha,
      keys: entry.keys,
    });
  }
  return { modules, skipped, otherAdapters: [...otherAdapters] };
}

/** Why a down/up pair cannot form a delta, or undefined when it can. */
function pairProblem(down: Shape, up: Shape): string | undefined {
  const linearOrConv = (shape: Shape) => shape.length === 2 || shape.length === 4;
  if (!linearOrConv(down) || !linearOrConv(up))
    return `down [${down.join(",")}] and up [${up.join(",")}] are not matrices or conv kernels`;
  if (up[1] !== down[0])
    return `up [${up.join(",")}] does not take down [${down.join(",")}]'s rank`;
  if (up.length === 4 && (up[2] !== 1 || up[3] !== 1))
    return `up [${up.join(",")}] is not a 1x1 kernel`;
  if (down[0] === 0) return "rank 0";
  return undefined;
}

/** Alpha per module from a PEFT adapter config. */
interface PeftConfig {
  alphaFor(path: string): number | undefined;
}

/**
 * The PEFT configs in `lora_adapter_metadata`: either flat (`"unet.lora_alpha": 8`, as diffusers
 * writes it) or nested per component (`"unet": {"lora_alpha": 8}`). `alpha_pattern` maps module
 * name patterns to their own alpha; PEFT matches a pattern against the end of a module's dotted
 * name, at a dot boundary.
 */
function peftConfigs(
  metadata: Readonly<Record<string, string>>,
  label: string,
): Partial<Record<LoraComponent, PeftConfig>> {
  const text = metadata.lora_adapter_metadata;
  if (text === undefined) return {};
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${label}: its lora_adapter_metadata is not valid JSON`);
  }
  if (typeof json !== "object" || json === null) return {};
  const record = json as Record<string, unknown>;
  const out: Partial<Record<LoraComponent, PeftConfig>> = {};
  for (const component of LORA_COMPONENTS) {
    const nested = record[component];
    const field = (name: string): unknown =>
      typeof nested === "object" && nested !== null
        ? (nested as Record<string, unknown>)[name]
        : record[`${component}.${name}`];
    const alpha = field("lora_alpha");
    const patterns = field("alpha_pattern");
    if (typeof alpha !== "number" && (typeof patterns !== "object" || patterns === null)) continue;
    const entries = Object.entries((patterns ?? {}) as Record<string, unknown>).filter(
      (e): e is [string, number] => typeof e[1] === "number",
    );
    out[component] = {
      alphaFor(path) {
        for (const [pattern, value] of entries) {
          let matcher: RegExp;
          try {
            matcher = new RegExp(`(^|\\.)(${pattern})$`);
          } catch {
            continue;
          }
          if (matcher.test(path)) return value;
        }
        return typeof alpha === "number" ? alpha : undefined;
      },
    };
  }
  return out;
}

// ---- hashes --------------------------------------------------------------------------------

export interface LoraHashes {
  /** sha256 of the whole file. */
  readonly sha256: string;
  /** The web UIs' LoRA hash: the first 12 hex digits of the sha256 of the bytes after the header. */
  readonly short: string;
}

const hashMemo = new Map<string, LoraHashes>();

/** Both hashes in one read of the file; remembered per file identity (size, time, head). */
export function loraHashes(path: string): LoraHashes {
  const identity = JSON.stringify(fileIdentity(path));
  const known = hashMemo.get(identity);
  if (known) return known;
  const whole = createHash("sha256");
  const data = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const chunk = new Uint8Array(4 * 1024 * 1024);
    let offset = 0;
    let dataStart = Number.POSITIVE_INFINITY;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.byteLength, offset);
      if (n === 0) break;
      const bytes = chunk.subarray(0, n);
      if (offset === 0 && n >= 8)
        dataStart = 8 + Number(new DataView(bytes.buffer, 0, 8).getBigUint64(0, true));
      whole.update(bytes);
      const from = Math.max(0, dataStart - offset);
      if (from < n) data.update(bytes.subarray(from));
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
  const hashes = { sha256: whole.digest("hex"), short: data.digest("hex").slice(0, 12) };
  hashMemo.set(identity, hashes);
  return hashes;
}
