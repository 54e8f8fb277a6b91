/**
 * One device's generation thread, seen from the main thread: jobs go in, events, images and the
 * outcome come back. The main thread stays free for HTTP, queue locks and signals whatever the
 * model does; a cancel reaches the job at its next denoising step; close() ends the thread
 * (abandoning a job mid-step) within a bounded time.
 */
import { Worker } from "node:worker_threads";
import type { LoadOptions, ModelDtype } from "../pipelines/load.js";
import type { Device } from "../runtime/devices.js";
import type { JobContext, JobHooks, JobOutcome, JobSpec } from "./job-spec.js";
import type { JobEvent } from "./protocol.js";

/** Loading options that can cross to the thread (no callbacks). */
export type ThreadLoadOptions = Omit<LoadOptions, "device" | "dtype" | "cacheDir" | "onBuild">;

export interface DeviceThreadData {
  readonly model: string;
  readonly device: Device;
  readonly dtype?: ModelDtype;
  readonly cacheDir?: string;
  readonly load?: ThreadLoadOptions;
}

export type ToThread =
  | {
      readonly type: "run";
      readonly id: string;
      readonly spec: JobSpec;
      readonly context: JobContext;
    }
  | { readonly type: "cancel"; readonly id: string }
  | { readonly type: "close" };

export type FromThread =
  | { readonly type: "ready" }
  | { readonly type: "load-failed"; readonly message: string }
  | { readonly type: "log"; readonly line: string }
  | { readonly type: "event"; readonly id: string; readonly event: JobEvent }
  | { readonly type: "image"; readonly id: string; readonly name: string; readonly png: Uint8Array }
  | { readonly type: "done"; readonly id: string; readonly outcome: JobOutcome }
  | {
      readonly type: "failed";
      readonly id: string;
      readonly message: string;
      readonly cancelled: boolean;
    };

/** A job that failed; `cancelled` when it stopped because it was asked to. */
export class JobFailure extends Error {
  override name = "JobFailure";
  constructor(
    message: string,
    readonly cancelled: boolean,
  ) {
    super(message);
  }
}

interface Pending {
  readonly hooks: JobHooks;
  resolve(outcome: JobOutcome): void;
  reject(error: Error): void;
}

/**
 * The thread's entry: the compiled module beside this one, or, when this module runs from the
 * TypeScript sources (tests, development), the `.ts` entry through module hooks that compile it.
 */
function startThread(data: DeviceThreadData): Worker {
  const here = import.meta.url;
  if (!here.endsWith(".ts"))
    return new Worker(new URL("./device-thread.js", here), { workerData: data });
  const hooks = new URL("./ts-hooks.mjs", here).href;
  const entry = new URL("./device-thread.ts", here).href;
  const code = `require("node:module").register(${JSON.stringify(hooks)});
import(${JSON.stringify(entry)});`;
  return new Worker(code, { eval: true, workerData: data });
}

export class DeviceRunner {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(
    private readonly data: DeviceThreadData,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Starts the thread and loads the model (again after a thread died). */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the generation thread is closed"));
    if (this.ready) return this.ready;
    const worker = startThread(this.data);
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on("message", (message: FromThread) => {
        if (message.type === "ready") resolve();
        else if (message.type === "load-failed") reject(new Error(message.message));
        else this.receive(message);
      });
      worker.once("error", (error) => reject(error));
      worker.once("exit", (code) => {
        reject(new Error(`the generation thread stopped (exit code ${code})`));
        this.lost(`the generation thread stopped (exit code ${code})`);
      });
    });
    // A failed load is reported to whoever awaits it; start() tries again next time.
    this.ready.catch(() => {
      if (this.worker === worker) {
        this.worker = undefined;
        this.ready = undefined;
      }
      void worker.terminate();
    });
    return this.ready;
  }

  get busy(): boolean {
    return this.pending.size > 0;
  }

  async run(id: string, spec: JobSpec, context: JobContext, hooks: JobHooks): Promise<JobOutcome> {
    await this.start();
    const worker = this.worker!;
    return new Promise<JobOutcome>((resolve, reject) => {
      this.pending.set(id, { hooks, resolve, reject });
      worker.postMessage({ type: "run", id, spec, context } satisfies ToThread);
    });
  }

  cancel(id: string): void {
    if (this.pending.has(id)) this.worker?.postMessage({ type: "cancel", id } satisfies ToThread);
  }

  /**
   * Ends the thread: running jobs are cancelled and given `graceMs` to stop at a step, then
   * the thread is terminated whatever it is doing.
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    for (const id of this.pending.keys()) worker.postMessage({ type: "cancel", id });
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    if (this.pending.size > 0) {
      const settled = Promise.allSettled(
        [...this.pending.values()].map(
          (p) =>
            new Promise<void>((done) => {
              const { resolve, reject } = p;
              p.resolve = (outcome) => {
                resolve(outcome);
                done();
              };
              p.reject = (error) => {
                reject(error);
                done();
              };
            }),
        ),
      );
      await Promise.race([settled, delay(graceMs)]);
    }
    worker.postMessage({ type: "close" } satisfies ToThread);
    await Promise.race([exited, delay(graceMs)]);
    await worker.terminate();
    this.lost("the server is shutting down");
  }

  private receive(message: FromThread): void {
    if (message.type === "log") {
      this.log(message.line);
      return;
    }
    if (message.type === "ready" || message.type === "load-failed") return;
    const pending = this.pending.get(message.id);
    if (!pending) return;
    if (message.type === "event") pending.hooks.emit(message.event);
    else if (message.type === "image") pending.hooks.image(message.name, message.png);
    else if (message.type === "done") {
      this.pending.delete(message.id);
      pending.resolve(message.outcome);
    } else {
      this.pending.delete(message.id);
      pending.reject(new JobFailure(message.message, message.cancelled));
    }
  }

  /** The thread is gone: every job it held fails, and the next run starts a new one. */
  private lost(reason: string): void {
    this.worker = undefined;
    this.ready = undefined;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(new JobFailure(reason, this.closed));
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
