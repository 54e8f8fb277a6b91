/**
 * Writing files so that readers never see a partial one: write under a temporary name beside the
 * target, then rename. A failed write leaves nothing behind.
 */
import { closeSync, linkSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

export function temporaryName(path: string): string {
  return `${path}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`;
}

/** Writes through `write(fd)` into a temporary file and renames it into place. */
export function writeFileAtomically(path: string, write: (fd: number) => void): void {
  const temp = temporaryName(path);
  let fd: number | undefined;
  try {
    fd = openSync(temp, "w");
    write(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temp, path);
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
}

/** Writes all of `bytes` to an open file. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

/** `bytes` to `path`, atomically; the error names the file. */
export function writeBytesAtomically(path: string, bytes: Uint8Array): void {
  try {
    writeFileAtomically(path, (fd) => writeAll(fd, bytes));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${path}: cannot write (${code ?? (error as Error).message})`);
  }
}

/** `path` with `-n` before its extension: `out/a.png`, 2 -> `out/a-2.png`. */
export function numberedName(path: string, n: number): string {
  const dot = path.lastIndexOf(".");
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return dot > slash + 1 ? `${path.slice(0, dot)}-${n}${path.slice(dot)}` : `${path}-${n}`;
}

/**
 * Writes `bytes` to `path` without ever replacing a file. The bytes go to a temporary file that is
 * then hard-linked to the name, which fails when the name is taken, so readers never see a
 * partial file and two writers never share a name. With `nextFree`, a taken name becomes
 * `name-1.ext`, `name-2.ext`, ...; without, it is an error. Returns the path written.
 */
export function writeBytesExclusively(
  path: string,
  bytes: Uint8Array,
  options: { readonly nextFree?: boolean } = {},
): string {
  const temp = temporaryName(path);
  try {
    writeFileAtomically(temp, (fd) => writeAll(fd, bytes));
    for (let n = 0; ; n++) {
      const candidate = n === 0 ? path : numberedName(path, n);
      try {
        linkSync(temp, candidate);
        return candidate;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EEXIST") {
          if (!options.nextFree) throw new Error(`${path} exists; it is never overwritten`);
          if (n >= 100_000) throw new Error(`${path}: no free name left`);
          continue;
        }
        // File systems without hard links: an exclusive create (not atomic, still never replacing).
        if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "EXDEV") {
          try {
            const fd = openSync(candidate, "wx");
            try {
              writeAll(fd, bytes);
            } finally {
              closeSync(fd);
            }
            return candidate;
          } catch (inner) {
            if ((inner as NodeJS.ErrnoException).code === "EEXIST" && options.nextFree) continue;
            throw inner;
          }
        }
        throw new Error(`${candidate}: cannot write (${code ?? (error as Error).message})`);
      }
    }
  } finally {
    rmSync(temp, { force: true });
  }
}

/** `<name>.<pid>.<random>.tmp`, as `temporaryName` (and the model cache's folders) make them. */
const TEMPORARY = /^(.+)\.(\d+)\.[0-9a-z]{1,12}\.tmp$/;

/** Whether process `pid` is alive on this machine (one we may not signal counts as alive). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The temporaries in `dir` left by writers that are no longer running (files or folders). */
export function staleTemporaries(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((name) => {
      const match = TEMPORARY.exec(name);
      return match !== null && !processAlive(Number(match[2]));
    })
    .map((name) => join(dir, name));
}

/**
 * Removes what writers killed mid-write (kill -9, a crash, a power cut) left in `dir`: their
 * temporaries carry their pid, so a dead writer's are safe to remove. Returns the paths removed.
 */
export function removeStaleTemporaries(dir: string): string[] {
  const stale = staleTemporaries(dir);
  for (const path of stale) rmSync(path, { recursive: true, force: true });
  return stale;
}
