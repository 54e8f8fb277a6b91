/**
 * A whole diffusers pipeline from the hub: list the repository at the revision (which fixes
 * the commit, so every file comes from the same one), fetch `model_index.json`, choose the
 * component files (pipeline-files.ts), fetch them. The result is the snapshot folder, a
 * plain diffusers folder on disk.
 *
 * A second call costs one listing request: every file is looked up in the commit's snapshot
 * before any request about it. Offline, or when the hub cannot be reached, the revision
 * resolves through the cache's `refs/` and the same choice runs over the snapshot's files.
 */
import { readFileSync } from "node:fs";
import {
  type DownloadOptions,
  fetchIntoCache,
  offlineMiss,
  openRepoContext,
  type RepoContext,
} from "./download-file.js";
import { HubError } from "./errors.js";
import { fetchRepoListing } from "./http.js";
import { MODEL_INDEX, planPipelineFiles, shardFilesOf } from "./pipeline-files.js";

export interface PipelineDownloadOptions extends DownloadOptions {
  /** Weights variant such as `fp16`; components without it get their plain weights. */
  readonly variant?: string;
  /** Components of `model_index.json` not to download (say `safety_checker`). */
  readonly skipComponents?: readonly string[];
}

/** Downloads the pipeline `org/name[@revision]` and returns its local diffusers folder. */
export async function downloadPipeline(
  hubId: string,
  options: PipelineDownloadOptions = {},
): Promise<string> {
  const context = openRepoContext(hubId, options);
  const { commit, files, unreachable } = await listRepository(context);
  const { repoId } = context;
  if (!files.includes(MODEL_INDEX)) {
    if (unreachable) throw unreachable;
    if (context.settings.offline) throw offlineMiss(context, context.revision, MODEL_INDEX);
    throw new HubError(
      "not-a-pipeline",
      `${repoId} has no ${MODEL_INDEX}, so it is not a diffusers pipeline; download single files with downloadFile`,
    );
  }
  const modelIndex = readJson(await fetchIntoCache(context, MODEL_INDEX, commit), MODEL_INDEX);
  const plan = planPipelineFiles(files, modelIndex, {
    repoId,
    variant: options.variant,
    skipComponents: options.skipComponents,
  });
  for (const file of plan.files.slice(1)) await fetchIntoCache(context, file, commit);
  for (const index of plan.shardIndexes) {
    const indexPath = await fetchIntoCache(context, index, commit);
    for (const shard of shardFilesOf(readJson(indexPath, index), index, repoId)) {
      await fetchIntoCache(context, shard, commit);
    }
  }
  return context.cache.snapshotDir(commit);
}

interface Listing {
  readonly commit: string;
  readonly files: string[];
  /** Set when the hub could not be reached and the listing is the cached snapshot's. */
  readonly unreachable?: HubError;
}

async function listRepository(context: RepoContext): Promise<Listing> {
  const { cache, revision, settings } = context;
  if (settings.offline) {
    const commit = cache.resolveCommit(revision);
    if (commit === undefined) throw offlineMiss(context, revision);
    return { commit, files: cache.listSnapshotFiles(commit) };
  }
  try {
    const listing = await fetchRepoListing(
      settings,
      { repoId: context.repoId, revision },
      context.signal,
    );
    cache.writeRef(revision, listing.commit);
    return listing;
  } catch (error) {
    const unreachable = error instanceof HubError && error.code === "network" ? error : undefined;
    const commit = unreachable && cache.resolveCommit(revision);
    if (!commit) throw error;
    return { commit, files: cache.listSnapshotFiles(commit), unreachable };
  }
}

function readJson(path: string, name: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new HubError("bad-response", `${name} is not valid JSON (${path})`);
  }
}
