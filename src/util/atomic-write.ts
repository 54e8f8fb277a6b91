/**
 * Writing files so that readers never see a partial one: write under a temporary name beside the
 * target, then rename. A failed write leaves nothing behind.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

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
