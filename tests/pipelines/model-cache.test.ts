import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { hashKey, ModelCache, stableStringify } from "../../src/pipelines/model-cache.js";
import { fileIdentity } from "../../src/util/file-identity.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-cache-"));

/** A tiny valid ONNX model whose output is named `name`. */
function tinyModel(name: string): Uint8Array {
  const g = new GraphBuilder("float32");
  const x = g.input("x", "float32", [1]);
  g.output(g.add(x, x), name, "float32", [1]);
  return buildModelBytes(g);
}
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("ModelCache", () => {
  it("builds an entry once and reuses it", async () => {
    const cache = new ModelCache(join(work, "a"));
    let builds = 0;
    const build = (path: string) => {
      builds++;
      writeFileSync(path, tinyModel("model"));
    };
    const first = await cache.getOrBuild("k1", { x: 1 }, build);
    const second = await cache.getOrBuild("k1", { x: 1 }, build);
    expect(first.built).toBe(true);
    expect(second.built).toBe(false);
    expect(builds).toBe(1);
    expect(readFileSync(second.modelPath).equals(tinyModel("model"))).toBe(true);
    expect(JSON.parse(readFileSync(join(second.dir, "entry.json"), "utf8")).description).toEqual({
      x: 1,
    });
  });

  it("survives two builders racing for one entry", async () => {
    const cache = new ModelCache(join(work, "b"));
    const slowBuild = (content: string) => async (path: string) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      writeFileSync(path, tinyModel(content));
    };
    const [a, b] = await Promise.all([
      cache.getOrBuild("race", {}, slowBuild("one")),
      cache.getOrBuild("race", {}, slowBuild("two")),
    ]);
    expect(a.modelPath).toBe(b.modelPath);
    const bytes = readFileSync(a.modelPath);
    expect(bytes.equals(tinyModel("one")) || bytes.equals(tinyModel("two"))).toBe(true);
    expect(readdirSync(join(work, "b"))).toEqual(["race"]);
  });

  it("leaves nothing behind when a build fails", async () => {
    const cache = new ModelCache(join(work, "c"));
    await expect(
      cache.getOrBuild("bad", {}, () => {
        throw new Error("weights unreadable");
      }),
    ).rejects.toThrow("weights unreadable");
    expect(readdirSync(join(work, "c"))).toEqual([]);
  });

  it("names a cache folder that cannot be created", async () => {
    const file = join(work, "plain-file");
    writeFileSync(file, "x");
    const cache = new ModelCache(join(file, "sub"));
    await expect(cache.getOrBuild("k", {}, () => {})).rejects.toThrow(
      /cache folder .*plain-file\/sub cannot be created \(ENOTDIR\)/,
    );
  });
});

describe("keys", () => {
  it("hash descriptions independently of key order", () => {
    expect(stableStringify({ b: 1, a: [1, { d: 2, c: 3 }] })).toBe('{"a":[1,{"c":3,"d":2}],"b":1}');
    expect(hashKey({ a: 1, b: 2 })).toBe(hashKey({ b: 2, a: 1 }));
    expect(hashKey({ a: 1 })).not.toBe(hashKey({ a: 2 }));
  });

  it("identify a file by size, time and leading bytes", () => {
    const path = join(work, "w.bin");
    writeFileSync(path, "abc");
    const before = fileIdentity(path);
    writeFileSync(path, "abd");
    const after = fileIdentity(path);
    expect(before.size).toBe(3);
    expect(after.head).not.toBe(before.head);
  });
});
