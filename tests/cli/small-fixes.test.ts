// The small things a new user trips over: numbers in odd notations, an unknown weight variant,
// prompts cut without a word, an ETA that counted model building, kernel file systems as output
// folders, clip skip beyond the encoder, huge init images, failing probes that exited 0, and
// GPU devices that cannot start.
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ProgressBar } from "../../src/cli/progress.js";
import { encodePng } from "../../src/index.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const tiny = ["-m", SD15, "--steps", "1", "--size", "64", "--cache-dir", ws.cache];
const generate = (out: string, ...args: string[]) =>
  runCli(["generate", "a red cube", ...tiny, "-o", out, ...args]);
const lastLine = (text: string) => text.trimEnd().split("\n").at(-1);

const savedEnv = { ...process.env };
afterEach(() => {
  for (const key of ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"]) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});

describe("numbers are plain decimals", () => {
  it.each([
    ["--width", "0x10"],
    ["--width", "1e3"],
    ["--steps", "1e1"],
    ["--seed", "0b11"],
    ["--batch", "+2"],
    ["--cfg", "0x10"],
    ["--cfg", "Infinity"],
    ["--steps", "100000"],
  ])("%s %s is refused", async (flag, value) => {
    const out = ws.outDir();
    expectOneLineError(await generate(out, flag, value), new RegExp(flag));
    expect(filesIn(out)).toEqual([]);
  });
});

describe("small fixes", () => {
  it("refuses a weight variant no component has", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--variant", "nosuchvariant");
    expectOneLineError(run, /no component has "nosuchvariant" weights/);
  });

  it("warns when a prompt is cut at 77 tokens, and points to --long-prompts", async () => {
    const long = Array.from({ length: 90 }, (_, i) => `word${i}`).join(" ");
    const out = ws.outDir();
    const run = await runCli(["generate", long, ...tiny, "-o", out]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /warning: the prompt has \d+ tokens; only the first 75 are used \(--long-prompts/,
    );
    const chunked = await runCli(["generate", long, ...tiny, "-o", out, "--long-prompts"]);
    expect(chunked.code, chunked.stderr).toBe(0);
    expect(chunked.stderr).not.toMatch(/warning/);
  });

  it("counts the ETA from the first step, not from before the models were built", () => {
    const lines: string[] = [];
    let now = 0;
    const bar = new ProgressBar(
      "denoising",
      { write: (l: string) => lines.push(l) > 0, isTTY: false },
      () => now,
    );
    now = 60_000; // a minute of building before the first step
    bar.update(1, 11);
    now = 61_000;
    bar.update(2, 11);
    expect(lines[0]).toMatch(/1\/11 \? it\/s, \? left/);
    expect(lines[1]).toMatch(/2\/11 1\.00 it\/s, 9\.0 s left/);
  });

  it.runIf(existsSync("/proc/self"))("refuses an output folder on /proc at once", async () => {
    const run = await generate("/proc/todo-sd-out");
    expectOneLineError(run, /\/proc\/todo-sd-out is on the proc kernel file system/);
  });

  it("says the valid range of --clip-skip", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--clip-skip", "99");
    expect(run.code).not.toBe(0);
    expect(lastLine(run.stderr)).toMatch(
      /^todo-sd: clip skip 99 is out of range: the model's text encoder has 3 layers, so 0 to 2 may be skipped$/,
    );
    expect(filesIn(out)).toEqual([]);
  });

  it("refuses an init image too large to decode, from its header", async () => {
    // A real PNG header claiming 8000 x 8000 pixels: refused before any decoding.
    const small = encodePng({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) });
    const view = new DataView(small.buffer, small.byteOffset, small.byteLength);
    view.setUint32(16, 8000);
    view.setUint32(20, 8000);
    const path = ws.write("huge.png", small);
    const out = ws.outDir();
    const run = await generate(out, "--image", path);
    expectOneLineError(run, /huge\.png: 8000x8000 is more than the 16\.8 megapixels/);
  });
});

describe("devices that cannot start", () => {
  it("--device webgpu without an adapter: one line naming the SwiftShader variables", async () => {
    process.env.VK_ICD_FILENAMES = join(ws.root, "no-such-driver.json");
    const out = ws.outDir();
    const run = await generate(out, "--device", "webgpu");
    expectOneLineError(run, /no WebGPU adapter was found; .*VK_ICD_FILENAMES=.*LD_LIBRARY_PATH=/);
    for (const probe of ["bench-attention", "bench-conv"])
      expectOneLineError(
        await runCli([probe, "--device", "webgpu"]),
        /no WebGPU adapter was found/,
      );
  });

  it.runIf(process.platform === "linux")(
    "--device webgpu with a Vulkan manifest but no driver behind it: one line, no native dump",
    () => {
      // The manifest exists, so only asking Dawn tells that no adapter is there. Dawn's own
      // multi-line warning is written by native code straight to the process's stderr, so the
      // built command runs as a child to see everything a user would.
      const manifest = join(ws.root, "driver-without-library.json");
      writeFileSync(
        manifest,
        JSON.stringify({
          file_format_version: "1.0.0",
          ICD: { library_path: join(ws.root, "no-such-libvulkan-driver.so"), api_version: "1.3.0" },
        }),
      );
      const env = { ...process.env, VK_ICD_FILENAMES: manifest };
      const out = ws.outDir();
      const runs = [
        ["generate", "a red cube", ...tiny, "-o", out, "--device", "webgpu"],
        ["bench-kernels", "--device", "webgpu", "--families", "add", "--no-ort"],
      ];
      for (const args of runs) {
        const run = spawnSync(process.execPath, [resolve("dist", "cli.js"), ...args], {
          env,
          encoding: "utf8",
          timeout: 120_000,
        });
        expect(run.status, run.stderr).not.toBe(0);
        expect(run.stderr.trimEnd().split("\n"), run.stderr).toHaveLength(1);
        expect(run.stderr).toMatch(/^todo-sd: no WebGPU adapter (was )?found/);
      }
      expect(filesIn(out)).toEqual([]);
    },
    180_000,
  );

  const ortBin = join(
    dirname(dirname(createRequire(import.meta.url).resolve("onnxruntime-node"))),
    "bin",
    "napi-v6",
    process.platform,
    process.arch,
  );
  const cudaInstalled = existsSync(join(ortBin, "libonnxruntime_providers_cuda.so"));
  it.runIf(process.platform === "linux" && !cudaInstalled)(
    "--device cuda without the CUDA binaries: one line saying how to install them",
    async () => {
      const run = await generate(ws.outDir(), "--device", "cuda");
      expectOneLineError(run, /CUDA binaries are not installed; .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    },
  );
});
