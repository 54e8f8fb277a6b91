/**
 * A pipeline whose models come from the demo server: the manifest, tokenizers and built ONNX
 * files are fetched over HTTP and run by whatever runtime the caller supplies (onnxruntime-web
 * in the page; onnxruntime-node in tests). Platform-neutral: fetch and the runner are injected.
 */
import type { SamplerStepOptions } from "../models/sampler-step.js";
import type { PipelineManifest } from "../pipelines/component-models.js";
import type { TextEncoderRequest } from "../pipelines/components.js";
import type { PipelineParts } from "../pipelines/pipeline-parts.js";
import { RunnerTextEncoder, RunnerUnet, RunnerVae } from "../pipelines/runner-components.js";
import { StableDiffusionPipeline } from "../pipelines/stable-diffusion.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { ModelRunner } from "../runtime/types.js";
import { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import { PromiseMemo } from "../util/promise-memo.js";
import type { WebDevice } from "../util/vocabulary.js";
import type { ModelLinks, TokenizerPayload } from "./protocol.js";

/** The runtime that turns fetched model bytes into a runner. */
export type RunnerMaker = (
  model: Uint8Array,
  externalData: { readonly path: string; readonly data: Uint8Array } | undefined,
) => Promise<ModelRunner>;

export interface RemotePipelineOptions {
  /** The server's origin ("" for the page's own). */
  readonly baseUrl: string;
  readonly backend: WebDevice;
  /** Model precision on WebGPU (default: the server's, float16); WASM is always fp32. */
  readonly precision?: "fp32" | "fp16";
  /**
   * Ask for UNet and VAE graphs whose attention is split over the queries so that no score
   * buffer outgrows the device's binding limit, at images up to `imageSide` square.
   */
  readonly attentionPlan?: { readonly maxBindingBytes: number; readonly imageSide: number };
  readonly createRunner: RunnerMaker;
  readonly fetch?: typeof fetch;
  /** Download progress of model files (bytes; total unknown without a content length). */
  readonly onDownload?: (file: string, received: number, total: number | undefined) => void;
}

/** Loads the server's model into a pipeline; models are fetched when first used. */
export async function loadRemotePipeline(
  options: RemotePipelineOptions,
): Promise<StableDiffusionPipeline> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const { backend } = options;
  const url = (path: string, query: Record<string, string> = {}) => {
    const search = new URLSearchParams({
      backend,
      ...(options.precision ? { precision: options.precision } : {}),
      ...query,
    });
    return `${options.baseUrl}${path}?${search}`;
  };
  const response = async (target: string): Promise<Response> => {
    const res = await doFetch(target);
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        const body = (await res.json()) as { error?: string };
        if (body.error) message = body.error;
      } catch {
        // not JSON: keep the status line
      }
      throw new Error(`the server could not give ${target.split("?")[0]}: ${message}`);
    }
    return res;
  };
  const json = async <T>(target: string): Promise<T> =>
    (await (await response(target)).json()) as T;
  const bytes = async (target: string, label: string): Promise<Uint8Array> => {
    const res = await response(`${options.baseUrl}${target}`);
    const length = Number(res.headers.get("content-length") ?? Number.NaN);
    const total = Number.isFinite(length) ? length : undefined;
    if (!res.body || !options.onDownload) return new Uint8Array(await res.arrayBuffer());
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      options.onDownload(label, received, total);
    }
    const out = new Uint8Array(received);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  };
  const runner = async (path: string, label: string, query: Record<string, string> = {}) => {
    const links = await json<ModelLinks>(url(path, query));
    const model = await bytes(links.model, label);
    const externalData = links.externalData
      ? { path: "model.onnx_data", data: await bytes(links.externalData, `${label} weights`) }
      : undefined;
    return options.createRunner(model, externalData);
  };

  const manifest = await json<PipelineManifest>(url("/api/model/manifest"));
  const tokenizers = await Promise.all(
    manifest.textEncoders.map(async (_, index) => {
      const files = await json<TokenizerPayload>(url(`/api/model/tokenizers/${index}`));
      const tokenizer = ClipTokenizer.fromFolderFiles(files);
      if (!tokenizer) throw new Error(`the server's tokenizer ${index} has no vocabulary`);
      return tokenizer;
    }),
  );
  const textEncoders = manifest.textEncoders.map(
    (encoder, index) =>
      new RunnerTextEncoder(encoder.hiddenSize, encoder.layers, (request: TextEncoderRequest) =>
        runner(`/api/model/text-encoders/${index}`, `text encoder ${index + 1}`, {
          hiddenStateFromEnd: String(request.hiddenStateFromEnd ?? 0),
          finalLayerNorm: request.finalLayerNorm ? "1" : "0",
        }),
      ),
  );
  const plan: Record<string, string> = options.attentionPlan
    ? {
        maxBinding: String(options.attentionPlan.maxBindingBytes),
        latentSide: String(Math.ceil(options.attentionPlan.imageSide / manifest.vaeScale)),
      }
    : {};
  const unets = new PromiseMemo<string, RunnerUnet>();
  // Sampler-step graphs for loops that keep the latents on the device, shared by the UNets.
  const steppers = new PromiseMemo<string, ModelRunner>();
  const samplerStep = (step: SamplerStepOptions) => {
    const query = { guided: step.guided ? "1" : "0", noise: step.noise ? "1" : "0" };
    return steppers.get(`${query.guided}/${query.noise}`, () =>
      runner("/api/model/sampler-step", "sampler step", query),
    );
  };
  const vae = new RunnerVae(
    manifest.scalingFactor,
    manifest.shiftFactor,
    () => runner("/api/model/vae-decoder", "VAE decoder", plan),
    () => runner("/api/model/vae-encoder", "VAE encoder", plan),
  );
  const parts: PipelineParts = {
    family: manifest.family,
    label: manifest.label,
    tokenizers,
    textEncoders,
    unet(reduction: ReductionSettings | undefined) {
      const key = JSON.stringify(reduction ?? null);
      return unets.get(key, () => {
        const query: Record<string, string> = reduction ? { reduction: key, ...plan } : plan;
        return runner("/api/model/unet", reduction ? "accelerated UNet" : "UNet", query).then(
          (r) => new RunnerUnet(r, samplerStep),
        );
      });
    },
    vae,
    schedulerConfig: manifest.schedulerConfig,
    forceZerosForEmptyPrompt: manifest.forceZerosForEmptyPrompt,
    latentChannels: manifest.latentChannels,
    vaeScale: manifest.vaeScale,
    defaultSize: manifest.defaultSize,
    async release() {
      for (const encoder of textEncoders) await encoder.release();
      // Those that never loaded are skipped.
      await unets.releaseAll((unet) => unet.release());
      await steppers.releaseAll((stepper) => stepper.release());
      await vae.release();
    },
  };
  return new StableDiffusionPipeline(parts);
}
