// The demo server's API over the sd15-tiny fixture: generate, the event stream, cancel, images,
// history, validation, two clients at once, and a client that hangs up mid-job.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGenerationInfo } from "../../src/image/parameters.js";
import { decodePng } from "../../src/image/png.js";
import type { JobEvent, JobResult, ServerInfo } from "../../src/serve/protocol.js";
import { fixturePath } from "../fixtures.js";
import {
  fetchAs,
  postJson,
  readEvents,
  runJob,
  type StreamedEvent,
  startTestServer,
  TEST_CLIENT_TOKEN,
  type TestServer,
  tinyRequest,
} from "./helpers.js";

let test: TestServer;
beforeAll(async () => {
  test = await startTestServer();
});
afterAll(async () => {
  await test?.close();
});

function types(events: readonly StreamedEvent[]): string[] {
  return events.map((e) => e.type);
}

function final(events: readonly StreamedEvent[]): JobEvent {
  return events[events.length - 1].event;
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("demo server API", () => {
  it("describes the model and the form's choices", async () => {
    const info = (await (await fetchAs(`${test.url}/api/info`)).json()) as ServerInfo;
    expect(info).toMatchObject({
      family: "sd1",
      device: "cpu",
      defaultSize: 128,
      sizeMultiple: 8,
      defaultScheduler: "PNDMScheduler",
      browserEngine: true,
    });
    expect(info.schedulers).toContain("Euler a");
    expect(info.limits.maxSide).toBe(4096);
  });

  it("generates baseline then accelerated with one seed, and reports images, timings, speedup and quality", async () => {
    const { id, events } = await runJob(test.url, tinyRequest());
    const order = types(events).filter((t) => t !== "progress");
    expect(order).toEqual(["queued", "started", "preparing", "image", "image", "done"]);
    // Per-step progress of the baseline, then of the accelerated run.
    const progress = events.flatMap((e) => (e.event.type === "progress" ? [e.event] : []));
    expect(progress.length).toBeGreaterThanOrEqual(2 * 3);
    const phases = progress.map((p) => p.phase);
    expect(phases.indexOf("accelerated")).toBeGreaterThan(phases.lastIndexOf("baseline"));
    const ids = events.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));

    const done = final(events);
    if (done.type !== "done") throw new Error(`job ended with ${JSON.stringify(done)}`);
    const result = done.result as JobResult;
    expect(result).toMatchObject({ id, engine: "server", device: "cpu" });
    expect(result.params.seed).toBe(42);
    expect(result.params.settings).toMatchObject({ method: "todo", factor: 2 });
    expect(result.reductionLabel).toMatch(/ToDo nearest factor 2/);
    for (const phase of ["baseline", "accelerated"] as const) {
      expect(result[phase].url).toBe(`/api/jobs/${id}/images/${phase}.png`);
      expect(result[phase].timings.totalMs).toBeGreaterThan(0);
      expect(result[phase].timings.unetCalls).toBeGreaterThan(0);
    }
    expect(result.speedup.total).toBeCloseTo(
      result.baseline.timings.totalMs / result.accelerated.timings.totalMs,
      6,
    );
    expect(result.speedup.unet).toBeGreaterThan(0);
    // ToDo changes the image a little: finite PSNR, high SSIM.
    expect(typeof result.metrics.psnr).toBe("number");
    expect(result.metrics.mse).toBeGreaterThan(0);
    expect(result.metrics.ssim).toBeGreaterThan(0.5);

    for (const phase of ["baseline", "accelerated"] as const) {
      const response = await fetchAs(`${test.url}${result[phase].url}?download=1`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("image/png");
      expect(response.headers.get("content-disposition")).toBe(
        `attachment; filename="todo-sd-42-${phase}.png"`,
      );
      const png = decodePng(new Uint8Array(await response.arrayBuffer()), phase);
      expect([png.width, png.height]).toEqual([128, 128]);
      const generation = readGenerationInfo(png.text, phase);
      expect(generation.parameters?.seed).toBe(42);
      expect(generation.parameters?.prompt).toBe("a red cube on a table");
      expect(generation.parameters?.extra?.ToDo !== undefined).toBe(phase === "accelerated");
    }

    const status = (await (await fetchAs(`${test.url}/api/jobs/${id}`)).json()) as {
      status: string;
      result: JobResult;
    };
    expect(status.status).toBe("done");
    const history = (await (await fetchAs(`${test.url}/api/history`)).json()) as {
      results: JobResult[];
    };
    expect(history.results.map((r) => r.id)).toContain(id);
  });

  it("replays what a reconnecting client missed, after its last event id", async () => {
    const { id, events } = await runJob(test.url, tinyRequest({ seed: 7 }));
    const middle = events[2].id;
    const replay = await readEvents(`${test.url}/api/jobs/${id}/events`, { lastEventId: middle });
    expect(replay.every((e) => e.id > middle)).toBe(true);
    // The log keeps every event but older progress of a phase: the latest step stands for them.
    const kept = (list: StreamedEvent[]) =>
      list.filter((e) => e.id > middle && e.type !== "progress").map((e) => e.id);
    expect(kept(replay)).toEqual(kept(events));
    const lastSteps = (list: StreamedEvent[]) =>
      list.flatMap((e) =>
        e.event.type === "progress" && e.event.step === e.event.totalSteps
          ? [`${e.event.phase}:${e.event.step}`]
          : [],
      );
    expect(replay.filter((e) => e.type === "progress").map((e) => e.event)).toHaveLength(2);
    expect(lastSteps(replay)).toEqual(lastSteps(events));
    expect(final(replay).type).toBe("done");
  });

  it("serves two clients at once: one job on the device at a time, the second queued behind the first", async () => {
    const [a, b] = await Promise.all([
      postJson(`${test.url}/api/generate`, tinyRequest({ seed: 1, steps: 6 })),
      postJson(`${test.url}/api/generate`, tinyRequest({ seed: 2, steps: 6 })),
    ]);
    expect([a.status, b.status]).toEqual([202, 202]);
    const timeline: string[] = [];
    const follow = (name: string, id: unknown) =>
      readEvents(`${test.url}/api/jobs/${id}/events`, {
        onEvent: (e) => {
          if (e.type !== "progress") timeline.push(`${name}:${e.type}`);
        },
      });
    const [eventsA, eventsB] = await Promise.all([follow("a", a.body.id), follow("b", b.body.id)]);
    expect(final(eventsA).type).toBe("done");
    expect(final(eventsB).type).toBe("done");
    const queuedB = eventsB.find((e) => e.type === "queued")!.event;
    expect(queuedB).toEqual({ type: "queued", ahead: 1 });
    // b starts only after a is done.
    expect(timeline.indexOf("b:started")).toBeGreaterThan(timeline.indexOf("a:done"));
    const seeds = [eventsA, eventsB].map((events) => {
      const done = final(events);
      return done.type === "done" ? (done.result as JobResult).params.seed : undefined;
    });
    expect(seeds).toEqual([1, 2]);
  });

  it("cancels a running job, then runs the next one", async () => {
    const submitted = await postJson(`${test.url}/api/generate`, tinyRequest({ steps: 200 }));
    const id = submitted.body.id as string;
    let cancelled: { status: number; body: Record<string, unknown> } | undefined;
    const events = await readEvents(`${test.url}/api/jobs/${id}/events`, {
      onEvent: (e) => {
        if (e.type === "progress" && !cancelled) {
          cancelled = { status: 0, body: {} };
          void postJson(`${test.url}/api/jobs/${id}/cancel`, {}).then((r) => {
            cancelled = r;
          });
        }
      },
    });
    expect(final(events)).toEqual({ type: "cancelled" });
    expect(types(events)).not.toContain("image");
    await waitFor(async () => (cancelled?.status ? cancelled : undefined), "the cancel answer");
    expect(cancelled).toMatchObject({ status: 200, body: { id, cancelled: true } });
    const again = await postJson(`${test.url}/api/jobs/${id}/cancel`, {});
    expect(again).toMatchObject({ status: 200, body: { status: "cancelled", cancelled: false } });
    const next = await runJob(test.url, tinyRequest());
    expect(final(next.events).type).toBe("done");
  });

  it("cancels a queued job before it runs", async () => {
    const first = await postJson(`${test.url}/api/generate`, tinyRequest({ steps: 20 }));
    const second = await postJson(`${test.url}/api/generate`, tinyRequest({ steps: 20 }));
    const cancel = await postJson(`${test.url}/api/jobs/${second.body.id}/cancel`, {});
    expect(cancel).toMatchObject({ status: 200, body: { status: "cancelled", cancelled: true } });
    const events = await readEvents(`${test.url}/api/jobs/${second.body.id}/events`);
    expect(types(events)).toEqual(["queued", "cancelled"]);
    const firstEvents = await readEvents(`${test.url}/api/jobs/${first.body.id}/events`);
    expect(final(firstEvents).type).toBe("done");
  });

  it("survives a client that hangs up mid-job; the job finishes into the history", async () => {
    const submitted = await postJson(
      `${test.url}/api/generate`,
      tinyRequest({ steps: 30, seed: 9 }),
    );
    const id = submitted.body.id as string;
    // A raw socket, destroyed as soon as the first progress event arrives.
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        `${test.url}/api/jobs/${id}/events`,
        { headers: { "x-client-token": TEST_CLIENT_TOKEN } },
        (res) => {
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            if (chunk.includes("event: progress")) {
              req.destroy();
              resolve();
            }
          });
          res.on("error", () => {});
        },
      );
      req.on("error", (error) => {
        if ((error as NodeJS.ErrnoException).code !== "ECONNRESET") reject(error);
      });
      req.end();
    });
    // Also one that never reads: its request is aborted before the job produces anything.
    const abandoned = new AbortController();
    const pending = fetchAs(`${test.url}/api/jobs/${id}/events`, { signal: abandoned.signal });
    abandoned.abort();
    await pending.catch(() => {});

    const info = await fetchAs(`${test.url}/api/info`);
    expect(info.status).toBe(200);
    const result = await waitFor(async () => {
      const status = (await (await fetchAs(`${test.url}/api/jobs/${id}`)).json()) as {
        status: string;
        result: JobResult | null;
      };
      return status.status === "running" || status.status === "queued" ? undefined : status;
    }, "the job to finish");
    expect(result.status).toBe("done");
    const history = (await (await fetchAs(`${test.url}/api/history`)).json()) as {
      results: JobResult[];
    };
    expect(history.results[0].id).toBe(id);
  });

  it.each([
    [
      "width not a multiple of 8",
      tinyRequest({ width: 100 }),
      400,
      "width: must be a multiple of 8; got 100",
    ],
    [
      "a size over the limit",
      tinyRequest({ width: 8192 }),
      400,
      "width: must be from 64 to 4096; got 8192",
    ],
    [
      "an unknown sampler",
      tinyRequest({ scheduler: "nope" }),
      400,
      'scheduler: unknown sampler "nope"',
    ],
    [
      "nothing to reduce",
      tinyRequest({ reduction: {} }),
      400,
      "reduction: these settings reduce nothing",
    ],
    ["bad JSON", "{", 400, "the request is not valid JSON"],
    ["a body over 64 KiB", { prompt: "x".repeat(70_000) }, 413, "the request is over 64 KiB"],
  ])("rejects %s with a one-line error", async (_label, body, status, message) => {
    const response = await postJson(`${test.url}/api/generate`, body);
    expect(response.status).toBe(status);
    expect(response.body.error).toContain(message);
    expect(String(response.body.error)).not.toContain("\n");
  });

  it("answers wrong methods, types and routes with clear errors", async () => {
    const get = await fetchAs(`${test.url}/api/generate`);
    expect(get.status).toBe(405);
    expect(((await get.json()) as { error: string }).error).toBe(
      "GET is not allowed here; use POST",
    );
    const text = await fetchAs(`${test.url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "{}",
    });
    expect(text.status).toBe(415);
    const unknownJob = await fetchAs(
      `${test.url}/api/jobs/00000000-0000-0000-0000-000000000000/events`,
    );
    expect(unknownJob.status).toBe(404);
    expect(((await unknownJob.json()) as { error: string }).error).toMatch(/^no job /);
    expect((await fetchAs(`${test.url}/api/nothing`)).status).toBe(404);
    // No page was built for this server: the API still works and the page says why it is missing.
    const page = await fetchAs(`${test.url}/`);
    expect(page.status).toBe(500);
    expect(((await page.json()) as { error: string }).error).toMatch(/the page is not built/);
    expect((await fetchAs(`${test.url}/../../etc/passwd`)).status).toBe(404);
    expect((await fetchAs(`${test.url}/%E0%A4%A.js`)).status).toBe(400);
  });

  it("says when its port is taken", async () => {
    await expect(
      startTestServer({ port: test.server.port }).then((second) => second.close()),
    ).rejects.toThrow(`port ${test.server.port} is in use; pick another with --port`);
  });

  it("sends the headers that isolate the page and keep it to this server", async () => {
    const response = await fetchAs(`${test.url}/api/info`);
    expect(response.headers.get("cross-origin-opener-policy")).toBe("same-origin");
    expect(response.headers.get("cross-origin-embedder-policy")).toBe("require-corp");
    expect(response.headers.get("content-security-policy")).toContain("default-src 'self'");
  });
});

describe("demo server over an ONNX export folder", () => {
  it("runs jobs on the server and turns the browser engine off", async () => {
    const onnx = await startTestServer({ model: fixturePath("onnx", "sd15-tiny") });
    try {
      const info = (await (await fetchAs(`${onnx.url}/api/info`)).json()) as ServerInfo;
      expect(info.browserEngine).toBe(false);
      const manifest = await fetchAs(`${onnx.url}/api/model/manifest`);
      expect(manifest.status).toBe(404);
      expect(((await manifest.json()) as { error: string }).error).toBe(
        "the browser engine is turned off",
      );
      const { events } = await runJob(onnx.url, tinyRequest());
      expect(final(events).type).toBe("done");
    } finally {
      await onnx.close();
    }
  });
});

describe("demo server static files", () => {
  it("serves the page folder and nothing outside it", async () => {
    const root = mkdtempSync(join(tmpdir(), "todo-sd-site-"));
    mkdirSync(join(root, "site"));
    writeFileSync(join(root, "site", "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(join(root, "site", "app.js"), "export {};");
    writeFileSync(join(root, "secret.txt"), "secret");
    const site = await startTestServer({ webRoot: join(root, "site") });
    try {
      const page = await fetchAs(`${site.url}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
      const script = await fetchAs(`${site.url}/app.js`);
      expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      for (const path of ["/%2e%2e/secret.txt", "/..%2fsecret.txt", "/site/../../secret.txt"])
        expect((await fetchAs(`${site.url}${path}`)).status).toBe(404);
      expect((await fetchAs(`${site.url}/missing.js`)).status).toBe(404);
      expect((await fetchAs(`${site.url}/app.js`, { method: "POST" })).status).toBe(405);
    } finally {
      await site.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
