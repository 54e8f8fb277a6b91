/**
 * Every failure of a hub download is one `HubError` with a one-line message that says what
 * went wrong and what to do, and a `code` a caller (the CLI, the web app) can branch on.
 * Messages never contain the access token.
 */

export type HubErrorCode =
  | "invalid-id"
  | "invalid-path"
  | "unauthorized"
  | "gated"
  | "repo-not-found"
  | "revision-not-found"
  | "file-not-found"
  | "not-a-pipeline"
  | "variant-not-found"
  | "network"
  | "server"
  | "bad-response"
  | "checksum"
  | "offline-miss"
  | "cancelled";

export class HubError extends Error {
  override readonly name = "HubError";

  constructor(
    readonly code: HubErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The short reason a low-level network failure gives (`ECONNREFUSED`, `other side closed`). */
export function networkReason(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && code.length > 0) return code;
    const cause: unknown = (current as { cause?: unknown }).cause;
    if (!(cause instanceof Error)) return current.message;
    current = cause;
  }
  return String(error);
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}
