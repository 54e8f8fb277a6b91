/**
 * A lock between processes (and between downloads in one process) built on exclusive file
 * creation, the one atomic primitive Node offers on every platform. The holder writes its
 * pid, host and a random nonce into the file and touches it while it works; a waiter polls,
 * and takes the lock over when its holder is gone: a dead pid on the same host, or no touch
 * for `staleMs` (a holder on another host sharing the cache, or a reused pid).
 *
 * Taking over is a rename of the stale file to a private name followed by a check that the
 * renamed file is the one judged stale; if a live lock was caught instead it is put back. A
 * narrow race remains where two waiters take over the same stale lock at once; the downloads
 * it protects are verified against their checksum, so the worst outcome is an error and a
 * retry, never a corrupt blob.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processAlive } from "../util/atomic-write.js";

export interface FileLockOptions {
  readonly signal?: AbortSignal;
  /** A lock untouched this long is abandoned (ms). */
  readonly staleMs?: number;
  /** How often a waiter looks again (ms). */
  readonly pollMs?: number;
}

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly nonce: string;
}

export type ReleaseLock = () => void;

const DEFAULT_STALE_MS = 60_000;
const DEFAULT_POLL_MS = 100;

/** Waits until the lock at `path` is ours; the returned function releases it. */
export async function acquireFileLock(
  path: string,
  options: FileLockOptions = {},
): Promise<ReleaseLock> {
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  mkdirSync(dirname(path), { recursive: true });
  const owner: LockOwner = {
    pid: process.pid,
    host: hostname(),
    nonce: randomBytes(8).toString("hex"),
  };
  const content = JSON.stringify(owner);
  for (;;) {
    options.signal?.throwIfAborted();
    if (tryCreate(path, content)) return holdLock(path, owner.nonce, staleMs);
    const current = readLock(path);
    if (current !== undefined && isStale(path, current.owner, staleMs)) {
      takeOver(path, current.text);
      continue;
    }
    if (current === undefined) continue;
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}

/** `run()`, or `undefined` where it fails with the system error `code` (an expected outcome). */
function unlessErrno<T>(code: string, run: () => T): T | undefined {
  try {
    return run();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === code) return undefined;
    throw error;
  }
}

function tryCreate(path: string, content: string): boolean {
  const fd = unlessErrno("EEXIST", () => openSync(path, "wx"));
  if (fd === undefined) return false;
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function holdLock(path: string, nonce: string, staleMs: number): ReleaseLock {
  const heartbeat = setInterval(
    () => {
      try {
        const now = new Date();
        utimesSync(path, now, now);
      } catch {
        // The file is gone (taken over after a long stall); the checksum still guards the blob.
      }
    },
    Math.max(10, Math.floor(staleMs / 4)),
  );
  heartbeat.unref();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    if (readLock(path)?.owner?.nonce === nonce) rmSync(path, { force: true });
  };
}

/** The lock's text and owner; `undefined` when the file vanished meanwhile. */
function readLock(path: string): { text: string; owner: LockOwner | undefined } | undefined {
  const text = unlessErrno("ENOENT", () => readFileSync(path, "utf8"));
  return text === undefined ? undefined : { text, owner: parseOwner(text) };
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null) return undefined;
    const { pid, host, nonce } = value as Record<string, unknown>;
    if (typeof pid !== "number" || typeof host !== "string" || typeof nonce !== "string") {
      return undefined;
    }
    return { pid, host, nonce };
  } catch {
    // A holder between create and write, or a foreign file: judged by age alone.
    return undefined;
  }
}

function isStale(path: string, owner: LockOwner | undefined, staleMs: number): boolean {
  if (owner && owner.host === hostname() && !processAlive(owner.pid)) return true;
  try {
    return Date.now() - statSync(path).mtimeMs > staleMs;
  } catch {
    return false;
  }
}

function takeOver(path: string, staleText: string): void {
  const aside = `${path}.${randomBytes(4).toString("hex")}.stale`;
  const renamed = unlessErrno("ENOENT", () => {
    renameSync(path, aside);
    return true;
  });
  if (!renamed) return; // The stale lock is gone already.
  try {
    if (readFileSync(aside, "utf8") !== staleText) {
      // Another waiter replaced the stale lock first: give its live lock back.
      try {
        linkSync(aside, path);
      } catch {
        // Someone created a new lock in between; it stands.
      }
    }
  } finally {
    rmSync(aside, { force: true });
  }
}
