import { describe, expect, it } from "vitest";
import { ContentVerifier, digestKindOfEtag } from "../../src/hub/checksum.js";
import { errorForResponse, normalizeEtag, requestHeaders } from "../../src/hub/http.js";
import { resolveHubSettings } from "../../src/hub/settings.js";
import { gitBlobId, sha256Hex } from "./fake-hub.js";

const anonymous = resolveHubSettings({
  endpoint: "https://hub.example",
  cacheDir: "/c",
  token: null,
});
const withToken = resolveHubSettings({
  endpoint: "https://hub.example",
  cacheDir: "/c",
  token: "hf_x",
});
const subject = { repoId: "org/name", revision: "main", file: "unet/config.json" };

function response(status: number, code?: string): Response {
  return new Response(null, { status, headers: code ? { "X-Error-Code": code } : {} });
}

describe("errorForResponse", () => {
  it("says to set HF_TOKEN for private or gated repositories", async () => {
    const denied = await errorForResponse(response(403), anonymous, subject, "file");
    expect(denied.code).toBe("unauthorized");
    expect(denied.message).toBe(
      "access to org/name denied (HTTP 403): it is private or gated; set HF_TOKEN to a token with access",
    );
    const tokenDenied = await errorForResponse(response(401), withToken, subject, "file");
    expect(tokenDenied.message).toContain("the token in use has no access");
    expect(tokenDenied.message).not.toContain("hf_x");
    const gated = await errorForResponse(response(401, "GatedRepo"), anonymous, subject, "file");
    expect(gated.code).toBe("gated");
  });

  it("names what was not found", async () => {
    expect((await errorForResponse(response(404), anonymous, subject, "listing")).code).toBe(
      "repo-not-found",
    );
    expect((await errorForResponse(response(404), anonymous, subject, "file")).code).toBe(
      "file-not-found",
    );
    expect(
      (await errorForResponse(response(404, "RevisionNotFound"), anonymous, subject, "file")).code,
    ).toBe("revision-not-found");
  });

  it("tells server trouble from a bad answer", async () => {
    expect((await errorForResponse(response(503), anonymous, subject, "transfer")).code).toBe(
      "server",
    );
    expect((await errorForResponse(response(429), anonymous, subject, "transfer")).code).toBe(
      "server",
    );
    expect((await errorForResponse(response(418), anonymous, subject, "transfer")).code).toBe(
      "bad-response",
    );
  });
});

describe("requestHeaders", () => {
  it("sends the token to the hub's origin only, and asks for uncompressed bytes", () => {
    expect(requestHeaders(withToken, "https://hub.example/org/name/resolve/main/x")).toMatchObject({
      Authorization: "Bearer hf_x",
      "Accept-Encoding": "identity",
    });
    expect(requestHeaders(withToken, "https://cdn.example/blob").Authorization).toBeUndefined();
    expect(requestHeaders(anonymous, "https://hub.example/x").Authorization).toBeUndefined();
  });
});

describe("ETags and checksums", () => {
  it("normalizes quoted and weak ETags and refuses ones that are not file names", () => {
    const hex = "a".repeat(64);
    expect(normalizeEtag(`"${hex}"`)).toBe(hex);
    expect(normalizeEtag(`W/"${hex}"`)).toBe(hex);
    expect(normalizeEtag(hex)).toBe(hex);
    expect(normalizeEtag('"../../evil"')).toBeUndefined();
    expect(normalizeEtag('""')).toBeUndefined();
  });

  it("verifies sha256 for LFS files and git blob ids for the others", () => {
    const bytes = Buffer.from("some file content");
    expect(digestKindOfEtag(sha256Hex(bytes))).toBe("sha256");
    expect(digestKindOfEtag(gitBlobId(bytes))).toBe("git-sha1");
    expect(digestKindOfEtag("mirror-made-etag")).toBeUndefined();

    for (const etag of [sha256Hex(bytes), gitBlobId(bytes)]) {
      const good = new ContentVerifier(etag, bytes.byteLength);
      good.update(bytes.subarray(0, 5));
      good.update(bytes.subarray(5));
      expect(good.mismatch(bytes.byteLength)).toBeUndefined();
      const bad = new ContentVerifier(etag, bytes.byteLength);
      bad.update(Buffer.from("Some file content"));
      expect(bad.mismatch(bytes.byteLength)).toMatch(/^expected (sha256|git-sha1) /);
    }
    const short = new ContentVerifier(sha256Hex(bytes), bytes.byteLength);
    short.update(bytes.subarray(1));
    expect(short.mismatch(bytes.byteLength - 1)).toBe(
      `expected ${bytes.byteLength} bytes, got ${bytes.byteLength - 1}`,
    );
  });
});
