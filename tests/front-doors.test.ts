// The package's entries: web/ reaches the library only through the browser entry, and what the
// browser entry (and the platform-neutral core under it) imports never reaches a Node module.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");

/**
 * The module specifiers of a file's import and export-from lines (a plain text scan); with
 * `runtimeOnly`, without the type-only ones, which compile away.
 */
function specifiers(path: string, runtimeOnly = false): string[] {
  const text = readFileSync(path, "utf8");
  return [...text.matchAll(/^(import|export)(\s+type\b)?[^;]*?from\s+"([^"]+)"/gms)]
    .filter((m) => !(runtimeOnly && m[2]))
    .map((m) => m[3]);
}

/** Every src file `entry` loads at run time, with the bare (package or node:) specifiers it uses. */
function reachable(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const bare: string[] = [];
    seen.set(file, bare);
    for (const spec of specifiers(file, true)) {
      if (spec.startsWith(".")) visit(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else bare.push(spec);
    }
  };
  visit(entry);
  return seen;
}

describe("front doors", () => {
  it("web/ imports the library only through src/browser.ts", () => {
    const web = join(root, "web");
    const files = readdirSync(web).filter((name) => name.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(0);
    const intoSrc = files.flatMap((name) =>
      specifiers(join(web, name))
        .filter((spec) => spec.includes("src/"))
        .map((spec) => `${name}: ${spec}`),
    );
    expect(intoSrc.length).toBeGreaterThan(0);
    expect(intoSrc.filter((line) => !line.endsWith(": ../src/browser.js"))).toEqual([]);
  });

  it.each(["core.ts", "browser.ts"])("src/%s reaches no Node module", (entry) => {
    const files = reachable(join(root, "src", entry));
    expect(files.size).toBeGreaterThan(5);
    const nodeOnly = [...files].flatMap(([file, bare]) =>
      bare
        .filter((spec) => spec.startsWith("node:") || spec === "onnxruntime-node")
        .map((spec) => `${file.slice(root.length + 1)}: ${spec}`),
    );
    expect(nodeOnly).toEqual([]);
  });

  it("package.json maps the browser condition and the subpaths to the entries", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(pkg.exports["."].browser).toBe("./dist/browser.js");
    expect(pkg.exports["."].default).toBe("./dist/index.js");
    expect(pkg.exports["./browser"].default).toBe("./dist/browser.js");
    expect(pkg.exports["./core"].default).toBe("./dist/core.js");
  });
});
