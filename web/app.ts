/**
 * The demo page: a form, two panes (baseline and accelerated) with live progress, the speedup and
 * the quality figures, and a history. Jobs run on the server (POST /api/generate, then a stream
 * of Server-Sent Events) or in the browser (a worker with onnxruntime-web); both report the same
 * events, so one handler draws them.
 */
import {
  DOWNSAMPLE_MODES,
  isGenerationResult,
  type JobEvent,
  type JobRequest,
  type JobResult,
  type Phase,
  type ReductionSettings,
  randomSeed,
  type ServerInfo,
} from "../src/browser.js";
import type {
  BrowserBackendChoice,
  BrowserEngineChoice,
  FromWorker,
  ToWorker,
} from "./messages.js";

const PHASES: readonly Phase[] = ["baseline", "accelerated"];

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

const form = byId<HTMLFormElement>("form");
const fields = {
  prompt: byId<HTMLTextAreaElement>("prompt"),
  negative: byId<HTMLTextAreaElement>("negative"),
  method: byId<HTMLSelectElement>("method"),
  factor: byId<HTMLSelectElement>("factor"),
  mode: byId<HTMLSelectElement>("mode"),
  ratio: byId<HTMLInputElement>("ratio"),
  size: byId<HTMLSelectElement>("size"),
  width: byId<HTMLInputElement>("width"),
  height: byId<HTMLInputElement>("height"),
  steps: byId<HTMLInputElement>("steps"),
  guidance: byId<HTMLInputElement>("guidance"),
  seed: byId<HTMLInputElement>("seed"),
  scheduler: byId<HTMLSelectElement>("scheduler"),
  engine: byId<HTMLSelectElement>("engine"),
};
/** One weight slider per LoRA of the server's LoRA folder, by name. */
const loraSliders = new Map<string, HTMLInputElement>();
const generateButton = byId<HTMLButtonElement>("generate");
const cancelButton = byId<HTMLButtonElement>("cancel");
const statusLine = byId<HTMLParagraphElement>("status");
const errorBox = byId<HTMLDivElement>("error");
const modelInfo = byId<HTMLParagraphElement>("model-info");
const summary = byId<HTMLDivElement>("summary");
const historyList = byId<HTMLOListElement>("history");
const historyEmpty = byId<HTMLParagraphElement>("history-empty");

interface PaneElements {
  readonly title: HTMLElement;
  readonly time: HTMLElement;
  readonly image: HTMLImageElement;
  readonly placeholder: HTMLElement;
  readonly progress: HTMLProgressElement;
  readonly progressText: HTMLElement;
  /** Holds the PNG download link once there is an image. */
  readonly download: HTMLElement;
}

function pane(phase: Phase): PaneElements {
  const root = byId<HTMLElement>(`pane-${phase}`);
  const part = <T extends HTMLElement>(role: string) =>
    root.querySelector(`[data-role="${role}"]`) as T;
  return {
    title: byId(`title-${phase}`),
    time: part("time"),
    image: part<HTMLImageElement>("image"),
    placeholder: part("placeholder"),
    progress: part<HTMLProgressElement>("progress"),
    progressText: part("progress-text"),
    download: part("download"),
  };
}

const panes: Record<Phase, PaneElements> = {
  baseline: pane("baseline"),
  accelerated: pane("accelerated"),
};

let info: ServerInfo | undefined;
/** The job being shown and how to cancel it. */
let current: { id: string; cancel: () => void; stop: () => void } | undefined;
/** Blob URLs of browser-made images, by the worker's placeholder URL. */
const blobUrls = new Map<string, string>();
let worker: Worker | undefined;
const workerHandlers = new Map<string, (event: JobEvent) => void>();

// ---- small helpers -------------------------------------------------------------------------

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

function resolveUrl(url: string): string {
  return blobUrls.get(url) ?? url;
}

function showError(message: string | undefined): void {
  errorBox.hidden = !message;
  errorBox.textContent = message ?? "";
}

function setStatus(text: string): void {
  statusLine.textContent = text;
}

function setBusy(busy: boolean): void {
  generateButton.disabled = busy;
  cancelButton.disabled = !busy;
}

function methodTitle(request: Pick<JobRequest, "reduction">): string {
  return request.reduction.method === "tome" ? "ToMe" : "ToDo";
}

