/**
 * One file from a hub repository into the cache, the way the Python client does it, so that
 * either finds what the other downloaded:
 *
 * 1. Offline: the revision resolves through `refs/` to a snapshot, and the file is there or
 *    it is an error. No network at all.
 * 2. A commit hash whose snapshot has the file: done, no network.
 * 3. Otherwise a HEAD gives the commit, the ETag (the blob's name) and the size. If the hub
 *    cannot be reached, the cache answers as in 1.
 * 4. The file in that commit's snapshot: done. Its blob already there (the same bytes in
 *    another revision): link it. Otherwise take the blob's lock, download and verify it
 *    (transfer.ts), and link it.
 *
 * Two processes fetching the same blob: the second waits on the lock, then finds the blob.
 */
import { statSync } from "node:fs";
import { HubCache } from "./cache.js";
import { HubError } from "./errors.js";
import { acquireFileLock } from "./file-lock.js";
import { cancelled, type FileMetadata, fetchFileMetadata } from "./http.js";
import {
  checkRepoPath,
  checkRevision,
  DEFAULT_REVISION,
  isCommitHash,
  parseHubId,
} from "./hub-id.js";
import { type HubSettings, type HubSettingsOptions, resolveHubSettings } from "./settings.js";
import { type ProgressCallback, transferBlob } from "./transfer.js";

export interface DownloadOptions extends HubSettingsOptions {
  /** A branch, tag or commit hash; default `main` (or the `@revision` of the id). */
  readonly revision?: string;
  readonly onProgress?: ProgressCallback;
  readonly signal?: AbortSignal;
  /** Resumed attempts after a dropped connection without progress (default 5). */
  readonly maxRetries?: number;
}

export const DEFAULT_MAX_RETRIES = 5;

/** What every file fetch of one call shares. */
export interface RepoContext {
  readonly settings: HubSettings;
  readonly cache: HubCache;
  readonly repoId: string;
  readonly revision: string;
  readonly maxRetries: number;
  readonly onProgress?: ProgressCallback;
  readonly signal?: AbortSignal;
}

/**
 * Downloads `filename` (a path inside the repository, like `unet/config.json`) from the hub id
 * `org/name[@revision]` and returns its path in the cache's snapshot folder.
 */
export async function downloadFile(
  hubId: string,
  filename: string,
  options: DownloadOptions = {},
): Promise<string> {
  const context = openRepoContext(hubId, options);
  return fetchIntoCache(context, filename, context.revision);
}

export function openRepoContext(hubId: string, options: DownloadOptions): RepoContext {
  const id = parseHubId(hubId);
  if (
    id.revision !== undefined &&
    options.revision !== undefined &&
    id.revision !== options.revision
  ) {
    throw new HubError(
      "invalid-id",
      `hub id "${hubId}" names revision ${id.revision} but the options name ${options.revision}; give one`,
    );
  }
  const revision = checkRevision(id.revision ?? options.revision ?? DEFAULT_REVISION);
  const settings = resolveHubSettings(options);
  return {
    settings,
    cache: new HubCache(settings.cacheDir, id.repoId),
    repoId: id.repoId,
    revision,
    maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
    onProgress: options.onProgress,
    signal: options.signal,
  };
}

export async function fetchIntoCache(
  context: RepoContext,
  file: string,
  revision: string,
): Promise<string> {
  const { cache, repoId, settings, signal } = context;
  checkRepoPath(file, repoId);
  if (settings.offline) return fromCacheOnly(context, file, revision);
  if (isCommitHash(revision)) {
    const cached = cache.cachedFile(revision, file);
    if (cached) return reportCached(context, file, cached);
  }
  let metadata: FileMetadata;
  try {
    metadata = await fetchFileMetadata(settings, { repoId, revision, file }, signal);
  } catch (error) {
    // Like the Python client: when the hub cannot be reached, a cached copy will do.
    const unreachable = error instanceof HubError && error.code === "network";
    const commit = unreachable ? cache.resolveCommit(revision) : undefined;
    const path = commit === undefined ? undefined : cache.cachedFile(commit, file);
    if (path === undefined) throw error;
    return reportCached(context, file, path);
  }
  if (metadata.commit !== revision) cache.writeRef(revision, metadata.commit);
  const cached = cache.cachedFile(metadata.commit, file);
  if (cached) return reportCached(context, file, cached);
  const subject = { repoId, revision, file };
  let transferred = false;
  cache.tagCacheDir();
  if (!cache.hasBlob(metadata.etag)) {
    const release = await acquireFileLock(cache.lockPath(metadata.etag), { signal }).catch(
      (error: unknown) => {
        throw signal?.aborted ? cancelled(subject) : error;
      },
    );
    try {
      // Another process may have finished it while we waited.
      if (!cache.hasBlob(metadata.etag)) {
        await transferBlob({
          settings,
          subject,
          url: metadata.downloadUrl,
          etag: metadata.etag,
          expectedSize: metadata.size,
          incompletePath: cache.incompletePath(metadata.etag),
          blobPath: cache.blobPath(metadata.etag),
          maxRetries: context.maxRetries,
          onProgress: context.onProgress,
          signal,
        });
        transferred = true;
      }
    } finally {
      release();
    }
  }
  const path = cache.linkIntoSnapshot(metadata.commit, file, metadata.etag);
  return transferred ? path : reportCached(context, file, path);
}

function fromCacheOnly(context: RepoContext, file: string, revision: string): string {
  const commit = context.cache.resolveCommit(revision);
  const path = commit === undefined ? undefined : context.cache.cachedFile(commit, file);
  if (path === undefined) throw offlineMiss(context, revision, file);
  return reportCached(context, file, path);
}

export function offlineMiss(context: RepoContext, revision: string, file?: string): HubError {
  const repo = `${context.repoId}@${revision}`;
  const what = file === undefined ? repo : `${file} of ${repo}`;
  return new HubError(
    "offline-miss",
    `${what} is not in the cache at ${context.settings.cacheDir} and offline mode is on; download it once online, or turn offline mode off`,
  );
}

/** A file served from the cache still reports its (complete) progress once. */
function reportCached(context: RepoContext, file: string, path: string): string {
  if (context.onProgress) {
    const size = statSync(path).size;
    context.onProgress(file, size, size);
  }
  return path;
}
