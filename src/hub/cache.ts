import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import {
  temporaryName,
  writeAll,
  writeFileAtomically as writeFileAtomicallyWith,
} from "../util/atomic-write.js";
import { isCommitHash, repoFolderName } from "./hub-id.js";

const CACHEDIR_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55";

export class HubCache {
  readonly repoDir: string;
  private readonly lockDir: string;

  constructor(
    readonly cacheDir: string,
    readonly repoId: string,
  ) {
    const folder = repoFolderName(repoId);
    this.repoDir = join(cacheDir, folder);
    this.lockDir = join(cacheDir, ".locks", folder);
  }

  blobPath(etag: string): string {
    return join(this.repoDir, "blobs", etag);
  }

  incompletePath(etag: string): string {
    return `${this.blobPath(etag)}.incomplete`;
  }

  /**
   * Our lock file for one blob. The Python client keeps `<etag>.lock` in the same folder as
   * an OS-level lock whose file stays behind after use; we cannot take that kind of lock from
   * Node, so ours has its own name and is created exclusively (see file-lock.ts).
   */
  lockPath(etag: string): string {
    return join(this.lockDir, `${etag}.todo-sd.lock`);
  }

  snapshotDir(commit: string): string {
    return join(this.repoDir, "snapshots", commit);
  }

  pointerPath(commit: string, file: string): string {
    return join(this.snapshotDir(commit), ...file.split("/"));
  }

  /** The commit a revision resolves to without the network, if the cache knows it. */
  resolveCommit(revision: string): string | undefined {
    if (isCommitHash(revision)) return revision;
    const refFile = join(this.repoDir, "refs", ...revision.split("/"));
    if (!existsSync(refFile) || !statSync(refFile).isFile()) return undefined;
    const commit = readFileSync(refFile, "utf8").trim();
    return isCommitHash(commit) ? commit : undefined;
  }

  /** Records that `revision` points to `commit` (nothing to record for a commit hash). */
  writeRef(revision: string, commit: string): void {
    if (revision === commit || this.resolveCommit(revision) === commit) return;
    writeFileAtomically(join(this.repoDir, "refs", ...revision.split("/")), commit);
  }

  /** The snapshot path of a file if it is cached (a link whose blob is gone does not count). */
  cachedFile(commit: string, file: string): string | undefined {
    const pointer = this.pointerPath(commit, file);
    return existsSync(pointer) ? pointer : undefined;
  }

  /**
   * Tags the cache folder as a cache (https://bford.info/cachedir/) so backup tools skip it,
   * as the Python client does.
   */
  tagCacheDir(): void {
    const tag = join(this.cacheDir, "CACHEDIR.TAG");
    if (existsSync(tag)) return;
    writeFileAtomically(
      tag,
      `${CACHEDIR_SIGNATURE}\n# A Hugging Face Hub cache: its files can be downloaded again.\n`,
    );
  }

  hasBlob(etag: string): boolean {
    return existsSync(this.blobPath(etag));
  }

  /** Makes `snapshots/<commit>/<file>` a relative link to the blob; returns the link's path. */
  linkIntoSnapshot(commit: string, file: string, etag: string): string {
    const pointer = this.pointerPath(commit, file);
    mkdirSync(dirname(pointer), { recursive: true });
    const target = relative(dirname(pointer), this.blobPath(etag));
    const temporary = temporaryName(pointer);
    symlinkSync(target, temporary);
    try {
      renameSync(temporary, pointer);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    }
    return pointer;
  }

  /** Every file of a cached snapshot, as repository paths (`unet/config.json`). */
  listSnapshotFiles(commit: string): string[] {
    const root = this.snapshotDir(commit);
    const files: string[] = [];
    const walk = (dir: string, prefix: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        const name = prefix + entry.name;
        if (entry.isDirectory()) walk(path, `${name}/`);
        else if (existsSync(path) && statSync(path).isFile()) files.push(name);
      }
    };
    if (existsSync(root)) walk(root, "");
    return files.sort();
  }
}

export function writeFileAtomically(path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomicallyWith(path, (fd) =>
    writeAll(fd, typeof content === "string" ? new TextEncoder().encode(content) : content),
  );
}
