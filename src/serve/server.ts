/**
 * The server: the demo page and its API, the OpenAI images API, the web UIs' API, health and
 * metrics, over one job interface with two implementations: in-process (a generation process
 * for the device, no Redis) or a BullMQ queue on Redis (`queue`), whose workers run anywhere.
 * The route modules (routes/) do not know which runs their jobs. Every request is checked for
 * its Host (DNS rebinding) and, on the APIs, its Origin; API keys, when set, are required on
 * every API route but /api/info, /health and /metrics.
 * Errors are JSON {error} with one line ({error: {message, type, ...}} under /v1).
 */
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkLoraRequests } from "../lora/apply-loras.js";
import { extractPromptLoras, findLora, listLoras } from "../lora/lora-folder.js";
import { type LoadOptions, loadPipeline, openSource } from "../pipelines/load.js";
import { listSchedulers } from "../schedulers/registry.js";
import { OptionError } from "../util/option-error.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";
import { Access, isLoopback } from "./access.js";
import type { DeviceLoadOptions } from "./device-runner.js";
import { HttpError, sendJson } from "./http.js";
import type { JobBackend } from "./job-backend.js";
import { LocalJobs } from "./local-jobs.js";
import {
  DEFAULT_LIMITS,
  firstLine,
  type JobLora,
  type Limits,
  RequestError,
  type ServerInfo,
  type ValidationContext,
} from "./protocol.js";
import { QueueJobs } from "./queue-jobs.js";
import { apiRoutes } from "./routes/api.js";
import { browserModelRoutes } from "./routes/browser-models.js";
import type { RouteModule, ServerContext } from "./routes/context.js";
import { openAiError, openAiRoutes } from "./routes/openai.js";
import { opsRoutes } from "./routes/ops.js";
import { staticRoutes } from "./routes/static-files.js";
import { webUiRoutes } from "./routes/webui.js";

