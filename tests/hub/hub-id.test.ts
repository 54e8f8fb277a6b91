import { describe, expect, it } from "vitest";
import { HubError } from "../../src/hub/errors.js";
import {
  checkRepoPath,
  checkRevision,
  isCommitHash,
  isHubId,
  parseHubId,
  repoFolderName,
} from "../../src/hub/hub-id.js";

function errorOf(action: () => unknown): HubError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    expect((error as HubError).message).not.toContain("\n");
    return error as HubError;
  }
  throw new Error("expected an error");
}

describe("parseHubId", () => {
  it("reads org/name with an optional revision", () => {
    expect(parseHubId("stabilityai/sdxl-turbo")).toEqual({ repoId: "stabilityai/sdxl-turbo" });
    expect(parseHubId("runwayml/stable-diffusion-v1-5@fp16")).toEqual({
      repoId: "runwayml/stable-diffusion-v1-5",
      revision: "fp16",
    });
    expect(parseHubId("org/model_v2.1@refs/pr/3").revision).toBe("refs/pr/3");
    expect(parseHubId("a/b@0123456789abcdef0123456789abcdef01234567").revision).toBe(
      "0123456789abcdef0123456789abcdef01234567",
    );
  });

  it("rejects ids that are not org/name, each with a one-line reason", () => {
    const cases: [string, string][] = [
      ["sdxl-turbo", "expected org/name"],
      ["a/b/c", "expected org/name"],
      ["org/-name", "must start and end"],
      ["org/name.", "must start and end"],
      ["org/na me", "may hold only"],
      ["org/na--me", '"--" and ".."'],
      ["org/na..me", '"--" and ".."'],
      ["org/name.git", ".git"],
      [`org/${"x".repeat(100)}`, "longer than 96"],
      ["org/name@", "it is empty"],
      ["org/name@../../etc", '".." path parts'],
      ["org/name@a b", "spaces"],
    ];
    for (const [text, reason] of cases) {
      const error = errorOf(() => parseHubId(text));
      expect(error.code).toBe("invalid-id");
      expect(error.message).toContain(text);
      expect(error.message).toContain(reason);
      expect(isHubId(text)).toBe(false);
    }
    expect(isHubId("org/name@main")).toBe(true);
  });

  it("checks revisions given as options the same way", () => {
    expect(checkRevision("v1.0")).toBe("v1.0");
    expect(errorOf(() => checkRevision("..")).code).toBe("invalid-id");
  });
});

describe("names in the cache", () => {
  it("names the repository folder like the Python client", () => {
    expect(repoFolderName("stabilityai/sdxl-turbo")).toBe("models--stabilityai--sdxl-turbo");
  });

  it("knows a commit hash", () => {
    expect(isCommitHash("0123456789abcdef0123456789abcdef01234567")).toBe(true);
    expect(isCommitHash("main")).toBe(false);
    expect(isCommitHash("0123456789ABCDEF0123456789ABCDEF01234567")).toBe(false);
  });

  it("refuses file paths that would leave the snapshot", () => {
    expect(checkRepoPath("unet/config.json", "a/b")).toBe("unet/config.json");
    for (const bad of [
      "",
      "/etc/passwd",
      "../x",
      "unet/../../x",
      "a//b",
      "a\\b",
      "./a",
      "a\u0000",
    ]) {
      const error = errorOf(() => checkRepoPath(bad, "a/b"));
      expect(error.code).toBe("invalid-path");
    }
  });
});
