import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { downloadFile } from "../../src/hub/download-file.js";
import { downloadPipeline } from "../../src/hub/download-pipeline.js";
import { HubError } from "../../src/hub/errors.js";
import { fixturePath } from "../fixtures.js";
import {
  commitOf,
  etagOf,
  FakeHub,
  type FakeRepo,
  gitBlobId,
  readFolder,
  sha256Hex,
} from "./fake-hub.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-hub-"));
const fixture = readFolder(fixturePath("pipelines", "sd15-tiny"));
const UNET = "unet/diffusion_pytorch_model.safetensors";
const UNET_FP16 = "unet/diffusion_pytorch_model.fp16.safetensors";
const SECRET = "hf_not_a_real_token_123";

const sd15: FakeRepo = {
  repoId: "tiny/sd15",
  commit: commitOf("sd15"),
  aliases: ["v1.0"],
  files: new Map([
    ...fixture,
    ["README.md", Buffer.from("# tiny\n")],
    [".gitattributes", Buffer.from("*.safetensors filter=lfs\n")],
    [UNET_FP16, Buffer.from("half-precision unet weights ".repeat(4000))],
    ["unet/diffusion_pytorch_model.bin", Buffer.from("pickled unet")],
    ["text_encoder/flax_model.msgpack", Buffer.from("flax text encoder")],
    ["text_encoder/model.onnx", Buffer.from("onnx text encoder")],
  ]),
};

function shardIndex(shards: string[]): Uint8Array {
  const weightMap = Object.fromEntries(shards.map((s, i) => [`w${i}`, s]));
  return Buffer.from(JSON.stringify({ metadata: { total_size: 100 }, weight_map: weightMap }));
}

const sharded: FakeRepo = {
  repoId: "tiny/sharded",
  commit: commitOf("sharded"),
  files: new Map<string, Uint8Array>([
    [
      "model_index.json",
      Buffer.from(
        JSON.stringify({
          _class_name: "StableDiffusionPipeline",
          unet: ["diffusers", "UNet2DConditionModel"],
          scheduler: ["diffusers", "EulerDiscreteScheduler"],
          safety_checker: [null, null],
        }),
      ),
    ],
    ["scheduler/scheduler_config.json", Buffer.from("{}")],
    ["unet/config.json", Buffer.from("{}")],
    [
      "unet/diffusion_pytorch_model.safetensors.index.json",
      shardIndex([
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
      ]),
    ],
    ["unet/diffusion_pytorch_model-00001-of-00002.safetensors", Buffer.from("shard one")],
    ["unet/diffusion_pytorch_model-00002-of-00002.safetensors", Buffer.from("shard two")],
    [
      "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
      shardIndex([
        "diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
        "diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
      ]),
    ],
    ["unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors", Buffer.from("half one")],
    ["unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors", Buffer.from("half two")],
  ]),
};

const gated: FakeRepo = {
  repoId: "tiny/gated",
  commit: commitOf("gated"),
  gatedToken: SECRET,
  files: new Map([
    ["config.json", Buffer.from('{"gated": true}')],
    ["weights.safetensors", Buffer.from("gated weights")],
  ]),
};

const single: FakeRepo = {
  repoId: "tiny/single-file",
  commit: commitOf("single"),
  files: new Map([["model.safetensors", Buffer.from("one checkpoint")]]),
};

let hub: FakeHub;
let cacheDir: string;
let cacheCount = 0;

beforeAll(async () => {
  hub = await FakeHub.start([sd15, sharded, gated, single]);
});
afterAll(async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});
beforeEach(() => {
  cacheDir = join(work, `cache-${cacheCount++}`);
  hub.requests.length = 0;
});
afterEach(() => {
  hub.interruptOnce.clear();
  hub.corrupt.clear();
  hub.stall.clear();
  hub.cdnStatus.clear();
  hub.ignoreRanges = false;
  vi.unstubAllEnvs();
});

function options() {
  return { endpoint: hub.endpoint, cacheDir, token: null };
}

function repoDir(repo: FakeRepo): string {
  return join(cacheDir, `models--${repo.repoId.replace("/", "--")}`);
}

function snapshot(repo: FakeRepo): string {
  return join(repoDir(repo), "snapshots", repo.commit);
}

