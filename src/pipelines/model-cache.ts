/**
 * The on-disk cache of built ONNX models. An entry is a folder named by a hash of everything the
 * graph depends on (weight identity, build options, backend); it holds `model.onnx` (and
 * `model.onnx_data` for large models) plus `entry.json` describing it, with the size and SHA-256
 * of every file. An entry is built in a temporary folder and renamed into place, so concurrent
 * runs never see or leave a half-written entry: the loser of a race discards its copy and uses
 * the winner's.
 *
 * Damage is found and repaired: sizes are checked on every use, hashes when onnxruntime fails to
 * load an entry (and by `todo-sd cache verify`); a damaged entry is rebuilt, with a notice. A
 * model whose external data does not hold its tensors (a truncated weights file) is never
 * cached. Temporary folders of builds that were killed are removed on the next run.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join, relative } from "node:path";
import { checkExternalData } from "../onnx/model-io.js";
import { removeStaleTemporaries, temporaryName } from "../util/atomic-write.js";

export function defaultCacheDir(): string {
  const env = process.env.TODO_SD_CACHE;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), ".cache"), "todo-sd");
}

/** A stable hash of a JSON-able description (object keys sorted). */
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

/** What entry.json records of each file of an entry. */
export interface CachedFile {
  readonly size: number;
  readonly sha256: string;
}

/** An entry as `todo-sd cache list` shows it. */
export interface CacheEntryInfo {
  readonly key: string;
  readonly dir: string;
  readonly component: string | undefined;
  readonly created: string | undefined;
  readonly bytes: number;
  /** Why the entry is damaged (sizes only unless verified in full), or undefined when sound. */
  readonly problem: string | undefined;
}

export interface ModelCacheOptions {
  /** Told when a damaged entry is rebuilt or stale temporaries are removed (default: stderr). */
  readonly notice?: (message: string) => void;
}

const ENTRY_FILE = "entry.json";
const cleaned = new Set<string>();

function sha256File(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(8 * 2 ** 20);
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** The files of a folder, recursively, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((name) => statSync(join(dir, name)).isFile());
}

/** Whether onnxruntime's error says the model file itself is broken. */
export function isDamagedModelError(error: unknown): boolean {
  return /protobuf parsing failed|failed to load model|runs past the end|truncated|invalid model|could not load/i.test(
    (error as Error).message ?? "",
  );
}

export class ModelCache {
  private readonly notice: (message: string) => void;

  constructor(
    readonly root: string = defaultCacheDir(),
    options: ModelCacheOptions = {},
  ) {
    this.notice = options.notice ?? ((message) => process.stderr.write(`todo-sd: ${message}\n`));
  }

  entryDir(key: string): string {
    return join(this.root, key);
  }

  /** Removes the temporaries of builds whose process is gone (once per process and folder). */
  removeStale(): string[] {
    const removed = removeStaleTemporaries(this.root);
    if (removed.length > 0)
      this.notice(
        `removed ${removed.length} unfinished cache build${removed.length === 1 ? "" : "s"} left by stopped runs`,
      );
    return removed;
  }

  /** Why the entry `key` is damaged, or undefined when it is sound (`full` also checks hashes). */
  verify(key: string, full = false): string | undefined {
    const dir = this.entryDir(key);
    let record: { files?: Record<string, CachedFile> };
    try {
      record = JSON.parse(readFileSync(join(dir, ENTRY_FILE), "utf8"));
    } catch {
      return `${ENTRY_FILE} is missing or unreadable`;
    }
    if (!existsSync(join(dir, "model.onnx"))) return "model.onnx is missing";
    // Entries written before files were recorded can only be checked by loading them.
    for (const [name, expected] of Object.entries(record.files ?? {})) {
      const path = join(dir, name);
      if (!existsSync(path)) return `${name} is missing`;
      const size = statSync(path).size;
      if (size !== expected.size) return `${name} has ${size} bytes, ${expected.size} were written`;
      if (full && sha256File(path) !== expected.sha256) return `${name} does not match its hash`;
    }
    return undefined;
  }

