// The shape of src/: imports flow one way, down the layers of DESIGN.md, and no file reaches
// itself through its imports; web/ reaches the library only through the browser entry, and what
// the browser entry (and the platform-neutral core under it) loads never reaches a Node module.
// A plain text scan of the import and export-from statements (type imports and import("...")
// included), so it costs milliseconds and loads nothing.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "src");

/**
 * The layers, lowest first. A file may import files of its own folder and of lower layers only;
 * folders in one layer do not import each other. A folder is a top-level folder of src/, a
 * top-level file stands for itself.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["util"],
  // Each model's config read once from its config.json, below the weight layouts and the builders.
  ["configs"],
  // Leaves over util: ONNX protos and builders, checkpoint files, images, downloads, the
  // tokenizer, the samplers, our WebGPU layer.
  ["onnx", "weights", "image", "hub", "tokenizers", "schedulers", "gpu"],
  // ToDo/ToMe graph pieces (used by the builders and the patch rules); the onnxruntime wrapper.
  ["reduce", "runtime"],
  // Graph builders, rewrite rules for graphs exported elsewhere, LoRA over checkpoint weights.
  ["models", "patch", "lora"],
  // Our engine: runs the builders' models on src/gpu kernels behind the runner interface.
  ["engine"],
  // Model folders into components; txt2img, img2img.
  ["pipelines"],
  ["bench", "serve"],
  // The package's entries: the platform-neutral core, the builders and the rewrite rules (own
  // subpaths), then the Node and the browser entries.
  ["core.ts", "builders.ts", "patching.ts"],
  ["index.ts", "browser.ts"],
  ["cli"],
  ["cli.ts"],
];

const LAYER_OF = new Map<string, number>(
  LAYERS.flatMap((names, level) => names.map((name) => [name, level] as const)),
);

/** Every .ts file below `dir`, as paths relative to src/ with forward slashes. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [relative(SRC, path).split(sep).join("/")] : [];
  });
}

const STATIC_IMPORT = /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm;
const SIDE_EFFECT_IMPORT = /^\s*import\s*["']([^"']+)["']/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The relative specifiers `text` imports from. */
function importSpecifiers(text: string): string[] {
  const found: string[] = [];
  for (const pattern of [STATIC_IMPORT, SIDE_EFFECT_IMPORT, DYNAMIC_IMPORT]) {
    for (const match of text.matchAll(pattern)) found.push(match[1]);
  }
  return found.filter((specifier) => specifier.startsWith("."));
}

/** The src/-relative file a specifier of `from` names (`./x.js` is the source `./x.ts`). */
function resolveImport(from: string, specifier: string): string {
  const target = posix.normalize(posix.join(posix.dirname(from), specifier));
  return target.replace(/\.js$/, ".ts");
}

function layerName(file: string): string {
  return file.split("/")[0];
}

/** file -> the src/ files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(join(SRC, file), "utf8");
    graph.set(
      file,
      importSpecifiers(text).map((specifier) => resolveImport(file, specifier)),
    );
  }
  return graph;
}

/** One cycle of each strongly connected component with more than one file (Tarjan, 1972). */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop() as string;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    const selfImport = (graph.get(node) ?? []).includes(node);
    if (component.length > 1 || selfImport) cycles.push(cycleThrough(graph, new Set(component)));
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