function blobsOf(repo: FakeRepo): string[] {
  const dir = join(repoDir(repo), "blobs");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function rejection(promise: Promise<unknown>): Promise<HubError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HubError);
  const hubError = error as HubError;
  expect(hubError.message).not.toContain("\n");
  return hubError;
}

function cdnGets(file: string, repo: FakeRepo = sd15): { range: string | undefined }[] {
  const blob = sha256Hex(repo.files.get(file)!);
  return hub.requests.filter((r) => r.server === "cdn" && r.path === `/blobs/${blob}`);
}

/** The files of the fixture pipeline a plain download takes: all of them, nothing more. */
const expectedFiles = [...fixture.keys()].sort();

describe("downloadPipeline", () => {
  it("downloads a pipeline into the hub cache layout, then serves it from the cache", async () => {
    const progress = new Map<string, [number, number | undefined]>();
    const folder = await downloadPipeline("tiny/sd15", {
      ...options(),
      onProgress: (file, received, total) => progress.set(file, [received, total]),
    });
    expect(folder).toBe(snapshot(sd15));
    const listed: string[] = [];
    const walk = (dir: string, prefix: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(dir, entry.name), `${prefix}${entry.name}/`);
        else listed.push(`${prefix}${entry.name}`);
      }
    };
    walk(folder, "");
    expect(listed.sort()).toEqual(expectedFiles);
    for (const file of expectedFiles) {
      const path = join(folder, file);
      expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(file)!))).toBe(0);
      // Relative links into blobs, one `..` deeper per folder level, named by the ETag.
      const depth = file.split("/").length + 1;
      expect(readlinkSync(path)).toBe(
        `${"../".repeat(depth)}blobs/${etagOf(file, fixture.get(file)!)}`,
      );
      expect(progress.get(file)).toEqual([
        fixture.get(file)!.byteLength,
        fixture.get(file)!.byteLength,
      ]);
    }
    expect(readFileSync(join(repoDir(sd15), "refs", "main"), "utf8")).toBe(sd15.commit);
    expect(readFileSync(join(cacheDir, "CACHEDIR.TAG"), "utf8")).toMatch(
      /^Signature: 8a477f597d28d172789f06886806bc55\n/,
    );
    expect(blobsOf(sd15).every((name) => !name.endsWith(".incomplete"))).toBe(true);
    expect(blobsOf(sd15)).toContain(sha256Hex(fixture.get(UNET)!));
    expect(blobsOf(sd15)).toContain(gitBlobId(fixture.get("unet/config.json")!));

    hub.requests.length = 0;
    const again = await downloadPipeline("tiny/sd15", options());
    expect(again).toBe(folder);
    expect(hub.transfers()).toEqual([]);
    expect(hub.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /api/models/tiny/sd15/revision/main",
    ]);
  });

  it("takes the requested variant where a component has it, plain weights elsewhere", async () => {
    const folder = await downloadPipeline("tiny/sd15", { ...options(), variant: "fp16" });
    expect(existsSync(join(folder, UNET_FP16))).toBe(true);
    expect(existsSync(join(folder, UNET))).toBe(false);
    expect(existsSync(join(folder, "vae/diffusion_pytorch_model.safetensors"))).toBe(true);
    const fp16 = Buffer.from(sd15.files.get(UNET_FP16)!);
    expect(Buffer.compare(readFileSync(join(folder, UNET_FP16)), fp16)).toBe(0);
  });

  it("refuses a variant that no component has", async () => {
    const error = await rejection(downloadPipeline("tiny/sd15", { ...options(), variant: "bf16" }));
    expect(error.code).toBe("variant-not-found");
    expect(error.message).toContain('no "bf16" variant');
    expect(error.message).toContain("fp16");
  });

  it("follows shard indexes, for plain and variant weights", async () => {
    const folder = await downloadPipeline("tiny/sharded", options());
    expect(readdirSync(join(folder, "unet")).sort()).toEqual([
      "config.json",
      "diffusion_pytorch_model-00001-of-00002.safetensors",
      "diffusion_pytorch_model-00002-of-00002.safetensors",
      "diffusion_pytorch_model.safetensors.index.json",
    ]);
    const half = await downloadPipeline("tiny/sharded", { ...options(), variant: "fp16" });
    expect(
      readdirSync(join(half, "unet"))
        .filter((f) => f.includes("fp16"))
        .sort(),
    ).toEqual([
      "diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
      "diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
      "diffusion_pytorch_model.safetensors.index.fp16.json",
    ]);
  });

  it("skips components on request", async () => {
    const folder = await downloadPipeline("tiny/sd15", {
      ...options(),
      skipComponents: ["text_encoder", "tokenizer"],
    });
    expect(existsSync(join(folder, "text_encoder"))).toBe(false);
    expect(existsSync(join(folder, "tokenizer"))).toBe(false);
    expect(existsSync(join(folder, UNET))).toBe(true);
  });

  it("says a repository without model_index.json is not a pipeline", async () => {
    const error = await rejection(downloadPipeline("tiny/single-file", options()));
    expect(error.code).toBe("not-a-pipeline");
    expect(error.message).toContain("downloadFile");
  });

  it("lets two concurrent downloads share the work without corrupting the cache", async () => {
    const [a, b] = await Promise.all([
      downloadPipeline("tiny/sd15", options()),
      downloadPipeline("tiny/sd15", options()),
    ]);
    expect(a).toBe(b);
    for (const file of expectedFiles) {
      expect(Buffer.compare(readFileSync(join(a, file)), Buffer.from(fixture.get(file)!))).toBe(0);
    }
    // Each file's bytes crossed the wire once: the second download waited on the lock.
    const lfs = expectedFiles.filter((f) => f.endsWith(".safetensors"));
    for (const file of lfs) expect(cdnGets(file)).toHaveLength(1);
    expect(readdirSync(join(cacheDir, ".locks", "models--tiny--sd15"))).toEqual([]);
  });
});

