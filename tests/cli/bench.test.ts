// `todo-sd bench` on the sd15-tiny fixture: JSON rows on stdout with --json -, and bad input.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const quick = ["--warmup", "0", "--repeats", "1", "--cache-dir", ws.cache];
/** One row: the tiny SD 1.5 at 64 px, no reduction. */
const oneRow = ["bench", "-m", SD15, "--sizes", "64", "--methods", "none"];

interface BenchRow {
  width: number;
  height: number;
  method: string;
  engine: string;
  reduction: string;
  medianMs: number;
  itPerSecond: number;
  firstCallMs?: number;
  error?: string;
}

describe("bench", () => {
  it("prints JSON rows alone on stdout with --json -, the table on stderr", async () => {
    const run = await runCli([
      "bench",
      "-m",
      SD15,
      "--sizes",
      "128,128x64",
      "--methods",
      "none,todo",
      "--todo",
      "2",
      "--json",
      "-",
      ...quick,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const rows = JSON.parse(run.stdout) as BenchRow[];
    expect(rows.map((r) => [r.width, r.height, r.method])).toEqual([
      [128, 128, "none"],
      [128, 128, "todo"],
      [128, 64, "none"],
      [128, 64, "todo"],
    ]);
    for (const row of rows) {
      expect(row.error).toBeUndefined();
      expect(row.medianMs).toBeGreaterThan(0);
      expect(row.itPerSecond).toBeCloseTo(1000 / row.medianMs, 6);
    }
    expect(rows[0].reduction).toBe("token reduction off");
    expect(rows[1].reduction).toMatch(/^ToDo nearest factor 2 at level 1/);
    expect(rows.map((r) => r.engine)).toEqual(Array(4).fill("onnxruntime"));
    expect(run.stderr).toMatch(/^size \| engine \| method \| median ms/m);
  });

  it("prints the table on stdout and writes the JSON file", async () => {
    const out = ws.outDir();
    const json = join(out, "bench.json");
    const run = await runCli(["bench", "-m", SD15, "--sizes", "64", "--json", json, ...quick]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^size \| engine \| method \| median ms/);
    expect(lines.slice(1).map((l) => l.split(" | ").slice(0, 3).join(" "))).toEqual([
      "64x64 onnxruntime none",
      "64x64 onnxruntime todo",
    ]);
    const rows = JSON.parse(readFileSync(json, "utf8")) as BenchRow[];
    expect(rows).toHaveLength(2);
    // Each row's phases on stderr, so a slow one shows where it is.
    expect(run.stderr).toMatch(/^64x64 none: building\/loading$/m);
    expect(run.stderr).toMatch(/^64x64 none: loaded in \d+\.\d s; 0 warm-up, 1 timed calls$/m);
    // Without warm-up calls the first timed call is the row's first call.
    for (const row of rows) expect(row.firstCallMs).toBeGreaterThan(0);
  });

  it("reports the warm-up calls' times on stderr and the first call's in the row", async () => {
    const run = await runCli([
      ...oneRow,
      "--warmup",
      "2",
      "--repeats",
      "1",
      "--cache-dir",
      ws.cache,
      "--json",
      "-",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /^64x64 none: warm-up calls \d+\.\d, \d+\.\d s \(the first compiles the kernels it meets\)$/m,
    );
    const [row] = JSON.parse(run.stdout) as BenchRow[];
    expect(row.firstCallMs).toBeGreaterThan(0);
  });

  it("keeps the rows it measured in the JSON file when a later engine cannot run", async () => {
    const out = ws.outDir();
    const json = join(out, "bench.json");
    const run = await runCli([
      ...oneRow,
      "--engines",
      "onnxruntime,kernels",
      "--json",
      json,
      ...quick,
    ]);
    // The kernels engine needs WebGPU: the run fails on it, after onnxruntime's row.
    expect(run.code).not.toBe(0);
    expect(run.stderr.trim().split("\n").at(-1)).toMatch(
      /^todo-sd: the kernels engine runs on WebGPU only, not on device cpu/,
    );
    const rows = JSON.parse(readFileSync(json, "utf8")) as BenchRow[];
    expect(rows.map((r) => [r.width, r.method, r.engine])).toEqual([[64, "none", "onnxruntime"]]);
    expect(rows[0].medianMs).toBeGreaterThan(0);
    expect(filesIn(out)).toEqual(["bench.json"]);
  });

  describe("bad input: one line on stderr, non-zero exit, no file written", () => {
    it("an unknown flag, and an unknown method", async () => {
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--size", "64"]),
        /unknown option '--size'/,
      );
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--methods", "none,fast"]),
        /unknown bench method "fast"/,
      );
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--webgpu-buffer-cache", "forever"]),
        /option '--webgpu-buffer-cache <mode>' argument 'forever' is invalid/,
      );
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--webgpu-mem-pattern", "yes"]),
        /option '--webgpu-mem-pattern <on\|off>' argument 'yes' is invalid/,
      );
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--kernel-path", "tensor-cores"]),
        /unknown kernel path "tensor-cores": use one of auto, tensor-core, portable/,
      );
      // A kernel path for onnxruntime (the CPU's engine).
      expectOneLineError(
        await runCli(["bench", "-m", SD15, "--kernel-path", "portable", "--sizes", "64"]),
        /^todo-sd: a kernel path \(portable\) applies to the kernels engine, and onnxruntime runs these models: use --engine kernels$/,
      );
    });

    it("a missing or truncated model", async () => {
      const out = ws.outDir();
      const json = join(out, "bench.json");
      const missing = await runCli(["bench", "-m", ws.path("gone"), "--json", json, ...quick]);
      expectOneLineError(missing, /gone: no such file or folder/);
      const truncated = await runCli([
        "bench",
        "-m",
        ws.truncatedCheckpoint(),
        "--json",
        "-",
        ...quick,
      ]);
      expectOneLineError(truncated, /not a valid safetensors file/);
      expect(truncated.stdout).toBe("");
      expect(filesIn(out)).toEqual([]);
    });

    it("a size that is not a multiple of 8", async () => {
      const run = await runCli(["bench", "-m", SD15, "--sizes", "64,100", ...quick]);
      expectOneLineError(run, /100x100: each side must be a positive multiple of 8/);
    });

    it("a JSON file that cannot be written", async () => {
      const run = await runCli([
        "bench",
        "-m",
        SD15,
        "--json",
        ws.underRegularFile("b.json"),
        ...quick,
      ]);
      expectOneLineError(run, /--json: .*regular-file is a file, not a folder$/);
      expect(run.stdout).toBe("");
    });
  });
});
