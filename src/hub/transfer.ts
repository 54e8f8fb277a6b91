/**
 * Moving one blob's bytes into the cache. The bytes go to `blobs/<etag>.incomplete`; a
 * transfer that breaks off (a dropped connection, a cancelled run, a killed process) leaves
 * that file behind, and the next attempt, in this run or a later one, asks only for the rest
 * with `Range: bytes=<have>-`. A server that ignores the range (200 instead of 206) restarts
 * the file. The finished file is checked against its ETag and size, then renamed to
 * `blobs/<etag>`, so a blob under its final name is always whole and verified.
 *
 * Concurrency: the caller holds the blob's lock, so only one writer appends to an
 * `.incomplete` file. Should a lock fail (a network file system that does not honour
 * exclusive creation), the damage stays out of `blobs/<etag>`: all attempts write through one
 * open handle, the hash covers exactly the bytes written through it, and the rename happens
 * only if the name still points at that same file and the hash matches. (The newest Python
 * client gives each process its own temporary file instead, and gives up resuming across
 * runs; a leftover `.incomplete` of ours is simply ignored by it.)
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ContentVerifier } from "./checksum.js";
import { HubError, isAbortError } from "./errors.js";
import {
  cancelled,
  errorForResponse,
  hubFetch,
  networkError,
  type RequestSubject,
} from "./http.js";
import type { HubSettings } from "./settings.js";

/** Called as bytes arrive: the repository path, bytes received so far, and the total if known. */
export type ProgressCallback = (
  file: string,
  receivedBytes: number,
  totalBytes: number | undefined,
) => void;

export interface TransferRequest {
  readonly settings: HubSettings;
  readonly subject: RequestSubject & { readonly file: string };
  readonly url: string;
  readonly etag: string;
  readonly expectedSize: number | undefined;
  readonly incompletePath: string;
  readonly blobPath: string;
  /** Further attempts after a dropped connection, each resuming where the last one stopped. */
  readonly maxRetries: number;
  readonly onProgress?: ProgressCallback;
  readonly signal?: AbortSignal;
}

const MAX_BACKOFF_MS = 2_000;

export async function transferBlob(request: TransferRequest): Promise<void> {
  const { subject, incompletePath } = request;
  const verifier = new ContentVerifier(request.etag, request.expectedSize);
  mkdirSync(dirname(incompletePath), { recursive: true });
  // One handle for every attempt, so all bytes land in one file even if the name is reused.
  const file = await open(incompletePath, "a+");
  let received: number;
  let sameFile: boolean;
  try {
    received = await receiveAll(request, file, verifier);
    const held = await file.stat();
    const named = existsSync(incompletePath) ? statSync(incompletePath) : undefined;
    sameFile = named !== undefined && named.ino === held.ino && named.dev === held.dev;
  } catch (error) {
    // Keep what arrived for the next run; an empty file is not worth keeping.
    const empty = (await file.stat()).size === 0;
    await file.close();
    if (empty) rmSync(incompletePath, { force: true });
    throw error;
  }
  await file.close();
  if (!sameFile) {
    throw new HubError(
      "checksum",
      `the partial download of ${subject.file} from ${subject.repoId} was removed or replaced by another process; run it again`,
    );
  }
  const problem = verifier.mismatch(received);
  if (problem !== undefined) {
    rmSync(incompletePath, { force: true });
    throw new HubError(
      "checksum",
      `checksum mismatch for ${subject.file} from ${subject.repoId}: ${problem}; the download was deleted, run it again`,
    );
  }
  renameSync(incompletePath, request.blobPath);
}

