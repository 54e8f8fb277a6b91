// The README's quickstart, run as a new user runs it: each command read from README.md, on the
// fixture models, with no flag a user would need to add (no --tokenizer, no --config-from). For
// the test machine only: the models are the tiny fixtures, the device is the CPU, sizes and steps
// are cut (compare gets --todo 2, since --todo auto reduces nothing below 769 px), and serve
// listens on a free port.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixturePath } from "../fixtures.js";
import { Workspace } from "./helpers.js";

const ws = new Workspace();
const CLI = resolve("dist", "cli.js");
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
  ws.remove();
});

/** The `npx todo-sd ...` commands of the README's Quickstart block, as argument lists. */
function quickstartCommands(): string[][] {
  const readme = readFileSync("README.md", "utf8");
  const section = readme.slice(readme.indexOf("## Quickstart"));
  const block = section.slice(
    section.indexOf("```sh") + 5,
    section.indexOf("```", section.indexOf("```sh") + 5),
  );
  const lines = block
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((line) => line.trim());
  return lines
    .filter((line) => line.startsWith("npx todo-sd "))
    .map((line) => [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]).slice(2));
}

const MODELS: Readonly<Record<string, string>> = {
  "./stable-diffusion-v1-5": fixturePath("pipelines", "sd15-tiny"),
  "./sd15.safetensors": fixturePath("checkpoints", "sd15-tiny.safetensors"),
  "runwayml/stable-diffusion-v1-5": fixturePath("pipelines", "sd15-tiny"),
};

/** The test machine's substitutions; anything else is passed exactly as the README writes it. */
function forTheTestMachine(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = [args[i], args[i + 1]];
    if (flag === "-m" && MODELS[value]) out.push(flag, MODELS[args[++i]]);
    else if (flag === "--device") out.push(flag, args[++i] === "webgpu" ? "cpu" : value);
    else if (flag === "--size") {
      i++;
      out.push(flag, "128");
    } else if (flag === "--steps") out.push(flag, String(Math.min(2, Number(args[++i]))));
    else out.push(flag);
  }
  if (out[0] === "compare") out.push("--todo", "2", "--steps", "1");
  if (out[0] === "serve") out.push("--port", "0");
  return out;
}

const env = { ...process.env, TODO_SD_CACHE: ws.cache };

describe("the README's quickstart", () => {
  const commands = quickstartCommands();

  it("has the three commands", () => {
    expect(commands.map((c) => c[0])).toEqual(["generate", "compare", "serve"]);
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing; run npm run build first`);
  });

  it.each(commands.filter((c) => c[0] !== "serve").map((c) => [c[0], c] as const))(
    "%s runs with no extra flags",
    (_, command) => {
      const run = spawnSync(process.execPath, [CLI, ...forTheTestMachine(command)], {
        cwd: ws.root,
        env,
        encoding: "utf8",
        timeout: 300_000,
      });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stderr).not.toMatch(/warning/);
      const pngs = readdirSync(join(ws.root, "out")).filter((f) =>
        f.startsWith(`todo-sd-${command[0] === "compare" ? "compare-" : ""}`),
      );
      expect(pngs.length).toBeGreaterThan(0);
    },
  );

  it("serve starts and answers", async () => {
    const command = commands.find((c) => c[0] === "serve");
    expect(command).toBeDefined();
    const child = spawn(process.execPath, [CLI, ...forTheTestMachine(command!)], {
      cwd: ws.root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const url = await new Promise<string>((done, fail) => {
      child.stdout.on("data", (chunk: Buffer) => {
        const match = /http:\/\/\S+/.exec(chunk.toString());
        if (match) done(match[0]);
      });
      child.on("exit", (code) => fail(new Error(`serve exited (${code}): ${stderr}`)));
    });
    const page = await fetch(url);
    expect(page.status).toBe(200);
    child.kill("SIGTERM");
  });
});
