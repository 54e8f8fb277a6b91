/**
 * Where model builders get their weights. A source names tensors with diffusers/transformers
 * keys (`down_blocks.0.attentions.0.proj_in.weight`), whatever the file layout behind it: a
 * diffusers folder, a single-file LDM checkpoint mapped to those names, or seeded random
 * weights for benchmarks.
 */
import type { SafetensorsDType } from "./safetensors.js";

export interface WeightInfo {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

export interface WeightSource {
  /** A short description for error messages (a path, or `builtin:sd15 unet`). */
  readonly label: string;
  keys(): string[];
  has(key: string): boolean;
  info(key: string): WeightInfo;
  /** The tensor as float32, row-major. */
  readFloat32(key: string): Float32Array;
  /** The tensor's bytes already in float16, when the source can give them without loss. */
  readFloat16?(key: string): Uint16Array | undefined;
  /**
   * What identifies these weights for the built-model cache without reading them (files' sizes,
   * times and headers; a builtin's seed). Sources without it are identified by key names and
   * shapes only, which is right for immutable sources alone.
   */
  identity?(): unknown;
}

/**
 * A source whose keys are those of a map made when it opens; `entry` finds what stands behind a
 * key (a file, a mapping, a shape) or says in one line that there is no such weight.
 */
export abstract class KeyedWeightSource<T> implements WeightSource {
  constructor(
    readonly label: string,
    protected readonly entries: ReadonlyMap<string, T>,
    private readonly noun = "weight",
  ) {}

  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  abstract info(key: string): WeightInfo;

  abstract readFloat32(key: string): Float32Array;

  protected entry(key: string): T {
    const entry = this.entries.get(key);
    if (entry === undefined) throw new Error(`${this.label}: no ${this.noun} named "${key}"`);
    return entry;
  }
}

/** The cache identity of a source: its own, or its label, keys and shapes. */
export function weightIdentity(source: WeightSource): unknown {
  if (source.identity) return source.identity();
  return {
    label: source.label,
    tensors: source.keys().map((k) => [k, source.info(k).dtype, source.info(k).shape]),
  };
}

/**
 * Wraps a source and records which keys a builder took, so that a build can assert that every
 * weight was used exactly once (missing and unused keys are both errors).
 */
export class WeightTracker {
  private readonly used = new Set<string>();

  constructor(readonly source: WeightSource) {}

  /** Declares use of a key and returns its info; a second use of the same key is an error. */
  take(key: string, expectedShape?: readonly number[]): WeightInfo {
    if (!this.source.has(key)) {
      throw new Error(`${this.source.label}: missing weight "${key}"`);
    }
    if (this.used.has(key)) {
      throw new Error(`${this.source.label}: weight "${key}" was used twice`);
    }
    const info = this.source.info(key);
    if (expectedShape && !sameShape(info.shape, expectedShape)) {
      throw new Error(
        `${this.source.label}: weight "${key}" has shape [${info.shape.join(",")}], expected [${expectedShape.join(",")}]`,
      );
    }
    this.used.add(key);
    return info;
  }

  /** Throws naming the unused keys, if any. */
  assertAllUsed(): void {
    const unused = this.source.keys().filter((k) => !this.used.has(k));
    if (unused.length > 0) {
      const shown = unused.slice(0, 5).join(", ");
      const more = unused.length > 5 ? ` and ${unused.length - 5} more` : "";
      throw new Error(`${this.source.label}: ${unused.length} unused weight(s): ${shown}${more}`);
    }
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
