// The APIs other clients speak (OpenAI images through the official client, the web UIs'
// txt2img/img2img), and who may use the server: API keys, client tokens for jobs, Host and
// Origin checks, body and input limits, the per-key job limit and the browser UNet budget.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodePng } from "../../src/image/png.js";
import { startServer } from "../../src/serve/server.js";
import { expectOneLineError, runCli } from "../cli/helpers.js";
import {
  postJson,
  startTestServer,
  TEST_CLIENT_TOKEN,
  type TestServer,
  TINY_MODEL,
  tinyRequest,
} from "./helpers.js";

const KEY = "test-api-key-0123456789";
const AUTH = { authorization: `Bearer ${KEY}` };

let test: TestServer;
beforeAll(async () => {
  test = await startTestServer({ apiKeys: [KEY], maxJobsPerKey: 2, maxUnetVariants: 1 });
});
afterAll(async () => {
  await test?.close();
});

function call(path: string, init: RequestInit = {}, token = TEST_CLIENT_TOKEN) {
  return fetch(`${test.url}${path}`, {
    ...init,
    headers: { ...AUTH, "x-client-token": token, ...(init.headers as Record<string, string>) },
  });
}

async function postAs(path: string, body: unknown, headers: Record<string, string> = AUTH) {
  return postJson(`${test.url}${path}`, body, headers);
}

