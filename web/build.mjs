// Builds the demo page into a folder the server serves (default dist/web): the page's script and
// the engine worker bundled by esbuild with the library's browser-safe modules and
// onnxruntime-web, the HTML and CSS, and onnxruntime-web's WebAssembly files, so that nothing is
// fetched from elsewhere. Usage: node web/build.mjs [out-dir]
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const outDir = resolve(process.argv[2] ?? join(root, "dist", "web"));

// The runtime files the page loads at run time (src/runtime/web.ts names the same ones).
const runtimeSource = readFileSync(join(root, "src", "runtime", "web.ts"), "utf8");
const runtimeFiles = [...runtimeSource.matchAll(/"(ort-wasm-[a-z.-]+\.(?:mjs|wasm))"/g)].map(
  (m) => m[1],
);
if (runtimeFiles.length === 0) throw new Error("src/runtime/web.ts names no runtime files");

rmSync(outDir, { recursive: true, force: true });
mkdirSync(join(outDir, "ort"), { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "app.ts"), "engine-worker": join(here, "engine-worker.ts") },
  outdir: outDir,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome113", "firefox121", "safari17"],
  // onnxruntime-web's build that loads its WebAssembly loader from wasmPaths (served from /ort/)
  // instead of embedding it, so its worker threads can load it too.
  conditions: ["onnxruntime-web-use-extern-wasm"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
  metafile: true,
});

// Node-only modules must never reach the page: fail loudly if one did.
for (const input of Object.keys(result.metafile.inputs)) {
  if (input.startsWith("node:") || /\bonnxruntime-node\b/.test(input))
    throw new Error(`the page bundle pulled in ${input}`);
}

for (const file of ["index.html", "style.css"]) copyFileSync(join(here, file), join(outDir, file));
const require = createRequire(import.meta.url);
for (const file of runtimeFiles)
  copyFileSync(require.resolve(`onnxruntime-web/${file}`), join(outDir, "ort", file));

const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
console.log(`web page built in ${outDir} (${(bytes / 1024).toFixed(0)} KiB of script)`);