export interface ServeOptions {
  /** The model source, as loadPipeline takes it (folder, checkpoint, Hub id, builtin:...). */
  readonly model: string;
  /** Default 7860; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1. Any other address needs API keys. */
  readonly host?: string;
  /** The server engine's device (default cpu). */
  readonly device?: Device;
  readonly dtype?: ModelDtype;
  /** Built models; the browser engine's files are served from here. */
  readonly cacheDir?: string;
  /** Further loading options (tokenizer, configFrom, variant, revision, offline, ...). */
  readonly load?: DeviceLoadOptions;
  /** Where jobs' LoRAs (by name, or `<lora:name:weight>` prompt tags) are found; none without. */
  readonly loraDir?: string;
  /** The built page (index.html, app.js, ...); default: the `web` folder beside this module's. */
  readonly webRoot?: string;
  readonly limits?: Partial<Limits>;
  /** Jobs that may wait at once, in-process (default 16). */
  readonly maxQueue?: number;
  /** Finished jobs kept with their images, in-process (default 50). */
  readonly historySize?: number;
  /** Serve models to the in-browser engine (default true). */
  readonly browserEngine?: boolean;
  /** Distinct browser UNets built per backend (default 8). */
  readonly maxUnetVariants?: number;
  /** A Redis URL: put jobs on this BullMQ queue for `todo-sd worker`s instead of running them. */
  readonly queue?: string;
  /** Queue name on Redis (default todo-sd). */
  readonly queueName?: string;
  /** Seconds results and job records are kept on Redis (default 86400). */
  readonly retentionSeconds?: number;
  /** API keys (Bearer tokens); required when `host` is not loopback. */
  readonly apiKeys?: readonly string[];
  /** Jobs one API key may have waiting or running (default 8). */
  readonly maxJobsPerKey?: number;
  /** Further Host header names to accept. */
  readonly allowedHosts?: readonly string[];
  /** Every client sees every finished job in /api/history (default: only its own). */
  readonly sharedHistory?: boolean;
  /** Largest request body with base64 images (default 16 MiB; others 64 KiB). */
  readonly maxImageBodyBytes?: number;
  readonly log?: (line: string) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** Ends every stream, stops taking jobs, and frees the models. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;

function defaultWebRoot(): string {
  return fileURLToPath(new URL("../web/", import.meta.url));
}

/** Starts the server; resolves once the model is loaded and the port is listening. */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const host = options.host ?? "127.0.0.1";
  const apiKeys = options.apiKeys ?? [];
  if (!isLoopback(host)) {
    if (apiKeys.length === 0)
      throw new OptionError(
        (name) =>
          `${name("host")} ${host} makes the server reachable from other machines; give API keys (${name("apiKeys")} or TODO_SD_API_KEYS) or bind to 127.0.0.1`,
      );
    log(`warning: listening on ${host}, reachable from other machines; API keys are required`);
  }
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const device = options.device ?? "cpu";
  const webRoot = resolve(options.webRoot ?? defaultWebRoot());
  if (!existsSync(join(webRoot, "index.html")))
    log(`the page is not built (no ${join(webRoot, "index.html")}); only the API is served`);
  // This process's pipeline only describes the model and checks requests; it never runs
  // (model sessions are created on first use), so it costs no model memory.
  const loadOptions: LoadOptions = {
    ...(options.load as LoadOptions),
    device,
    dtype: options.dtype,
    cacheDir: options.cacheDir,
    onWarning: (message) => log(`warning: ${message}`),
  };
  const source = await openSource(options.model, loadOptions);
  const pipeline = await loadPipeline(source, loadOptions);
  const parts = pipeline.parts;
  const loraDir = options.loraDir;
  // The folder's LoRAs for this model's family; files of other families or not LoRAs are left out.
  const loras =
    loraDir === undefined
      ? []
      : listLoras(loraDir, (path, reason) => log(`LoRA ${path} left out: ${reason}`))
          .filter((lora) => lora.families.includes(parts.family))
          .map(({ name, hash, families }) => ({ name, hash, families }));
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
    browserEngine: (options.browserEngine ?? true) && source.kind !== "onnx-folder",
    loras,
  };
  const validation: ValidationContext = {
    limits,
    sizeMultiple: parts.vaeScale,
    textEncoderLayers,
    resolveReduction: (reduction, width, height) =>
      pipeline.resolveReductionFor(reduction, width, height),
    resolveLoras:
      loraDir === undefined ? undefined : (prompt, asked) => resolveLoras(loraDir, prompt, asked),
  };
  const generation = {
    model: options.model,
    device,
    dtype: options.dtype,
    cacheDir: options.cacheDir,
    load: options.load,
    loraDir,
  };
  let jobs: JobBackend;
  try {
    if (options.queue) {
      jobs = await QueueJobs.connect({
        url: options.queue,
        queueName: options.queueName,
        retentionSeconds: options.retentionSeconds,
        maxPerKey: options.maxJobsPerKey ?? 8,
        log,
      });
    } else {
      const local = new LocalJobs({
        generation,
        maxQueue: options.maxQueue,
        maxPerKey: options.maxJobsPerKey ?? 8,
        historySize: options.historySize,
        log,
      });
      jobs = local;
      await local.start().catch(async (error) => {
        await local.close();
        throw error;
      });
    }
  } catch (error) {
    await pipeline.release();
    throw error;
  }

  const access = new Access({ host, apiKeys, allowedHosts: options.allowedHosts });
  const context: ServerContext = {
    jobs,
    access,
    info,
    validation,
    sharedHistory: options.sharedHistory ?? false,
    maxBodyBytes: MAX_BODY_BYTES,
    maxImageBodyBytes: options.maxImageBodyBytes ?? 16 * 2 ** 20,
    log,
    streams: new Set(),
  };
  const browserModels = browserModelRoutes({
    model: source,
    load: options.load,
    dtype: options.dtype,
    cacheDir: options.cacheDir,
    maxSide: limits.maxSide,
    maxUnetVariants: options.maxUnetVariants,
    log,
  });
  const routes: RouteModule[] = [
    opsRoutes(context),
    apiRoutes(context),
    ...(info.browserEngine ? [browserModels] : []),
    openAiRoutes(context),
    webUiRoutes(context),
  ];
  const files = staticRoutes(webRoot);

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const method = req.method ?? "GET";
    const path = url.pathname;
    const isApi = path.startsWith("/api/") || path.startsWith("/v1/") || path.startsWith("/sdapi/");
    const handle = (async () => {
      access.checkHost(req);
      const route = routes.find((r) => r.matches(path));
      if (!route) {
        if (isApi) {
          if (path.startsWith("/api/model/"))
            throw new HttpError(404, "the browser engine is turned off");
          throw new HttpError(404, `no API route ${path}`);
        }
        return files.handle({ req, res, url, method, keyId: null });
      }
      if (isApi) access.checkOrigin(req);
      const keyId =
        access.keysRequired && route.needsKey(path, method) ? access.authenticate(req) : null;
      await route.handle({ req, res, url, method, keyId });
    })();
    handle.catch((error: unknown) => {
      let status = 500;
      let headers = {};
      if (error instanceof HttpError) {
        status = error.status;
        headers = error.headers;
      } else if (error instanceof RequestError) status = 400;
      else log(`error on ${method} ${path}: ${firstLine(error)}`);
      const message = firstLine(error);
      if (path.startsWith("/v1/")) sendJson(res, status, openAiError(status, message), headers);
      else sendJson(res, status, { error: message }, headers);
    });
  });
  // A client that sends garbage or hangs up mid-request must not take the server down.
  server.on("clientError", (_error, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });

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
    await jobs.close();
    await pipeline.release();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log(
    `todo-sd server on ${url} (model ${options.model}, ${options.queue ? `jobs on the queue at ${redactUrl(options.queue)}` : device})`,
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        await new Promise<void>((done) => {
          server.close(() => done());
          for (const stream of context.streams) stream.end();
          server.closeAllConnections();
        });
        await jobs.close();
        await pipeline.release();
        await browserModels.close();
      })();
      return closing;
    },
  };
}

/** A Redis URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(not a URL)";
  }
}

/**
 * A job's LoRAs by name: the asked ones, then the prompt's `<lora:name:weight>` tags (taken out
 * of the prompt), each found in the folder and checked, so that a bad one is refused before it
 * is queued.
 */
function resolveLoras(
  folder: string,
  prompt: string,
  asked: readonly JobLora[],
): { prompt: string; loras: JobLora[] } {
  const requests = asked.map(({ name, weight }) => ({ path: findLora(folder, name), weight }));
  const tagged = extractPromptLoras(prompt, folder);
  checkLoraRequests([...requests, ...tagged.loras]);
  return {
    prompt: tagged.prompt,
    loras: [...asked, ...tagged.loras.map(({ name, weight }) => ({ name, weight: weight ?? 1 }))],
  };
}
