// The device queue: one job at a time, first in first out, positions announced, cancellation of
// waiting and running jobs, event logs that replay.
import { describe, expect, it } from "vitest";
import type { JobOutcome } from "../../src/serve/job-spec.js";
import { DeviceQueue, Job, type LoggedEvent } from "../../src/serve/jobs.js";
import type { JobEvent, JobParams, JobResult } from "../../src/serve/protocol.js";

const params = { kind: "compare", params: { prompt: "p" } as JobParams } as const;

function fakeResult(job: Job): JobOutcome {
  return { kind: "compare", result: { id: job.id } as JobResult };
}

/** A runner whose jobs finish when the test says so, or end with an AbortError when cancelled. */
function controlledRunner() {
  const release = new Map<string, () => void>();
  const started: string[] = [];
  const run = (job: Job) =>
    new Promise<JobOutcome>((resolve, reject) => {
      started.push(job.id);
      release.set(job.id, () => resolve(fakeResult(job)));
      job.controller.signal.addEventListener("abort", () => {
        const error = new Error("generation cancelled");
        error.name = "AbortError";
        reject(error);
      });
    });
  return { run, release, started };
}

function record(job: Job): JobEvent[] {
  const events: JobEvent[] = [];
  job.subscribe(({ event }) => events.push(event));
  return events;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("DeviceQueue", () => {
  it("runs one job at a time, in order, and tells waiting jobs their position", async () => {
    const runner = controlledRunner();
    const queue = new DeviceQueue(runner.run, 8);
    const jobs = [new Job(params), new Job(params), new Job(params)];
    const events = jobs.map(record);
    for (const job of jobs) queue.submit(job);
    await tick();
    expect(runner.started).toEqual([jobs[0].id]);
    expect(events[1]).toContainEqual({ type: "queued", ahead: 1 });
    expect(events[2]).toContainEqual({ type: "queued", ahead: 2 });

    runner.release.get(jobs[0].id)!();
    await tick();
    expect(runner.started).toEqual([jobs[0].id, jobs[1].id]);
    expect(events[0].at(-1)).toEqual({ type: "done", result: { id: jobs[0].id } });
    expect(events[2].at(-1)).toEqual({ type: "queued", ahead: 1 });
    expect(jobs[0].status).toBe("done");
    expect(jobs[1].status).toBe("running");

    runner.release.get(jobs[1].id)!();
    await tick();
    runner.release.get(jobs[2].id)!();
    await queue.drain(false);
    expect(runner.started).toEqual(jobs.map((j) => j.id));
    expect(jobs.map((j) => j.status)).toEqual(["done", "done", "done"]);
  });

  it("cancels a waiting job without running it, and moves the others up", async () => {
    const runner = controlledRunner();
    const finished: Job[] = [];
    const queue = new DeviceQueue(runner.run, 8, (job) => finished.push(job));
    const jobs = [new Job(params), new Job(params), new Job(params)];
    const events = jobs.map(record);
    for (const job of jobs) queue.submit(job);
    expect(queue.cancel(jobs[1])).toBe(true);
    expect(events[1].at(-1)).toEqual({ type: "cancelled" });
    expect(events[2].at(-1)).toEqual({ type: "queued", ahead: 1 });
    expect(finished).toEqual([jobs[1]]);
    expect(queue.cancel(jobs[1])).toBe(false);
    runner.release.get(jobs[0].id)!();
    await tick();
    runner.release.get(jobs[2].id)!();
    await queue.drain(false);
    expect(runner.started).toEqual([jobs[0].id, jobs[2].id]);
  });

  it("cancels a running job through its signal and goes on with the next", async () => {
    const runner = controlledRunner();
    const queue = new DeviceQueue(runner.run, 8);
    const jobs = [new Job(params), new Job(params)];
    const events = jobs.map(record);
    for (const job of jobs) queue.submit(job);
    await tick();
    expect(queue.cancel(jobs[0])).toBe(true);
    await tick();
    expect(events[0].at(-1)).toEqual({ type: "cancelled" });
    expect(jobs[0].status).toBe("cancelled");
    expect(runner.started).toEqual([jobs[0].id, jobs[1].id]);
    runner.release.get(jobs[1].id)!();
    await queue.drain(false);
    expect(jobs[1].status).toBe("done");
  });

  it("reports a failing job as an error of one line and keeps running", async () => {
    let calls = 0;
    const queue = new DeviceQueue(async (job) => {
      calls++;
      if (calls === 1) throw new Error("out of memory\nstack trace here");
      return fakeResult(job);
    }, 8);
    const jobs = [new Job(params), new Job(params)];
    const events = jobs.map(record);
    for (const job of jobs) queue.submit(job);
    await queue.drain(false);
    expect(events[0].at(-1)).toEqual({ type: "error", message: "out of memory" });
    expect(jobs[1].status).toBe("done");
  });

  it("refuses jobs when the queue is full", () => {
    const runner = controlledRunner();
    const queue = new DeviceQueue(runner.run, 1);
    queue.submit(new Job(params)); // runs
    queue.submit(new Job(params)); // waits
    expect(() => queue.submit(new Job(params))).toThrow(/the queue is full \(1 jobs waiting\)/);
  });

  it("drain(true) cancels everything", async () => {
    const runner = controlledRunner();
    const queue = new DeviceQueue(runner.run, 8);
    const jobs = [new Job(params), new Job(params)];
    for (const job of jobs) queue.submit(job);
    await queue.drain(true);
    expect(jobs.map((j) => j.status)).toEqual(["cancelled", "cancelled"]);
  });
});

describe("Job", () => {
  it("replays its log after a sequence number, keeping only the latest progress of a phase", () => {
    const job = new Job(params);
    job.emit({ type: "started" });
    for (let step = 1; step <= 3; step++)
      job.emit({ type: "progress", phase: "baseline", step, totalSteps: 3, elapsedMs: step });
    job.emit({
      type: "image",
      phase: "baseline",
      url: "u",
      timings: {
        totalMs: 1,
        textEncoderMs: 0,
        unetMs: 1,
        vaeMs: 0,
        unetCalls: 3,
        denoisedOn: "host",
      },
    });
    job.emit({ type: "progress", phase: "accelerated", step: 1, totalSteps: 3, elapsedMs: 1 });
    const all = job.eventsAfter(0);
    expect(all.map((e) => e.event.type)).toEqual(["started", "progress", "image", "progress"]);
    expect(all[1].event).toMatchObject({ step: 3 });
    const seqs = all.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(job.eventsAfter(all[2].seq).map((e) => e.event.type)).toEqual(["progress"]);
  });

  it("ignores events after the end and drops listeners that throw", () => {
    const job = new Job(params);
    const seen: LoggedEvent[] = [];
    job.subscribe(() => {
      throw new Error("client went away");
    });
    job.subscribe((e) => seen.push(e));
    job.emit({ type: "started" });
    expect(job.listenerCount).toBe(1);
    job.emit({ type: "cancelled" });
    job.emit({ type: "started" });
    expect(seen.map((e) => e.event.type)).toEqual(["started", "cancelled"]);
    expect(job.status).toBe("cancelled");
    expect(job.listenerCount).toBe(0);
  });
});
