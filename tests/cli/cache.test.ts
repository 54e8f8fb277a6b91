// The model cache as a user meets it: builds killed with kill -9 leave nothing for long, damaged
// entries are found and rebuilt with a notice, a model built from a truncated weights file is
// never cached, and `todo-sd cache list|clean|verify`.
import { spawn } from "node:child_process";
import {
  closeSync,
  cpSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expectOneLineError, runCli, SD15, SD15_ONNX, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const DIST = resolve("dist", "index.js");
/** The writer convert's files go through (internal, so not on the package's entry). */
const ATOMIC_WRITE = resolve("dist", "util", "atomic-write.js");

/** Runs `body` (ESM, with the built package as `m`) in a child that prints "ready", then kill -9s it. */
async function killedMidWrite(body: string): Promise<number> {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing; run npm run build first`);
  const child = spawn(
    process.execPath,
    ["--input-type=module", "-e", `const m = await import(${JSON.stringify(DIST)});\n${body}`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((done, fail) => {
    child.stdout.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) done();
    });
    child.on("exit", (code) => fail(new Error(`the writer exited (${code}) before it was killed`)));
  });
  const exited = new Promise((done) => child.on("exit", done));
  child.kill("SIGKILL");
  await exited;
  return child.pid!;
}

const generate = (cache: string, ...args: string[]) =>
  runCli([
    "generate",
    "a red cube",
    "-m",
    SD15,
    "--size",
    "64",
    "--steps",
    "1",
    "--seed",
    "1",
    "--cache-dir",
    cache,
    "-o",
    ws.outDir(),
    ...args,
  ]);

function entryOf(cache: string, component: string): string {
  for (const key of readdirSync(cache)) {
    const record = join(cache, key, "entry.json");
    if (
      existsSync(record) &&
      JSON.parse(readFileSync(record, "utf8")).description?.component === component
    )
      return join(cache, key);
  }
  throw new Error(`no ${component} entry in ${cache}`);
}

describe("interrupted writes", () => {
  it("a cache build killed with kill -9 is removed by the next run", async () => {
    const cache = ws.path("cache-killed");
    const pid = await killedMidWrite(`
      const { writeFileSync } = await import("node:fs");
      await new m.ModelCache(${JSON.stringify(cache)}).getOrBuild("k", {}, async (path) => {
        writeFileSync(path, "partial model");
        console.log("ready");
        await new Promise(() => {});
      });`);
    const left = readdirSync(cache).filter((name) => name.includes(`.${pid}.`));
    expect(left).toHaveLength(1);
    const list = await runCli(["cache", "list", "--cache-dir", cache]);
    expect(list.stdout).toMatch(/0 entries, .*; 1 unfinished builds of stopped runs/);
    const run = await generate(cache);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/removed 1 unfinished cache build left by stopped runs/);
    expect(readdirSync(cache).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("convert removes what a conversion killed with kill -9 left in its folder", async () => {
    const out = ws.path("convert-killed");
    const target = join(out, "unet.onnx_data");
    const pid = await killedMidWrite(`
      const { mkdirSync, writeSync } = await import("node:fs");
      const { writeFileAtomically } = await import(${JSON.stringify(ATOMIC_WRITE)});
      mkdirSync(${JSON.stringify(out)}, { recursive: true });
      writeFileAtomically(${JSON.stringify(target)}, (fd) => {
        writeSync(fd, new Uint8Array(1 << 20));
        console.log("ready");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });`);
    expect(readdirSync(out)).toEqual([
      expect.stringMatching(new RegExp(`^unet\\.onnx_data\\.${pid}\\.\\w+\\.tmp$`)),
    ]);
    const run = await runCli([
      "convert",
      SD15,
      "--component",
      "unet",
      "-o",
      join(out, "unet.onnx"),
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /removed 1 unfinished file of stopped runs: unet\.onnx_data\.\d+\.\w+\.tmp/,
    );
    expect(readdirSync(out)).toEqual(["unet.onnx"]);
  });
});

describe("damaged cache entries", () => {
  it("rebuilds a truncated entry and says so", async () => {
    const cache = ws.path("cache-truncated");
    expect((await generate(cache)).code).toBe(0);
    const unet = join(entryOf(cache, "unet"), "model.onnx");
    truncateSync(unet, Math.floor(statSync(unet).size / 2));
    const run = await generate(cache);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /cache entry \w+ \(unet\) is damaged \(model\.onnx has \d+ bytes, \d+ were written\); rebuilding it/,
    );
  });

  it("finds garbage of the right size by its hash: on load, and with cache verify", async () => {
    const cache = ws.path("cache-garbage");
    expect((await generate(cache)).code).toBe(0);
    const unet = join(entryOf(cache, "unet"), "model.onnx");
    const fd = openSync(unet, "r+");
    writeSync(fd, new Uint8Array(64).fill(0xff), 0, 64, 0);
    closeSync(fd);
    const verify = await runCli(["cache", "verify", "--cache-dir", cache]);
    expect(verify.stdout).toMatch(/\(?unet\)? {2}DAMAGED: model\.onnx does not match its hash/);
    expectOneLineError(verify, /1 damaged cache entry; todo-sd cache clean removes them/);
    const run = await generate(cache);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /cache entry \w+ \(unet\) is damaged \(model\.onnx does not match its hash\); rebuilding it/,
    );
    expect((await runCli(["cache", "verify", "--cache-dir", cache])).code).toBe(0);
    const clean = await runCli(["cache", "clean", "--all", "--cache-dir", cache]);
    expect(clean.stdout).toMatch(/removed 0 unfinished builds and \d+ entries/);
    expect(readdirSync(cache).filter((name) => name !== "tokenizers")).toEqual([]);
  });

  it("never caches a model patched from a truncated weights.pb", async () => {
    const folder = ws.path("onnx-truncated");
    cpSync(SD15_ONNX, folder, { recursive: true });
    const weights = join(folder, "unet", "weights.pb");
    truncateSync(weights, Math.floor(statSync(weights).size / 2));
    const cache = ws.path("cache-weights");
    const run = await runCli([
      "generate",
      "a red cube",
      "-m",
      folder,
      "--size",
      "128",
      "--steps",
      "1",
      "--todo",
      "2",
      "--cache-dir",
      cache,
      "-o",
      ws.outDir(),
    ]);
    expect(run.code).not.toBe(0);
    expect(run.stderr.trimEnd().split("\n").at(-1)).toMatch(/weights\.pb .*truncated/);
    const entries = existsSync(cache)
      ? readdirSync(cache).filter((name) => name !== "tokenizers")
      : [];
    expect(entries).toEqual([]);
  });
});
