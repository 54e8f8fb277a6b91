/**
 * The generation thread: loads the pipeline and runs one job at a time for the server's main
 * thread (see device-runner.ts), so that onnxruntime's work never holds up HTTP requests, lock
 * renewals or signals. Cancel messages are read between the denoising steps.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadPipeline } from "../pipelines/load.js";
import type { DeviceThreadData, FromThread, ToThread } from "./device-runner.js";
import { firstLine } from "./protocol.js";
import { runJobSpec } from "./run-job.js";

const port = parentPort;
if (!port) throw new Error("device-thread.js runs as a worker thread");
const data = workerData as DeviceThreadData;
const post = (message: FromThread, transfer: ArrayBuffer[] = []) =>
  port.postMessage(message, transfer);

const running = new Map<string, AbortController>();

try {
  const pipeline = await loadPipeline(data.model, {
    ...data.load,
    device: data.device,
    dtype: data.dtype,
    cacheDir: data.cacheDir,
    onBuild: (component) => post({ type: "log", line: `building ${component}...` }),
  });
  port.on("message", (message: ToThread) => {
    if (message.type === "cancel") {
      running.get(message.id)?.abort();
      return;
    }
    if (message.type === "close") {
      void pipeline.release().finally(() => port.close());
      return;
    }
    const controller = new AbortController();
    running.set(message.id, controller);
    const { id } = message;
    runJobSpec(
      pipeline,
      message.spec,
      message.context,
      {
        emit: (event) => post({ type: "event", id, event }),
        image: (name, png) => post({ type: "image", id, name, png }),
      },
      controller.signal,
    )
      .then(
        (outcome) => post({ type: "done", id, outcome }),
        (error: unknown) =>
          post({
            type: "failed",
            id,
            message: firstLine(error),
            cancelled: controller.signal.aborted || (error as Error)?.name === "AbortError",
          }),
      )
      .finally(() => running.delete(id));
  });
  post({ type: "ready" });
} catch (error) {
  post({ type: "load-failed", message: firstLine(error) });
}