/** A path from the component's first file back to itself, inside the component (BFS). */
function cycleThrough(
  graph: ReadonlyMap<string, readonly string[]>,
  component: ReadonlySet<string>,
): string[] {
  const start = [...component].sort()[0];
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift() as string;
    for (const next of graph.get(node) ?? []) {
      if (!component.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at = node; at !== start; at = previous.get(at) as string) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

describe("architecture of src/", () => {
  const graph = importGraph();

  it("reads the imports it checks", () => {
    expect(graph.size).toBeGreaterThan(100);
    // Every relative import names a file that exists, so the scan sees the real edges.
    const missing = [...graph].flatMap(([file, targets]) =>
      targets.filter((target) => !graph.has(target)).map((target) => `${file} -> ${target}`),
    );
    expect(missing).toEqual([]);
  });

  it("puts every file in a layer", () => {
    const unplaced = [...graph.keys()].filter((file) => !LAYER_OF.has(layerName(file)));
    expect(unplaced, "add their folder (or top-level file) to LAYERS").toEqual([]);
  });

  it("imports only downwards through the layers", () => {
    const upward: string[] = [];
    for (const [file, targets] of graph) {
      const from = layerName(file);
      for (const target of targets) {
        const to = layerName(target);
        if (from === to) continue;
        const fromLevel = LAYER_OF.get(from);
        const toLevel = LAYER_OF.get(to);
        if (fromLevel === undefined || toLevel === undefined || toLevel >= fromLevel) {
          upward.push(`${file} -> ${target}`);
        }
      }
    }
    expect(upward).toEqual([]);
  });

  it("has no import cycle between files", () => {
    expect(findCycles(graph).map((cycle) => cycle.join(" -> "))).toEqual([]);
  });
});

/**
 * The module specifiers of a file's import and export-from lines; with `runtimeOnly`, without
 * the type-only ones, which compile away.
 */
function moduleSpecifiers(path: string, runtimeOnly = false): string[] {
  const text = readFileSync(path, "utf8");
  return [...text.matchAll(/^(import|export)(\s+type\b)?[^;]*?from\s+"([^"]+)"/gms)]
    .filter((m) => !(runtimeOnly && m[2]))
    .map((m) => m[3]);
}

/** Every src file `entry` loads at run time, with the bare (package or node:) specifiers it uses. */
function loadedAtRunTime(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const bare: string[] = [];
    seen.set(file, bare);
    for (const spec of moduleSpecifiers(file, true)) {
      if (spec.startsWith(".")) visit(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else bare.push(spec);
    }
  };
  visit(entry);
  return seen;
}

describe("the package's entries", () => {
  it("web/ imports the library only through src/browser.ts", () => {
    const web = join(ROOT, "web");
    const files = readdirSync(web).filter((name) => name.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(0);
    const intoSrc = files.flatMap((name) =>
      moduleSpecifiers(join(web, name))
        .filter((spec) => spec.includes("src/"))
        .map((spec) => `${name}: ${spec}`),
    );
    expect(intoSrc.length).toBeGreaterThan(0);
    expect(intoSrc.filter((line) => !line.endsWith(": ../src/browser.js"))).toEqual([]);
  });

  it.each(["core.ts", "browser.ts"])("src/%s reaches no Node module", (entry) => {
    const files = loadedAtRunTime(join(SRC, entry));
    expect(files.size).toBeGreaterThan(5);
    const nodeOnly = [...files].flatMap(([file, bare]) =>
      bare
        .filter((spec) => spec.startsWith("node:") || spec === "onnxruntime-node")
        .map((spec) => `${relative(SRC, file)}: ${spec}`),
    );
    expect(nodeOnly).toEqual([]);
  });

  it("the Node entry and the core leave the builders, the rewrite rules and internals out", () => {
    // The builders and the rewrite rules have their own subpaths; our GPU layer, the engine and
    // the benchmarks are internal.
    const elsewhere = ["onnx", "configs", "weights", "models", "patch", "gpu", "engine", "bench"];
    const reexports = ["index.ts", "core.ts"].flatMap((entry) =>
      moduleSpecifiers(join(SRC, entry)).map((spec) => `${entry}: ${spec}`),
    );
    expect(reexports.length).toBeGreaterThan(10);
    const leaked = reexports.filter((line) =>
      elsewhere.some((folder) => line.includes(`: ./${folder}/`)),
    );
    expect(leaked).toEqual([]);
  });

  it("package.json maps the browser condition and each subpath to its entry", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    expect(pkg.exports["."].browser).toBe("./dist/browser.js");
    expect(pkg.exports["."].default).toBe("./dist/index.js");
    expect(pkg.exports["./browser"].default).toBe("./dist/browser.js");
    expect(pkg.exports["./core"].default).toBe("./dist/core.js");
    expect(pkg.exports["./builders"].default).toBe("./dist/builders.js");
    expect(pkg.exports["./patch"].default).toBe("./dist/patching.js");
  });
});

describe("the checks themselves", () => {
  it("find imports of every form and skip packages", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "../b/b.js";',
      "import {",
      "  c,",
      "  d,",
      '} from "./cd.js";',
      'export { e } from "./e.js";',
      'export * from "./f.js";',
      'import "./side-effect.js";',
      'const g = await import("./g.js");',
      'type H = import("./h.js").H;',
      'import { readFileSync } from "node:fs";',
      ' * import { inAComment } from "./not-a-line-start.js";',
    ].join("\n");
    expect(importSpecifiers(text).sort()).toEqual(
      [
        "../b/b.js",
        "./a.js",
        "./cd.js",
        "./e.js",
        "./f.js",
        "./g.js",
        "./h.js",
        "./side-effect.js",
      ].sort(),
    );
  });

  it("find a cycle and its path, and none in a tree", () => {
    const cyclic = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts", "d.ts"]],
      ["d.ts", []],
    ]);
    expect(findCycles(cyclic)).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
    const tree = new Map([
      ["a.ts", ["b.ts", "c.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", []],
    ]);
    expect(findCycles(tree)).toEqual([]);
  });
});
