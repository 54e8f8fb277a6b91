/**
 * The on-disk cache of built ONNX models. An entry is a folder named by a hash of everything the
 * graph depends on (weight identity, build options, backend); it holds `model.onnx` (and
 * `model.onnx_data` for large models) plus `entry.json` describing it. An entry is built in a
 * temporary folder and renamed into place, so concurrent runs never see or leave a half-written
 * entry: the loser of a race discards its copy and uses the winner's.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export function defaultCacheDir(): string {
  const env = process.env.TODO_SD_CACHE;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), ".cache"), "todo-sd");
}

/** A stable hash of a JSON-able description (object keys sorted). */
export { fileIdentity } from "../util/file-identity.js";

export function hashKey(description: unknown): string {
  return createHash("sha256").update(stableStringify(description)).digest("hex").slice(0, 32);
}

export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export interface CacheEntry {
  readonly dir: string;
  readonly modelPath: string;
  readonly built: boolean;
}

export class ModelCache {
  constructor(readonly root: string = defaultCacheDir()) {}

  entryDir(key: string): string {
    return join(this.root, key);
  }

  /** The cached model for `key`, built by `build(modelPath)` into a fresh folder when missing. */
  async getOrBuild(
    key: string,
    description: unknown,
    build: (modelPath: string) => Promise<void> | void,
  ): Promise<CacheEntry> {
    const dir = this.entryDir(key);
    const modelPath = join(dir, "model.onnx");
    if (existsSync(join(dir, "entry.json")) && existsSync(modelPath))
      return { dir, modelPath, built: false };
    try {
      mkdirSync(this.root, { recursive: true });
    } catch (error) {
      throw new Error(
        `cache folder ${this.root} cannot be created (${(error as NodeJS.ErrnoException).code})`,
      );
    }
    const temp = join(
      this.root,
      `.${key}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`,
    );
    mkdirSync(temp);
    try {
      await build(join(temp, "model.onnx"));
      writeFileSync(
        join(temp, "entry.json"),
        `${JSON.stringify({ key, description, created: new Date().toISOString() }, null, 2)}\n`,
      );
      try {
        renameSync(temp, dir);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Another process finished the same entry first: keep theirs.
        if ((code === "ENOTEMPTY" || code === "EEXIST") && existsSync(join(dir, "entry.json"))) {
          rmSync(temp, { recursive: true, force: true });
        } else {
          throw error;
        }
      }
    } catch (error) {
      rmSync(temp, { recursive: true, force: true });
      throw error;
    }
    return { dir, modelPath, built: true };
  }
}