async function untilFinished(id: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const { status } = (await (await call(`/api/jobs/${id}`)).json()) as { status: string };
    if (status !== "queued" && status !== "running") return status;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

/** Jobs the server has accepted so far (it logs one line per job). */
function jobsLogged(): number {
  return test.log.filter((line) => line.startsWith("job ")).length;
}

const openai = () => new OpenAI({ apiKey: KEY, baseURL: `${test.url}/v1`, maxRetries: 0 });

describe("the OpenAI images API", () => {
  it("generates through the official client as base64 and as URLs", async () => {
    const b64 = await openai().images.generate({
      prompt: "a red cube",
      n: 2,
      size: "64x64" as "256x256",
      response_format: "b64_json",
      ...({ steps: 2, seed: 11, negative_prompt: "blue" } as object),
    });
    expect(b64.data).toHaveLength(2);
    const pngs = b64.data!.map((d, i) =>
      decodePng(new Uint8Array(Buffer.from(d.b64_json!, "base64")), `image ${i}`),
    );
    for (const png of pngs) expect([png.width, png.height]).toEqual([64, 64]);
    // Image i is seeded seed + i: two different images.
    expect(Buffer.from(pngs[0].data).equals(Buffer.from(pngs[1].data))).toBe(false);

    const urls = await openai().images.generate({
      prompt: "a red cube",
      size: "64x64" as "256x256",
      response_format: "url",
      ...({ steps: 2, seed: 11, negative_prompt: "blue" } as object),
    });
    const response = await fetch(urls.data![0].url!);
    expect(response.status).toBe(200);
    const fetched = decodePng(new Uint8Array(await response.arrayBuffer()), "url");
    expect(Buffer.from(fetched.data).equals(Buffer.from(pngs[0].data))).toBe(true);
  });

  it("answers bad requests in OpenAI's error shape, and queues nothing", async () => {
    const before = jobsLogged();
    const error = await openai()
      .images.generate({ prompt: "x", size: "100000x64" as "256x256" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).status).toBe(400);
    expect((error as Error).message).toContain("size: must be from 64 to 4096; got 100000");
    const raw = await postAs("/v1/images/generations", { prompt: "x", n: 0 });
    expect(raw.status).toBe(400);
    expect(raw.body).toEqual({
      error: {
        message: "n: must be from 1 to 8; got 0",
        type: "invalid_request_error",
        param: null,
        code: null,
      },
    });
    expect(jobsLogged()).toBe(before);
  });
});

describe("the web UIs' API", () => {
  it("runs txt2img and img2img with those UIs' field names, and returns their info JSON", async () => {
    const txt = await postAs("/sdapi/v1/txt2img", {
      prompt: "a red cube",
      negative_prompt: "blue",
      steps: 2,
      cfg_scale: 6,
      width: 64,
      height: 64,
      seed: 5,
      sampler_name: "Euler a",
      batch_size: 2,
      n_iter: 1,
      restore_faces: false,
    });
    expect(txt.status).toBe(200);
    const images = txt.body.images as string[];
    expect(images).toHaveLength(2);
    const info = JSON.parse(txt.body.info as string) as Record<string, unknown>;
    expect(info).toMatchObject({
      prompt: "a red cube",
      negative_prompt: "blue",
      seed: 5,
      all_seeds: [5, 6],
      width: 64,
      height: 64,
      steps: 2,
      cfg_scale: 6,
      sampler_name: "Euler a",
      batch_size: 2,
    });
    expect((info.infotexts as string[])[1]).toContain("Seed: 6");
    expect(txt.body.parameters).toMatchObject({ prompt: "a red cube", steps: 2 });

    const img = await postAs("/sdapi/v1/img2img", {
      prompt: "a red cube",
      init_images: [images[0]],
      denoising_strength: 0.5,
      steps: 2,
      width: 64,
      height: 64,
      seed: 5,
    });
    expect(img.status).toBe(200);
    const out = decodePng(
      new Uint8Array(Buffer.from((img.body.images as string[])[0], "base64")),
      "img2img",
    );
    expect([out.width, out.height]).toEqual([64, 64]);
    expect(JSON.parse(img.body.info as string)).toMatchObject({ denoising_strength: 0.5 });

    const samplers = (await (await call("/sdapi/v1/samplers")).json()) as { name: string }[];
    expect(samplers.map((s) => s.name)).toContain("Euler a");
    const progress = (await (await call("/sdapi/v1/progress")).json()) as Record<string, unknown>;
    expect(progress).toMatchObject({ progress: 0, state: { job_count: 0 } });
  });
});

describe("access", () => {
  it("wants the API key: none or a wrong one is 401, and nothing is queued", async () => {
    const before = jobsLogged();
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong-key-0123456789" },
      { authorization: KEY },
    ];
    for (const headers of attempts) {
      const generate = await postAs("/api/generate", tinyRequest(), headers);
      expect(generate.status).toBe(401);
      expect(generate.body.error).toMatch(/API key/);
      const txt = await postAs("/sdapi/v1/txt2img", { prompt: "x" }, headers);
      expect(txt.status).toBe(401);
    }
    const denied = await fetch(`${test.url}/v1/images/generations`, { method: "POST" });
    expect(denied.status).toBe(401);
    expect(denied.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(jobsLogged()).toBe(before);
    // The page's description and health stay open.
    expect((await fetch(`${test.url}/api/info`)).status).toBe(200);
    expect((await fetch(`${test.url}/health`)).status).toBe(200);
  });

  it("refuses bad input with a 4xx before anything is queued", async () => {
    const before = jobsLogged();
    const cases: [string, unknown, number, RegExp][] = [
      ["/sdapi/v1/txt2img", { prompt: "x".repeat(70_000) }, 413, /over 64 KiB/],
      ["/sdapi/v1/img2img", { prompt: "x", init_images: ["not base64!"] }, 400, /not valid base64/],
      ["/sdapi/v1/img2img", { prompt: "x", init_images: ["aGVsbG8="] }, 400, /not a PNG/],
      ["/sdapi/v1/txt2img", { prompt: "x", width: 100000 }, 400, /width: must be from 64 to 4096/],
      ["/sdapi/v1/txt2img", { prompt: "x", steps: 0 }, 400, /steps: must be from 1 to 200; got 0/],
      ["/sdapi/v1/txt2img", { prompt: "x", batch_size: 5, n_iter: 2 }, 400, /at most 8 images/],
      ["/api/generate", tinyRequest({ width: 100000 }), 400, /width: must be from 64 to 4096/],
      ["/api/generate", tinyRequest({ steps: 0 }), 400, /steps: must be from 1/],
    ];
    for (const [path, body, status, message] of cases) {
      const response = await postAs(path, body);
      expect(response.status, path).toBe(status);
      expect(String(response.body.error), path).toMatch(message);
    }
    expect(jobsLogged()).toBe(before);
  });

  it("lets only the submitting client see, follow, cancel or fetch its job", async () => {
    const mine = await postAs("/api/generate", tinyRequest({ steps: 200 }));
    expect(mine.status).toBe(202);
    const id = mine.body.id as string;
    const stranger = "another-client-token-99";
    for (const [path, method] of [
      [`/api/jobs/${id}`, "GET"],
      [`/api/jobs/${id}/events`, "GET"],
      [`/api/jobs/${id}/cancel`, "POST"],
      [`/api/jobs/${id}/images/baseline.png`, "GET"],
    ] as const) {
      const response = await call(path, { method }, stranger);
      expect(response.status, path).toBe(404);
    }
    const none = await fetch(`${test.url}/api/jobs/${id}`, { headers: AUTH });
    expect(none.status).toBe(404);
    const cancel = await call(`/api/jobs/${id}/cancel`, { method: "POST" });
    expect(await cancel.json()).toMatchObject({ cancelled: true });
    await untilFinished(id);
    // A stranger's history has none of this client's jobs.
    const history = (await (await call("/api/history", {}, stranger)).json()) as {
      results: unknown[];
    };
    expect(history.results).toEqual([]);
  });

  it("limits the jobs one API key has waiting or running", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await postAs("/api/generate", tinyRequest({ steps: 200 }));
      expect(response.status).toBe(202);
      ids.push(response.body.id as string);
    }
    const third = await postAs("/api/generate", tinyRequest());
    expect(third.status).toBe(429);
    expect(third.body.error).toMatch(/this API key has 2 jobs waiting or running/);
    for (const id of ids) await call(`/api/jobs/${id}/cancel`, { method: "POST" });
    for (const id of ids) await untilFinished(id);
  });

  it("refuses other Host names (DNS rebinding) and cross-origin API requests", async () => {
    const { request } = await import("node:http");
    const get = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${test.url}/api/info`, { headers }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    expect(await get({ host: "evil.example:7860" })).toBe(421);
    expect(await get({ host: `localhost:${test.server.port}` })).toBe(200);
    expect(await get({ origin: "http://evil.example" })).toBe(403);
    expect(await get({ origin: test.url })).toBe(200);
    expect(await get({ "sec-fetch-site": "cross-site" })).toBe(403);
  });

  it("builds a bounded number of browser UNets, and says so past the bound", async () => {
    const unet = (factor: number) =>
      call(
        `/api/model/unet?backend=wasm&reduction=${encodeURIComponent(
          JSON.stringify({ method: "todo", factor, factorLevel2: 1, ratioLevel2: 0 }),
        )}`,
      );
    expect((await unet(2)).status).toBe(200);
    expect((await unet(2)).status).toBe(200);
    const refused = await unet(3);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: string }).error).toMatch(
      /builds at most 1 browser UNets/,
    );
  });

  it("shows every client's jobs in the history only when told to share it", async () => {
    const shared = await startServer({
      model: TINY_MODEL,
      port: 0,
      cacheDir: test.cacheDir,
      sharedHistory: true,
    });
    try {
      const submitted = await postJson(`${shared.url}/api/generate`, tinyRequest({ steps: 1 }));
      const id = submitted.body.id as string;
      for (let i = 0; i < 600; i++) {
        const job = await fetch(`${shared.url}/api/jobs/${id}`, {
          headers: { "x-client-token": TEST_CLIENT_TOKEN },
        });
        if (((await job.json()) as { status: string }).status === "done") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const history = (await (
        await fetch(`${shared.url}/api/history`, {
          headers: { "x-client-token": "another-client-token-99" },
        })
      ).json()) as { results: { id: string }[] };
      expect(history.results.map((r) => r.id)).toEqual([id]);
    } finally {
      await shared.close();
    }
  });

  it("will not listen beyond loopback without API keys", async () => {
    await expect(startServer({ model: TINY_MODEL, host: "0.0.0.0", port: 0 })).rejects.toThrow(
      /^host 0\.0\.0\.0 makes the server reachable from other machines; give API keys \(apiKeys or TODO_SD_API_KEYS\)/,
    );
    const run = await runCli(["serve", "-m", TINY_MODEL, "--host", "0.0.0.0", "--port", "0"]);
    expectOneLineError(
      run,
      /--host 0\.0\.0\.0 makes the server reachable from other machines; give API keys \(--api-key or TODO_SD_API_KEYS\)/,
    );
    const short = await runCli(["serve", "-m", TINY_MODEL, "--api-key", "short"]);
    expectOneLineError(short, /API keys must be at least 16 characters long/);
  });

  it("warns when it listens beyond loopback with API keys", async () => {
    const logged: string[] = [];
    const server = await startServer({
      model: TINY_MODEL,
      host: "0.0.0.0",
      port: 0,
      apiKeys: ["a-key-long-enough-1234"],
      log: (line) => logged.push(line),
    });
    try {
      expect(logged).toContain(
        "warning: listening on 0.0.0.0, reachable from other machines; API keys are required",
      );
    } finally {
      await server.close();
    }
    const quiet: string[] = [];
    const local = await startServer({ model: TINY_MODEL, port: 0, log: (l) => quiet.push(l) });
    await local.close();
    expect(quiet.filter((line) => line.includes("reachable from other machines"))).toEqual([]);
  });
});
