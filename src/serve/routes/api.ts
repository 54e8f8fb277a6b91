/**
 * The demo's own API:
 *   GET  /api/info                         the model and the form's choices (ServerInfo)
 *   POST /api/generate                     a JobRequest -> 202 {id, token, events}
 *   GET  /api/jobs/:id                     status, parameters and, when done, the result
 *   GET  /api/jobs/:id/events              Server-Sent Events (JobEvent); Last-Event-ID resumes
 *   POST /api/jobs/:id/cancel              cancels a waiting or running job
 *   GET  /api/jobs/:id/images/:name.png    baseline.png / accelerated.png / 0.png ... (?download)
 *   GET  /api/history                      this client's finished results, newest first
 * A job's routes need the client token it was submitted with (x-client-token header, the
 * page's cookie, or ?token=); without it the job does not exist for the caller.
 */
import type { ServerResponse } from "node:http";
import { Access, sameClient } from "../access.js";
import { allowMethods, HttpError, PAGE_HEADERS, readJsonBody, sendJson, sendPng } from "../http.js";
import { type JobSnapshot, QueueFullError } from "../job-backend.js";
import { IMAGE_NAME } from "../job-spec.js";
import type { LoggedEvent } from "../jobs.js";
import { isFinalEvent, type JobResult, parseJobRequest } from "../protocol.js";
import type { RequestContext, RouteModule, ServerContext } from "./context.js";

const HEARTBEAT_MS = 15_000;

/** Submits a checked job for the caller; maps a full queue to 429/503. */
export async function submitFor(
  server: ServerContext,
  request: RequestContext,
  spec: Parameters<ServerContext["jobs"]["submit"]>[0],
): Promise<{ id: string; token: string }> {
  const identity = server.access.identify(request.req, request.url, true)!;
  try {
    const id = await server.jobs.submit(spec, { client: identity.id, key: request.keyId });
    Access.remember(request.res, identity);
    return { id, token: identity.token };
  } catch (error) {
    if (error instanceof QueueFullError)
      throw new HttpError(error.perKey ? 429 : 503, error.message, { "retry-after": "5" });
    throw error;
  }
}

/** The job if the caller's client token owns it; 404 otherwise (its existence is not told). */
export async function ownedJob(server: ServerContext, request: RequestContext, id: string) {
  const identity = server.access.identify(request.req, request.url, false);
  const job = await server.jobs.get(id);
  if (!job || !identity || !sameClient(job.owner.client, identity.id))
    throw new HttpError(
      404,
      `no job ${id} for this client (send the token it was submitted with as x-client-token)`,
    );
  return job;
}

function publicView(job: JobSnapshot) {
  return {
    id: job.id,
    status: job.status,
    createdAt: job.createdAt,
    params: job.spec.params,
    progress: job.progress,
    error: job.error,
    result: job.outcome?.result ?? null,
  };
}

export function apiRoutes(server: ServerContext): RouteModule {
  return {
    matches: (path) =>
      path === "/api/info" ||
      path === "/api/generate" ||
      path === "/api/history" ||
      path.startsWith("/api/jobs/"),
    // Image URLs carry the job's client token (the OpenAI route hands them out to be fetched
    // as they are), which is as unguessable as a key.
    needsKey: (path, method) =>
      path !== "/api/info" && !(method === "GET" && /^\/api\/jobs\/[^/]+\/images\//.test(path)),
    async handle(request) {
      const { req, res, url, method } = request;
      const path = url.pathname;
      if (path === "/api/info") {
        allowMethods(method, "GET");
        return sendJson(res, 200, server.info);
      }
      if (path === "/api/generate") {
        allowMethods(method, "POST");
        const body = await readJsonBody(req, server.maxBodyBytes);
        const params = parseJobRequest(body, server.validation);
        const { id, token } = await submitFor(server, request, { kind: "compare", params });
        server.log(`job ${id}: ${params.width}x${params.height}, ${params.steps} steps`);
        return sendJson(res, 202, { id, token, events: `/api/jobs/${id}/events` });
      }
      if (path === "/api/history") {
        allowMethods(method, "GET");
        const identity = server.access.identify(req, url, false);
        const results: JobResult[] = [];
        if (server.sharedHistory || identity) {
          const jobs = await server.jobs.history(server.sharedHistory ? null : identity!.id);
          for (const job of jobs)
            if (job.outcome?.kind === "compare") results.push(job.outcome.result);
        }
        return sendJson(res, 200, { results });
      }
      const match = /^\/api\/jobs\/([0-9a-f-]{36})(\/.*)?$/.exec(path);
      if (!match) throw new HttpError(404, `no API route ${path}`);
      const job = await ownedJob(server, request, match[1]);
      const rest = match[2] ?? "";
      if (rest === "") {
        allowMethods(method, "GET");
        return sendJson(res, 200, publicView(job));
      }
      if (rest === "/events") {
        allowMethods(method, "GET");
        return streamEvents(server, request, job.id);
      }
      if (rest === "/cancel") {
        allowMethods(method, "POST");
        const cancelled = await server.jobs.cancel(job.id);
        const now = await server.jobs.get(job.id);
        return sendJson(res, 200, { id: job.id, status: now?.status ?? "cancelled", cancelled });
      }
      const image = /^\/images\/([^/]+)$/.exec(rest);
      if (image && IMAGE_NAME.test(image[1])) {
        allowMethods(method, "GET");
        const bytes = await server.jobs.image(job.id, image[1]);
        if (!bytes) throw new HttpError(404, `the image ${image[1]} is not ready (or has expired)`);
        const seed = (job.spec.params as { seed: number }).seed;
        return sendPng(
          res,
          bytes,
          url.searchParams.has("download") ? `todo-sd-${seed}-${image[1]}` : undefined,
        );
      }
      throw new HttpError(404, `no such job resource: ${rest}`);
    },
  };
}

async function streamEvents(
  server: ServerContext,
  { req, res, url }: RequestContext,
  id: string,
): Promise<void> {
  const lastId = Number(req.headers["last-event-id"] ?? url.searchParams.get("after") ?? 0);
  res.writeHead(200, {
    ...PAGE_HEADERS,
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
  });
  res.write("retry: 2000\n\n");
  server.streams.add(res);
  let unsubscribe: () => void = () => {};
  let ended = false;
  const heartbeat = setInterval(() => write(": ping\n\n"), HEARTBEAT_MS);
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    unsubscribe();
    server.streams.delete(res as ServerResponse);
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
  const stop = await server.jobs.follow(id, Number.isFinite(lastId) ? lastId : 0, send);
  if (!stop) end();
  else if (ended) stop();
  else unsubscribe = stop;
}