  /** The cached model for `key`, built by `build(modelPath)` into a fresh folder when missing or damaged. */
  async getOrBuild(
    key: string,
    description: unknown,
    build: (modelPath: string) => Promise<void> | void,
  ): Promise<CacheEntry> {
    const dir = this.entryDir(key);
    const modelPath = join(dir, "model.onnx");
    if (!cleaned.has(this.root)) {
      cleaned.add(this.root);
      if (existsSync(this.root)) this.removeStale();
    }
    if (existsSync(dir)) {
      const problem = this.verify(key);
      if (!problem) return { dir, modelPath, built: false };
      this.discard(key, describeEntry(description), problem);
    }
    try {
      mkdirSync(this.root, { recursive: true });
    } catch (error) {
      throw new Error(
        `cache folder ${this.root} cannot be created (${(error as NodeJS.ErrnoException).code})`,
      );
    }
    const temp = temporaryName(join(this.root, `.${key}`));
    mkdirSync(temp);
    try {
      await build(join(temp, "model.onnx"));
      // A model whose weights file is shorter than its tensors would fail every later run.
      checkExternalData(join(temp, "model.onnx"));
      const files: Record<string, CachedFile> = {};
      for (const name of filesUnder(temp)) {
        const path = join(temp, name);
        files[relative(temp, path)] = { size: statSync(path).size, sha256: sha256File(path) };
      }
      writeFileSync(
        join(temp, ENTRY_FILE),
        `${JSON.stringify({ key, description, created: new Date().toISOString(), files }, null, 2)}\n`,
      );
      try {
        renameSync(temp, dir);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Another process finished the same entry first: keep theirs.
        if ((code === "ENOTEMPTY" || code === "EEXIST") && existsSync(join(dir, ENTRY_FILE))) {
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

  /**
   * `getOrBuild`, then `open` on the entry. When a cached entry fails to open because its files
   * are damaged (hash check), it is rebuilt once, with a notice.
   */
  async open<T>(
    key: string,
    description: unknown,
    build: (modelPath: string) => Promise<void> | void,
    open: (entry: CacheEntry) => Promise<T>,
  ): Promise<T> {
    const entry = await this.getOrBuild(key, description, build);
    try {
      return await open(entry);
    } catch (error) {
      if (entry.built || !isDamagedModelError(error)) throw error;
      const problem =
        this.verify(key, true) ?? `onnxruntime cannot load it (${(error as Error).message})`;
      this.discard(key, describeEntry(description), problem);
      return open(await this.getOrBuild(key, description, build));
    }
  }

  private discard(key: string, what: string, problem: string): void {
    this.notice(`cache entry ${key}${what} is damaged (${problem}); rebuilding it`);
    rmSync(this.entryDir(key), { recursive: true, force: true });
  }

  /** Every entry, with its size and a quick (sizes) or full (hashes) check. */
  list(full = false): CacheEntryInfo[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root)
      .filter((name) => !name.startsWith(".") && statSync(join(this.root, name)).isDirectory())
      .filter((name) => name !== "tokenizers")
      .sort()
      .map((key) => {
        const dir = this.entryDir(key);
        let record: { description?: { component?: unknown; kind?: unknown }; created?: string } =
          {};
        try {
          record = JSON.parse(readFileSync(join(dir, ENTRY_FILE), "utf8"));
        } catch {
          // reported as the problem below
        }
        const component = record.description?.component ?? record.description?.kind;
        return {
          key,
          dir,
          component: typeof component === "string" ? component : undefined,
          created: record.created,
          bytes: filesUnder(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0),
          problem: this.verify(key, full),
        };
      });
  }

  /** Removes an entry. */
  remove(key: string): void {
    rmSync(this.entryDir(key), { recursive: true, force: true });
  }
}

function describeEntry(description: unknown): string {
  const component =
    description && typeof description === "object"
      ? ((description as Record<string, unknown>).component ??
        (description as Record<string, unknown>).kind)
      : undefined;
  return typeof component === "string" ? ` (${component})` : "";
}
