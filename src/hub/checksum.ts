/**
 * The hub's ETag of a file is a content hash: the sha256 of the bytes for LFS files (64 hex
 * digits), the git blob id for files kept in git (40 hex digits: sha1 of
 * `blob <size>\0` followed by the bytes). Both are checked while the bytes arrive, so a
 * finished transfer is verified without reading the file again.
 */
import { createHash, type Hash } from "node:crypto";

export type DigestKind = "sha256" | "git-sha1";

export function digestKindOfEtag(etag: string): DigestKind | undefined {
  if (/^[0-9a-f]{64}$/.test(etag)) return "sha256";
  if (/^[0-9a-f]{40}$/.test(etag)) return "git-sha1";
  return undefined;
}

export class ContentVerifier {
  readonly kind: DigestKind | undefined;
  private hash: Hash | undefined;

  /**
   * A git blob id needs the size up front; without it only LFS files can be verified, and
   * other ETags (from a mirror that makes its own) only by size.
   */
  constructor(
    readonly etag: string,
    readonly expectedSize: number | undefined,
  ) {
    const kind = digestKindOfEtag(etag);
    this.kind = kind === "git-sha1" && expectedSize === undefined ? undefined : kind;
    this.reset();
  }

  reset(): void {
    if (this.kind === "sha256") {
      this.hash = createHash("sha256");
    } else if (this.kind === "git-sha1") {
      this.hash = createHash("sha1").update(`blob ${this.expectedSize}\0`);
    } else {
      this.hash = undefined;
    }
  }

  update(chunk: Uint8Array): void {
    this.hash?.update(chunk);
  }

  /** Why the content is wrong, or `undefined` when it checks out. Ends this verifier. */
  mismatch(actualSize: number): string | undefined {
    if (this.expectedSize !== undefined && actualSize !== this.expectedSize) {
      return `expected ${this.expectedSize} bytes, got ${actualSize}`;
    }
    if (this.hash === undefined || this.kind === undefined) return undefined;
    const actual = this.hash.digest("hex");
    return actual === this.etag ? undefined : `expected ${this.kind} ${this.etag}, got ${actual}`;
  }
}
