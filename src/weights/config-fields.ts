/**
 * Reading the few config fields that decide a model's weight names and shapes, with one-line
 * errors naming the config and the field. Defaults are those of the diffusers/transformers
 * classes, so configs that omit a field behave as the reference does.
 */
import type { JsonObject, JsonValue } from "./config-json.js";

export class ConfigReader {
  constructor(
    readonly config: JsonObject,
    readonly label: string,
  ) {}

  has(field: string): boolean {
    return this.config[field] !== undefined && this.config[field] !== null;
  }

  raw(field: string): JsonValue | undefined {
    return this.config[field];
  }

  int(field: string, fallback?: number): number {
    const value = this.config[field] ?? fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      this.fail(field, "a non-negative integer", value);
    }
    return value as number;
  }

  optionalInt(field: string): number | undefined {
    return this.has(field) ? this.int(field) : undefined;
  }

  bool(field: string, fallback: boolean): boolean {
    const value = this.config[field] ?? fallback;
    if (typeof value !== "boolean") this.fail(field, "true or false", value);
    return value as boolean;
  }

  string(field: string, fallback?: string): string {
    const value = this.config[field] ?? fallback;
    if (typeof value !== "string") this.fail(field, "a string", value);
    return value as string;
  }

  optionalString(field: string): string | undefined {
    return this.has(field) ? this.string(field) : undefined;
  }

  stringList(field: string): string[] {
    const value = this.config[field];
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
      this.fail(field, "a list of strings", value);
    }
    return value as string[];
  }

  intList(field: string): number[] {
    const value = this.config[field];
    if (!Array.isArray(value) || !value.every(isCount)) {
      this.fail(field, "a list of non-negative integers", value);
    }
    return value as number[];
  }

  /** A field that is either one integer for every block or a list with one per block. */
  intPerBlock(field: string, blocks: number, fallback?: number): number[] {
    const value = this.config[field] ?? fallback;
    if (isCount(value)) return new Array<number>(blocks).fill(value);
    if (Array.isArray(value) && value.length === blocks && value.every(isCount)) {
      return value as number[];
    }
    return this.fail(field, `an integer or a list of ${blocks} integers`, value);
  }

  /**
   * Like `intPerBlock`, but a block's entry may itself be a list with one integer per layer
   * (diffusers allows this for transformer depths). Returns per block, per layer.
   */
  intPerBlockPerLayer(field: string, layers: readonly number[], fallback?: number): number[][] {
    const value = this.config[field] ?? fallback;
    const blocks = layers.length;
    if (isCount(value)) return layers.map((n) => new Array<number>(n).fill(value));
    if (Array.isArray(value) && value.length === blocks) {
      return value.map((entry, block) => {
        if (isCount(entry)) return new Array<number>(layers[block]).fill(entry);
        if (Array.isArray(entry) && entry.length === layers[block] && entry.every(isCount)) {
          return entry as number[];
        }
        return this.fail(field, `an integer or a list of ${blocks} integers or lists`, value);
      });
    }
    return this.fail(field, `an integer or a list of ${blocks} integers or lists`, value);
  }

  /** Rejects options whose weights this project does not lay out. */
  requireValue(field: string, allowed: readonly (JsonValue | undefined)[], what: string): void {
    const value = this.config[field];
    if (!allowed.some((a) => a === value)) {
      throw new Error(
        `${this.label}: unsupported ${what} config: ${field} = ${JSON.stringify(value)} (supported: ${allowed
          .map((a) => (a === undefined ? "absent" : JSON.stringify(a)))
          .join(", ")})`,
      );
    }
  }

  fail(field: string, expected: string, value: unknown): never {
    const shown = value === undefined ? "missing" : JSON.stringify(value);
    throw new Error(`${this.label}: config field "${field}" must be ${expected}, got ${shown}`);
  }
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
