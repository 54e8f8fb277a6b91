/**
 * The in-browser engine, in a worker so the page stays responsive: the library's pipeline over
 * models fetched from the local server, run by the library's own WebGPU kernels where the
 * adapter has shader-f16 (float16 models), else by onnxruntime-web (WebGPU when the browser has
 * an adapter, else WebAssembly). A model the kernels cannot run (an operator or shape they lack)
 * falls back to onnxruntime-web, and the status says so. It checks requests with the server's
 * own validation and reports the same events as a server job.
 */
import {
  configureWebRuntime,
  createKernelRunner,
  createWebRunner,
  encodeResultPng,
  firstLine,
  GpuContext,
  type JobEvent,
  kernelsOrFallback,
  loadRemotePipeline,
  type ModelRunner,
  parseJobRequest,
  runComparison,
  type StableDiffusionPipeline,
  type WebDevice,
  webgpuSupport,
} from "../src/browser.js";
import type {
  BrowserBackendChoice,
  BrowserEngineChoice,
  FromWorker,
  ToWorker,
} from "./messages.js";

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  readonly location: { readonly origin: string };
}

const scope = globalThis as unknown as WorkerScope;
configureWebRuntime({ wasmPrefix: `${scope.location.origin}/ort/` });

/**
 * A runtime, the precision of its models, and on WebGPU the device's binding limit and whether
 * the library's kernels run the models (else onnxruntime-web).
 */
interface Engine {
  readonly device: WebDevice;
  readonly precision: "fp32" | "fp16";
  readonly maxBindingBytes?: number;
  readonly kernels: boolean;
}

/**
 * Image sides the WebGPU models are planned for: onnxruntime-web's attention kernel writes all
 * scores into one buffer, so the models split attention over the queries for the largest size
 * they will run at. A job gets the models of the smallest planned side that covers it.
 */
const PLANNED_SIDES = [512, 768, 1024, 1536, 2048, 3072, 4096] as const;

function plannedSide(width: number, height: number): number {
  const side = Math.max(width, height);
  return PLANNED_SIDES.find((s) => s >= side) ?? side;
}

const pipelines = new Map<string, Promise<StableDiffusionPipeline>>();
const running = new Map<string, AbortController>();

/**
 * The engine for a run: WASM when asked for or without an adapter; on WebGPU, float16 models
 * where the adapter has shader-f16, and the library's kernels for them (`auto`), or always
 * (`kernels`, float32 models without shader-f16), or never (`onnxruntime`).
 */
async function chooseEngine(
  choice: BrowserBackendChoice,
  engineChoice: BrowserEngineChoice,
  bindingCap?: number,
): Promise<Engine> {
  if (choice === "wasm") return { device: "wasm", precision: "fp32", kernels: false };
  const support = await webgpuSupport();
  if (!support.available) {
    if (engineChoice === "kernels")
      throw new Error("the kernels engine needs WebGPU, and this browser offers no adapter");
    return { device: "wasm", precision: "fp32", kernels: false };
  }
  return {
    device: "webgpu",
    precision: support.shaderF16 ? "fp16" : "fp32",
    maxBindingBytes: Math.min(support.maxBindingBytes, bindingCap ?? Number.POSITIVE_INFINITY),
    kernels: engineChoice === "kernels" || (engineChoice === "auto" && support.shaderF16),
  };
}

function describeEngine(engine: Engine): string {
  if (engine.device === "wasm") return "the WASM runtime";
  const runtime = engine.kernels ? "the WebGPU kernels" : "the WebGPU runtime";
  return engine.precision === "fp16"
    ? `${runtime} (fp16)`
    : `${runtime} (fp32: this adapter has no shader-f16)`;
}

/** One GPU device for every model the kernels run (made on first use). */
let kernelContext: Promise<GpuContext> | undefined;

function sharedContext(): Promise<GpuContext> {
  kernelContext ??= GpuContext.create();
  kernelContext.catch(() => {
    kernelContext = undefined;
  });
  return kernelContext;
}

/** The running job's reporter: models download when first used, by whichever job needs them. */
let reportTo: ((event: JobEvent) => void) | undefined;

