// Module hooks for running the TypeScript sources directly (tests and development): `.js`
// imports that name a `.ts` file resolve to it, and `.ts` files are compiled by esbuild. The
// built package never uses this; its generation threads and workers load the compiled `.js`.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { transformSync } from "esbuild";

export async function resolve(specifier, context, next) {
  if (
    specifier.startsWith(".") &&
    specifier.endsWith(".js") &&
    context.parentURL?.endsWith(".ts")
  ) {
    const url = new URL(specifier, context.parentURL);
    if (!existsSync(fileURLToPath(url)))
      return { url: url.href.replace(/\.js$/, ".ts"), shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return next(url, context);
  const path = fileURLToPath(url);
  const { code } = transformSync(readFileSync(path, "utf8"), {
    loader: "ts",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    sourcefile: path,
  });
  return { format: "module", source: code, shortCircuit: true };
}
