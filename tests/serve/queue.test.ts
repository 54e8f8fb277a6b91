// The Redis queue end to end: a front end (`serve --queue`) and `todo-sd worker` child processes
// on the tiny model, with a redis-server of the test's own. Many clients at once, a worker killed
// mid-job, Redis restarted mid-run, a job that fails for its input, cancel, health and metrics.
import { execFileSync } from "node:child_process";
import { Queue } from "bullmq";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodePng } from "../../src/image/png.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { encodeResultPng } from "../../src/pipelines/result-png.js";
import type { StableDiffusionPipeline } from "../../src/pipelines/stable-diffusion.js";
import type { QueuedJobData } from "../../src/serve/queue-keys.js";
import { type RunningServer, startServer } from "../../src/serve/server.js";
import { fetchAs, postJson, readEvents, TINY_MODEL, tinyRequest } from "./helpers.js";
import { TestRedis, tempDir, WorkerProcess } from "./queue-helpers.js";

let redis: TestRedis;
let cache: ReturnType<typeof tempDir>;
let server: RunningServer;
let workers: WorkerProcess[] = [];
let pipeline: StableDiffusionPipeline;
const log: string[] = [];
/** Short locks so that a dead worker's job is picked up within seconds. */
const LOCK = ["--lock-seconds", "2", "--max-stalls", "1", "--shutdown-grace", "1"];

beforeAll(async () => {
  redis = await TestRedis.start();
  cache = tempDir("todo-sd-queue-test-");
  // The first worker builds the models into the cache; the second finds them there.
  workers.push(await WorkerProcess.start(redis.url, cache.path, LOCK));
  [server, pipeline] = await Promise.all([
    startServer({
      model: TINY_MODEL,
      port: 0,
      cacheDir: cache.path,
      queue: redis.url,
      log: (line) => log.push(line),
    }),
    loadPipeline(TINY_MODEL, { cacheDir: cache.path }),
  ]);
  workers.push(await WorkerProcess.start(redis.url, cache.path, LOCK));
});

afterAll(async () => {
  for (const worker of workers) worker.kill("SIGKILL");
  await Promise.all(workers.map((w) => w.exited));
  await server?.close();
  await pipeline?.release();
  await redis?.stop();
  cache?.remove();
});

/** The ids of the jobs each worker logged as done, all workers together. */
function doneLines(): string[] {
  return workers.flatMap((w) =>
    w.lines.flatMap((line) => {
      const match = /^job ([0-9a-f-]{36}): done$/.exec(line);
      return match ? [match[1]] : [];
    }),
  );
}

