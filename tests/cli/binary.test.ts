// The built `todo-sd` binary (dist/cli.js) as a user runs it: exit codes and output streams.
// `npm test` builds first; run `npm run build` before running this file alone.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { fixturePath } from "../fixtures.js";

const CLI = resolve("dist", "cli.js");

function todoSd(...args: string[]) {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing; run npm run build first`);
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("the todo-sd binary", () => {
  it("prints its version and every command in its help", () => {
    expect(todoSd("--version")).toMatchObject({ code: 0, stdout: "0.1.0\n" });
    const help = todoSd("--help");
    expect(help.code).toBe(0);
    for (const command of ["generate", "compare", "info", "convert", "patch", "bench"])
      expect(help.stdout).toMatch(new RegExp(`^ {2}${command} `, "m"));
  });

  it("writes a report on stdout and exits 0", () => {
    const run = todoSd("info", "builtin:sd15", "--size", "1024", "--json");
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ family: "sd1", auto: { factor: 2 } });
  });

  it("fails with one line on stderr and exit code 1", () => {
    const missing = todoSd("generate", "a cat", "-m", fixturePath("no-such-model"));
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toMatch(/^todo-sd: .*no-such-model: no such file or folder.*\n$/);
    const flag = todoSd("info", "builtin:sd15", "--sise", "1024");
    expect(flag.code).toBe(1);
    expect(flag.stderr).toMatch(/^todo-sd: unknown option '--sise' \(Did you mean --size\?\)\n$/);
  });
});
