/**
 * Jobs run by this process, without Redis: one first-in-first-out queue and one generation
 * process for the device; finished jobs kept in memory within a count and a byte budget.
 */
import { hostname } from "node:os";
import { type DeviceProcessData, DeviceRunner } from "./device-runner.js";
import {
  checkKeyQuota,
  countFinished,
  type HealthReport,
  type JobBackend,
  type JobSnapshot,
  type MetricsReport,
  QueueFullError,
  snapshotOf,
  type WorkerTotals,
} from "./job-backend.js";
import type { JobSpec } from "./job-spec.js";
import { DeviceQueue, Job, type JobOwner, type LoggedEvent } from "./jobs.js";
import { isFinalEvent } from "./protocol.js";

export interface LocalJobsOptions {
  readonly generation: DeviceProcessData;
  /** Jobs that may wait at once (default 16). */
  readonly maxQueue?: number;
  /** Jobs one API key may have waiting or running (default: no limit). */
  readonly maxPerKey?: number;
  /** Finished jobs kept with their images (default 50). */
  readonly historySize?: number;
  readonly log?: (line: string) => void;
}

const MAX_HISTORY_IMAGE_BYTES = 512 * 1024 * 1024;

export class LocalJobs implements JobBackend {
  readonly kind = "in-process" as const;
  private readonly runner: DeviceRunner;
  private readonly queue: DeviceQueue;
  private readonly jobs = new Map<string, Job>();
  private readonly finished: Job[] = [];
  private readonly totals = new Map<string, WorkerTotals>();
  private readonly workerName: string;
  private readonly historySize: number;
  private readonly maxPerKey: number;
  private failed = 0;

  constructor(options: LocalJobsOptions) {
    const log = options.log ?? (() => {});
    this.runner = new DeviceRunner(options.generation, log);
    this.historySize = options.historySize ?? 50;
    this.maxPerKey = options.maxPerKey ?? Number.POSITIVE_INFINITY;
    this.workerName = `${hostname()}/${process.pid}/${options.generation.device}`;
    const device = options.generation.device;
    this.queue = new DeviceQueue(
      async (job) => {
        const started = performance.now();
        const outcome = await this.runner.run(
          job.id,
          job.spec,
          { id: job.id, createdAt: job.createdAt, model: options.generation.model, device },
          {
            emit: (event) => {
              if (!isFinalEvent(event)) job.emit(event);
            },
            image: (name, png) => job.images.set(name, png),
          },
        );
        countFinished(this.totals, this.workerName, outcome, (performance.now() - started) / 1000);
        return outcome;
      },
      options.maxQueue ?? 16,
      (job) => this.retire(job),
      (job) => this.runner.cancel(job.id),
    );
  }

  /** Loads the model in the generation process. */
  start(): Promise<void> {
    return this.runner.start();
  }

  async submit(spec: JobSpec, owner: JobOwner): Promise<string> {
    await checkKeyQuota(this, owner, this.maxPerKey);
    const job = new Job(spec, owner);
    try {
      this.queue.submit(job);
    } catch (error) {
      throw new QueueFullError((error as Error).message, false);
    }
    this.jobs.set(job.id, job);
    return job.id;
  }

  async get(id: string): Promise<JobSnapshot | undefined> {
    const job = this.jobs.get(id);
    return job ? snapshotOf(job) : undefined;
  }

  async follow(id: string, afterSeq: number, listener: (logged: LoggedEvent) => void) {
    return this.jobs.get(id)?.follow(afterSeq, listener);
  }

  async wait(id: string): Promise<JobSnapshot> {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    await job.settled();
    return snapshotOf(job);
  }

  async cancel(id: string): Promise<boolean> {
    const job = this.jobs.get(id);
    return job ? this.queue.cancel(job) : false;
  }

  async image(id: string, name: string): Promise<Uint8Array | undefined> {
    return this.jobs.get(id)?.images.get(name);
  }

  async history(client: string | null): Promise<JobSnapshot[]> {
    return [...this.finished]
      .reverse()
      .filter((job) => job.outcome && (client === null || job.owner.client === client))
      .map(snapshotOf);
  }

  async pendingFor(key: string): Promise<number> {
    let count = 0;
    for (const job of this.jobs.values()) if (!job.finished && job.owner.key === key) count++;
    return count;
  }

  async health(): Promise<HealthReport> {
    return { ok: true, backend: "in-process", queueReachable: true, workers: 1 };
  }

  async metrics(): Promise<MetricsReport> {
    const completed = this.finished.filter((job) => job.status === "done").length;
    return {
      jobs: {
        waiting: this.queue.waitingCount,
        active: this.queue.runningJob ? 1 : 0,
        completed,
        failed: this.failed,
      },
      workers: this.totals,
    };
  }

  async close(): Promise<void> {
    const drained = this.queue.drain(true);
    await this.runner.close();
    await drained;
  }

  private retire(job: Job): void {
    if (job.status === "error") {
      this.failed++;
      countFinished(this.totals, this.workerName, null, 0);
    }
    this.finished.push(job);
    const bytes = () =>
      this.finished.reduce(
        (sum, j) => sum + [...j.images.values()].reduce((n, png) => n + png.length, 0),
        0,
      );
    // Images stay in memory: keep the history within its length and its byte budget.
    while (
      this.finished.length > this.historySize ||
      (this.finished.length > 1 && bytes() > MAX_HISTORY_IMAGE_BYTES)
    ) {
      const old = this.finished.shift()!;
      this.jobs.delete(old.id);
    }
  }
}
