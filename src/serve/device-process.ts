/**
 * The generation process: loads the pipeline and runs one job at a time for its parent (see
 * device-runner.ts), so that onnxruntime's work never holds up HTTP requests, queue lock
 * renewals or signals, and a shutdown can end it at once whatever it is doing. Cancel messages
 * are read between the denoising steps. It exits when its parent goes away.
 */
import type { DeviceProcessData, FromDevice, ToDevice } from "./device-runner.js";
import { firstLine } from "./protocol.js";
import { runJobSpec } from "./run-job.js";

const send = process.send?.bind(process);
if (!send) throw new Error("device-process.js runs as a child process with an IPC channel");
const post = (message: FromDevice) => send(message);

const running = new Map<string, AbortController>();
// An orphan must not go on generating for nobody.
process.on("disconnect", () => process.exit(0));

async function start(data: DeviceProcessData): Promise<void> {
  const { loadPipeline } = await import("../pipelines/load.js");
  const pipeline = await loadPipeline(data.model, {
    ...data.load,
    device: data.device,
    dtype: data.dtype,
    cacheDir: data.cacheDir,
    onBuild: (component) => post({ type: "log", line: `building ${component}...` }),
    onWarning: (message) => post({ type: "log", line: `warning: ${message}` }),
  });
  process.on("message", (message: ToDevice) => {
    if (message.type === "cancel") {
      running.get(message.id)?.abort();
      return;
    }
    if (message.type !== "run") return;
    const controller = new AbortController();
    running.set(message.id, controller);
    const { id } = message;
    runJobSpec(
      pipeline,
      message.spec,
      { ...message.context, loraDir: data.loraDir },
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
}

process.once("message", (message: ToDevice) => {
  if (message.type !== "init") return;
  start(message.data).catch((error: unknown) => {
    post({ type: "load-failed", message: firstLine(error) });
  });
});
