// Queue throughput on the tiny model (a benchmark, not a test): a front end with `--queue`, 1, 2
// and 4 `todo-sd worker` processes, JOBS generation jobs from 4 concurrent clients through the
// OpenAI route, against a direct `generate` in one process. Prints a Markdown table.
//   node --import ./tests/serve/register-ts.mjs tests/serve/queue-throughput.ts [jobs] [size] [steps]
import { cpus } from "node:os";
import { loadPipeline } from "../../src/pipelines/load.js";
import { startServer } from "../../src/serve/server.js";
import { TINY_MODEL } from "./helpers.js";
import { TestRedis, tempDir, WorkerProcess } from "./queue-helpers.js";

const JOBS = Number(process.argv[2] ?? 24);
const SIZE = Number(process.argv[3] ?? 128);
const STEPS = Number(process.argv[4] ?? 4);
const CLIENTS = 4;

const request = (seed: number) => ({
  prompt: "a red cube on a table",
  size: `${SIZE}x${SIZE}`,
  response_format: "b64_json",
  steps: STEPS,
  seed,
  guidance_scale: 7.5,
});

async function post(url: string, seed: number): Promise<void> {
  const response = await fetch(`${url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request(seed)),
  });
  if (response.status !== 200) throw new Error(`${response.status}: ${await response.text()}`);
  await response.arrayBuffer();
}

/** Runs `count` jobs from CLIENTS clients at once; returns the seconds it took. */
async function run(url: string, count: number, firstSeed: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < count) await post(url, firstSeed + next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

const cache = tempDir("todo-sd-queue-bench-");
const redis = await TestRedis.start();
const rows: string[] = [];
try {
  // Direct: one process, one generate per job, models built and warm.
  const pipeline = await loadPipeline(TINY_MODEL, { cacheDir: cache.path });
  const direct = async (seed: number) =>
    pipeline.generate({
      prompt: "a red cube on a table",
      width: SIZE,
      height: SIZE,
      steps: STEPS,
      guidanceScale: 7.5,
      seed,
    });
  await direct(0);
  const t0 = performance.now();
  for (let i = 0; i < JOBS; i++) await direct(i);
  const directSeconds = (performance.now() - t0) / 1000 / JOBS;
  await pipeline.release();

  const server = await startServer({
    model: TINY_MODEL,
    port: 0,
    cacheDir: cache.path,
    queue: redis.url,
  });
  const workers: WorkerProcess[] = [];
  let seed = 1000;
  let single = 0;
  for (const count of [1, 2, 4]) {
    while (workers.length < count) workers.push(await WorkerProcess.start(redis.url, cache.path));
    // Every worker warm: one job each before timing.
    await run(server.url, count * 2, seed);
    seed += 100;
    const seconds = await run(server.url, JOBS, seed);
    seed += 100;
    const perJob = seconds / JOBS;
    if (count === 1) single = perJob;
    rows.push(
      `| ${count} | ${JOBS} | ${seconds.toFixed(2)} | ${(JOBS / seconds).toFixed(2)} | ${(perJob * 1000).toFixed(0)} |`,
    );
  }
  for (const worker of workers) worker.kill("SIGTERM");
  await Promise.all(workers.map((w) => w.exited));
  await server.close();
  console.log(
    `tiny model (sd15-tiny), ${SIZE}x${SIZE}, ${STEPS} steps, guided, CPU; ${CLIENTS} clients; ${cpus().length} cores (${cpus()[0]?.model ?? "?"})\n`,
  );
  console.log("| workers | jobs | seconds | jobs/s | ms per job |");
  console.log("|---:|---:|---:|---:|---:|");
  for (const row of rows) console.log(row);
  console.log(
    `\ndirect generate: ${(directSeconds * 1000).toFixed(0)} ms per job; queue overhead with one worker: ${((single - directSeconds) * 1000).toFixed(0)} ms per job`,
  );
} finally {
  await redis.stop();
  cache.remove();
}
