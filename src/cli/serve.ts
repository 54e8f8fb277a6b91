import type { Command } from "commander";
import { API_KEYS_ENV, apiKeysFrom } from "../serve/access.js";
import { startQueueWorker } from "../serve/queue-worker.js";
import { startServer } from "../serve/server.js";
import { addLoraFlags, type LoraFlagValues } from "./lora-flags.js";
import { addModelFlags, intArg, loadOptionsFromFlags, type ModelFlagValues } from "./options.js";

interface ServeFlags extends ModelFlagValues, LoraFlagValues {
  readonly port: number;
  readonly host: string;
  readonly browserEngine: boolean;
  readonly queue?: string;
  readonly queueName: string;
  readonly apiKey: string[];
  readonly maxJobsPerKey: number;
  readonly allowedHost: string[];
  readonly sharedHistory?: boolean;
  readonly retention: number;
  readonly maxUnets: number;
}

interface WorkerFlags extends ModelFlagValues, LoraFlagValues {
  readonly queue: string;
  readonly queueName: string;
  readonly retention: number;
  readonly lockSeconds: number;
  readonly maxStalls: number;
  readonly shutdownGrace: number;
}

/** Seconds a shutdown waits for the running job before it gives up on it. */
const SERVE_SHUTDOWN_MS = 3000;

const collect = (value: string, previous: string[]) => [...previous, value];

/**
 * The loading options a generation process can take (everything but the device and cache); the
 * --lora files are merged into the pipeline's own models.
 */
function deviceLoadOptions(flags: ModelFlagValues & LoraFlagValues) {
  const {
    device: _device,
    dtype: _dtype,
    cacheDir: _cacheDir,
    ...load
  } = loadOptionsFromFlags(flags);
  return { ...load, loras: flags.lora };
}

/** Resolves on the first SIGINT or SIGTERM. */
function stopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

export function registerServe(program: Command): void {
  addLoraFlags(
    addModelFlags(
      program
        .command("serve")
        .description(
          "a web app and HTTP APIs (ours, OpenAI images, the web UIs'): jobs in-process, or on a Redis queue with --queue",
        ),
    ),
    { promptTags: true },
  )
    .option("--port <n>", "port to listen on (0: any free port)", intArg("--port", 0), 7860)
    .option(
      "--host <address>",
      "address to listen on (not loopback: API keys required)",
      "127.0.0.1",
    )
    .option("--no-browser-engine", "do not serve models to the in-browser engine")
    .option(
      "--queue <redis-url>",
      "put jobs on a BullMQ queue on Redis for `todo-sd worker`s (redis://host:port)",
    )
    .option("--queue-name <name>", "the queue's name on Redis", "todo-sd")
    .option(
      "--api-key <key>",
      `an API key clients send as Authorization: Bearer <key> (repeatable; also ${API_KEYS_ENV}, comma-separated)`,
      collect,
      [],
    )
    .option(
      "--max-jobs-per-key <n>",
      "jobs one API key may have waiting or running",
      intArg("--max-jobs-per-key"),
      8,
    )
    .option(
      "--allowed-host <name>",
      "another Host name to accept (a proxy's; repeatable)",
      collect,
      [],
    )
    .option("--shared-history", "every client sees every finished job in the history")
    .option(
      "--retention <seconds>",
      "with --queue: how long results stay on Redis",
      intArg("--retention"),
      86_400,
    )
    .option(
      "--max-unets <n>",
      "distinct UNets built for the browser engine per backend",
      intArg("--max-unets"),
      8,
    )
    .action(async (flags: ServeFlags) => {
      if (flags.cache === false) {
        throw new Error(
          "serve keeps built models in the cache (the browser engine downloads them from there); drop --no-cache",
        );
      }
      const apiKeys = apiKeysFrom(flags.apiKey, process.env[API_KEYS_ENV]);
      const server = await startServer({
        model: flags.model,
        port: flags.port,
        host: flags.host,
        device: flags.device,
        dtype: flags.dtype,
        cacheDir: flags.cacheDir,
        browserEngine: flags.browserEngine,
        load: deviceLoadOptions(flags),
        loraDir: flags.loraDir,
        queue: flags.queue,
        queueName: flags.queueName,
        retentionSeconds: flags.retention,
        apiKeys,
        maxJobsPerKey: flags.maxJobsPerKey,
        allowedHosts: flags.allowedHost,
        sharedHistory: flags.sharedHistory,
        maxUnetVariants: flags.maxUnets,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${server.url}\n`);
      await stopSignal();
      // A job mid-step is abandoned after a short grace: shutting down never waits on a model.
      await Promise.race([server.close(), delay(SERVE_SHUTDOWN_MS)]);
      process.exit(0);
    });

  addLoraFlags(
    addModelFlags(
      program
        .command("worker")
        .description(
          "take jobs from a `serve --queue` Redis queue and run them on this machine's device",
        ),
    ),
    { promptTags: true },
  )
    .requiredOption("--queue <redis-url>", "the queue's Redis (redis://host:port)")
    .option("--queue-name <name>", "the queue's name on Redis", "todo-sd")
    .option(
      "--retention <seconds>",
      "how long results stay on Redis",
      intArg("--retention"),
      86_400,
    )
    .option(
      "--lock-seconds <s>",
      "a dead worker's job goes back to the queue after this long",
      intArg("--lock-seconds"),
      30,
    )
    .option(
      "--max-stalls <n>",
      "times a job may stop workers before it fails",
      intArg("--max-stalls"),
      2,
    )
    .option(
      "--shutdown-grace <s>",
      "on SIGTERM: seconds to finish the running job before returning it to the queue",
      intArg("--shutdown-grace", 0),
      10,
    )
    .action(async (flags: WorkerFlags) => {
      const worker = await startQueueWorker({
        url: flags.queue,
        queueName: flags.queueName,
        retentionSeconds: flags.retention,
        lockSeconds: flags.lockSeconds,
        maxStalledCount: flags.maxStalls,
        generation: {
          model: flags.model,
          device: flags.device,
          dtype: flags.dtype,
          cacheDir: flags.cache === false ? undefined : flags.cacheDir,
          load: deviceLoadOptions(flags),
          loraDir: flags.loraDir,
        },
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${worker.name}\n`);
      await stopSignal();
      await worker.close(flags.shutdownGrace * 1000);
      process.exit(0);
    });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
