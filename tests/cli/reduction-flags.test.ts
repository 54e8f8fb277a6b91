// Reduction flags do what they say or fail naming the conflict: ToDo first and ToMe after the
// switch is expressible, ignored flags are refused, and a bench row whose method reduces nothing
// at its size says so and claims no speedup.
import { afterAll, describe, expect, it } from "vitest";
import { expectOneLineError, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const tiny = ["-m", SD15, "--steps", "1", "--cache-dir", ws.cache];

describe("reduction flags on the command line", () => {
  it("runs ToDo first, then ToMe with ratio r after the switch", async () => {
    const run = await runCli([
      "generate",
      "a red cube",
      ...tiny,
      "--size",
      "128",
      "--todo",
      "2",
      "--todo-switch",
      "0.8",
      "--todo-secondary",
      "tome",
      "--tome",
      "0.5",
      "-o",
      ws.outDir(),
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /token reduction: ToDo nearest factor 2 at level 1; .*; ToMe once t\/1000 <= 0\.8 \(ToMe ratio 0\.5/,
    );
  });

  it.each([
    [["--todo", "2", "--tome", "0.5"], /--todo 2 and --tome 0\.5 both choose the method/],
    [["--tome-level2", "0.5"], /--tome-level2: it is a ToMe setting, but ToMe is not in use/],
    [["--tome-random"], /--tome-random: it is a ToMe setting/],
  ])("refuses %j with one line", async (flags, message) => {
    const out = ws.outDir();
    const run = await runCli([
      "generate",
      "a red cube",
      ...tiny,
      "--size",
      "64",
      ...flags,
      "-o",
      out,
    ]);
    expectOneLineError(run, message);
  });

  it("bench: a method that reduces nothing at a size says so and reports no speedup", async () => {
    const run = await runCli([
      "bench",
      "-m",
      SD15,
      "--cache-dir",
      ws.cache,
      "--sizes",
      "256",
      "--methods",
      "none,todo",
      "--warmup",
      "0",
      "--repeats",
      "1",
      "--json",
      "-",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const rows = JSON.parse(run.stdout) as {
      method: string;
      reduction: string;
      reduces?: boolean;
    }[];
    const todo = rows.find((r) => r.method === "todo");
    expect(todo).toMatchObject({
      reduces: false,
      reduction: "no reduction: todo reduces nothing at 256x256",
    });
    const tableRow = run.stderr
      .split("\n")
      .find((line) => line.startsWith("256x256 | onnxruntime | todo"));
    expect(tableRow?.split(" | ")[6]).toBe("-");
  });
});
