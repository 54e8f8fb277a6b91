/**
 * The web demo's local server (node:http, no framework: a dozen routes do not need one). It
 * serves the page and its bundled browser engine, runs comparison jobs on this machine's device
 * one at a time, streams their progress as Server-Sent Events, and serves the ONNX models the
 * in-browser engine runs. Everything is local: no CDN, works offline.
 *
 *   GET  /api/info                         the model and the form's choices (ServerInfo)
 *   POST /api/generate                     a JobRequest -> 202 {id, events}; 400 with a one-line error
 *   GET  /api/jobs/:id                     status and, when done, the JobResult
 *   GET  /api/jobs/:id/events              Server-Sent Events (JobEvent); Last-Event-ID resumes
 *   POST /api/jobs/:id/cancel              cancels a waiting or running job
 *   GET  /api/jobs/:id/images/:phase.png   baseline.png / accelerated.png (?download for a file)
 *   GET  /api/history                      finished results, newest first
 *   GET  /api/model/...?backend=wasm|webgpu[&precision=fp32|fp16]  manifest, tokenizers/:i,
 *        text-encoders/:i, unet, vae-decoder, vae-encoder, sampler-step?guided=0|1&noise=0|1
 *        -> ModelLinks; files/...
 *        (WebGPU models are float16 unless asked for fp32, for adapters without shader-f16;
 *        unet, vae-decoder and vae-encoder take &maxBinding=<bytes>&latentSide=<n> to split
 *        attention so one batch-2 UNet call or one VAE call at latents up to n x n keeps every
 *        score buffer within maxBinding bytes)
 * Errors are JSON {error} with one line.
 */
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { AttentionChunking } from "../models/layers.js";
import {
  type ComponentBackend,
  type ComponentModelFile,
  type ComponentModels,
  openComponentModels,
} from "../pipelines/component-models.js";
import {
  classifySource,
  type LoadOptions,
  loadPipeline,
  type ModelDtype,
} from "../pipelines/load.js";
import { encodeResultPng } from "../pipelines/result-png.js";
import type { StableDiffusionPipeline } from "../pipelines/stable-diffusion.js";
import { parseReductionOptions, type ReductionSettings } from "../reduce/options.js";
import type { Device } from "../runtime/devices.js";
import { listSchedulers } from "../schedulers/registry.js";
import { runComparison } from "./comparison.js";
import { DeviceQueue, Job, type LoggedEvent } from "./jobs.js";
import {
  DEFAULT_LIMITS,
  firstLine,
  isFinalEvent,
  type JobResult,
  type Limits,
  type Phase,
  parseJobRequest,
  RequestError,
  type ServerInfo,
  type TokenizerPayload,
} from "./protocol.js";

export interface ServeOptions {
  /** The model source, as loadPipeline takes it (folder, checkpoint, Hub id, builtin:...). */
  readonly model: string;
  /** Default 7860; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1: the demo is for this machine only. */
  readonly host?: string;
  /** The server engine's device (default cpu). */
  readonly device?: Device;
  readonly dtype?: ModelDtype;
  /** Built models; the browser engine's files are served from here. */
  readonly cacheDir?: string;
  /** Further loading options (tokenizer, configFrom, variant, revision, offline, ...). */
  readonly load?: Omit<LoadOptions, "device" | "dtype" | "cacheDir">;
  /** The built page (index.html, app.js, ...); default: the `web` folder beside this module's. */
  readonly webRoot?: string;
  readonly limits?: Partial<Limits>;
  /** Jobs that may wait for the device at once (default 16). */
  readonly maxQueue?: number;
  /** Finished jobs kept with their images (default 50). */
  readonly historySize?: number;
  /** Serve models to the in-browser engine (default true). */
  readonly browserEngine?: boolean;
  readonly log?: (line: string) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** Cancels every job, ends every stream and frees the models. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const HEARTBEAT_MS = 15_000;
const MAX_HISTORY_IMAGE_BYTES = 512 * 1024 * 1024;

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

/**
 * Cross-origin isolation lets onnxruntime-web use threads (SharedArrayBuffer); the content policy
 * keeps the page to this server, so nothing can load from elsewhere by accident.
 */
const PAGE_HEADERS: OutgoingHttpHeaders = Object.freeze({
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; img-src 'self' blob: data:; style-src 'self'; connect-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
});

function defaultWebRoot(): string {
  return fileURLToPath(new URL("../web/", import.meta.url));
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...PAGE_HEADERS,
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: message });
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type))
    throw new HttpError(415, "send the request as application/json");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new HttpError(413, `the request is over ${MAX_BODY_BYTES / 1024} KiB`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `the request is not valid JSON (${firstLine(error)})`);
  }
}

