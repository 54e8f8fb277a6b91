import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, statSync } from "node:fs";

/**
 * Identity of a weight file without reading it whole: size, modification time and a hash of its
 * first MiB (which, for safetensors, holds the header: every tensor's name, dtype, shape and
 * offsets). The path is left out so that a moved model still hits the cache.
 */
export function fileIdentity(path: string): Record<string, string | number> {
  const stat = statSync(path);
  const fd = openSync(path, "r");
  try {
    const head = new Uint8Array(Math.min(stat.size, 1024 * 1024));
    readSync(fd, head, 0, head.byteLength, 0);
    const digest = createHash("sha256").update(head).digest("hex").slice(0, 16);
    return { size: stat.size, mtime: Math.round(stat.mtimeMs), head: digest };
  } finally {
    closeSync(fd);
  }
}
