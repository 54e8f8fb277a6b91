/**
 * Talking to the hub: request headers, the two metadata calls (the revision listing and the
 * HEAD of a file), and turning HTTP failures into one-line errors.
 *
 * The token goes only to the hub's own origin; a file served from elsewhere (LFS files are
 * redirected to a CDN with a signed URL) is fetched without it.
 */
import { HubError, isAbortError, networkReason } from "./errors.js";
import { isCommitHash } from "./hub-id.js";
import type { HubSettings } from "./settings.js";

/** What a failed request was about, for the error message. */
export interface RequestSubject {
  readonly repoId: string;
  readonly revision: string;
  /** The file, when the request was for one. */
  readonly file?: string;
}

export interface FileMetadata {
  /** The commit the revision resolved to (`X-Repo-Commit`). */
  readonly commit: string;
  /** The blob's name in the cache: the sha256 of an LFS file, the git blob sha1 otherwise. */
  readonly etag: string;
  /** The file's size in bytes, when the hub said. */
  readonly size: number | undefined;
  /** Where the bytes are: the resolve URL itself, or the CDN it redirects to. */
  readonly downloadUrl: string;
}

export interface RepoListing {
  readonly commit: string;
  readonly files: string[];
}

const MAX_REDIRECTS = 10;

export function requestHeaders(
  settings: HubSettings,
  url: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  const headers: Record<string, string> = {
    "User-Agent": "todo-sd",
    // Sizes and checksums are those of the raw bytes: never let a proxy compress them.
    "Accept-Encoding": "identity",
    ...extra,
  };
  if (settings.token !== undefined && sameOrigin(url, settings.endpoint)) {
    headers.Authorization = `Bearer ${settings.token}`;
  }
  return headers;
}