/** The accelerated pane's title: the method and its main setting at level 1. */
function acceleratedTitle(settings: ReductionSettings): string {
  return settings.method === "tome"
    ? `ToMe, ratio ${settings.ratio}`
    : `ToDo ×${settings.factor}, ${settings.mode}`;
}

// ---- form ----------------------------------------------------------------------------------

function syncMethodFields(): void {
  const method = fields.method.value;
  for (const element of Array.from(form.querySelectorAll<HTMLElement>("[data-method]")))
    element.hidden = element.dataset.method !== method;
}

function syncSizeFields(): void {
  const preset = fields.size.value;
  const custom = preset === "custom";
  fields.width.disabled = !custom;
  fields.height.disabled = !custom;
  if (!custom) {
    fields.width.value = preset;
    fields.height.value = preset;
  }
}

function numberField(input: HTMLInputElement): number {
  // Sent as typed: the server (or the worker) checks it and says what is wrong.
  return input.value.trim() === "" ? Number.NaN : Number(input.value);
}

function readRequest(): JobRequest {
  const method = fields.method.value;
  const seedText = fields.seed.value.trim();
  return {
    prompt: fields.prompt.value,
    negativePrompt: fields.negative.value.trim() === "" ? undefined : fields.negative.value,
    width: numberField(fields.width),
    height: numberField(fields.height),
    steps: numberField(fields.steps),
    guidanceScale: numberField(fields.guidance),
    scheduler: fields.scheduler.value || undefined,
    seed: seedText === "" ? undefined : Number(seedText),
    reduction:
      method === "tome"
        ? { method: "tome", ratio: numberField(fields.ratio) }
        : {
            method: "todo",
            factor: fields.factor.value === "auto" ? "auto" : Number(fields.factor.value),
            mode: fields.mode.value,
          },
    loras: [...loraSliders]
      .map(([name, slider]) => ({ name, weight: Number(slider.value) }))
      .filter((lora) => lora.weight !== 0),
  };
}

function populateForm(serverInfo: ServerInfo): void {
  for (const mode of DOWNSAMPLE_MODES) fields.mode.add(new Option(mode, mode));
  for (const name of serverInfo.schedulers) fields.scheduler.add(new Option(name, name));
  const defaultLabel = serverInfo.defaultScheduler
    ? `Model default (${serverInfo.defaultScheduler})`
    : "Model default";
  fields.scheduler.options[0].textContent = defaultLabel;
  const side = serverInfo.defaultSize;
  const option = new Option(`Model (${side}²)`, String(side));
  fields.size.add(option, 0);
  for (const input of [fields.width, fields.height]) {
    input.min = String(serverInfo.limits.minSide);
    input.max = String(serverInfo.limits.maxSide);
    input.step = String(serverInfo.sizeMultiple);
  }
  fields.steps.max = String(serverInfo.limits.maxSteps);
  if (!serverInfo.browserEngine)
    for (const opt of Array.from(fields.engine.options))
      if (opt.value !== "server") opt.disabled = true;
  populateLoras(serverInfo.loras);
  modelInfo.textContent = `Model ${serverInfo.model} (${serverInfo.family}) · server device ${serverInfo.device}`;
  syncSizeFields();
}

/** A weight slider (-1 to 2, default 0: off) per LoRA; the set is hidden without LoRAs. */
function populateLoras(loras: ServerInfo["loras"]): void {
  const list = byId<HTMLDivElement>("loras");
  for (const lora of loras) {
    const row = document.createElement("div");
    row.className = "field";
    const label = document.createElement("label");
    const slider = document.createElement("input");
    const value = document.createElement("output");
    slider.type = "range";
    slider.min = "-1";
    slider.max = "2";
    slider.step = "0.05";
    slider.value = "0";
    slider.id = `lora-${loraSliders.size}`;
    label.htmlFor = slider.id;
    label.textContent = lora.name;
    label.title = `hash ${lora.hash}`;
    value.textContent = "0";
    slider.addEventListener("input", () => {
      value.textContent = slider.value;
    });
    row.append(label, slider, value);
    list.append(row);
    loraSliders.set(lora.name, slider);
  }
  byId("lora-set").hidden = loras.length === 0;
}

// ---- panes and results ---------------------------------------------------------------------

