/**
 * `todo-sd worker`: takes jobs from the BullMQ queue and runs them, one at a time, on one
 * device, in a generation process (so the queue's lock on the job is renewed whatever the model
 * does). Progress goes out as the job's progress, images as Redis keys with the retention time,
 * the outcome as the job's return value.
 *
 * Failures: a job that throws (bad input, a model error) fails once, with its message, and is
 * not retried. A generation process that dies under a job fails that attempt; the job has two.
 * A worker that dies mid-job (kill -9, a crash) stops renewing its lock; another
 * worker's stalled-job check returns the job to the queue, and it runs again, up to
 * `maxStalledCount` times, after which it fails as a job that keeps stopping workers.
 * close(): the running job gets `graceMs` to finish; past that it goes back to the queue for
 * another worker and the process is ended.
 */
import { hostname } from "node:os";
import { type Job as BullJob, UnrecoverableError, WaitingError, Worker } from "bullmq";
import { Redis } from "ioredis";
import { type DeviceProcessData, DeviceRunner, JobFailure } from "./device-runner.js";
import type { JobOutcome } from "./job-spec.js";
import { firstLine } from "./protocol.js";
import {
  CANCELLED_REASON,
  DEFAULT_QUEUE_NAME,
  DEFAULT_RETENTION_SECONDS,
  type QueuedJobData,
  queueKeys,
} from "./queue-keys.js";

export interface QueueWorkerOptions {
  readonly url: string;
  readonly queueName?: string;
  readonly generation: DeviceProcessData;
  readonly retentionSeconds?: number;
  /** How long a job's lock lasts without renewal (default 30 s): a dead worker's job waits this long. */
  readonly lockSeconds?: number;
  /** Times a job may stop workers before it fails (default 2). */
  readonly maxStalledCount?: number;
  readonly log?: (line: string) => void;
}

export interface RunningWorker {
  readonly name: string;
  /** Finishes the running job within `graceMs` or returns it to the queue, then disconnects. */
  close(graceMs?: number): Promise<void>;
}

export async function startQueueWorker(options: QueueWorkerOptions): Promise<RunningWorker> {
  const log = options.log ?? (() => {});
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  const keys = queueKeys(queueName);
  const retention = options.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
  const name = `${hostname()}/${process.pid}/${options.generation.device}`;
  const runner = new DeviceRunner(options.generation, log);
  // The model is loaded before any job is taken.
  await runner.start();

  const redis = new Redis(options.url, { maxRetriesPerRequest: null });
  const subscriber = redis.duplicate();
  redis.on("error", () => {});
  subscriber.on("error", () => {});
  let current: string | undefined;
  let returning = false;
  await subscriber.subscribe(keys.cancelChannel);
  subscriber.on("message", (_channel: string, id: string) => {
    if (id === current) runner.cancel(id);
  });

  const process_ = async (
    job: BullJob<QueuedJobData, JobOutcome>,
    token?: string,
  ): Promise<JobOutcome> => {
    const id = job.id!;
    if (await redis.exists(keys.cancel(id))) throw new UnrecoverableError(CANCELLED_REASON);
    current = id;
    log(`job ${id}: running (attempt ${job.attemptsStarted})`);
    // Redis writes in the order the process reported them: an image before the event naming it.
    let writes: Promise<unknown> = Promise.resolve();
    const enqueue = (write: () => Promise<unknown>) => {
      writes = writes.then(write).catch((error) => log(`job ${id}: ${firstLine(error)}`));
    };
    try {
      const outcome = await runner.run(
        id,
        job.data.spec,
        { id, createdAt: job.data.createdAt, model: options.generation.model, device: name },
        {
          emit: (event) => enqueue(() => job.updateProgress(event)),
          image: (image, png) =>
            enqueue(() => redis.set(keys.image(id, image), Buffer.from(png), "EX", retention)),
        },
      );
      await writes;
      log(`job ${id}: done`);
      return outcome;
    } catch (error) {
      await writes;
      if (returning && token) {
        await job.moveToWait(token);
        log(`job ${id}: returned to the queue`);
        throw new WaitingError();
      }
      // A generation process that died is tried again (on a new process, here or elsewhere)
      // within the job's attempts; any other failure is the job's own and final.
      if (error instanceof JobFailure && error.crashed) {
        log(`job ${id}: the generation process died: ${firstLine(error)}`);
        throw new Error(firstLine(error));
      }
      const cancelled = error instanceof JobFailure && error.cancelled;
      log(`job ${id}: ${cancelled ? "cancelled" : `failed: ${firstLine(error)}`}`);
      throw new UnrecoverableError(cancelled ? CANCELLED_REASON : firstLine(error));
    } finally {
      current = undefined;
    }
  };

  const lockDuration = (options.lockSeconds ?? 30) * 1000;
  const worker = new Worker<QueuedJobData, JobOutcome>(queueName, process_, {
    connection: { url: options.url, maxRetriesPerRequest: null },
    concurrency: 1,
    name,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount: options.maxStalledCount ?? 2,
    removeOnComplete: { age: retention },
    removeOnFail: { age: retention },
  });
  worker.on("error", (error) => log(`worker: ${firstLine(error)}`));
  await worker.waitUntilReady();
  log(`worker ${name} takes jobs from ${queueName}`);

  let closing: Promise<void> | undefined;
  return {
    name,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        const closed = worker.close();
        const timer = setTimeout(() => {
          if (current) {
            returning = true;
            runner.cancel(current);
          }
        }, graceMs);
        await closed;
        clearTimeout(timer);
        await runner.close();
        subscriber.disconnect();
        redis.disconnect();
      })();
      return closing;
    },
  };
}
