// The server stays responsive while a model runs: generation runs off the main thread, so
// requests and cancels are answered mid-job, and SIGTERM ends `todo-sd serve` promptly.
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  postJson,
  readEvents,
  startTestServer,
  type TestServer,
  TINY_MODEL,
  tinyRequest,
} from "./helpers.js";

/**
 * A job of the tiny model that runs for minutes on a CPU (768 px, 200 steps, twice), whose UNet
 * calls take long enough that, on the main thread, they held every request for seconds.
 */
const LONG_JOB = tinyRequest({ width: 768, height: 768, steps: 200 });
/** Generous: these requests take milliseconds when the main thread is free. */
const ANSWER_WITHIN = () => AbortSignal.timeout(5000);

let test: TestServer;
beforeAll(async () => {
  test = await startTestServer();
});
afterAll(async () => {
  await test?.close();
});

async function status(id: string): Promise<string> {
  const response = await fetch(`${test.url}/api/jobs/${id}`, {
    headers: { "x-client-token": "test-client-token-0001" },
  });
  return ((await response.json()) as { status: string }).status;
}

describe("a server running a long job", () => {
  it("answers other requests and a cancel while the model runs", async () => {
    const submitted = await postJson(`${test.url}/api/generate`, LONG_JOB);
    const id = submitted.body.id as string;
    await readEvents(`${test.url}/api/jobs/${id}/events`, {
      stop: (e) => e.type === "progress",
    });
    // Mid-job, mid-step: the info route answers, and the job is still running after it has.
    for (let i = 0; i < 3; i++) {
      const info = await fetch(`${test.url}/api/info`, { signal: ANSWER_WITHIN() });
      expect(info.status).toBe(200);
    }
    expect(await status(id)).toBe("running");
    const cancel = await postJson(`${test.url}/api/jobs/${id}/cancel`, {}, {}, ANSWER_WITHIN());
    expect(cancel).toMatchObject({ status: 200, body: { cancelled: true } });
    // The cancel lands at the next step: the job ends long before its 400 steps.
    const events = await readEvents(`${test.url}/api/jobs/${id}/events`);
    expect(events.at(-1)?.type).toBe("cancelled");
    const last = events.filter((e) => e.event.type === "progress").at(-1)?.event;
    expect(last && last.type === "progress" && last.phase).toBe("baseline");
  });
});

describe("todo-sd serve and SIGTERM", () => {
  it("exits within seconds of SIGTERM while a long job runs", async () => {
    const root = resolve(".");
    const child = spawn(
      process.execPath,
      [
        "--import",
        join(root, "tests", "serve", "register-ts.mjs"),
        join(root, "src", "cli.ts"),
        "serve",
        "-m",
        TINY_MODEL,
        "--port",
        "0",
        "--cache-dir",
        test.cacheDir,
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    try {
      const url = await new Promise<string>((done, reject) => {
        let out = "";
        child.stdout!.setEncoding("utf8");
        child.stdout!.on("data", (chunk: string) => {
          out += chunk;
          const line = /^(http:\/\/\S+)\n/m.exec(out);
          if (line) done(line[1]);
        });
        void exited.then((code) => reject(new Error(`serve exited early (${code})`)));
      });
      const submitted = await postJson(`${url}/api/generate`, LONG_JOB);
      await readEvents(`${url}/api/jobs/${submitted.body.id}/events`, {
        stop: (e) => e.type === "progress",
      });
      const sent = Date.now();
      child.kill("SIGTERM");
      // A generous bound: the job alone would run for minutes.
      const code = await Promise.race([
        exited,
        new Promise<"hung">((done) => setTimeout(() => done("hung"), 20_000)),
      ]);
      expect(code).toBe(0);
      expect(Date.now() - sent).toBeLessThan(20_000);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    }
  });
});