describe("transfers", () => {
  it("resumes a transfer cut mid-body with a Range request, byte for byte", async () => {
    hub.interruptOnce.add(`tiny/sd15:${UNET}`);
    const path = await downloadFile("tiny/sd15", UNET, options());
    const gets = cdnGets(UNET);
    expect(gets).toHaveLength(2);
    expect(gets[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThan(fixture.get(UNET)!.byteLength);
    expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(UNET)!))).toBe(0);
  });

  it("leaves a broken transfer as .incomplete and resumes it on the next run", async () => {
    hub.interruptOnce.add(`tiny/sd15:${UNET}`);
    const error = await rejection(downloadFile("tiny/sd15", UNET, { ...options(), maxRetries: 0 }));
    expect(error.code).toBe("network");
    const etag = sha256Hex(fixture.get(UNET)!);
    const partial = join(repoDir(sd15), "blobs", `${etag}.incomplete`);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(existsSync(join(snapshot(sd15), UNET))).toBe(false);

    hub.requests.length = 0;
    const path = await downloadFile("tiny/sd15", UNET, options());
    expect(cdnGets(UNET).map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(UNET)!))).toBe(0);
    expect(existsSync(partial)).toBe(false);
  });

  it("starts over when the server ignores the Range header", async () => {
    hub.interruptOnce.add(`tiny/sd15:${UNET}`);
    hub.ignoreRanges = true;
    const path = await downloadFile("tiny/sd15", UNET, options());
    expect(cdnGets(UNET)).toHaveLength(2);
    expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(UNET)!))).toBe(0);
  });

  it("deletes a download whose checksum does not match its ETag", async () => {
    hub.corrupt.add(`tiny/sd15:${UNET}`);
    const error = await rejection(downloadFile("tiny/sd15", UNET, options()));
    expect(error.code).toBe("checksum");
    expect(error.message).toContain(`checksum mismatch for ${UNET}`);
    expect(error.message).toContain(sha256Hex(fixture.get(UNET)!));
    expect(blobsOf(sd15)).toEqual([]);
    expect(existsSync(join(snapshot(sd15), UNET))).toBe(false);

    hub.corrupt.clear();
    const path = await downloadFile("tiny/sd15", UNET, options());
    expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(UNET)!))).toBe(0);
  });

  it("refuses to finish a partial file that another process removed meanwhile", async () => {
    const partial = join(repoDir(sd15), "blobs", `${sha256Hex(fixture.get(UNET)!)}.incomplete`);
    let removed = false;
    const error = await rejection(
      downloadFile("tiny/sd15", UNET, {
        ...options(),
        onProgress: (_file, received) => {
          if (received > 0 && !removed) {
            rmSync(partial);
            removed = true;
          }
        },
      }),
    );
    expect(error.code).toBe("checksum");
    expect(error.message).toContain("removed or replaced by another process");
    expect(blobsOf(sd15)).toEqual([]);
  });

  it("reports a failing CDN in one line and leaves no empty partial file", async () => {
    hub.cdnStatus.set(`tiny/sd15:${UNET}`, 503);
    const error = await rejection(downloadFile("tiny/sd15", UNET, options()));
    expect(error.code).toBe("server");
    expect(error.message).toBe(
      `the hub answered HTTP 503 for ${UNET} from tiny/sd15; try again later (a resumed download keeps what it has)`,
    );
    expect(blobsOf(sd15)).toEqual([]);
  });

  it("stops on an AbortSignal, releases the lock, and resumes later", async () => {
    hub.stall.add(`tiny/sd15:${UNET}`);
    const controller = new AbortController();
    const error = await rejection(
      downloadFile("tiny/sd15", UNET, {
        ...options(),
        signal: controller.signal,
        onProgress: (_file, received) => {
          if (received > 0) controller.abort();
        },
      }),
    );
    expect(error.code).toBe("cancelled");
    expect(readdirSync(join(cacheDir, ".locks", "models--tiny--sd15"))).toEqual([]);
    const partial = join(repoDir(sd15), "blobs", `${sha256Hex(fixture.get(UNET)!)}.incomplete`);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);

    hub.stall.clear();
    hub.requests.length = 0;
    const path = await downloadFile("tiny/sd15", UNET, options());
    expect(cdnGets(UNET).map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(Buffer.compare(readFileSync(path), Buffer.from(fixture.get(UNET)!))).toBe(0);
  });
});

