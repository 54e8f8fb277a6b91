// NaN images are never written: absurd numbers are refused before any work, and a generation
// whose latents or image turn non-finite stops with one line naming the step, writes nothing and
// exits non-zero.
import { afterAll, describe, expect, it } from "vitest";
import { encodeSafetensors } from "../../src/weights/safetensors.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const tiny = ["-m", SD15, "--size", "64", "--steps", "2", "--scheduler", "Euler"];
const generate = (out: string, ...args: string[]) =>
  runCli(["generate", "a red cube", ...tiny, "--cache-dir", ws.cache, "-o", out, ...args]);

function latentsFile(name: string, value: number): string {
  const data = new Float32Array(4 * 8 * 8).fill(0.5);
  data[17] = value;
  return ws.write(
    name,
    encodeSafetensors({ latents: { dtype: "F32", shape: [1, 4, 8, 8], data } }),
  );
}

describe("non-finite numbers", () => {
  it("refuses --cfg beyond any usable guidance, before loading the model", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--cfg", "1e308");
    expectOneLineError(run, /--cfg 1e\+308 is beyond any usable guidance/);
    expect(filesIn(out)).toEqual([]);
  });

  it("warns about --cfg far above the usual range, and still generates", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--cfg", "60", "--seed", "1");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/warning: --cfg 60 is far above the usual 1 to 20/);
    expect(filesIn(out)).toHaveLength(1);
  });

  it("refuses --latents holding NaN", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--latents", latentsFile("nan.safetensors", Number.NaN));
    expectOneLineError(
      run,
      /--latents: .*nan\.safetensors holds a non-finite value \(NaN at index 17\)/,
    );
    expect(filesIn(out)).toEqual([]);
  });

  it("stops when the latents overflow, naming where, and writes nothing", async () => {
    const out = ws.outDir();
    const run = await generate(out, "--latents", latentsFile("huge.safetensors", 3e38));
    // The model's summary and progress come first; the error is the one last line.
    expect(run.code).not.toBe(0);
    expect(run.stderr.trimEnd().split("\n").at(-1)).toMatch(
      /^todo-sd: the starting latents hold NaN or infinite values; the given latents are broken$/,
    );
    expect(filesIn(out)).toEqual([]);
    // Finite but absurd latents: the image turns NaN; no black PNG is written.
    const image = await generate(out, "--latents", latentsFile("large.safetensors", 1e37));
    expect(image.code).not.toBe(0);
    expect(image.stderr.trimEnd().split("\n").at(-1)).toMatch(
      /^todo-sd: the VAE decoded NaN or infinite values from latents as large as .*; check the given latents/,
    );
    expect(filesIn(out)).toEqual([]);
  });
});