async function untilFinished(id: string, token: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 1200; i++) {
    const response = await fetchAs(`${server.url}/api/jobs/${id}`, {}, token);
    const body = (await response.json()) as Record<string, unknown>;
    if (body.status !== "queued" && body.status !== "running") return body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

/** The worker that runs a job (other than `not`, a worker that ran it before). */
async function untilRunningOn(id: string, not?: WorkerProcess): Promise<WorkerProcess> {
  for (let i = 0; i < 1200; i++) {
    const worker = workers.find(
      (w) => w !== not && w.lines.some((l) => l.startsWith(`job ${id}: running`)),
    );
    if (worker) return worker;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} never ran`);
}

describe("jobs on a Redis queue", () => {
  it("runs 40 jobs from 4 clients on 2 workers, each once, with the images of a single-process run", async () => {
    const clients = Array.from(
      { length: 4 },
      (_, c) =>
        new OpenAI({
          apiKey: "unused-on-loopback",
          baseURL: `${server.url}/v1`,
          defaultHeaders: { "x-client-token": `queue-test-client-${c}-token` },
          maxRetries: 0,
        }),
    );
    const seedOf = (client: number, job: number) => 1000 + client * 10 + job;
    const images = await Promise.all(
      clients.map(async (openai, c) => {
        const mine: { seed: number; png: Buffer }[] = [];
        for (let j = 0; j < 10; j++) {
          const seed = seedOf(c, j);
          const response = await openai.images.generate({
            prompt: "a red cube",
            size: "64x64" as "256x256",
            response_format: "b64_json",
            // Our settings, as extra fields.
            ...({ steps: 2, seed, guidance_scale: 7.5, sampler: "Euler" } as object),
          });
          mine.push({ seed, png: Buffer.from(response.data![0].b64_json!, "base64") });
        }
        return mine;
      }),
    );
    const done = doneLines();
    expect(done).toHaveLength(40);
    expect(new Set(done).size).toBe(40);
    // Both workers took part.
    for (const worker of workers) expect(worker.lines.some((l) => / done$/.test(l))).toBe(true);
    for (const { seed, png } of images.flat()) {
      const direct = await pipeline.generate({
        prompt: "a red cube",
        width: 64,
        height: 64,
        steps: 2,
        guidanceScale: 7.5,
        scheduler: "Euler",
        seed,
      });
      const expected = decodePng(encodeResultPng(direct, 0, TINY_MODEL), "direct");
      const got = decodePng(new Uint8Array(png), `seed ${seed}`);
      expect(Buffer.from(got.data).equals(Buffer.from(expected.data)), `seed ${seed}`).toBe(true);
    }
  });

  it("finishes, once, on the other worker a job whose worker was killed with SIGKILL", async () => {
    const submitted = await postJson(`${server.url}/api/generate`, tinyRequest({ steps: 40 }));
    expect(submitted.status).toBe(202);
    const id = submitted.body.id as string;
    const victim = await untilRunningOn(id);
    await victim.waitFor(/./); // started and logging
    victim.kill("SIGKILL");
    await victim.exited;
    const result = await untilFinished(id, submitted.body.token as string);
    expect(result.status).toBe("done");
    const survivor = workers.find((w) => w !== victim)!;
    expect(survivor.lines.filter((l) => l === `job ${id}: done`)).toHaveLength(1);
    expect(victim.lines.filter((l) => l === `job ${id}: done`)).toHaveLength(0);
    // Another worker in the killed one's place, for the tests below.
    workers = [survivor, await WorkerProcess.start(redis.url, cache.path, LOCK)];
  });

  it("loses no accepted job when Redis stops and starts again mid-run", async () => {
    const submitted = [];
    for (let i = 0; i < 6; i++) {
      const response = await postJson(
        `${server.url}/api/generate`,
        tinyRequest({ seed: 500 + i, steps: 4 }),
      );
      expect(response.status).toBe(202);
      submitted.push(response.body as { id: string; token: string });
    }
    await redis.down();
    await new Promise((r) => setTimeout(r, 1000));
    await redis.up();
    for (const { id, token } of submitted) {
      const result = await untilFinished(id, token);
      expect(result.status, id).toBe("done");
    }
  });

  it("fails a job that fails for its input once, with its message, without retrying it", async () => {
    // A job that bypassed the front end's checks: its size is not a multiple of 8.
    const queue = new Queue<QueuedJobData>("todo-sd", {
      connection: { url: redis.url, maxRetriesPerRequest: null },
    });
    try {
      const bad = await queue.add("generate", {
        spec: {
          kind: "generate",
          params: {
            prompt: "x",
            negativePrompt: null,
            width: 100,
            height: 64,
            steps: 2,
            guidanceScale: 7.5,
            scheduler: null,
            seed: 1,
            clipSkip: 0,
            count: 1,
            reduction: null,
            initImage: null,
            strength: null,
          },
        },
        owner: { client: "", key: null },
        createdAt: new Date().toISOString(),
      });
      let state = "";
      for (let i = 0; i < 600 && state !== "failed"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = await queue.getJobState(bad.id!);
      }
      expect(state).toBe("failed");
      const job = (await queue.getJob(bad.id!))!;
      expect(job.failedReason).toMatch(/width/);
      expect(job.failedReason).not.toContain("\n");
      expect(job.attemptsStarted).toBe(1);
      const runs = workers.flatMap((w) =>
        w.lines.filter((l) => l.startsWith(`job ${bad.id}: running`)),
      );
      expect(runs).toHaveLength(1);
    } finally {
      await queue.close();
    }
  });

  it("cancels a running job through the queue", async () => {
    const submitted = await postJson(`${server.url}/api/generate`, tinyRequest({ steps: 200 }));
    const id = submitted.body.id as string;
    await untilRunningOn(id);
    const cancel = await postJson(`${server.url}/api/jobs/${id}/cancel`, {});
    expect(cancel.status).toBe(200);
    const result = await untilFinished(id, submitted.body.token as string);
    expect(result.status).toBe("cancelled");
  });

  it("reports health and metrics", async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, backend: "redis", workers: 2 });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/^todo_sd_queue_depth \d+$/m);
    const completed = /^todo_sd_jobs\{state="completed"\} (\d+)$/m.exec(metrics);
    expect(Number(completed?.[1])).toBeGreaterThanOrEqual(40);
    expect(metrics).toMatch(/^todo_sd_unet_seconds_total\{worker="[^"]+"\} [\d.e-]+$/m);
  });

  it("returns a job to the queue when its worker is told to stop and the job outlasts the grace", async () => {
    // Long enough (80 steps, twice) to outlast the one-second grace even on a quiet machine.
    const submitted = await postJson(`${server.url}/api/generate`, tinyRequest({ steps: 80 }));
    const id = submitted.body.id as string;
    const stopping = await untilRunningOn(id);
    await readEvents(`${server.url}/api/jobs/${id}/events`, {
      stop: (e) => e.type === "progress",
    });
    stopping.kill("SIGTERM");
    expect(await stopping.exited).toBe(0);
    expect(stopping.lines).toContain(`job ${id}: returned to the queue`);
    const result = await untilFinished(id, submitted.body.token as string);
    expect(result.status).toBe("done");
    const other = workers.find((w) => w !== stopping)!;
    expect(other.lines.filter((l) => l === `job ${id}: done`)).toHaveLength(1);
    workers = [other, await WorkerProcess.start(redis.url, cache.path, LOCK)];
  });

  it("fails, and reports, a job that keeps stopping workers after its bounded attempts", async () => {
    const submitted = await postJson(`${server.url}/api/generate`, tinyRequest({ steps: 200 }));
    const id = submitted.body.id as string;
    const first = await untilRunningOn(id);
    first.kill("SIGKILL");
    // A third worker, to look for stalled jobs once the second has been killed too.
    const third = await WorkerProcess.start(redis.url, cache.path, LOCK);
    workers.push(third);
    const second = await untilRunningOn(id, first);
    second.kill("SIGKILL");
    const result = await untilFinished(id, submitted.body.token as string);
    expect(result.status).toBe("error");
    expect(String(result.error)).toMatch(/stalled/);
  });

  it("runs again, on a new generation process, a job whose generation process was killed", async () => {
    const submitted = await postJson(`${server.url}/api/generate`, tinyRequest({ steps: 40 }));
    const id = submitted.body.id as string;
    const worker = await untilRunningOn(id);
    await readEvents(`${server.url}/api/jobs/${id}/events`, {
      stop: (e) => e.type === "progress",
    });
    const children = execFileSync(
      "pgrep",
      ["-P", String(worker.child.pid), "-f", "device-process"],
      {
        encoding: "utf8",
      },
    )
      .trim()
      .split("\n");
    expect(children).toHaveLength(1);
    process.kill(Number(children[0]), "SIGKILL");
    const result = await untilFinished(id, submitted.body.token as string);
    expect(result.status).toBe("done");
    expect(worker.lines.some((l) => l.startsWith(`job ${id}: the generation process died`))).toBe(
      true,
    );
    const runs = workers.flatMap((w) => w.lines.filter((l) => l.startsWith(`job ${id}: running`)));
    expect(runs).toHaveLength(2);
  });
});
