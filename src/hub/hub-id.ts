/**
 * Hub model ids (`org/name`, `org/name@revision`) and the names derived from them. The rules
 * are the hub's own: each part of the id starts and ends with a letter, digit or underscore,
 * holds only letters, digits, `_`, `-` and `.`, has no `--` or `..`, and the whole id is at
 * most 96 characters.
 */
import { HubError } from "./errors.js";

export const DEFAULT_REVISION = "main";

export interface HubId {
  /** `org/name` */
  readonly repoId: string;
  /** The revision named after `@`, if any. */
  readonly revision?: string;
}

const ID_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const COMMIT_HASH = /^[0-9a-f]{40}$/;
const MAX_ID_LENGTH = 96;

/** Parses `org/name` or `org/name@revision`; throws a one-line `HubError` for anything else. */
export function parseHubId(text: string): HubId {
  const at = text.indexOf("@");
  const repoId = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? undefined : text.slice(at + 1);
  const problem = repoIdProblem(repoId);
  if (problem) {
    throw new HubError("invalid-id", `invalid hub id "${text}": ${problem}`);
  }
  if (revision !== undefined) {
    const revisionIssue = revisionProblem(revision);
    if (revisionIssue) {
      throw new HubError("invalid-id", `invalid revision in hub id "${text}": ${revisionIssue}`);
    }
  }
  return revision === undefined ? { repoId } : { repoId, revision };
}

/** True when `text` parses as a hub id (a caller still checks first whether it is a local path). */
export function isHubId(text: string): boolean {
  try {
    parseHubId(text);
    return true;
  } catch {
    return false;
  }
}

function repoIdProblem(repoId: string): string | undefined {
  const parts = repoId.split("/");
  if (parts.length !== 2) return "expected org/name, like stabilityai/sdxl-turbo";
  if (repoId.length > MAX_ID_LENGTH) return `longer than ${MAX_ID_LENGTH} characters`;
  if (repoId.includes("--") || repoId.includes("..")) return `"--" and ".." are not allowed`;
  if (repoId.endsWith(".git")) return `it must not end in ".git"`;
  for (const part of parts) {
    if (!ID_PART.test(part)) {
      return `"${part}" may hold only letters, digits, "_", "-" and ".", and must start and end with a letter, digit or "_"`;
    }
  }
  return undefined;
}

function revisionProblem(revision: string): string | undefined {
  if (revision.length === 0) return "it is empty";
  if (/[\s\\]/.test(revision) || hasControlCharacter(revision)) {
    return "spaces, backslashes and control characters are not allowed";
  }
  if (revision.split("/").some((part) => part === "" || part === "." || part === "..")) {
    return `empty, "." and ".." path parts are not allowed`;
  }
  return undefined;
}

/** Checks a revision given apart from the id (an option), with the same rules. */
export function checkRevision(revision: string): string {
  const problem = revisionProblem(revision);
  if (problem) throw new HubError("invalid-id", `invalid revision "${revision}": ${problem}`);
  return revision;
}

export function isCommitHash(revision: string): boolean {
  return COMMIT_HASH.test(revision);
}

/** The cache folder of a model repository: `models--org--name`. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split("/").join("--")}`;
}

/**
 * Checks a file path inside a repository (from the caller or from the hub's file list) before
 * it becomes a path on disk: relative, `/`-separated, no empty, `.` or `..` parts.
 */
export function checkRepoPath(path: string, repoId: string): string {
  const bad =
    path.length === 0 ||
    path.startsWith("/") ||
    path.includes("\\") ||
    hasControlCharacter(path) ||
    path.split("/").some((part) => part === "" || part === "." || part === "..");
  if (bad) {
    throw new HubError("invalid-path", `invalid file path "${path}" in ${repoId}`);
  }
  return path;
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