function resetPanes(request: JobRequest): void {
  panes.accelerated.title.textContent = methodTitle(request);
  for (const phase of PHASES) {
    const p = panes[phase];
    p.time.textContent = "–";
    p.image.hidden = true;
    p.image.removeAttribute("src");
    p.placeholder.hidden = false;
    p.placeholder.textContent = "Waiting…";
    p.progress.value = 0;
    p.progressText.textContent = "Waiting";
    p.download.replaceChildren();
  }
  byId("pane-speedup").textContent = "";
  summary.hidden = true;
}

function showImage(
  phase: Phase,
  url: string,
  timings: JobResult["baseline"]["timings"],
  seed: number,
) {
  const p = panes[phase];
  const src = resolveUrl(url);
  p.image.src = src;
  p.image.alt = `${phase === "baseline" ? "Baseline" : "Accelerated"} result`;
  p.image.hidden = false;
  p.placeholder.hidden = true;
  p.time.textContent = `${seconds(timings.totalMs)} · UNet ${seconds(timings.unetMs)}`;
  p.progress.value = 1;
  p.progressText.textContent = `Done: ${timings.unetCalls} UNet calls${
    timings.denoisedOn === "device" ? ", latents kept on the GPU" : ""
  }`;
  p.download.replaceChildren(downloadLink(src, `todo-sd-${seed}-${phase}.png`, "Download PNG"));
}

/** A link that saves the PNG (server images ask the server for an attachment). */
function downloadLink(url: string, name: string, text: string): HTMLAnchorElement {
  const a = document.createElement("a");
  a.href = url.startsWith("blob:") ? url : `${url}?download=1`;
  a.download = name;
  a.textContent = text;
  return a;
}

function formatMetric(value: number | "Infinity", digits: number): string {
  return value === "Infinity" ? "∞" : value.toFixed(digits);
}

function showResult(result: JobResult): void {
  panes.accelerated.title.textContent = acceleratedTitle(result.params.settings);
  byId("pane-speedup").textContent = `${result.speedup.total.toFixed(2)}×`;
  // Small models and small images can run slower with reduction: say so by colour, too.
  const slower = result.speedup.total < 1 ? "true" : "false";
  byId("pane-speedup").dataset.slower = slower;
  byId("speedup").dataset.slower = slower;
  showImage("baseline", result.baseline.url, result.baseline.timings, result.params.seed);
  showImage("accelerated", result.accelerated.url, result.accelerated.timings, result.params.seed);
  byId("speedup").textContent =
    `Speedup ${result.speedup.total.toFixed(2)}× overall, ${result.speedup.unet.toFixed(2)}× in the UNet`;
  byId("metric-mse").textContent = result.metrics.mse.toExponential(2);
  byId("metric-psnr").textContent = `${formatMetric(result.metrics.psnr, 2)} dB`;
  byId("metric-ssim").textContent = result.metrics.ssim.toFixed(4);
  byId("metric-max").textContent = result.metrics.maxAbsDiff.toFixed(3);
  byId("reduction-label").textContent =
    `${result.reductionLabel} · ${result.params.width}×${result.params.height}, ${result.params.steps} steps, seed ${result.params.seed} · ${result.engine} (${result.device})`;
  summary.hidden = false;
}

function addToHistory(result: JobResult): void {
  historyEmpty.hidden = true;
  const item = document.createElement("li");
  item.className = "history-item";
  const thumbs = document.createElement("div");
  thumbs.className = "thumbs";
  for (const phase of PHASES) {
    const img = document.createElement("img");
    img.src = resolveUrl(result[phase].url);
    img.alt = `${phase} result`;
    thumbs.append(img);
  }
  const text = document.createElement("div");
  const prompt = document.createElement("div");
  prompt.className = "prompt";
  prompt.textContent = result.params.prompt;
  const details = document.createElement("div");
  details.className = "details";
  const p = result.params;
  details.textContent = `${p.width}×${p.height} · ${p.steps} steps · CFG ${p.guidanceScale} · seed ${p.seed} · ${p.scheduler ?? "model scheduler"} · ${result.reductionLabel} · ${result.engine} (${result.device}) · ${seconds(result.baseline.timings.totalMs)} → ${seconds(result.accelerated.timings.totalMs)} (${result.speedup.total.toFixed(2)}×) · PSNR ${formatMetric(result.metrics.psnr, 1)} dB · SSIM ${result.metrics.ssim.toFixed(3)}`;
  text.append(prompt, details);
  const links = document.createElement("div");
  links.className = "links";
  const show = document.createElement("button");
  show.type = "button";
  show.textContent = "Show";
  show.addEventListener("click", () => showResult(result));
  links.append(show);
  for (const phase of PHASES) {
    const url = resolveUrl(result[phase].url);
    links.append(downloadLink(url, `todo-sd-${p.seed}-${phase}.png`, `${phase} PNG`));
  }
  item.append(thumbs, text, links);
  historyList.prepend(item);
}

