/**
 * One device's generation process, seen from the server or worker: jobs go in, events, images
 * and the outcome come back. The parent's event loop stays free for HTTP, queue locks and
 * signals whatever the model does; a cancel reaches the job at its next denoising step;
 * close() ends the process (abandoning a job mid-step) within a bounded time. A child process
 * rather than a worker thread: a thread inside a native onnxruntime call cannot be stopped, and
 * tearing one down mid-call aborts the whole process.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { LoadOptions } from "../pipelines/load.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";
import type { JobContext, JobHooks, JobOutcome, JobSpec } from "./job-spec.js";
import type { JobEvent } from "./protocol.js";

/** Loading options that can cross to the process (no callbacks). */
export type DeviceLoadOptions = Omit<LoadOptions, "device" | "dtype" | "cacheDir" | "onBuild">;

export interface DeviceProcessData {
  readonly model: string;
  readonly device: Device;
  readonly dtype?: ModelDtype;
  readonly cacheDir?: string;
  readonly load?: DeviceLoadOptions;
  /** Where jobs' LoRAs are found by name. */
  readonly loraDir?: string;
}

export type ToDevice =
  | { readonly type: "init"; readonly data: DeviceProcessData }
  | {
      readonly type: "run";
      readonly id: string;
      readonly spec: JobSpec;
      readonly context: JobContext;
    }
  | { readonly type: "cancel"; readonly id: string };

export type FromDevice =
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

/**
 * A job that failed; `cancelled` when it stopped because it was asked to, `crashed` when the
 * generation process died under it (which may not be the job's fault).
 */
export class JobFailure extends Error {
  override name = "JobFailure";
  constructor(
    message: string,
    readonly cancelled: boolean,
    readonly crashed = false,
  ) {
    super(message);
  }
}

interface Pending {
  readonly hooks: JobHooks;
  readonly outcome: Promise<JobOutcome>;
  resolve(outcome: JobOutcome): void;
  reject(error: Error): void;
}

/**
 * The process's entry: the compiled module beside this one, or, when this module runs from the
 * TypeScript sources (tests, development), the `.ts` entry through module hooks that compile it.
 */
function startProcess(): ChildProcess {
  const here = import.meta.url;
  const fromSource = here.endsWith(".ts");
  const entry = fileURLToPath(new URL(`./device-process.${fromSource ? "ts" : "js"}`, here));
  const execArgv = fromSource ? ["--import", new URL("./ts-register.mjs", here).href] : [];
  return fork(entry, [], {
    execArgv,
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

export class DeviceRunner {
  private worker: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(
    private readonly data: DeviceProcessData,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Starts the process and loads the model (again after one died). */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the generation process is closed"));
    if (this.ready) return this.ready;
    const worker = startProcess();
    this.worker = worker;
    // Whatever way this process ends, its generation process ends with it.
    const killChild = () => worker.kill("SIGKILL");
    process.once("exit", killChild);
    worker.once("exit", () => process.off("exit", killChild));
    worker.send({ type: "init", data: this.data } satisfies ToDevice);
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on("message", (message: FromDevice) => {
        if (message.type === "ready") resolve();
        else if (message.type === "load-failed") reject(new Error(message.message));
        else this.receive(message);
      });
      worker.once("error", (error) => reject(error));
      worker.once("exit", (code, signal) => {
        const reason = `the generation process stopped (${signal ?? `exit code ${code}`})`;
        reject(new Error(reason));
        if (this.worker === worker) this.lost(reason);
      });
    });
    // A failed load is reported to whoever awaits it; start() tries again next time.
    this.ready.catch(() => {
      if (this.worker === worker) {
        this.worker = undefined;
        this.ready = undefined;
      }
      worker.kill("SIGKILL");
    });
    return this.ready;
  }

  async run(id: string, spec: JobSpec, context: JobContext, hooks: JobHooks): Promise<JobOutcome> {
    await this.start();
    let settle!: Pick<Pending, "resolve" | "reject">;
    const outcome = new Promise<JobOutcome>((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.pending.set(id, { hooks, outcome, ...settle });
    this.worker!.send({ type: "run", id, spec, context } satisfies ToDevice);
    return outcome;
  }

  cancel(id: string): void {
    if (this.pending.has(id)) this.worker?.send({ type: "cancel", id } satisfies ToDevice);
  }

  /**
   * Ends the process: running jobs are cancelled and given `graceMs` to stop at a step, then
   * the process is killed whatever it is doing.
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    for (const id of this.pending.keys()) worker.send({ type: "cancel", id } satisfies ToDevice);
    const exited =
      worker.exitCode !== null || worker.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    if (this.pending.size > 0) {
      const settled = Promise.allSettled([...this.pending.values()].map((p) => p.outcome));
      await Promise.race([settled, delay(graceMs)]);
    }
    // Disconnecting ends an idle process; one mid-step is killed.
    if (worker.connected) worker.disconnect();
    await Promise.race([exited, delay(graceMs)]);
    if (worker.exitCode === null && worker.signalCode === null) {
      worker.kill("SIGKILL");
      await exited;
    }
    this.lost("the server is shutting down");
  }

  private receive(message: FromDevice): void {
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

  /** The process is gone: every job it held fails, and the next run starts a new one. */
  private lost(reason: string): void {
    this.worker = undefined;
    this.ready = undefined;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(new JobFailure(reason, this.closed, !this.closed));
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
