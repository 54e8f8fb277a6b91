/**
 * The one job interface the routes use. Two implementations: in-process (local-jobs.ts, a
 * generation process per device) and the Redis queue (queue-jobs.ts, BullMQ workers anywhere).
 */
import { type JobOutcome, type JobSpec, recordedSpec } from "./job-spec.js";
import type { Job, JobOwner, JobStatus, LoggedEvent } from "./jobs.js";
import type { JobEvent } from "./protocol.js";

export interface JobSnapshot {
  readonly id: string;
  readonly status: JobStatus;
  /** The parameters as recorded (an init image replaced by its length). */
  readonly spec: JobSpec;
  readonly owner: JobOwner;
  readonly createdAt: string;
  readonly outcome: JobOutcome | null;
  readonly error: string | null;
  readonly progress: Extract<JobEvent, { type: "progress" }> | null;
}

export function snapshotOf(job: Job): JobSnapshot {
  return {
    id: job.id,
    status: job.status,
    spec: recordedSpec(job.spec),
    owner: job.owner,
    createdAt: job.createdAt,
    outcome: job.outcome ?? null,
    error: job.error ?? null,
    progress: job.progress ?? null,
  };
}

export interface HealthReport {
  readonly ok: boolean;
  readonly backend: "in-process" | "redis";
  /** The queue (Redis) answers; always true in-process. */
  readonly queueReachable: boolean;
  /** Workers that take jobs now (generation processs in-process). */
  readonly workers: number;
  readonly detail?: string;
}

export interface MetricsReport {
  /** Jobs by state, as the queue counts them now. */
  readonly jobs: Readonly<Record<"waiting" | "active" | "completed" | "failed", number>>;
  /** Per worker: jobs finished and the seconds they took (whole job and UNet alone). */
  readonly workers: ReadonlyMap<string, WorkerTotals>;
}

export interface WorkerTotals {
  completed: number;
  failed: number;
  jobSeconds: number;
  unetSeconds: number;
}

/** Thrown by submit when a queue or a key's quota is full: 429 or 503 to the client. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(
    message: string,
    readonly perKey: boolean,
  ) {
    super(message);
  }
}

/** Refuses a job whose API key already has `max` jobs waiting or running. */
export async function checkKeyQuota(
  backend: Pick<JobBackend, "pendingFor">,
  owner: JobOwner,
  max: number,
): Promise<void> {
  if (owner.key !== null && (await backend.pendingFor(owner.key)) >= max)
    throw new QueueFullError(
      `this API key has ${max} jobs waiting or running; wait for one to finish`,
      true,
    );
}

export interface JobBackend {
  readonly kind: HealthReport["backend"];
  /** Queues a checked job; throws QueueFullError. Resolves once the job is accepted. */
  submit(spec: JobSpec, owner: JobOwner): Promise<string>;
  get(id: string): Promise<JobSnapshot | undefined>;
  /**
   * Replays the events after `afterSeq`, then passes new ones to `listener` until the job ends;
   * returns the unsubscribe function, or undefined when the job is unknown.
   */
  follow(
    id: string,
    afterSeq: number,
    listener: (logged: LoggedEvent) => void,
  ): Promise<(() => void) | undefined>;
  /** Resolves when the job has finished (whatever the client does meanwhile). */
  wait(id: string): Promise<JobSnapshot>;
  /** Cancels a waiting or running job; false when it had already finished. */
  cancel(id: string): Promise<boolean>;
  image(id: string, name: string): Promise<Uint8Array | undefined>;
  /** Finished jobs, newest first: one client's (a hash), or everyone's when null. */
  history(client: string | null): Promise<JobSnapshot[]>;
  /** Jobs of an API key that wait or run. */
  pendingFor(key: string): Promise<number>;
  health(): Promise<HealthReport>;
  metrics(): Promise<MetricsReport>;
  close(): Promise<void>;
}

/** Adds a finished job's figures to its worker's totals. */
export function countFinished(
  totals: Map<string, WorkerTotals>,
  worker: string,
  outcome: JobOutcome | null,
  jobSeconds: number,
): void {
  const entry = totals.get(worker) ?? { completed: 0, failed: 0, jobSeconds: 0, unetSeconds: 0 };
  totals.set(worker, entry);
  if (!outcome) {
    entry.failed++;
    return;
  }
  entry.completed++;
  entry.jobSeconds += jobSeconds;
  const timings =
    outcome.kind === "compare"
      ? [outcome.result.baseline.timings, outcome.result.accelerated.timings]
      : outcome.result.timings;
  for (const t of timings) entry.unetSeconds += t.unetMs / 1000;
}