/** Draws one event of the current job. */
function handleEvent(id: string, request: JobRequest, event: JobEvent): void {
  if (current?.id !== id) return;
  switch (event.type) {
    case "queued":
      setStatus(
        event.ahead === 0
          ? "Queued: next in line."
          : `Queued: ${event.ahead} job${event.ahead === 1 ? "" : "s"} ahead.`,
      );
      break;
    case "started":
      setStatus("Running.");
      break;
    case "preparing":
      setStatus(`Preparing ${event.what}…`);
      break;
    case "progress": {
      // The page submits comparisons only; plain generations come from the other APIs.
      if (event.phase === "generation") break;
      const p = panes[event.phase];
      p.progress.value = event.step / event.totalSteps;
      p.progressText.textContent = `Step ${event.step} of ${event.totalSteps} · ${seconds(event.elapsedMs)}`;
      p.placeholder.textContent = "Generating…";
      setStatus(
        `${event.phase === "baseline" ? "Baseline" : methodTitle(request)}: step ${event.step} of ${event.totalSteps}.`,
      );
      break;
    }
    case "image":
      showImage(event.phase, event.url, event.timings, request.seed ?? 0);
      break;
    case "done":
      if (isGenerationResult(event.result)) break;
      showResult(event.result);
      addToHistory(event.result);
      setStatus(
        `Done: ${methodTitle(request)} ran at ${event.result.speedup.total.toFixed(2)}× the baseline's speed.`,
      );
      finish();
      break;
    case "error":
      showError(event.message);
      setStatus("Failed.");
      markUnfinished("Not generated");
      finish();
      break;
    case "cancelled":
      setStatus("Cancelled.");
      markUnfinished("Cancelled");
      finish();
      break;
  }
}

/** Labels the panes that got no image. */
function markUnfinished(text: string): void {
  for (const phase of PHASES) {
    const p = panes[phase];
    if (!p.image.hidden) continue;
    p.placeholder.textContent = text;
    if (p.progress.value === 0) p.progressText.textContent = text;
  }
}

function finish(): void {
  current?.stop();
  current = undefined;
  setBusy(false);
}

// ---- engines -------------------------------------------------------------------------------

