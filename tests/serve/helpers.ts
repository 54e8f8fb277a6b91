// Helpers for the demo server's tests: a server over the sd15-tiny fixture, JSON requests, and a
// Server-Sent Events reader.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobEvent, JobRequest } from "../../src/serve/protocol.js";
import { type RunningServer, type ServeOptions, startServer } from "../../src/serve/server.js";
import { fixturePath } from "../fixtures.js";

export const TINY_MODEL = fixturePath("pipelines", "sd15-tiny");

/** A quick request at the tiny model's own size; ToDo factor 2 (auto is off at 128 px). */
export function tinyRequest(overrides: Partial<JobRequest> = {}): JobRequest {
  return {
    prompt: "a red cube on a table",
    width: 128,
    height: 128,
    steps: 3,
    guidanceScale: 7.5,
    seed: 42,
    reduction: { method: "todo", factor: 2 },
    ...overrides,
  };
}

export interface TestServer {
  readonly server: RunningServer;
  readonly url: string;
  readonly cacheDir: string;
  /** Lines the server logged. */
  readonly log: string[];
  close(): Promise<void>;
}

/** A server on a free port with its own model cache, removed on close. */
export async function startTestServer(options: Partial<ServeOptions> = {}): Promise<TestServer> {
  const cacheDir = mkdtempSync(join(tmpdir(), "todo-sd-serve-test-"));
  const log: string[] = [];
  const server = await startServer({
    model: TINY_MODEL,
    port: 0,
    cacheDir,
    log: (line) => log.push(line),
    ...options,
  });
  return {
    server,
    url: server.url,
    cacheDir,
    log,
    async close() {
      await server.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

/** The client token the tests' requests carry (job routes answer only their owner). */
export const TEST_CLIENT_TOKEN = "test-client-token-0001";

/** fetch with the tests' client token. */
export function fetchAs(url: string, init: RequestInit = {}, token = TEST_CLIENT_TOKEN) {
  return fetch(url, {
    ...init,
    headers: { "x-client-token": token, ...(init.headers as Record<string, string>) },
  });
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    signal,
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-client-token": TEST_CLIENT_TOKEN,
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export interface StreamedEvent {
  readonly id: number;
  readonly type: string;
  readonly event: JobEvent;
}

/** Parses one SSE block (lines up to a blank line) into an event, or undefined for comments. */
function parseBlock(block: string): StreamedEvent | undefined {
  let id = 0;
  let type = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("id: ")) id = Number(line.slice(4));
    else if (line.startsWith("event: ")) type = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (data.length === 0) return undefined;
  return { id, type, event: JSON.parse(data.join("\n")) as JobEvent };
}

/**
 * Reads a job's event stream until it ends (or `stop` says so); `onEvent` sees each event as it
 * arrives. `lastEventId` resumes after that event, as a reconnecting browser does.
 */
export async function readEvents(
  url: string,
  options: {
    onEvent?: (event: StreamedEvent) => void;
    stop?: (event: StreamedEvent) => boolean;
    lastEventId?: number;
  } = {},
): Promise<StreamedEvent[]> {
  const controller = new AbortController();
  const response = await fetch(url, {
    signal: controller.signal,
    headers: {
      "x-client-token": TEST_CLIENT_TOKEN,
      ...(options.lastEventId ? { "last-event-id": String(options.lastEventId) } : {}),
    },
  });
  if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
  if (!response.headers.get("content-type")?.startsWith("text/event-stream"))
    throw new Error("events: not an event stream");
  const events: StreamedEvent[] = [];
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return events;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const parsed = parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        if (!parsed) continue;
        events.push(parsed);
        options.onEvent?.(parsed);
        if (options.stop?.(parsed)) {
          controller.abort();
          return events;
        }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return events;
    throw error;
  }
}

/** Submits a request and follows its events to the end. */
export async function runJob(
  url: string,
  request: JobRequest,
): Promise<{ id: string; events: StreamedEvent[] }> {
  const submitted = await postJson(`${url}/api/generate`, request);
  if (submitted.status !== 202) throw new Error(`generate: ${JSON.stringify(submitted.body)}`);
  const id = submitted.body.id as string;
  return { id, events: await readEvents(`${url}/api/jobs/${id}/events`) };
}
