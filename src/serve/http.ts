/** Small HTTP helpers shared by the route modules (node:http, no framework). */
import { createReadStream, statSync } from "node:fs";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { firstLine } from "./protocol.js";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Extra response headers (WWW-Authenticate, Retry-After). */
    readonly headers: OutgoingHttpHeaders = {},
  ) {
    super(message);
  }
}

/**
 * Cross-origin isolation lets onnxruntime-web use threads (SharedArrayBuffer); the content policy
 * keeps the page to this server, so nothing can load from elsewhere by accident.
 */
export const PAGE_HEADERS: OutgoingHttpHeaders = Object.freeze({
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; img-src 'self' blob: data:; style-src 'self'; connect-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
});

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): void {
  const type = "application/json; charset=utf-8";
  sendText(res, status, type, JSON.stringify(body), { ...PAGE_HEADERS, ...headers });
}

export function sendText(
  res: ServerResponse,
  status: number,
  type: string,
  text: string,
  headers: OutgoingHttpHeaders = {},
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    ...headers,
    "content-type": type,
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendPng(res: ServerResponse, bytes: Uint8Array, filename?: string): void {
  const headers: OutgoingHttpHeaders = {
    ...PAGE_HEADERS,
    "content-type": "image/png",
    "content-length": bytes.length,
    "cache-control": "private, max-age=3600",
  };
  if (filename) headers["content-disposition"] = `attachment; filename="${filename}"`;
  res.writeHead(200, headers);
  res.end(bytes);
}

export function sendFile(res: ServerResponse, path: string, type: string, cache: string): void {
  const size = statSync(path).size;
  res.writeHead(200, {
    ...PAGE_HEADERS,
    "content-type": type,
    "content-length": size,
    "cache-control": cache,
  });
  const stream = createReadStream(path);
  stream.on("error", () => res.destroy());
  res.on("close", () => stream.destroy());
  stream.pipe(res);
}

/** Reads a JSON body of at most `maxBytes`; 413 past it (checked before reading when declared). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type))
    throw new HttpError(415, "send the request as application/json");
  const limit = `the request is over ${formatBytes(maxBytes)}`;
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > maxBytes) {
    req.resume();
    throw new HttpError(413, limit, { connection: "close" });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new HttpError(413, limit, { connection: "close" });
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `the request is not valid JSON (${firstLine(error)})`);
  }
}

export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MiB` : `${bytes / 1024} KiB`;
}

export function allowMethods(method: string, ...methods: string[]): void {
  if (!methods.includes(method))
    throw new HttpError(405, `${method} is not allowed here; use ${methods.join(" or ")}`);
}