/** Fills the file, resuming after dropped connections; returns its final size. */
async function receiveAll(
  request: TransferRequest,
  file: FileHandle,
  verifier: ContentVerifier,
): Promise<number> {
  const { subject, expectedSize, signal } = request;
  let received = (await file.stat()).size;
  if (expectedSize !== undefined && received > expectedSize) {
    await file.truncate(0);
    received = 0;
  }
  if (received > 0) await hashExisting(file, received, verifier, request);
  let failures = 0;
  let restarted = false;
  let total = expectedSize;
  for (;;) {
    if (signal?.aborted) throw cancelled(subject);
    if (expectedSize !== undefined && received === expectedSize) return received;
    request.onProgress?.(subject.file, received, total);
    const before = received;
    const outcome = await attempt(request, file, received, verifier);
    received = outcome.received;
    if (outcome.total !== undefined) total = outcome.total;
    if (outcome.kind === "restart") {
      if (restarted) {
        throw new HubError(
          "bad-response",
          `the server keeps answering ranges it was not asked for while sending ${subject.file}`,
        );
      }
      restarted = true;
      continue;
    }
    if (outcome.kind === "complete" && (expectedSize === undefined || received >= expectedSize)) {
      return received;
    }
    // A dropped connection, or a body that ended early: resume unless it keeps failing.
    failures = received > before ? 1 : failures + 1;
    if (failures > request.maxRetries) {
      throw outcome.kind === "failed"
        ? outcome.error
        : new HubError(
            "network",
            `the transfer of ${subject.file} from ${subject.repoId} ended early at ${received} bytes; run it again to resume`,
          );
    }
    try {
      await sleep(Math.min(100 * 2 ** (failures - 1), MAX_BACKOFF_MS), undefined, { signal });
    } catch {
      throw cancelled(subject);
    }
  }
}

type AttemptOutcome =
  | { kind: "complete"; received: number; total: number | undefined }
  | { kind: "restart"; received: 0; total: number | undefined }
  | { kind: "failed"; received: number; total: number | undefined; error: HubError };

/** One GET: appends what arrives; dropped connections are reported, not thrown. */
async function attempt(
  request: TransferRequest,
  file: FileHandle,
  offset: number,
  verifier: ContentVerifier,
): Promise<AttemptOutcome> {
  const { settings, subject, url, signal } = request;
  const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
  let response: Response;
  try {
    response = await hubFetch(settings, url, { method: "GET", headers, signal }, subject);
  } catch (error) {
    if (error instanceof HubError && error.code === "network") {
      return { kind: "failed", received: offset, total: request.expectedSize, error };
    }
    throw error;
  }
  let start: number;
  if (response.status === 206 && offset > 0) {
    start = rangeStart(response.headers.get("content-range")) ?? -1;
  } else if (response.status === 200) {
    start = 0;
  } else if (response.status === 416 && offset > 0) {
    start = -1;
  } else {
    throw await errorForResponse(response, settings, subject, "transfer");
  }
  if (start !== offset) {
    // The server sends the whole file (or a part we did not ask for): start over.
    verifier.reset();
    await file.truncate(0);
    if (start !== 0) {
      await response.body?.cancel().catch(() => undefined);
      return { kind: "restart", received: 0, total: request.expectedSize };
    }
  }
  const lengthText = response.headers.get("content-length");
  const total =
    request.expectedSize ??
    (lengthText !== null && /^\d+$/.test(lengthText) ? start + Number(lengthText) : undefined);
  let received = start;
  const reader = response.body?.getReader();
  if (reader === undefined) return { kind: "complete", received, total };
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (isAbortError(error) || signal?.aborted) throw cancelled(subject);
      return { kind: "failed", received, total, error: networkError(url, error) };
    }
    if (chunk.done) break;
    // The file is open for appending: every write lands at its end.
    await file.write(chunk.value);
    verifier.update(chunk.value);
    received += chunk.value.byteLength;
    request.onProgress?.(subject.file, received, total);
  }
  return { kind: "complete", received, total };
}

/** The first byte of a `Content-Range: bytes <first>-<last>/<total>` answer. */
function rangeStart(header: string | null): number | undefined {
  const match = header === null ? null : /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim());
  return match ? Number(match[1]) : undefined;
}

/** Feeds the bytes kept from an earlier run to the verifier. */
async function hashExisting(
  file: FileHandle,
  length: number,
  verifier: ContentVerifier,
  request: TransferRequest,
): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(length, 1 << 20));
  for (let position = 0; position < length; ) {
    if (request.signal?.aborted) throw cancelled(request.subject);
    const { bytesRead } = await file.read(
      buffer,
      0,
      Math.min(buffer.length, length - position),
      position,
    );
    if (bytesRead === 0) break;
    verifier.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}
