// Jobs beyond the machine are refused before anything is built, with the size and the estimate;
// `info --size` prints the estimate. The estimate's arithmetic is checked term by term.
import { afterAll, describe, expect, it } from "vitest";
import { estimateMemory } from "../../src/pipelines/memory-estimate.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const generate = (...args: string[]) => {
  const out = ws.outDir();
  return runCli([
    "generate",
    "a cube",
    "-m",
    SD15,
    "--steps",
    "1",
    "--cache-dir",
    ws.cache,
    "-o",
    out,
    ...args,
  ]).then((run) => ({ run, out }));
};

describe("memory", () => {
  it("refuses a size over --max-pixels before building anything", async () => {
    const { run, out } = await generate("--size", "100000");
    expectOneLineError(
      run,
      /100000x100000 is 10000\.0 megapixels, over the 16\.8 allowed \(--max-pixels 16777216\)/,
    );
    expect(filesIn(out)).toEqual([]);
    expect(filesIn(ws.cache).filter((f) => f.endsWith(".onnx"))).toEqual([]);
    const small = await generate("--size", "256", "--max-pixels", "4096");
    expectOneLineError(
      small.run,
      /256x256 is 0\.1 megapixels, over the 0\.0 allowed \(--max-pixels 4096\)/,
    );
  });

  it("refuses a job whose estimate exceeds the machine's memory, naming the estimate", async () => {
    // 16000 x 1000 px is under the pixel bound, but its full attention at level 1 is terabytes.
    const { run, out } = await generate("--width", "16000", "--height", "1000", "--todo", "1");
    expectOneLineError(
      run,
      /^todo-sd: 16000x1000 needs about [\d.]+ TB \(weights .*attention scores [\d.]+ TB.*\), more than this machine's [\d.]+ GB/,
    );
    expect(filesIn(out)).toEqual([]);
  });

  it("info --size prints the estimate, and ToDo shrinks its attention", async () => {
    const at = async (size: string, ...flags: string[]) => {
      const run = await runCli(["info", SD15, "--size", size, "--json", ...flags]);
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout).memory as Record<string, { total: number; attention: number }>;
    };
    const small = await at("512");
    const large = await at("2048");
    expect(large.cpu.total).toBeGreaterThan(small.cpu.total);
    expect(large.gpu.attention).toBe(0);
    const text = await runCli(["info", SD15, "--size", "1024"]);
    expect(text.stdout).toMatch(
      /memory at 1024x1024, batch 1 with guidance, --todo auto, cpu: about [\d.]+ [MG]B \(weights/,
    );
  });

  it("adds up the terms it documents", () => {
    // Levels of 4 and 8 channels, 2 heads at level 1; 64 x 64 px: latent 8 x 8 (64 tokens), 16 at level 2.
    const estimate = estimateMemory(
      { unetChannels: [4, 8], unetHeads: [2, 0], vaeChannels: [2, 4], weightBytes: 100 },
      {
        width: 64,
        height: 64,
        batch: 1,
        guided: true,
        activationBytes: 4,
        materialisedScores: true,
      },
    );
    const rows = 2;
    const skips = 3 * rows * 4 * 64 * 4 + 3 * rows * 8 * 16 * 4;
    const widest = Math.max(10 * rows * 4 * 64 * 4, 10 * rows * 8 * 16 * 4);
    const attention = rows * 2 * 64 * 64 * 4;
    const vae = Math.max(6 * 2 * 4096 * 4, (6 * 4 * 4096 * 4) / 4) + 64 * 64 * 4;
    expect(estimate).toEqual({
      weights: 100,
      unet: skips + widest,
      attention,
      vae,
      total: 100 + Math.max(skips + widest + attention, vae),
    });
    // ToDo's factor 2 at level 1 divides the keys by 4.
    const reduced = estimateMemory(
      { unetChannels: [4, 8], unetHeads: [2, 0], vaeChannels: [2, 4], weightBytes: 100 },
      {
        width: 64,
        height: 64,
        batch: 1,
        guided: true,
        activationBytes: 4,
        materialisedScores: true,
        keyFactors: [2, 1],
      },
    );
    expect(reduced.attention).toBe(attention / 4);
  });
});
