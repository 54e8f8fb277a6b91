/** The built page (index.html, app.js, ...) from the web root, nothing outside it. */
import { existsSync, statSync } from "node:fs";
import { extname, join, normalize, sep } from "node:path";
import { HttpError, sendFile } from "../http.js";
import type { RouteModule } from "./context.js";

const CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".map": "application/json; charset=utf-8",
});

export function staticRoutes(webRoot: string): RouteModule {
  return {
    matches: () => true,
    needsKey: () => false,
    async handle({ res, url, method }) {
      if (method !== "GET" && method !== "HEAD")
        throw new HttpError(405, `${method} is not allowed here`);
      let relative: string;
      try {
        relative = decodeURIComponent(url.pathname);
      } catch {
        throw new HttpError(400, `not a valid path: ${url.pathname}`);
      }
      if (relative === "/" || relative === "") relative = "/index.html";
      const path = normalize(join(webRoot, relative));
      if (!path.startsWith(webRoot + sep) || relative.includes("\0"))
        throw new HttpError(404, "not found");
      if (!existsSync(path) || !statSync(path).isFile()) {
        if (relative === "/index.html")
          throw new HttpError(
            500,
            "the page is not built; build it (npm run build) or give the server a built page folder",
          );
        throw new HttpError(404, `not found: ${url.pathname}`);
      }
      const type = CONTENT_TYPES[extname(path)] ?? "application/octet-stream";
      sendFile(res, path, type, "no-cache");
    },
  };
}
