// Where `generate` writes its images: never over another file, names from --name's pattern, a
// single image to the file -o names, and the model recorded by name rather than by path; and a
// long run's --json file rewritten after each result.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { writeJsonProgress } from "../../src/cli/output-files.js";
import { readGenerationInfo, readPngFile } from "../../src/index.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const tiny = ["-m", SD15, "--steps", "1", "--size", "64", "--cache-dir", ws.cache];
const generate = (...args: string[]) => runCli(["generate", "a red cube", ...tiny, ...args]);

describe("generate's output files", () => {
  it("never overwrites: the same name twice gives two files, the first unchanged", async () => {
    const out = ws.outDir();
    const first = await generate("--seed", "3", "-o", out, "--name", "same-{seed}");
    expect(first.code, first.stderr).toBe(0);
    const firstPath = first.stdout.trim();
    expect(basename(firstPath)).toBe("same-3.png");
    const before = readFileSync(firstPath);
    const second = await generate("--seed", "3", "-o", out, "--name", "same-{seed}");
    expect(second.code, second.stderr).toBe(0);
    expect(basename(second.stdout.trim())).toBe("same-3-1.png");
    expect(readFileSync(firstPath).equals(before)).toBe(true);
    // Default names from the same second and seed do not collide either.
    const a = await generate("--seed", "5", "-o", out);
    const b = await generate("--seed", "5", "-o", out);
    expect(a.stdout.trim()).not.toBe(b.stdout.trim());
    expect(filesIn(out).sort()).toHaveLength(4);
  });

  it("removes the temporary image files of a killed run, and only those", async () => {
    const out = ws.outDir();
    // A pid no process has (above Linux's pid_max) stands for a run killed mid-write.
    const dead = ws.write(`${basename(out)}/todo-sd-x-0.png.4194999.abc123.tmp`, "partial");
    const live = ws.write(`${basename(out)}/todo-sd-y-0.png.${process.pid}.abc123.tmp`, "partial");
    const run = await generate("--seed", "1", "-o", out);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });

  it("names files by --name's fields", async () => {
    const out = ws.outDir();
    const run = await generate(
      "--seed",
      "9",
      "--batch",
      "2",
      "-o",
      out,
      "--name",
      "{prompt}_{model}_{width}x{height}_{steps}_{seed}_{index}",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(filesIn(out).sort()).toEqual([
      "a-red-cube_sd15-tiny_64x64_1_9_0.png",
      "a-red-cube_sd15-tiny_64x64_1_9_1.png",
    ]);
  });

  it("writes one image to the .png file -o names, and refuses to replace it", async () => {
    const out = ws.outDir();
    const file = join(out, "x.png");
    const run = await generate("--seed", "1", "-o", file);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe(file);
    expect(filesIn(out)).toEqual(["x.png"]);
    const before = readFileSync(file);
    const again = await generate("--seed", "2", "-o", file);
    expectOneLineError(again, /x\.png exists; todo-sd never overwrites/);
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it("records the model by name, not by its path", async () => {
    const out = ws.outDir();
    const run = await generate("--seed", "1", "-o", out);
    expect(run.code, run.stderr).toBe(0);
    const png = readPngFile(run.stdout.trim());
    const info = readGenerationInfo(png.text, run.stdout.trim());
    expect(info.record).toMatchObject({ model: "sd15-tiny" });
    expect(JSON.stringify(png.text)).not.toContain(SD15);
  });

  describe("bad output flags: one line, nothing written", () => {
    it.each([
      [["--batch", "2", "-o", "OUT/x.png"], /names one file, but --batch 2 makes 2 images/],
      [["-o", "OUT", "--name", "sub/{seed}"], /--name.*not a path/],
      [["-o", "OUT", "--name", "{seed}-{nope}"], /unknown field \{nope\}/],
      [["-o", "OUT/x.png", "--name", "{seed}"], /--name names files in an output folder/],
    ])("%j", async (args, pattern) => {
      const out = ws.outDir();
      const run = await generate(...args.map((a) => a.replace("OUT", out)));
      expectOneLineError(run, pattern);
      expect(filesIn(out)).toEqual([]);
    });
  });
});

describe("--json written as a long run goes", () => {
  it("rewrites a file whole after each result, and leaves stdout and no --json alone", () => {
    const out = ws.outDir();
    mkdirSync(out, { recursive: true }); // as checkOutputFile makes it before a run
    const file = join(out, "rows.json");
    writeJsonProgress(file, [{ row: 1 }]);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual([{ row: 1 }]);
    writeJsonProgress(file, [{ row: 1 }, { row: 2 }]);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual([{ row: 1 }, { row: 2 }]);
    // Atomic rewrites: no temporary file left beside it.
    expect(filesIn(out)).toEqual(["rows.json"]);
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      writeJsonProgress("-", [{ row: 1 }]);
      writeJsonProgress(undefined, [{ row: 1 }]);
      expect(stdout).not.toHaveBeenCalled();
    } finally {
      stdout.mockRestore();
    }
  });
});
