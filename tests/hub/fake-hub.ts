// A local stand-in for the Hugging Face Hub, with the hub's URL layout and headers, and a
// second server on another origin standing in for the CDN that LFS files are redirected to.
// It records every request and can break transfers on purpose.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface FakeRepo {
  readonly repoId: string;
  readonly commit: string;
  readonly files: ReadonlyMap<string, Uint8Array>;
  /** Other branch or tag names that point at the commit (`main` always does). */
  readonly aliases?: readonly string[];
  /** Requests without this bearer token get 401 GatedRepo. */
  readonly gatedToken?: string;
}

export interface RecordedRequest {
  readonly server: "hub" | "cdn";
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
}

const LFS_EXTENSIONS = /\.(safetensors|bin|msgpack|onnx|ckpt|pt|pth|h5)$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function gitBlobId(bytes: Uint8Array): string {
  return createHash("sha1").update(`blob ${bytes.byteLength}\0`).update(bytes).digest("hex");
}

export function isLfs(path: string): boolean {
  return LFS_EXTENSIONS.test(path);
}

/** The hub's ETag of a file: sha256 for LFS files, the git blob id otherwise. */
export function etagOf(path: string, bytes: Uint8Array): string {
  return isLfs(path) ? sha256Hex(bytes) : gitBlobId(bytes);
}

export function commitOf(name: string): string {
  return createHash("sha1").update(name).digest("hex");
}

/** Every file under a folder, keyed by its `/`-separated path relative to the folder. */
export function readFolder(root: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const walk = (dir: string, prefix: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name), `${prefix}${entry.name}/`);
      else files.set(`${prefix}${entry.name}`, readFileSync(join(dir, entry.name)));
    }
  };
  walk(root, "");
  return files;
}

export class FakeHub {
  readonly requests: RecordedRequest[] = [];
  /** Repository paths (`org/name:unet/x.safetensors`) whose next transfer is cut mid-body. */
  readonly interruptOnce = new Set<string>();
  /** Repository paths whose transfers always have one byte flipped. */
  readonly corrupt = new Set<string>();
  /** Repository paths whose transfers send half the body, then wait for the client to leave. */
  readonly stall = new Set<string>();
  /** Repository paths the CDN answers with an error status instead of bytes. */
  readonly cdnStatus = new Map<string, number>();
  /** When set, the CDN ignores Range headers and always answers 200 with the whole file. */
  ignoreRanges = false;
  private readonly byBlob = new Map<string, { key: string; bytes: Uint8Array }>();

  private constructor(
    private readonly repos: readonly FakeRepo[],
    private readonly hubServer: Server,
    private readonly cdnServer: Server,
  ) {
    for (const repo of repos) {
      for (const [path, bytes] of repo.files) {
        this.byBlob.set(sha256Hex(bytes), { key: `${repo.repoId}:${path}`, bytes });
      }
    }
  }

