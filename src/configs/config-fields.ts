/**
 * Typed reading of diffusers / transformers `config.json` objects. Every problem is one line that
 * names the file, the field and the value, so a user can see at once what their model folder
 * holds that the builders do not handle.
 */

/** Reads fields of one config object; `label` names the file in errors (`unet/config.json`). */
export class ConfigFields {
  private readonly fields: Readonly<Record<string, unknown>>;

  constructor(
    json: unknown,
    readonly label: string,
  ) {
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new Error(`${label}: expected a JSON object`);
    }
    this.fields = json as Record<string, unknown>;
  }

  /** The raw value; `undefined` when the field is absent (JSON null stays null). */
  raw(field: string): unknown {
    return this.fields[field];
  }

  /** True when the field is absent or null, that is when the library default applies. */
  isUnset(field: string): boolean {
    const value = this.fields[field];
    return value === undefined || value === null;
  }

  unsupported(field: string, value: unknown = this.fields[field]): Error {
    return new Error(`${this.label}: unsupported value for ${field}: ${show(value)}`);
  }

  invalid(field: string, expected: string, value: unknown = this.fields[field]): Error {
    return new Error(
      `${this.label}: invalid value for ${field}: ${show(value)} (expected ${expected})`,
    );
  }

  integer(field: string, fallback: number, min = 0): number {
    const value = this.fields[field];
    if (value === undefined || value === null) return fallback;
    if (!isInteger(value, min)) throw this.invalid(field, `an integer >= ${min}`);
    return value;
  }

  /** A positive integer, or null when the field is absent or null. */
  optionalInteger(field: string, min = 1): number | null {
    return this.isUnset(field) ? null : this.integer(field, 0, min);
  }

  number(field: string, fallback: number): number {
    const value = this.fields[field];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "number" || !Number.isFinite(value)) throw this.invalid(field, "a number");
    return value;
  }

  optionalNumber(field: string): number | null {
    return this.isUnset(field) ? null : this.number(field, 0);
  }

  boolean(field: string, fallback: boolean): boolean {
    const value = this.fields[field];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") throw this.invalid(field, "true or false");
    return value;
  }

  /** A string, or null when absent or null (for fields whose default is None). */
  optionalString(field: string): string | null {
    const value = this.fields[field];
    if (value === undefined || value === null) return null;
    if (typeof value !== "string") throw this.invalid(field, "a string");
    return value;
  }

  string(field: string, fallback: string): string {
    return this.optionalString(field) ?? fallback;
  }

  /** One of `allowed`; anything else is an unsupported value. */
  choice<T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    const value = this.optionalString(field) ?? fallback;
    if (!(allowed as readonly string[]).includes(value)) throw this.unsupported(field, value);
    return value as T;
  }

  stringList(field: string, fallback: readonly string[]): string[] {
    const value = this.fields[field];
    if (value === undefined || value === null) return [...fallback];
    if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === "string")) {
      throw this.invalid(field, "a non-empty list of strings");
    }
    return value as string[];
  }

  /**
   * `down_block_types` and `up_block_types`: one entry per block each, every entry one of the
   * allowed block types (anything else is an unsupported value).
   */
  blockTypes<D extends string, U extends string>(
    down: { readonly allowed: readonly D[]; readonly fallback: readonly D[] },
    up: { readonly allowed: readonly U[]; readonly fallback: readonly U[] },
  ): { down: D[]; up: U[] } {
    const downTypes = this.stringList("down_block_types", down.fallback);
    const upTypes = this.stringList("up_block_types", up.fallback);
    for (const [field, types, allowed] of [
      ["down_block_types", downTypes, down.allowed],
      ["up_block_types", upTypes, up.allowed],
    ] as const) {
      const unsupported = types.find((type) => !(allowed as readonly string[]).includes(type));
      if (unsupported !== undefined) throw this.unsupported(field, unsupported);
    }
    if (upTypes.length !== downTypes.length) {
      throw new Error(
        `${this.label}: up_block_types has ${upTypes.length} entries but down_block_types has ${downTypes.length}`,
      );
    }
    return { down: downTypes as D[], up: upTypes as U[] };
  }

  numberList(field: string): number[] | null {
    const value = this.fields[field];
    if (value === undefined || value === null) return null;
    if (!Array.isArray(value) || !value.every((v) => typeof v === "number" && Number.isFinite(v))) {
      throw this.invalid(field, "a list of numbers");
    }
    return value as number[];
  }

  /**
   * `norm_num_groups` of a model whose GroupNorms run over every block's channels: 32 by
   * default, and it must divide each of `blockOutChannels` (null, no groups, is unsupported).
   */
  normGroups(blockOutChannels: readonly number[]): number {
    if (this.fields.norm_num_groups === null) throw this.unsupported("norm_num_groups");
    const groups = this.integer("norm_num_groups", 32, 1);
    for (const channels of blockOutChannels) {
      if (channels % groups !== 0) {
        throw new Error(
          `${this.label}: block_out_channels entry ${channels} is not divisible by norm_num_groups = ${groups}`,
        );
      }
    }
    return groups;
  }

  /**
   * An integer or a per-block list of integers, expanded to `count` entries. diffusers accepts
   * both forms for most per-block fields (`layers_per_block: 2` or `[2, 2, 2, 2]`).
   */
  perBlock(field: string, fallback: number | readonly number[], count: number, min = 1): number[] {
    const value = this.fields[field] ?? fallback;
    if (isInteger(value, min)) return new Array<number>(count).fill(value);
    if (!Array.isArray(value) || !value.every((v) => isInteger(v, min))) {
      throw this.invalid(field, `an integer >= ${min} or a list of them`, value);
    }
    if (value.length !== count) {
      throw new Error(
        `${this.label}: ${field} has ${value.length} entries, but the model has ${count} blocks`,
      );
    }
    return [...(value as number[])];
  }
}

function isInteger(value: unknown, min: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min;
}

function show(value: unknown): string {
  if (value === undefined) return "(absent)";
  return JSON.stringify(value) ?? String(value);
}
