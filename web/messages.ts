// Messages between the page and the in-browser engine's worker.
import type { JobEvent, JobRequest, ServerInfo } from "../src/browser.js";

/** Which backend the browser engine runs on: WebGPU when the browser has an adapter, or WASM. */
export type BrowserBackendChoice = "auto" | "wasm";

/**
 * Who runs the models on WebGPU: the library's kernels where the adapter has shader-f16
 * (`auto`), always, or onnxruntime-web always.
 */
export type BrowserEngineChoice = "auto" | "kernels" | "onnxruntime";

export type ToWorker =
  | {
      readonly type: "run";
      readonly id: string;
      readonly request: JobRequest;
      readonly info: ServerInfo;
      readonly backend: BrowserBackendChoice;
      /** Who runs the models on WebGPU (the page's ?engine=); default auto. */
      readonly engine?: BrowserEngineChoice;
      /** A cap on the GPU buffer size attention is planned for (the page's ?maxBinding=). */
      readonly maxBindingBytes?: number;
      /** Where the latents are stepped (the page's ?latents=); default: on the GPU if it can. */
      readonly latentsOnDevice?: "auto" | "on" | "off";
    }
  | { readonly type: "cancel"; readonly id: string };

export type FromWorker =
  | { readonly type: "event"; readonly id: string; readonly event: JobEvent }
  /** A finished image as PNG bytes; events refer to it by `url` until the page gives it a blob URL. */
  | { readonly type: "png"; readonly id: string; readonly url: string; readonly bytes: Uint8Array };