describe("downloadFile", () => {
  it("records a branch or tag in refs and links the same blob for every revision", async () => {
    const viaTag = await downloadFile("tiny/sd15@v1.0", "unet/config.json", options());
    const viaCommit = await downloadFile("tiny/sd15", "unet/config.json", {
      ...options(),
      revision: sd15.commit,
    });
    expect(viaTag).toBe(viaCommit);
    expect(readFileSync(join(repoDir(sd15), "refs", "v1.0"), "utf8")).toBe(sd15.commit);
    expect(lstatSync(viaTag).isSymbolicLink()).toBe(true);
    // A commit hash whose snapshot has the file needs no request at all.
    hub.requests.length = 0;
    await downloadFile("tiny/sd15", "unet/config.json", { ...options(), revision: sd15.commit });
    expect(hub.requests).toEqual([]);
  });

  it("says which file, revision or repository was not found", async () => {
    const file = await rejection(downloadFile("tiny/sd15", "unet/missing.json", options()));
    expect(file.code).toBe("file-not-found");
    expect(file.message).toBe(
      'file "unet/missing.json" not found in tiny/sd15 at revision main (HTTP 404)',
    );
    const revision = await rejection(downloadFile("tiny/sd15@nope", "model_index.json", options()));
    expect(revision.code).toBe("revision-not-found");
    const repo = await rejection(downloadPipeline("tiny/absent", options()));
    expect(repo.code).toBe("repo-not-found");
    expect(repo.message).toContain("set HF_TOKEN");
  });

  it("sends the token to the hub only, and tells how to get access to a gated repository", async () => {
    const denied = await rejection(downloadFile("tiny/gated", "config.json", options()));
    expect(denied.code).toBe("gated");
    expect(denied.message).toContain("HF_TOKEN");
    const wrong = await rejection(
      downloadFile("tiny/gated", "config.json", { ...options(), token: "hf_wrong_token" }),
    );
    expect(wrong.code).toBe("gated");
    expect(wrong.message).not.toContain("hf_wrong_token");

    hub.requests.length = 0;
    const path = await downloadFile("tiny/gated", "weights.safetensors", {
      ...options(),
      token: SECRET,
    });
    expect(readFileSync(path, "utf8")).toBe("gated weights");
    const hubCalls = hub.requests.filter((r) => r.server === "hub");
    const cdnCalls = hub.requests.filter((r) => r.server === "cdn");
    expect(hubCalls.length).toBeGreaterThan(0);
    expect(cdnCalls).toHaveLength(1);
    expect(hubCalls.every((r) => r.authorization === `Bearer ${SECRET}`)).toBe(true);
    expect(cdnCalls[0].authorization).toBeUndefined();
  });

  it("takes the token from HF_TOKEN", async () => {
    vi.stubEnv("HF_TOKEN", SECRET);
    const path = await downloadFile("tiny/gated", "config.json", {
      endpoint: hub.endpoint,
      cacheDir,
    });
    expect(readFileSync(path, "utf8")).toBe('{"gated": true}');
  });

  it("rejects bad ids and paths before any request", async () => {
    expect((await rejection(downloadFile("no-slash", "x.json", options()))).code).toBe(
      "invalid-id",
    );
    expect((await rejection(downloadFile("tiny/sd15", "../escape", options()))).code).toBe(
      "invalid-path",
    );
    const conflict = await rejection(
      downloadFile("tiny/sd15@main", "x.json", { ...options(), revision: "v1.0" }),
    );
    expect(conflict.code).toBe("invalid-id");
    expect(hub.requests).toEqual([]);
  });
});