async function runOnServer(request: JobRequest): Promise<void> {
  const response = await fetch("/api/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const body = (await response.json().catch(() => ({}))) as { id?: string; error?: string };
  if (!response.ok || !body.id) {
    throw new Error(body.error ?? `the server answered ${response.status} ${response.statusText}`);
  }
  const id = body.id;
  const source = new EventSource(`/api/jobs/${id}/events`);
  current = {
    id,
    cancel: () => {
      void fetch(`/api/jobs/${id}/cancel`, { method: "POST" });
    },
    stop: () => source.close(),
  };
  const types: JobEvent["type"][] = [
    "queued",
    "started",
    "preparing",
    "progress",
    "image",
    "done",
    "error",
    "cancelled",
  ];
  for (const type of types) {
    source.addEventListener(type, (message) => {
      handleEvent(id, request, JSON.parse((message as MessageEvent<string>).data) as JobEvent);
    });
  }
  source.onerror = () => {
    // EventSource reconnects by itself (and the server replays what was missed); say so.
    if (current?.id === id && source.readyState === EventSource.CONNECTING)
      setStatus("Connection lost; reconnecting…");
  };
}

function engineWorker(): Worker {
  if (!worker) {
    worker = new Worker("engine-worker.js", { type: "module" });
    worker.onmessage = (message: MessageEvent<FromWorker>) => {
      const data = message.data;
      if (data.type === "png") {
        const blob = new Blob([data.bytes as Uint8Array<ArrayBuffer>], { type: "image/png" });
        blobUrls.set(data.url, URL.createObjectURL(blob));
      } else workerHandlers.get(data.id)?.(data.event);
    };
    worker.onerror = (event) => {
      showError(`the browser engine failed to start: ${event.message || "unknown error"}`);
      finish();
    };
  }
  return worker;
}

/**
 * `?maxBinding=<bytes>` caps the buffer size the browser engine plans WebGPU attention for,
 * below the adapter's own limit (for devices that fail on large buffers all the same).
 */
function maxBindingFromPage(): number | undefined {
  const text = new URLSearchParams(location.search).get("maxBinding");
  if (text === null) return undefined;
  const bytes = Number(text);
  if (!Number.isSafeInteger(bytes) || bytes < 2 ** 20)
    throw new Error(`maxBinding: a whole number of bytes, at least 1 MiB; got "${text}"`);
  return bytes;
}

/**
 * `?latents=gpu|host` keeps the browser engine's latents on the GPU for the whole denoising loop
 * (an error where it cannot) or steps them on the host; by default they stay on the GPU where
 * the runtime and sampler allow.
 */
function latentsFromPage(): "on" | "off" | undefined {
  const text = new URLSearchParams(location.search).get("latents");
  if (text === null) return undefined;
  if (text === "gpu") return "on";
  if (text === "host") return "off";
  throw new Error(`latents: use gpu or host; got "${text}"`);
}

/**
 * `?engine=kernels|onnxruntime|auto` picks who runs the browser engine's models on WebGPU: the
 * library's kernels, onnxruntime-web, or (default) the kernels where the adapter has shader-f16.
 */
function engineFromPage(): BrowserEngineChoice | undefined {
  const text = new URLSearchParams(location.search).get("engine");
  if (text === null) return undefined;
  if (text === "auto" || text === "kernels" || text === "onnxruntime") return text;
  throw new Error(`engine: use auto, kernels or onnxruntime; got "${text}"`);
}

function runInBrowser(request: JobRequest, backend: BrowserBackendChoice): void {
  if (!info) throw new Error("the server's model information has not arrived yet");
  const maxBindingBytes = maxBindingFromPage();
  const latentsOnDevice = latentsFromPage();
  const engine = engineFromPage();
  const id = crypto.randomUUID();
  const target = engineWorker();
  workerHandlers.set(id, (event) => handleEvent(id, request, event));
  current = {
    id,
    cancel: () => target.postMessage({ type: "cancel", id } satisfies ToWorker),
    stop: () => workerHandlers.delete(id),
  };
  target.postMessage({
    type: "run",
    id,
    request,
    info,
    backend,
    ...(maxBindingBytes === undefined ? {} : { maxBindingBytes }),
    ...(latentsOnDevice === undefined ? {} : { latentsOnDevice }),
    ...(engine === undefined ? {} : { engine }),
  } satisfies ToWorker);
}

async function submit(): Promise<void> {
  if (current) return;
  showError(undefined);
  const request = readRequest();
  resetPanes(request);
  setBusy(true);
  setStatus("Submitting…");
  try {
    const engine = fields.engine.value;
    if (engine === "server") await runOnServer(request);
    else runInBrowser(request, engine === "browser-wasm" ? "wasm" : "auto");
  } catch (error) {
    showError(error instanceof Error ? error.message : String(error));
    setStatus("Failed.");
    markUnfinished("Not generated");
    finish();
  }
}

// ---- start ---------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void submit();
});
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    void submit();
  }
});
function cancel(): void {
  if (!current) return;
  setStatus("Cancelling…");
  current.cancel();
}

cancelButton.addEventListener("click", cancel);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") cancel();
});
byId<HTMLButtonElement>("new-seed").addEventListener("click", () => {
  fields.seed.value = String(randomSeed());
});
fields.method.addEventListener("change", syncMethodFields);
fields.size.addEventListener("change", syncSizeFields);
window.addEventListener("error", (event) => showError(`page error: ${event.message}`));
window.addEventListener("unhandledrejection", (event) =>
  showError(
    `page error: ${event.reason instanceof Error ? event.reason.message : String(event.reason)}`,
  ),
);

async function start(): Promise<void> {
  syncMethodFields();
  setBusy(true);
  try {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    info = (await response.json()) as ServerInfo;
    populateForm(info);
    const history = (await (await fetch("/api/history")).json()) as { results: JobResult[] };
    for (const result of [...history.results].reverse()) addToHistory(result);
    setBusy(false);
    setStatus("Ready.");
    document.body.dataset.ready = "true";
  } catch (error) {
    modelInfo.textContent = "No connection to the server.";
    showError(
      `cannot reach the todo-sd server (${error instanceof Error ? error.message : String(error)}); is \`todo-sd serve\` running?`,
    );
  }
}

void start();