  static async start(repos: readonly FakeRepo[]): Promise<FakeHub> {
    let hub: FakeHub | undefined;
    const hubServer = createServer((req, res) => hub!.serveHub(req, res));
    const cdnServer = createServer((req, res) => hub!.serveCdn(req, res));
    hub = new FakeHub(repos, hubServer, cdnServer);
    await Promise.all([listen(hubServer), listen(cdnServer)]);
    return hub;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.hubServer.address() as AddressInfo).port}`;
  }

  get cdnOrigin(): string {
    // Another host name, as a real CDN has: clients keep the token and stop following there.
    return `http://localhost:${(this.cdnServer.address() as AddressInfo).port}`;
  }

  /** Requests that carried file bytes (GETs of resolve URLs and of the CDN). */
  transfers(): RecordedRequest[] {
    return this.requests.filter(
      (r) => r.method === "GET" && (r.server === "cdn" || r.path.includes("/resolve")),
    );
  }

  async close(): Promise<void> {
    for (const server of [this.hubServer, this.cdnServer]) {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    }
  }

  private record(server: "hub" | "cdn", req: IncomingMessage): void {
    this.requests.push({
      server,
      method: req.method ?? "",
      path: req.url ?? "",
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
  }

  private serveHub(req: IncomingMessage, res: ServerResponse): void {
    this.record("hub", req);
    const url = new URL(req.url ?? "/", this.endpoint);
    const path = url.pathname.split("/").map(decodeURIComponent);
    // /api/models/{org}/{name}/revision/{revision}
    if (path[1] === "api" && path[2] === "models" && path[5] === "revision") {
      const repo = this.repoFor(`${path[3]}/${path[4]}`, req, res);
      if (!repo) return;
      if (!this.commitFor(repo, path.slice(6).join("/"), res)) return;
      const body = JSON.stringify({
        id: repo.repoId,
        sha: repo.commit,
        siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
      });
      res.writeHead(200, { "Content-Type": "application/json" }).end(body);
      return;
    }
    // /api/resolve-cache/models/{org}/{name}/{commit}/{file}: where the hub sends git files.
    if (path[1] === "api" && path[2] === "resolve-cache") {
      const repo = this.repoFor(`${path[4]}/${path[5]}`, req, res);
      if (!repo) return;
      this.serveGitFile(repo, path.slice(7).join("/"), req, res);
      return;
    }
    // /{org}/{name}/resolve/{revision}/{file}
    if (path[3] === "resolve") {
      const repo = this.repoFor(`${path[1]}/${path[2]}`, req, res);
      if (!repo) return;
      const commit = this.commitFor(repo, path[4], res);
      if (!commit) return;
      const file = path.slice(5).join("/");
      const bytes = repo.files.get(file);
      if (!bytes) {
        fail(res, 404, "EntryNotFound", commit);
        return;
      }
      if (isLfs(file)) {
        res
          .writeHead(302, {
            Location: `${this.cdnOrigin}/blobs/${sha256Hex(bytes)}`,
            "X-Repo-Commit": commit,
            ETag: `"${gitBlobId(Buffer.from(`lfs pointer ${file}`))}"`,
            "X-Linked-Etag": `"${sha256Hex(bytes)}"`,
            "X-Linked-Size": String(bytes.byteLength),
          })
          .end();
        return;
      }
      const encoded = file.split("/").map(encodeURIComponent).join("/");
      res
        .writeHead(307, {
          Location: `/api/resolve-cache/models/${repo.repoId}/${commit}/${encoded}`,
          "X-Repo-Commit": commit,
        })
        .end();
      return;
    }
    fail(res, 404, "RepoNotFound");
  }

  private serveGitFile(
    repo: FakeRepo,
    file: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    const bytes = repo.files.get(file);
    if (!bytes) {
      fail(res, 404, "EntryNotFound", repo.commit);
      return;
    }
    res.writeHead(200, {
      "Content-Length": String(bytes.byteLength),
      ETag: `"${gitBlobId(bytes)}"`,
      "X-Repo-Commit": repo.commit,
    });
    res.end(req.method === "HEAD" ? undefined : bytes);
  }

  private serveCdn(req: IncomingMessage, res: ServerResponse): void {
    this.record("cdn", req);
    const blob = this.byBlob.get((req.url ?? "").replace(/^\/blobs\//, ""));
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    const status = this.cdnStatus.get(blob.key);
    if (status !== undefined) {
      res.writeHead(status).end();
      return;
    }
    let bytes = blob.bytes;
    if (this.corrupt.has(blob.key)) {
      bytes = Uint8Array.from(bytes);
      bytes[bytes.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = range && !this.ignoreRanges ? Number(range[1]) : 0;
    if (start > bytes.byteLength) {
      res.writeHead(416).end();
      return;
    }
    const body = bytes.subarray(start);
    const headers: Record<string, string> = { "Content-Length": String(body.byteLength) };
    if (start > 0)
      headers["Content-Range"] = `bytes ${start}-${bytes.byteLength - 1}/${bytes.byteLength}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    const cut = this.interruptOnce.delete(blob.key);
    if (cut || this.stall.has(blob.key)) {
      res.write(body.subarray(0, body.byteLength >> 1));
      // A cut drops the connection mid-body; a stall leaves it open until the client goes.
      if (cut) setTimeout(() => req.socket.destroy(), 20);
      return;
    }
    res.end(body);
  }

  private repoFor(repoId: string, req: IncomingMessage, res: ServerResponse): FakeRepo | undefined {
    const repo = this.repos.find((r) => r.repoId === repoId);
    if (!repo) {
      // Like the hub without a token: a missing repository looks like a private one.
      fail(res, 401, "RepoNotFound");
      return undefined;
    }
    if (repo.gatedToken && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
      fail(res, req.headers.authorization ? 403 : 401, "GatedRepo");
      return undefined;
    }
    return repo;
  }

  private commitFor(repo: FakeRepo, revision: string, res: ServerResponse): string | undefined {
    if ([repo.commit, "main", ...(repo.aliases ?? [])].includes(revision)) return repo.commit;
    fail(res, 404, "RevisionNotFound");
    return undefined;
  }
}

function fail(res: ServerResponse, status: number, code: string, commit?: string): void {
  const headers: Record<string, string> = { "X-Error-Code": code };
  if (commit) headers["X-Repo-Commit"] = commit;
  res.writeHead(status, headers).end(JSON.stringify({ error: code }));
}

function listen(server: Server): Promise<void> {
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done()));
}
