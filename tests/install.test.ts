// Installing and testing as a new user does: npm runs without warnings, onnxruntime-node's CUDA
// download is skipped through package.json's allowScripts (a setting npm knows), the lockfile is
// what npm writes for this package.json, and the test command without Chromium says what it skips.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

type Json = Record<string, unknown>;
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Json;

describe("install", () => {
  it("npm reads the project's configuration without a warning", () => {
    const run = spawnSync("npm", ["config", "get", "allow-scripts"], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/warn/i);
    if (existsSync(".npmrc"))
      expect(readFileSync(".npmrc", "utf8")).not.toMatch(/onnxruntime-node-install/);
  });

  it("skips onnxruntime-node's download script and allows the rest", () => {
    const pkg = readJson("package.json");
    expect(pkg.allowScripts).toMatchObject({ "onnxruntime-node": false, esbuild: true });
    // Every dependency with an install script is reviewed, so npm prints no notice about one.
    const lock = readJson("package-lock.json").packages as Record<string, Json>;
    const reviewed = Object.keys(pkg.allowScripts as Json);
    for (const [path, entry] of Object.entries(lock))
      if (entry.hasInstallScript)
        expect(reviewed, path).toContain(path.split("node_modules/").at(-1));
  });

  it("has a lockfile whose root entry is the package.json npm writes it from", () => {
    const pkg = readJson("package.json");
    const root = (readJson("package-lock.json").packages as Record<string, Json>)[""];
    for (const field of [
      "name",
      "version",
      "license",
      "bin",
      "engines",
      "dependencies",
      "devDependencies",
      "peerDependencies",
      "peerDependenciesMeta",
    ])
      expect(root[field], field).toEqual(pkg[field]);
  });

  it("leaves the browser tests out with a message when Chromium is missing", () => {
    const run = spawnSync(
      process.execPath,
      ["node_modules/vitest/vitest.mjs", "list", "tests/web", "tests/runtime/webgpu-node"],
      {
        encoding: "utf8",
        env: {
          ...process.env,
          TODO_SD_CHROMIUM: "/nonexistent/chromium",
          TODO_SD_REQUIRE_CHROMIUM: "",
        },
      },
    );
    expect(run.stderr).toMatch(/Chromium not found .*skipping the browser and WebGPU tests/);
    expect(run.stdout).not.toMatch(/e2e|webgpu-node/);
  });
});