function pipelineFor(engine: Engine, imageSide: number) {
  const { device } = engine;
  const plan =
    engine.maxBindingBytes !== undefined
      ? { maxBindingBytes: engine.maxBindingBytes, imageSide }
      : undefined;
  const key = `${device}/${engine.precision}/${engine.kernels}/${plan?.imageSide ?? "any"}`;
  let pipeline = pipelines.get(key);
  if (!pipeline) {
    const reported = new Map<string, number>();
    pipeline = loadRemotePipeline({
      baseUrl: scope.location.origin,
      backend: device,
      precision: engine.precision,
      attentionPlan: plan,
      createRunner: (model, externalData) => createRunner(engine, model, externalData),
      onDownload: (file, received, total) => {
        // About ten reports per file, not one per network chunk.
        const step = Math.max((total ?? 0) / 10, 1024 * 1024);
        const last = reported.get(file) ?? -step;
        if (received - last < step && received !== total) return;
        reported.set(file, received);
        reportTo?.({
          type: "preparing",
          what: `downloading ${file}: ${megabytes(received)}${total ? ` of ${megabytes(total)}` : ""}`,
        });
      },
    });
    pipelines.set(key, pipeline);
    pipeline.catch(() => pipelines.delete(key));
  }
  return pipeline;
}

/**
 * Resolves after the worker's queued messages have been handled. onnxruntime-web's WASM backend
 * computes synchronously and resolves its promises as microtasks, so without this a whole
 * generation would run before a cancel message could arrive.
 */
function yieldToMessages(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

async function createRunner(
  engine: Engine,
  model: Uint8Array,
  externalData: { readonly path: string; readonly data: Uint8Array } | undefined,
): Promise<ModelRunner> {
  const { device } = engine;
  const onnxruntime = () => createWebRunner(model, { device, externalData });
  const runner = engine.kernels
    ? await kernelsOrFallback(
        async () => createKernelRunner(model, { context: await sharedContext(), externalData }),
        onnxruntime,
        (reason) =>
          reportTo?.({ type: "preparing", what: `${reason}: running it on onnxruntime-web` }),
      )
    : await onnxruntime();
  return {
    ...runner,
    async run(feeds) {
      await yieldToMessages();
      return runner.run(feeds);
    },
    release: () => runner.release(),
  };
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function run(message: Extract<ToWorker, { type: "run" }>): Promise<void> {
  const { id } = message;
  const emit = (event: JobEvent) => scope.postMessage({ type: "event", id, event });
  const controller = new AbortController();
  running.set(id, controller);
  try {
    const engine = await chooseEngine(
      message.backend,
      message.engine ?? "auto",
      message.maxBindingBytes,
    );
    const { device } = engine;
    emit({ type: "started" });
    emit({ type: "preparing", what: describeEngine(engine) });
    reportTo = emit;
    const { width, height } = message.request;
    const side = plannedSide(Number(width) || 0, Number(height) || 0);
    const pipeline = await pipelineFor(engine, side);
    const params = parseJobRequest(message.request, {
      limits: message.info.limits,
      sizeMultiple: pipeline.parts.vaeScale,
      textEncoderLayers: message.info.textEncoderLayers,
      resolveReduction: (reduction, width, height) =>
        pipeline.resolveReductionFor(reduction, width, height),
      // The LoRA files stay on the server: this engine has no way to read them.
      resolveLoras: () => {
        throw new Error(
          "LoRAs run on the server engine only; choose Engine: Server, or set every LoRA to 0 and remove <lora:...> tags",
        );
      },
    });
    if (controller.signal.aborted) throw abortError();
    const result = await runComparison(
      pipeline,
      {
        id,
        engine: "browser",
        device,
        createdAt: new Date().toISOString(),
        model: message.info.model,
        params,
      },
      {
        signal: controller.signal,
        emit,
        latentsOnDevice: message.latentsOnDevice,
        publish(phase, generated) {
          const bytes = encodeResultPng(generated, 0, message.info.model);
          const url = `browser-image:${id}/${phase}`;
          scope.postMessage({ type: "png", id, url, bytes }, [bytes.buffer]);
          return url;
        },
      },
    );
    emit({ type: "done", result });
  } catch (error) {
    if (controller.signal.aborted || (error as Error)?.name === "AbortError")
      emit({ type: "cancelled" });
    else emit({ type: "error", message: firstLine(error) });
  } finally {
    running.delete(id);
    if (reportTo === emit) reportTo = undefined;
  }
}

function abortError(): Error {
  const error = new Error("generation cancelled");
  error.name = "AbortError";
  return error;
}

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type === "run") void run(message);
  else running.get(message.id)?.abort();
};