describe("offline and cache reuse", () => {
  it("serves a downloaded pipeline offline without any request, and says what is missing", async () => {
    await downloadPipeline("tiny/sd15", options());
    hub.requests.length = 0;
    const folder = await downloadPipeline("tiny/sd15", { ...options(), offline: true });
    expect(folder).toBe(snapshot(sd15));
    const file = await downloadFile("tiny/sd15", UNET, { ...options(), offline: true });
    expect(file).toBe(join(folder, UNET));

    const missingFile = await rejection(
      downloadFile("tiny/sd15", UNET_FP16, { ...options(), offline: true }),
    );
    expect(missingFile.code).toBe("offline-miss");
    expect(missingFile.message).toContain(`${UNET_FP16} of tiny/sd15@main is not in the cache`);
    const missingRepo = await rejection(
      downloadPipeline("tiny/sharded", { ...options(), offline: true }),
    );
    expect(missingRepo.code).toBe("offline-miss");
    expect(hub.requests).toEqual([]);
  });

  it("turns offline with HF_HUB_OFFLINE=1", async () => {
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    const error = await rejection(downloadPipeline("tiny/sd15", options()));
    expect(error.code).toBe("offline-miss");
    expect(hub.requests).toEqual([]);
  });

  describe("a cache written by the Python hub client", () => {
    beforeEach(() => {
      // blobs named by ETag, relative snapshot links, refs/main: built by hand.
      const repo = repoDir(sd15);
      mkdirSync(join(repo, "blobs"), { recursive: true });
      mkdirSync(join(repo, "refs"), { recursive: true });
      writeFileSync(join(repo, "refs", "main"), sd15.commit);
      for (const [file, bytes] of fixture) {
        const blob = join(repo, "blobs", etagOf(file, bytes));
        writeFileSync(blob, bytes);
        const link = join(snapshot(sd15), file);
        mkdirSync(dirname(link), { recursive: true });
        symlinkSync(relative(dirname(link), blob), link);
      }
    });

    it("is used offline", async () => {
      const folder = await downloadPipeline("tiny/sd15", { ...options(), offline: true });
      expect(folder).toBe(snapshot(sd15));
      expect(hub.requests).toEqual([]);
    });

    it("is used when the hub cannot be reached", async () => {
      const closed = createServer();
      await new Promise<void>((done) => closed.listen(0, "127.0.0.1", () => done()));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((done) => closed.close(() => done()));
      const folder = await downloadPipeline("tiny/sd15", {
        ...options(),
        endpoint: `http://127.0.0.1:${port}`,
      });
      expect(folder).toBe(snapshot(sd15));
      // What is not cached still needs the hub, and the error says so in one line.
      const error = await rejection(
        downloadFile("tiny/sd15", UNET_FP16, {
          ...options(),
          endpoint: `http://127.0.0.1:${port}`,
        }),
      );
      expect(error.code).toBe("network");
      expect(error.message).toContain("ECONNREFUSED");
    });

    it("is used online with no transfer", async () => {
      const folder = await downloadPipeline("tiny/sd15", options());
      expect(folder).toBe(snapshot(sd15));
      expect(hub.transfers()).toEqual([]);
      expect(hub.requests).toHaveLength(1);
    });
  });
});