function readTokenizerFolder(dir: string, padToken: string | undefined): TokenizerPayload {
  const read = (file: string) => {
    const path = join(dir, file);
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  };
  const vocabJson = read("vocab.json");
  const mergesTxt = read("merges.txt");
  const both = vocabJson !== undefined && mergesTxt !== undefined;
  const specialTokensMap = read("special_tokens_map.json");
  // As loadClipTokenizer does: a folder without a config takes the family's pad token.
  const config =
    read("tokenizer_config.json") ??
    (padToken !== undefined && specialTokensMap === undefined
      ? JSON.stringify({ pad_token: padToken })
      : undefined);
  return {
    vocabJson: both ? vocabJson : undefined,
    mergesTxt: both ? mergesTxt : undefined,
    tokenizerJson: both ? undefined : read("tokenizer.json"),
    config,
    specialTokensMap,
  };
}

/** Starts the demo server; resolves once the model is loaded and the port is listening. */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const device = options.device ?? "cpu";
  const webRoot = resolve(options.webRoot ?? defaultWebRoot());
  if (!existsSync(join(webRoot, "index.html")))
    log(`the page is not built (no ${join(webRoot, "index.html")}); only the API is served`);
  const historySize = options.historySize ?? 50;
  const pipeline: StableDiffusionPipeline = await loadPipeline(options.model, {
    ...options.load,
    device,
    dtype: options.dtype,
    cacheDir: options.cacheDir,
    onBuild: (component) => log(`building ${component}...`),
  });
  const parts = pipeline.parts;
  const textEncoderLayers = Math.min(...parts.textEncoders.map((e) => e.layers));
  const info: ServerInfo = {
    model: options.model,
    family: parts.family,
    device,
    defaultSize: parts.defaultSize,
    sizeMultiple: parts.vaeScale,
    limits,
    schedulers: listSchedulers(),
    defaultScheduler: String(parts.schedulerConfig._class_name ?? ""),
    textEncoderLayers,
    // The browser engine runs models built from weights; export folders stay on the server.
    browserEngine:
      (options.browserEngine ?? true) && classifySource(options.model) !== "onnx-folder",
  };

  const jobs = new Map<string, Job>();
  const finishedOrder: Job[] = [];
  const imageBytes = () =>
    finishedOrder.reduce(
      (sum, job) => sum + [...job.images.values()].reduce((n, png) => n + png.length, 0),
      0,
    );
  const forget = (job: Job) => {
    finishedOrder.push(job);
    // Images stay in memory: keep the history within its length and its byte budget.
    while (
      finishedOrder.length > historySize ||
      (finishedOrder.length > 1 && imageBytes() > MAX_HISTORY_IMAGE_BYTES)
    ) {
      const old = finishedOrder.shift()!;
      jobs.delete(old.id);
    }
  };
  const queue = new DeviceQueue(
    (job) =>
      runComparison(
        pipeline,
        {
          id: job.id,
          engine: "server",
          device,
          createdAt: job.createdAt,
          model: options.model,
          params: job.params,
        },
        {
          signal: job.controller.signal,
          emit: (event) => job.emit(event),
          publish: (phase: Phase, result) => {
            job.images.set(phase, encodeResultPng(result, 0, options.model));
            return `/api/jobs/${job.id}/images/${phase}.png`;
          },
        },
      ),
    options.maxQueue ?? 16,
    forget,
  );

  const components = new Map<string, Promise<ComponentModels>>();
  const served = new Map<string, ComponentModelFile>();
  const componentModels = (backend: ComponentBackend, dtype: ModelDtype | undefined) => {
    const variant = `${backend}/${dtype ?? "default"}`;
    let models = components.get(variant);
    if (!models) {
      models = openComponentModels(options.model, {
        ...options.load,
        backend,
        dtype,
        cacheDir: options.cacheDir,
        onBuild: (component) => log(`building ${component} for the browser (${backend})...`),
      });
      components.set(variant, models);
      models.catch(() => components.delete(variant));
    }
    return models;
  };
  const modelLinks = (backend: ComponentBackend, file: ComponentModelFile) => {
    served.set(`${backend}/${file.key}`, file);
    const base = `/api/model/files/${backend}/${file.key}`;
    return {
      model: `${base}/model.onnx`,
      externalData: file.externalDataPath ? `${base}/model.onnx_data` : null,
    };
  };

  // The browser computes in float32 on WASM; WebGPU gets the GPU default (float16) unless the
  // page asks for fp32 (adapters without the shader-f16 feature cannot run float16 graphs).
  const browserDtype = (backend: ComponentBackend, query: URLSearchParams) => {
    const precision = query.get("precision");
    if (precision === null) return backend === "wasm" ? "float32" : options.dtype;
    if (precision === "fp32") return "float32";
    if (precision === "fp16" && backend === "webgpu") return "float16";
    throw new HttpError(
      400,
      backend === "wasm"
        ? `precision: the wasm backend computes in fp32; got "${precision}"`
        : `precision: use fp32 or fp16; got "${precision}"`,
    );
  };

  const streams = new Set<ServerResponse>();

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const method = req.method ?? "GET";
    const allow = (...methods: string[]) => {
      if (!methods.includes(method))
        throw new HttpError(405, `${method} is not allowed here; use ${methods.join(" or ")}`);
    };
    if (path === "/api/info") {
      allow("GET");
      return sendJson(res, 200, info);
    }
    if (path === "/api/generate") {
      allow("POST");
      const body = await readJsonBody(req);
      const params = parseJobRequest(body, {
        limits,
        sizeMultiple: parts.vaeScale,
        textEncoderLayers,
        resolveReduction: (reduction, width, height) =>
          pipeline.resolveReductionFor(reduction, width, height),
      });
      const job = new Job(params);
      try {
        queue.submit(job);
      } catch (error) {
        throw new HttpError(503, firstLine(error));
      }
      jobs.set(job.id, job);
      log(`job ${job.id}: ${params.width}x${params.height}, ${params.steps} steps`);
      return sendJson(res, 202, { id: job.id, events: `/api/jobs/${job.id}/events` });
    }
    if (path === "/api/history") {
      allow("GET");
      const results: JobResult[] = [];
      for (const job of [...finishedOrder].reverse()) if (job.result) results.push(job.result);
      return sendJson(res, 200, { results });
    }
    const jobMatch = /^\/api\/jobs\/([0-9a-f-]{36})(\/.*)?$/.exec(path);
    if (jobMatch) {
      const job = jobs.get(jobMatch[1]);
      if (!job) throw new HttpError(404, `no job ${jobMatch[1]} (it may have left the history)`);
      const rest = jobMatch[2] ?? "";
      if (rest === "") {
        allow("GET");
        return sendJson(res, 200, { id: job.id, status: job.status, result: job.result ?? null });
      }
      if (rest === "/events") {
        allow("GET");
        return streamEvents(req, res, job);
      }
      if (rest === "/cancel") {
        allow("POST");
        const cancelled = queue.cancel(job);
        return sendJson(res, 200, { id: job.id, status: job.status, cancelled });
      }
      const image = /^\/images\/(baseline|accelerated)\.png$/.exec(rest);
      if (image) {
        allow("GET");
        const bytes = job.images.get(image[1] as Phase);
        if (!bytes) throw new HttpError(404, `the ${image[1]} image is not ready`);
        const headers: OutgoingHttpHeaders = {
          ...PAGE_HEADERS,
          "content-type": "image/png",
          "content-length": bytes.length,
          "cache-control": "private, max-age=3600",
        };
        if (url.searchParams.has("download"))
          headers["content-disposition"] =
            `attachment; filename="todo-sd-${job.params.seed}-${image[1]}.png"`;
        res.writeHead(200, headers);
        res.end(bytes);
        return;
      }
      throw new HttpError(404, `no such job resource: ${rest}`);
    }
    if (path.startsWith("/api/model/")) {
      allow("GET");
      if (!info.browserEngine) throw new HttpError(404, "the browser engine is turned off");
      return handleModel(res, url);
    }
    throw new HttpError(404, `no API route ${path}`);
  }

  async function handleModel(res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice("/api/model/".length);
    const fileMatch = /^files\/(wasm|webgpu)\/([0-9a-f]{32})\/(model\.onnx|model\.onnx_data)$/.exec(
      path,
    );
    if (fileMatch) {
      const file = served.get(`${fileMatch[1]}/${fileMatch[2]}`);
      const target =
        fileMatch[3] === "model.onnx" ? file?.modelPath : (file?.externalDataPath ?? undefined);
      if (!target) throw new HttpError(404, `no model file ${path}`);
      return sendFile(
        res,
        target,
        "application/octet-stream",
        "public, max-age=31536000, immutable",
      );
    }
    const backendText = url.searchParams.get("backend") ?? "wasm";
    if (backendText !== "wasm" && backendText !== "webgpu")
      throw new HttpError(400, `backend: use wasm or webgpu; got "${backendText}"`);
    const backend: ComponentBackend = backendText;
    const models = await componentModels(backend, browserDtype(backend, url.searchParams));
    if (path === "manifest") return sendJson(res, 200, models.manifest);
    const tokenizer = /^tokenizers\/(\d+)$/.exec(path);
    if (tokenizer) {
      const source = models.tokenizers[Number(tokenizer[1])];
      if (!source) throw new HttpError(404, `no tokenizer ${tokenizer[1]}`);
      return sendJson(res, 200, readTokenizerFolder(source.dir, source.padToken));
    }
    const encoder = /^text-encoders\/(\d+)$/.exec(path);
    if (encoder) {
      const skip = Number(url.searchParams.get("hiddenStateFromEnd") ?? "0");
      if (!Number.isInteger(skip) || skip < 0 || skip > 64)
        throw new HttpError(400, "hiddenStateFromEnd: a whole number from 0 to 64");
      const file = await models.textEncoder(Number(encoder[1]), {
        hiddenStateFromEnd: skip || undefined,
        finalLayerNorm: url.searchParams.get("finalLayerNorm") === "1",
      });
      return sendJson(res, 200, modelLinks(backend, file));
    }
    if (path === "unet") {
      const settings = parseSettings(url.searchParams.get("reduction"));
      // The demo generates one image per job: two UNet rows with guidance.
      const chunking = parseChunking(url.searchParams, 2, limits.maxSide);
      return sendJson(res, 200, modelLinks(backend, await models.unet(settings, chunking)));
    }
    if (path === "vae-decoder") {
      const chunking = parseChunking(url.searchParams, 1, limits.maxSide);
      return sendJson(res, 200, modelLinks(backend, await models.vaeDecoder(chunking)));
    }
    if (path === "vae-encoder") {
      const chunking = parseChunking(url.searchParams, 1, limits.maxSide);
      return sendJson(res, 200, modelLinks(backend, await models.vaeEncoder(chunking)));
    }
    if (path === "sampler-step") {
      const flag = (name: string) => {
        const value = url.searchParams.get(name);
        if (value !== "0" && value !== "1")
          throw new HttpError(400, `${name}: use 0 or 1; got ${JSON.stringify(value)}`);
        return value === "1";
      };
      const step = { guided: flag("guided"), noise: flag("noise") };
      return sendJson(res, 200, modelLinks(backend, await models.samplerStep(step)));
    }
    throw new HttpError(404, `no model route ${path}`);
  }

  function streamEvents(req: IncomingMessage, res: ServerResponse, job: Job): void {
    const lastId = Number(req.headers["last-event-id"] ?? url0(req).searchParams.get("after") ?? 0);
    res.writeHead(200, {
      ...PAGE_HEADERS,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    res.write("retry: 2000\n\n");
    streams.add(res);
    let unsubscribe = () => {};
    const heartbeat = setInterval(() => write(": ping\n\n"), HEARTBEAT_MS);
    const end = () => {
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(res);
      if (!res.writableEnded && !res.destroyed) res.end();
    };
    function write(text: string): void {
      if (res.writableEnded || res.destroyed) end();
      else res.write(text);
    }
    const send = ({ seq, event }: LoggedEvent) => {
      write(`id: ${seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (isFinalEvent(event)) end();
    };
    // A client that goes away mid-job only loses its stream; the job runs on into the history.
    res.on("close", end);
    res.on("error", end);
    for (const logged of job.eventsAfter(Number.isFinite(lastId) ? lastId : 0)) send(logged);
    if (job.finished) end();
    else unsubscribe = job.subscribe(send);
  }

  function sendFile(res: ServerResponse, path: string, type: string, cache: string): void {
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

  function serveStatic(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method !== "GET" && req.method !== "HEAD")
      throw new HttpError(405, `${req.method} is not allowed here`);
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
  }

  const server = createServer((req, res) => {
    const url = url0(req);
    const handle = url.pathname.startsWith("/api/")
      ? handleApi(req, res, url)
      : Promise.resolve().then(() => serveStatic(req, res, url));
    handle.catch((error: unknown) => {
      if (error instanceof HttpError) return sendError(res, error.status, error.message);
      if (error instanceof RequestError) return sendError(res, 400, error.message);
      log(`error on ${req.method} ${url.pathname}: ${firstLine(error)}`);
      sendError(res, 500, firstLine(error));
    });
  });
  // A client that sends garbage or hangs up mid-request must not take the server down.
  server.on("clientError", (_error, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });

  const host = options.host ?? "127.0.0.1";
  const requestedPort = options.port ?? 7860;
  try {
    await new Promise<void>((resolvePromise, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) =>
        reject(
          new Error(
            error.code === "EADDRINUSE"
              ? `port ${requestedPort} is in use; pick another with --port`
              : `cannot listen on ${host}:${requestedPort} (${error.code ?? error.message})`,
          ),
        ),
      );
      server.listen(requestedPort, host, () => resolvePromise());
    });
  } catch (error) {
    await pipeline.release();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log(`todo-sd demo on ${url} (model ${options.model}, ${device})`);

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        await new Promise<void>((done) => {
          server.close(() => done());
          for (const stream of streams) stream.end();
          server.closeAllConnections();
        });
        await queue.drain(true);
        await pipeline.release();
        for (const models of components.values()) {
          try {
            (await models).close();
          } catch {
            // it failed to open; nothing to close
          }
        }
      })();
      return closing;
    },
  };
}

function url0(req: IncomingMessage): URL {
  return new URL(req.url ?? "/", "http://localhost");
}

/** The UNet's reduction settings, as the browser's pipeline resolved them (JSON), or none. */
/** maxBinding and latentSide (both or neither) as the builders' chunking plan. */
function parseChunking(
  query: URLSearchParams,
  maxBatch: number,
  maxSide: number,
): AttentionChunking | undefined {
  const binding = query.get("maxBinding");
  const side = query.get("latentSide");
  if (binding === null && side === null) return undefined;
  const maxBindingBytes = Number(binding);
  const maxLatentSide = Number(side);
  if (!Number.isSafeInteger(maxBindingBytes) || maxBindingBytes < 2 ** 20)
    throw new HttpError(
      400,
      `maxBinding: a whole number of bytes, at least 1 MiB; got "${binding}"`,
    );
  if (!Number.isSafeInteger(maxLatentSide) || maxLatentSide < 1 || maxLatentSide > maxSide)
    throw new HttpError(400, `latentSide: a whole number from 1 to ${maxSide}; got "${side}"`);
  return { maxBindingBytes, maxLatentSide, maxBatch };
}

function parseSettings(text: string | null): ReductionSettings | undefined {
  if (text === null || text === "" || text === "null") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, "reduction: not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new HttpError(400, "reduction: expected an object of resolved settings");
  let options: ReturnType<typeof parseReductionOptions>;
  try {
    options = parseReductionOptions(value as Record<string, never>);
  } catch (error) {
    throw new HttpError(400, `reduction: ${firstLine(error)}`);
  }
  if (
    options.factor === "auto" ||
    options.factorLevel2 === "auto" ||
    options.ratioLevel2 === "auto"
  )
    throw new HttpError(400, "reduction: give resolved settings (no auto values)");
  return options as ReductionSettings;
}