export function resolveUrl(settings: HubSettings, repoId: string, revision: string, file: string) {
  const path = file.split("/").map(encodeURIComponent).join("/");
  return `${settings.endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * Lists a repository at a revision through `GET /api/models/{repo}/revision/{revision}`,
 * which gives the commit (`sha`) and every file (`siblings[].rfilename`) in one small answer.
 * (The tree API would add sizes and LFS hashes, but pages its answer and does not name the
 * commit; sizes and hashes come with each file's HEAD anyway.)
 */
export async function fetchRepoListing(
  settings: HubSettings,
  subject: RequestSubject,
  signal?: AbortSignal,
): Promise<RepoListing> {
  const url = `${settings.endpoint}/api/models/${subject.repoId}/revision/${encodeURIComponent(subject.revision)}`;
  const response = await hubFetch(settings, url, { method: "GET", signal }, subject);
  if (!response.ok) throw await errorForResponse(response, settings, subject, "listing");
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    if (isAbortError(error)) throw cancelled(subject);
    throw notAHub(settings, `its listing of ${subject.repoId} is not JSON`);
  }
  const { sha, siblings } = (body ?? {}) as { sha?: unknown; siblings?: unknown };
  if (typeof sha !== "string" || !isCommitHash(sha) || !Array.isArray(siblings)) {
    throw notAHub(settings, `its listing of ${subject.repoId} has no commit sha or file list`);
  }
  const files = siblings.map((entry: unknown) => {
    const name = (entry as { rfilename?: unknown } | null)?.rfilename;
    if (typeof name !== "string") {
      throw notAHub(settings, `its listing of ${subject.repoId} has a file without a name`);
    }
    return name;
  });
  return { commit: sha, files };
}

/**
 * Asks the hub about one file with a HEAD request, following redirects within the hub (a
 * renamed repository, the hub's own file cache) and stopping at the first redirect elsewhere:
 * that response carries the LFS file's `X-Linked-Etag` and `X-Linked-Size`, and its
 * `Location` is where the bytes are downloaded from.
 */
export async function fetchFileMetadata(
  settings: HubSettings,
  subject: RequestSubject & { readonly file: string },
  signal?: AbortSignal,
): Promise<FileMetadata> {
  let url = resolveUrl(settings, subject.repoId, subject.revision, subject.file);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const response = await hubFetch(
      settings,
      url,
      { method: "HEAD", redirect: "manual", signal },
      subject,
    );
    let downloadUrl = url;
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get("location");
      if (!location) throw notAHub(settings, `a redirect for ${subject.file} has no Location`);
      const target = new URL(location, url).toString();
      if (sameOrigin(target, url)) {
        url = target;
        continue;
      }
      downloadUrl = target;
    } else if (!response.ok) {
      throw await errorForResponse(response, settings, subject, "file");
    }
    return metadataFrom(response.headers, downloadUrl, settings, subject.file);
  }
  throw notAHub(settings, `more than ${MAX_REDIRECTS} redirects for ${subject.file}`);
}

function metadataFrom(
  headers: Headers,
  downloadUrl: string,
  settings: HubSettings,
  file: string,
): FileMetadata {
  const commit = headers.get("x-repo-commit");
  if (!commit || !isCommitHash(commit)) {
    throw notAHub(settings, `no X-Repo-Commit header for ${file}`);
  }
  const rawEtag = headers.get("x-linked-etag") ?? headers.get("etag");
  const etag = rawEtag === null ? undefined : normalizeEtag(rawEtag);
  if (etag === undefined) {
    throw notAHub(settings, `no usable ETag for ${file}`);
  }
  const sizeText = headers.get("x-linked-size") ?? headers.get("content-length");
  const size = sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
  return { commit, etag, size, downloadUrl };
}

/**
 * The ETag as a blob name: without the weak-validator prefix `W/` and the quotes. Anything
 * that would not be a plain file name is refused.
 */
export function normalizeEtag(raw: string): string | undefined {
  let value = raw.trim();
  if (value.startsWith("W/") || value.startsWith("w/")) value = value.slice(2);
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) ? value : undefined;
}

/** `fetch` whose network failures and cancellations become `HubError`s. */
export async function hubFetch(
  settings: HubSettings,
  url: string,
  init: RequestInit & { headers?: Record<string, string> },
  subject: RequestSubject,
): Promise<Response> {
  try {
    return await fetch(url, { ...init, headers: requestHeaders(settings, url, init.headers) });
  } catch (error) {
    if (isAbortError(error)) throw cancelled(subject);
    throw networkError(url, error);
  }
}

export function networkError(url: string, error: unknown): HubError {
  return new HubError(
    "network",
    `cannot reach ${new URL(url).origin} (${networkReason(error)}): check the connection, or set HF_HUB_OFFLINE=1 to use cached files only`,
  );
}

export function cancelled(subject: RequestSubject): HubError {
  const what = subject.file ? `${subject.file} from ${subject.repoId}` : subject.repoId;
  return new HubError("cancelled", `download of ${what} was cancelled; run it again to resume`);
}

function notAHub(settings: HubSettings, detail: string): HubError {
  return new HubError(
    "bad-response",
    `${settings.endpoint} does not answer like a Hugging Face hub (${detail}); check HF_ENDPOINT`,
  );
}

/**
 * One line per failure, following the hub's `X-Error-Code` where it gives one. Without a
 * token the hub answers 401 for private repositories and for ones that do not exist alike.
 */
export async function errorForResponse(
  response: Response,
  settings: HubSettings,
  subject: RequestSubject,
  request: "listing" | "file" | "transfer",
): Promise<HubError> {
  await response.body?.cancel().catch(() => undefined);
  const status = response.status;
  const code = response.headers.get("x-error-code");
  const { repoId, revision, file } = subject;
  const hasToken = settings.token !== undefined;
  const tokenHint = hasToken
    ? "the token in use has no access to it"
    : "set HF_TOKEN to a token with access";
  if (code === "GatedRepo") {
    return new HubError(
      "gated",
      `${repoId} is gated (HTTP ${status}): accept its conditions on its hub page, then ${hasToken ? "make sure the token in use belongs to that account" : "set HF_TOKEN to a token of that account"}`,
    );
  }
  if (code === "RepoNotFound" || (request === "listing" && status === 404)) {
    return new HubError(
      "repo-not-found",
      `repository ${repoId} not found on ${settings.endpoint} (HTTP ${status}); if it is private or gated, ${tokenHint}`,
    );
  }
  if (code === "RevisionNotFound") {
    return new HubError(
      "revision-not-found",
      `revision "${revision}" not found in ${repoId} (HTTP ${status})`,
    );
  }
  if (code === "EntryNotFound" || (request === "file" && status === 404)) {
    return new HubError(
      "file-not-found",
      `file "${file}" not found in ${repoId} at revision ${revision} (HTTP ${status})`,
    );
  }
  if (status === 401 || status === 403) {
    return new HubError(
      "unauthorized",
      `access to ${repoId} denied (HTTP ${status}): it is private or gated; ${tokenHint}`,
    );
  }
  const what = file ? `${file} from ${repoId}` : repoId;
  if (status === 429 || status >= 500) {
    return new HubError(
      "server",
      `the hub answered HTTP ${status} for ${what}; try again later (a resumed download keeps what it has)`,
    );
  }
  return new HubError("bad-response", `unexpected HTTP ${status} from the hub for ${what}`);
}

export function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}
