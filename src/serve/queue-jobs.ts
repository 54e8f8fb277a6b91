/**
 * Jobs on a BullMQ queue on Redis, for `todo-sd worker`s on any machine. The front end adds a
 * job and follows it through the queue's events (progress, completed, failed); results (the
 * outcome JSON as the job's return value, PNG bytes under their own keys) stay on Redis for the
 * retention time, so any front end can serve them, and a client can come back for them later.
 * Redis going away and coming back is survived: the clients reconnect, and jobs that were
 * accepted (added) are on Redis's disk when it runs with append-only persistence.
 */
import { randomUUID } from "node:crypto";
import { type Job as BullJob, Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { OptionError } from "../util/option-error.js";
import {
  checkKeyQuota,
  countFinished,
  type HealthReport,
  type JobBackend,
  type JobSnapshot,
  type MetricsReport,
  snapshotOf,
  type WorkerTotals,
} from "./job-backend.js";
import type { JobOutcome, JobSpec } from "./job-spec.js";
import { Job, type JobOwner, type JobStatus, type LoggedEvent } from "./jobs.js";
import { firstLine, type JobEvent } from "./protocol.js";
import {
  CANCELLED_REASON,
  DEFAULT_QUEUE_NAME,
  DEFAULT_RETENTION_SECONDS,
  type QueuedJobData,
  type QueueKeys,
  queueKeys,
} from "./queue-keys.js";

export interface QueueJobsOptions {
  /** redis://host:port[/db] */
  readonly url: string;
  readonly queueName?: string;
  readonly retentionSeconds?: number;
  /** Jobs one API key may have waiting or running. */
  readonly maxPerKey?: number;
  readonly log?: (line: string) => void;
}

/** The outcome as a worker returns it. */
type ReturnValue = JobOutcome;

/** How often followed jobs are checked against Redis, besides the events (missed events heal). */
const POLL_MS = 2000;

export class QueueJobs implements JobBackend {
  readonly kind = "redis" as const;
  private readonly trackers = new Map<string, Job>();
  private readonly totals = new Map<string, WorkerTotals>();
  private readonly poll: NodeJS.Timeout;
  private readonly keys: QueueKeys;

  private constructor(
    private readonly queue: Queue<QueuedJobData, ReturnValue>,
    private readonly events: QueueEvents,
    private readonly redis: Redis,
    private readonly options: QueueJobsOptions,
  ) {
    this.keys = queueKeys(options.queueName ?? DEFAULT_QUEUE_NAME);
    const log = options.log ?? (() => {});
    events.on("progress", ({ jobId, data }) => {
      const tracker = this.trackers.get(jobId);
      if (tracker && typeof data === "object" && data !== null) {
        if (tracker.status === "queued") tracker.emit({ type: "started" });
        tracker.emit(data as JobEvent);
      }
    });
    events.on("active", ({ jobId }) => {
      const tracker = this.trackers.get(jobId);
      if (tracker?.status === "queued") tracker.emit({ type: "started" });
    });
    events.on("completed", ({ jobId }) => {
      void this.settle(jobId);
      void this.count(jobId);
    });
    events.on("failed", ({ jobId }) => {
      void this.settle(jobId);
      void this.count(jobId);
    });
    events.on("error", (error) => log(`queue events: ${firstLine(error)}`));
    queue.on("error", (error) => log(`queue: ${firstLine(error)}`));
    redis.on("error", () => {
      // ioredis reconnects by itself; the queue's own error handler has said it.
    });
    this.poll = setInterval(() => {
      for (const [id, tracker] of this.trackers) if (!tracker.finished) void this.settle(id);
    }, POLL_MS);
    this.poll.unref();
  }

  static async connect(options: QueueJobsOptions): Promise<QueueJobs> {
    const name = options.queueName ?? DEFAULT_QUEUE_NAME;
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw new OptionError(
        (name) => `${name("queue")}: not a URL: ${options.url} (use redis://host:port)`,
      );
    }
    if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:")
      throw new OptionError(
        (name) => `${name("queue")}: use a redis:// URL; got ${parsed.protocol}`,
      );
    // Commands wait through a Redis restart instead of failing (maxRetriesPerRequest null).
    const connection = { url: options.url, maxRetriesPerRequest: null };
    const redis = new Redis(options.url, { maxRetriesPerRequest: null, lazyConnect: true });
    try {
      await withTimeout(redis.connect(), 10_000, `cannot reach Redis at ${options.url}`);
    } catch (error) {
      redis.disconnect();
      throw new OptionError(
        (name) => `${firstLine(error)}; start redis-server or check ${name("queue")}`,
      );
    }
    const queue = new Queue<QueuedJobData, ReturnValue>(name, { connection });
    const events = new QueueEvents(name, { connection });
    await queue.waitUntilReady();
    await events.waitUntilReady();
    return new QueueJobs(queue, events, redis, options);
  }

  private get retention(): number {
    return this.options.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
  }

  async submit(spec: JobSpec, owner: JobOwner): Promise<string> {
    await checkKeyQuota(this, owner, this.options.maxPerKey ?? Number.POSITIVE_INFINITY);
    const id = randomUUID();
    const createdAt = new Date().toISOString();
    const tracker = new Job(spec, owner, { id, createdAt });
    this.trackers.set(id, tracker);
    if (owner.key !== null) await this.redis.sadd(this.keys.pending(owner.key), id);
    try {
      await this.queue.add(
        spec.kind,
        { spec, owner, createdAt },
        {
          jobId: id,
          // Workers fail a job for its input for good (UnrecoverableError); a second attempt is
          // for a generation process that died under it. A whole worker dying is a stall,
          // counted apart (the workers' maxStalledCount).
          attempts: 2,
          removeOnComplete: { age: this.retention },
          removeOnFail: { age: this.retention },
        },
      );
    } catch (error) {
      this.trackers.delete(id);
      throw error;
    }
    tracker.emit({ type: "queued", ahead: await this.queue.getWaitingCount().catch(() => 0) });
    return id;
  }

  async get(id: string): Promise<JobSnapshot | undefined> {
    const tracker = await this.tracker(id);
    return tracker ? snapshotOf(tracker) : undefined;
  }

  async follow(id: string, afterSeq: number, listener: (logged: LoggedEvent) => void) {
    return (await this.tracker(id))?.follow(afterSeq, listener);
  }

  async wait(id: string): Promise<JobSnapshot> {
    const tracker = await this.tracker(id);
    if (!tracker) throw new Error(`no job ${id}`);
    await tracker.settled();
    return snapshotOf(tracker);
  }

  async cancel(id: string): Promise<boolean> {
    const tracker = await this.tracker(id);
    if (!tracker || tracker.finished) return false;
    // Workers check this key before they start a job, and hear the channel while they run it.
    await this.redis.set(this.keys.cancel(id), "1", "EX", this.retention);
    await this.redis.publish(this.keys.cancelChannel, id);
    const job = await this.queue.getJob(id);
    if (job && (await job.getState()) === "waiting") {
      try {
        await job.remove();
        tracker.emit({ type: "cancelled" });
      } catch {
        // a worker took it meanwhile; it sees the cancel key
      }
    }
    return true;
  }

  async image(id: string, name: string): Promise<Uint8Array | undefined> {
    const bytes = await this.redis.getBuffer(this.keys.image(id, name));
    return bytes ?? undefined;
  }

  async history(client: string | null): Promise<JobSnapshot[]> {
    const jobs = await this.queue.getJobs(["completed"], 0, 199, false);
    const snapshots: JobSnapshot[] = [];
    for (const job of jobs) {
      if (!job?.id || (client !== null && job.data.owner.client !== client)) continue;
      const tracker = this.trackerFrom(job, "completed");
      snapshots.push(snapshotOf(tracker));
    }
    return snapshots.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  async pendingFor(key: string): Promise<number> {
    const set = this.keys.pending(key);
    let count = 0;
    for (const id of await this.redis.smembers(set)) {
      const state = await this.queue.getJobState(id);
      if (
        state === "waiting" ||
        state === "active" ||
        state === "delayed" ||
        state === "prioritized"
      )
        count++;
      else await this.redis.srem(set, id);
    }
    return count;
  }

  async health(): Promise<HealthReport> {
    try {
      await withTimeout(this.redis.ping(), 2000, "Redis does not answer");
      const workers = await withTimeout(
        this.queue.getWorkersCount(),
        2000,
        "Redis does not answer",
      );
      return {
        ok: workers > 0,
        backend: "redis",
        queueReachable: true,
        workers,
        ...(workers === 0 ? { detail: "no worker is connected to the queue" } : {}),
      };
    } catch (error) {
      return {
        ok: false,
        backend: "redis",
        queueReachable: false,
        workers: 0,
        detail: firstLine(error),
      };
    }
  }

  async metrics(): Promise<MetricsReport> {
    const counts = await this.queue.getJobCounts(
      "waiting",
      "prioritized",
      "active",
      "completed",
      "failed",
    );
    return {
      jobs: {
        waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
        active: counts.active ?? 0,
        completed: counts.completed ?? 0,
        failed: counts.failed ?? 0,
      },
      workers: this.totals,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.poll);
    await this.events.close();
    await this.queue.close();
    this.redis.disconnect();
  }

  /** The tracker of a job this front end follows, or one made from the job's record on Redis. */
  private async tracker(id: string): Promise<Job | undefined> {
    const known = this.trackers.get(id) ?? this.finishedRecently.get(id);
    if (known) return known;
    const read = await readJob(this.queue, id);
    if (!read) return undefined;
    const tracker = this.trackerFrom(read.job, read.state);
    if (!tracker.finished) this.trackers.set(id, tracker);
    return tracker;
  }

  private trackerFrom(job: BullJob<QueuedJobData, ReturnValue>, state: string): Job {
    const tracker = new Job(job.data.spec, job.data.owner, {
      id: job.id!,
      createdAt: job.data.createdAt,
    });
    apply(tracker, job, state);
    return tracker;
  }

  /** Brings a tracker up to the job's state on Redis (after an event, or on the poll). */
  private async settle(id: string): Promise<void> {
    const tracker = this.trackers.get(id);
    if (!tracker || tracker.finished) return;
    try {
      const read = await readJob(this.queue, id);
      if (!read) {
        // Removed while waiting (cancelled), or expired.
        tracker.emit({ type: "cancelled" });
      } else if (!tracker.finished) {
        // Another settle of the same job may have finished it while this one waited.
        apply(tracker, read.job, read.state);
      }
    } catch {
      // Redis is away; the next poll tries again.
      return;
    }
    if (tracker.finished) {
      this.trackers.delete(id);
      // Kept as a finished record for a while, for clients that come back for it.
      this.finishedRecently.set(id, tracker);
      if (this.finishedRecently.size > 1000) {
        const oldest = this.finishedRecently.keys().next().value;
        if (oldest !== undefined) this.finishedRecently.delete(oldest);
      }
      if (tracker.owner.key !== null)
        await this.redis.srem(this.keys.pending(tracker.owner.key), id).catch(() => 0);
    }
  }

  private readonly finishedRecently = new Map<string, Job>();

  /** Adds a finished job, whichever front end submitted it, to its worker's totals. */
  private async count(id: string): Promise<void> {
    try {
      const job = await this.queue.getJob(id);
      if (!job) return;
      const outcome = job.returnvalue ?? null;
      const seconds =
        job.finishedOn && job.processedOn ? (job.finishedOn - job.processedOn) / 1000 : 0;
      const worker = outcome?.result.device ?? job.processedBy ?? "unknown";
      countFinished(this.totals, worker, job.failedReason ? null : outcome, seconds);
    } catch {
      // Redis is away: this one goes uncounted.
    }
  }
}

/**
 * A job's state and then its record, in that order. BullMQ moves a job to `failed` or
 * `completed` and writes its reason or return value in one script, so a record read after the
 * state holds at least what that state says. Read the other way round, a job that fails between
 * the two reads (a stalled job the checker gives up on) pairs `failed` with a record from before,
 * without its reason.
 */
export async function readJob<J extends { readonly id?: string }>(
  queue: {
    getJobState(id: string): Promise<string>;
    getJob(id: string): Promise<J | undefined>;
  },
  id: string,
): Promise<{ readonly job: J; readonly state: string } | undefined> {
  const state = await queue.getJobState(id);
  const job = await queue.getJob(id);
  return job?.id ? { job, state } : undefined;
}

/** Moves a tracker to what the job's record on Redis says. */
function apply(tracker: Job, job: BullJob<QueuedJobData, ReturnValue>, state: string): void {
  const status: JobStatus = tracker.status;
  if (state === "completed" && job.returnvalue) {
    if (status === "queued") tracker.emit({ type: "started" });
    tracker.outcome = job.returnvalue;
    tracker.emit({ type: "done", result: job.returnvalue.result });
  } else if (state === "failed") {
    if (job.failedReason === CANCELLED_REASON) tracker.emit({ type: "cancelled" });
    else tracker.emit({ type: "error", message: job.failedReason || "the job failed" });
  } else if (state === "active") {
    if (status === "queued") tracker.emit({ type: "started" });
    const progress = job.progress;
    if (typeof progress === "object" && progress !== null && "type" in progress)
      tracker.emit(progress as JobEvent);
  } else if (status === "queued" && tracker.eventsAfter(0).length === 0) {
    tracker.emit({ type: "queued", ahead: 0 });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}
