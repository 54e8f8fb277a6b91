// `todo-sd compare` on the sd15-tiny fixture: the side-by-side PNG with its parameters, the
// table, the JSON, the baseline being the plain generation of the same seed, and bad input.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGenerationInfo, readPngFile } from "../../src/index.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const common = ["-m", SD15, "--steps", "2", "--seed", "11", "--cache-dir", ws.cache];

interface CompareJson {
  kind: string;
  image: string;
  seed: number;
  width: number;
  height: number;
  baseline: { label: string; reduction: null; timeMs: number; unetMs: number; denoisedOn: string };
  accelerated: {
    label: string;
    reduction: { method: string; factor: number; mode: string };
    timeMs: number;
    unetMs: number;
    denoisedOn: string;
  };
  speedup: number;
  unetSpeedup: number;
  metrics: { mse: number; psnr: number | "Infinity"; ssim: number; maxAbsDiff: number };
}

describe("compare", () => {
  it("writes one labelled side-by-side PNG with parameters, a table and JSON", async () => {
    const out = ws.outDir();
    const json = join(out, "compare.json");
    const run = await runCli([
      "compare",
      "a lighthouse",
      ...common,
      "--todo",
      "2",
      "--out",
      out,
      "--json",
      json,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0].split(/\s{2,}/)).toEqual([
      "run",
      "time/image",
      "UNet",
      "speedup",
      "UNet speedup",
      "MSE",
      "PSNR",
      "SSIM",
    ]);
    expect(lines[1]).toMatch(/^baseline\s+[\d.]+ s\s+[\d.]+ s\s+1\.00x\s+1\.00x\s+-\s+-\s+-$/);
    expect(lines[2]).toMatch(
      /^ToDo x2 nearest\s+[\d.]+ s\s+[\d.]+ s\s+[\d.]+x\s+[\d.]+x\s+[\d.e+-]+\s+([\d.]+|inf) dB\s+[\d.]+$/,
    );
    const pngPath = lines[3];
    expect(pngPath).toMatch(/todo-sd-compare-\d{8}-\d{6}-11\.png$/);
    expect(filesIn(out).sort()).toEqual(["compare.json", pngPath.slice(out.length + 1)].sort());

    const result = JSON.parse(readFileSync(json, "utf8")) as CompareJson;
    expect(result).toMatchObject({ kind: "compare", image: pngPath, seed: 11, width: 128 });
    expect(result.baseline).toMatchObject({ label: "baseline", reduction: null });
    expect(result.accelerated.label).toBe("ToDo x2 nearest");
    expect(result.accelerated.reduction).toMatchObject({ method: "todo", factor: 2 });
    expect(result.speedup).toBeCloseTo(result.baseline.timeMs / result.accelerated.timeMs, 6);
    expect(result.unetSpeedup).toBeCloseTo(result.baseline.unetMs / result.accelerated.unetMs, 6);
    // Two 128-px images 8 px apart, a label strip below; the record is the JSON above.
    const png = readPngFile(pngPath);
    expect(png.width).toBe(128 * 2 + 8);
    expect(png.height).toBeGreaterThan(128);

    // The metrics describe the two halves of the PNG. They were measured on the float images,
    // which the PNG holds rounded to 8 bits: each sample moves by at most 0.5/255, so the RMS
    // and the largest difference move by at most 1/255 between the two.
    const half = (x0: number) => {
      const data = new Float64Array(128 * 128 * 3);
      for (let y = 0; y < 128; y++) {
        for (let i = 0; i < 128 * 3; i++) {
          data[y * 128 * 3 + i] = png.data[(y * png.width + x0) * 3 + i] / 255;
        }
      }
      return data;
    };
    const left = half(0);
    const right = half(128 + 8);
    let squares = 0;
    let largest = 0;
    for (let i = 0; i < left.length; i++) {
      const d = Math.abs(left[i] - right[i]);
      squares += d * d;
      largest = Math.max(largest, d);
    }
    const { mse, psnr, ssim, maxAbsDiff } = result.metrics;
    expect(largest).toBeGreaterThan(0); // ToDo changed the image, so the metrics measure something
    expect(Math.abs(Math.sqrt(squares / left.length) - Math.sqrt(mse))).toBeLessThanOrEqual(
      1 / 255,
    );
    expect(Math.abs(largest - maxAbsDiff)).toBeLessThanOrEqual(1 / 255);
    expect(psnr).toBeCloseTo(-10 * Math.log10(mse), 9);
    expect(ssim).toBeGreaterThan(0);
    expect(ssim).toBeLessThan(1);
    const info = readGenerationInfo(png.text, pngPath);
    expect(info.parameters).toMatchObject({ prompt: "a lighthouse", steps: 2, seed: 11 });
    expect(info.parameters?.extra?.ToDo).toMatch(/^ToDo nearest factor 2 at level 1/);
    expect(info.record).toEqual(JSON.parse(JSON.stringify(result)));

    // The left half is what generate draws from the same seed without reduction.
    const plain = ws.outDir();
    const generated = await runCli(["generate", "a lighthouse", ...common, "-o", plain]);
    expect(generated.code, generated.stderr).toBe(0);
    const single = readPngFile(generated.stdout.trim());
    for (let y = 0; y < 128; y++) {
      const left = png.data.subarray(y * png.width * 3, (y * png.width + 128) * 3);
      const row = single.data.subarray(y * 128 * 3, (y + 1) * 128 * 3);
      expect(left).toEqual(row);
    }
  });

  it("prints only the JSON on stdout with --json -", async () => {
    const out = ws.outDir();
    const run = await runCli([
      "compare",
      "a cat",
      ...common,
      "--tome",
      "0.5",
      "--warmup",
      "0",
      "-o",
      out,
      "--json",
      "-",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as CompareJson;
    expect(result.accelerated.label).toBe("ToMe 0.5");
    // The CPU backend cannot keep tensors between runs: the latents were stepped on the host.
    expect([result.baseline.denoisedOn, result.accelerated.denoisedOn]).toEqual(["host", "host"]);
    expect(filesIn(out)).toEqual([result.image.slice(out.length + 1)]);
    expect(run.stderr).toMatch(/^run\s+time\/image/m);
  });

  describe("bad input: one line on stderr, non-zero exit, no file written", () => {
    it("--todo auto reducing nothing at the size, with a hint", async () => {
      const out = ws.outDir();
      const run = await runCli(["compare", "a cat", ...common, "-o", out]);
      expectOneLineError(
        run,
        /--todo auto reduces nothing at 128x128 .*; pass --todo 2 to compare anyway$/,
      );
      expect(filesIn(out)).toEqual([]);
      const off = await runCli(["compare", "a cat", ...common, "--todo", "1", "-o", out]);
      expectOneLineError(off, /reduce nothing at 128x128.*pass --todo 2/);
      expect(filesIn(out)).toEqual([]);
    });

    it("an unknown flag", async () => {
      const out = ws.outDir();
      const run = await runCli(["compare", "a cat", ...common, "-o", out, "--todoo", "2"]);
      expectOneLineError(run, /unknown option '--todoo'/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a missing or truncated model", async () => {
      const out = ws.outDir();
      const missing = await runCli(["compare", "a cat", "-m", ws.path("gone"), "-o", out]);
      expectOneLineError(missing, /gone: no such file or folder/);
      const truncated = await runCli([
        "compare",
        "a cat",
        "-m",
        ws.truncatedCheckpoint(),
        "--todo",
        "2",
        "-o",
        out,
      ]);
      expectOneLineError(truncated, /not a valid safetensors file/);
      expect(filesIn(out)).toEqual([]);
    });

    it("--latents-on-device on without a device that can keep tensors", async () => {
      const out = ws.outDir();
      const run = await runCli([
        "compare",
        "a cat",
        ...common,
        "--todo",
        "2",
        "--latents-on-device",
        "on",
        "-o",
        out,
      ]);
      expectOneLineError(
        run,
        /--latents-on-device on: the cpu device cannot keep tensors between runs; use --device webgpu, or auto$/,
      );
      expect(filesIn(out)).toEqual([]);
      const bad = await runCli(["compare", "a cat", ...common, "--latents-on-device", "gpu"]);
      expectOneLineError(bad, /argument 'gpu' is invalid/);
    });

    it("a size that is not a multiple of 8", async () => {
      const out = ws.outDir();
      const run = await runCli(["compare", "a cat", ...common, "--size", "132", "-o", out]);
      expectOneLineError(run, /132x132: each side must be a positive multiple of 8/);
      expect(filesIn(out)).toEqual([]);
    });

    it("an output folder or JSON file that cannot be written", async () => {
      const run = await runCli([
        "compare",
        "a cat",
        ...common,
        "--todo",
        "2",
        "-o",
        ws.underRegularFile(),
      ]);
      expectOneLineError(run, /output folder .* is not writable \(ENOTDIR\)/);
      const out = ws.outDir();
      const json = await runCli([
        "compare",
        "a cat",
        ...common,
        "--todo",
        "2",
        "-o",
        out,
        "--json",
        ws.underRegularFile("c.json"),
      ]);
      expectOneLineError(json, /--json: .*regular-file is a file, not a folder$/);
      expect(filesIn(out)).toEqual([]);
    });
  });
});
