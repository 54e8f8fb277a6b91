/**
 * Jobs as the server tracks them: a first-in-first-out queue per device that runs one job at a
 * time, with positions reported to the waiting jobs, cancellation of waiting and running jobs,
 * and an event log per job that late or reconnecting listeners replay. The Redis queue's front
 * end keeps the same event logs for the jobs it follows.
 */
import { randomUUID } from "node:crypto";
import type { JobOutcome, JobSpec } from "./job-spec.js";
import { firstLine, isFinalEvent, type JobEvent } from "./protocol.js";

/** Who submitted a job: a hash of the client's token, and the API key's id when keys are on. */
export interface JobOwner {
  readonly client: string;
  readonly key: string | null;
}

export const ANONYMOUS: JobOwner = Object.freeze({ client: "", key: null });

export type JobStatus = "queued" | "running" | "done" | "error" | "cancelled";

/** One logged event and its sequence number (the SSE event id). */
export interface LoggedEvent {
  readonly seq: number;
  readonly event: JobEvent;
}

export type JobListener = (logged: LoggedEvent) => void;

export class Job {
  readonly id: string;
  readonly createdAt: string;
  status: JobStatus = "queued";
  outcome: JobOutcome | undefined;
  /** The message of a failed job. */
  error: string | undefined;
  /** PNG bytes by image name (baseline.png, 0.png, ...). */
  readonly images = new Map<string, Uint8Array>();
  readonly controller = new AbortController();
  private readonly log: LoggedEvent[] = [];
  private readonly listeners = new Set<JobListener>();

  constructor(
    readonly spec: JobSpec,
    readonly owner: JobOwner = ANONYMOUS,
    known?: { readonly id: string; readonly createdAt: string },
  ) {
    this.id = known?.id ?? randomUUID();
    this.createdAt = known?.createdAt ?? new Date().toISOString();
  }

  /** The latest progress event, if the job has reported one. */
  get progress(): Extract<JobEvent, { type: "progress" }> | undefined {
    for (let i = this.log.length - 1; i >= 0; i--) {
      const event = this.log[i].event;
      if (event.type === "progress") return event;
    }
    return undefined;
  }

  get finished(): boolean {
    return this.status === "done" || this.status === "error" || this.status === "cancelled";
  }

  emit(event: JobEvent): void {
    if (this.finished) return;
    // Only the latest progress of a phase is worth replaying: drop the one before it.
    const last = this.log[this.log.length - 1];
    if (
      event.type === "progress" &&
      last?.event.type === "progress" &&
      last.event.phase === event.phase
    )
      this.log.pop();
    const logged = { seq: (last?.seq ?? 0) + 1, event };
    this.log.push(logged);
    if (event.type === "done") this.status = "done";
    else if (event.type === "error") {
      this.status = "error";
      this.error = event.message;
    } else if (event.type === "cancelled") this.status = "cancelled";
    else if (event.type === "started") this.status = "running";
    for (const listener of [...this.listeners]) {
      try {
        listener(logged);
      } catch {
        // A listener whose client went away must not stop the job or the other listeners.
        this.listeners.delete(listener);
      }
    }
    if (isFinalEvent(event)) this.listeners.clear();
  }

  /** Events after `afterSeq` (0: all of them). */
  eventsAfter(afterSeq: number): readonly LoggedEvent[] {
    return this.log.filter((e) => e.seq > afterSeq);
  }

  subscribe(listener: JobListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Replays the events after `afterSeq`, then passes new ones to `listener` until the job ends;
   * returns the unsubscribe function.
   */
  follow(afterSeq: number, listener: JobListener): () => void {
    for (const logged of this.eventsAfter(afterSeq)) listener(logged);
    return this.finished ? () => {} : this.subscribe(listener);
  }

  /** Resolves once the job has finished (its listeners are dropped with the final event). */
  settled(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => {
      this.subscribe(({ event }) => {
        if (isFinalEvent(event)) resolve();
      });
    });
  }

  get listenerCount(): number {
    return this.listeners.size;
  }
}

export type JobRunner = (job: Job) => Promise<JobOutcome>;

/** Runs jobs one at a time on one device, first in, first out. */
export class DeviceQueue {
  private running: Job | undefined;
  private readonly waiting: Job[] = [];
  private idle: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;

  constructor(
    private readonly run: JobRunner,
    private readonly maxWaiting: number,
    private readonly onFinished: (job: Job) => void = () => {},
    /** Tells whatever runs the job that it was cancelled (its signal is aborted too). */
    private readonly onCancel: (job: Job) => void = () => {},
  ) {}

  get waitingCount(): number {
    return this.waiting.length;
  }

  get runningJob(): Job | undefined {
    return this.running;
  }

  /** Queues a job; throws when the queue is full. */
  submit(job: Job): void {
    if (this.waiting.length >= this.maxWaiting)
      throw new Error(`the queue is full (${this.maxWaiting} jobs waiting); try again later`);
    this.waiting.push(job);
    job.emit({ type: "queued", ahead: this.waiting.length - 1 + (this.running ? 1 : 0) });
    this.pump();
  }

  /** Cancels a waiting or running job; false when it had already finished. */
  cancel(job: Job): boolean {
    if (job.finished) return false;
    const index = this.waiting.indexOf(job);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      job.emit({ type: "cancelled" });
      this.onFinished(job);
      this.announcePositions(index);
      return true;
    }
    job.controller.abort();
    this.onCancel(job);
    return true;
  }

  /** Resolves when nothing runs (after cancelling everything when `cancelAll`). */
  async drain(cancelAll: boolean): Promise<void> {
    if (cancelAll) {
      for (const job of [...this.waiting]) this.cancel(job);
      if (this.running) this.cancel(this.running);
    }
    while (this.running || this.waiting.length > 0) await this.idle;
  }

  private announcePositions(from: number): void {
    for (let i = from; i < this.waiting.length; i++)
      this.waiting[i].emit({ type: "queued", ahead: i + (this.running ? 1 : 0) });
  }

  private pump(): void {
    if (this.running) return;
    const job = this.waiting.shift();
    if (!job) return;
    this.running = job;
    this.idle = new Promise((resolve) => {
      this.wake = resolve;
    });
    this.announcePositions(0);
    job.emit({ type: "started" });
    void this.execute(job);
  }

  private async execute(job: Job): Promise<void> {
    try {
      const outcome = await this.run(job);
      job.outcome = outcome;
      job.emit({ type: "done", result: outcome.result });
    } catch (error) {
      if (
        job.controller.signal.aborted ||
        (error as Error)?.name === "AbortError" ||
        (error as { cancelled?: unknown })?.cancelled === true
      )
        job.emit({ type: "cancelled" });
      else job.emit({ type: "error", message: firstLine(error) });
    } finally {
      this.running = undefined;
      this.onFinished(job);
      this.wake?.();
      this.pump();
    }
  }
}
