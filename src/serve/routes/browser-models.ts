/**
 * Models for the in-browser engine:
 *   GET /api/model/...?backend=wasm|webgpu[&precision=fp32|fp16]  manifest, tokenizers/:i,
 *       text-encoders/:i, unet, vae-decoder, vae-encoder, sampler-step?guided=0|1&noise=0|1
 *       -> ModelLinks; files/...
 * (WebGPU models are float16 unless asked for fp32, for adapters without shader-f16; unet,
 * vae-decoder and vae-encoder take &maxBinding=<bytes>&latentSide=<n> to split attention so one
 * batch-2 UNet call or one VAE call at latents up to n x n keeps every score buffer within
 * maxBinding bytes.) Every distinct UNet (reduction settings and attention plan) is a full
 * model on disk, so the server builds at most `maxUnetVariants` of them per backend and
 * precision; past that, 429 names the limit.
 */
import type { AttentionChunking } from "../../models/layers.js";
import {
  type ComponentModelFile,
  type ComponentModels,
  openComponentModels,
} from "../../pipelines/component-models.js";
import type { LoadOptions, OpenedSource } from "../../pipelines/load.js";
import { parseReductionOptions, type ReductionSettings } from "../../reduce/options.js";
import { readTokenizerFolder } from "../../tokenizers/load-folder.js";
import { PromiseMemo } from "../../util/promise-memo.js";
import { float32Only, type ModelDtype, parseDtype, type WebDevice } from "../../util/vocabulary.js";
import { allowMethods, HttpError, sendFile, sendJson } from "../http.js";
import { firstLine } from "../protocol.js";
import type { RouteModule } from "./context.js";

export interface BrowserModelOptions {
  /** The model, as the server opened it (its files are opened again per backend, not classified). */
  readonly model: string | OpenedSource;
  readonly load?: Omit<LoadOptions, "device" | "dtype" | "cacheDir">;
  /** The server's precision on GPUs (the WebGPU default). */
  readonly dtype?: ModelDtype;
  readonly cacheDir?: string;
  readonly maxSide: number;
  /** Distinct UNets built per backend and precision (default 8). */
  readonly maxUnetVariants?: number;
  readonly log: (line: string) => void;
}

export interface BrowserModels extends RouteModule {
  close(): Promise<void>;
}

export function browserModelRoutes(options: BrowserModelOptions): BrowserModels {
  const maxUnets = options.maxUnetVariants ?? 8;
  const components = new PromiseMemo<string, ComponentModels>();
  const served = new Map<string, ComponentModelFile>();
  const unetVariants = new Map<string, Set<string>>();
  const componentModels = (backend: WebDevice, dtype: ModelDtype | undefined) => {
    return components.get(`${backend}/${dtype ?? "default"}`, () =>
      openComponentModels(options.model, {
        ...options.load,
        backend,
        dtype,
        cacheDir: options.cacheDir,
        onBuild: (component) =>
          options.log(`building ${component} for the browser (${backend})...`),
      }),
    );
  };
  const modelLinks = (backend: WebDevice, file: ComponentModelFile) => {
    served.set(`${backend}/${file.key}`, file);
    const base = `/api/model/files/${backend}/${file.key}`;
    return {
      model: `${base}/model.onnx`,
      externalData: file.externalDataPath ? `${base}/model.onnx_data` : null,
    };
  };
  // The browser computes in float32 on WASM; WebGPU gets the server's GPU dtype unless the page
  // asks for fp32 (adapters without the shader-f16 feature cannot run float16 graphs).
  const browserDtype = (backend: WebDevice, query: URLSearchParams) => {
    const precision = query.get("precision");
    if (precision === null) return float32Only(backend) ? "float32" : options.dtype;
    let asked: ModelDtype;
    try {
      asked = parseDtype(precision);
    } catch {
      throw new HttpError(400, `precision: use fp32 or fp16; got "${precision}"`);
    }
    if (float32Only(backend) && asked !== "float32")
      throw new HttpError(
        400,
        `precision: the ${backend} backend computes in fp32; got "${precision}"`,
      );
    return asked;
  };
  /** Admits one more UNet variant, or refuses with 429 when the budget is spent. */
  const admitUnet = (variant: string, key: string) => {
    const built = unetVariants.get(variant) ?? new Set<string>();
    unetVariants.set(variant, built);
    if (built.has(key)) return;
    if (built.size >= maxUnets)
      throw new HttpError(
        429,
        `the server builds at most ${maxUnets} browser UNets (reduction settings and attention plans) per backend; ${built.size} are built, so reuse one of those settings`,
      );
    built.add(key);
  };

  return {
    matches: (path) => path.startsWith("/api/model/"),
    needsKey: () => true,
    async handle({ res, url, method }) {
      allowMethods(method, "GET");
      const path = url.pathname.slice("/api/model/".length);
      const fileMatch =
        /^files\/(wasm|webgpu)\/([0-9a-f]{32})\/(model\.onnx|model\.onnx_data)$/.exec(path);
      if (fileMatch) {
        const file = served.get(`${fileMatch[1]}/${fileMatch[2]}`);
        const target =
          fileMatch[3] === "model.onnx" ? file?.modelPath : (file?.externalDataPath ?? undefined);
        if (!target) throw new HttpError(404, `no model file ${path}`);
        return sendFile(
          res,
          target,
          "application/octet-stream",
          "public, max-age=31536000, immutable",
        );
      }
      const backendText = url.searchParams.get("backend") ?? "wasm";
      if (backendText !== "wasm" && backendText !== "webgpu")
        throw new HttpError(400, `backend: use wasm or webgpu; got "${backendText}"`);
      const backend: WebDevice = backendText;
      const dtype = browserDtype(backend, url.searchParams);
      if (path === "unet") {
        // Checked before anything is opened or built.
        const settings = parseSettings(url.searchParams.get("reduction"));
        // The demo generates one image per job: two UNet rows with guidance.
        const chunking = parseChunking(url.searchParams, 2, options.maxSide);
        admitUnet(
          `${backend}/${dtype ?? "default"}`,
          JSON.stringify([settings ?? null, chunking ?? null]),
        );
        const models = await componentModels(backend, dtype);
        return sendJson(res, 200, modelLinks(backend, await models.unet(settings, chunking)));
      }
      const models = await componentModels(backend, dtype);
      if (path === "manifest") return sendJson(res, 200, models.manifest);
      const tokenizer = /^tokenizers\/(\d+)$/.exec(path);
      if (tokenizer) {
        const source = models.tokenizers[Number(tokenizer[1])];
        if (!source) throw new HttpError(404, `no tokenizer ${tokenizer[1]}`);
        return sendJson(res, 200, readTokenizerFolder(source.dir, source.padToken));
      }
      const encoder = /^text-encoders\/(\d+)$/.exec(path);
      if (encoder) {
        const skip = Number(url.searchParams.get("hiddenStateFromEnd") ?? "0");
        if (!Number.isInteger(skip) || skip < 0 || skip > 64)
          throw new HttpError(400, "hiddenStateFromEnd: a whole number from 0 to 64");
        const file = await models.textEncoder(Number(encoder[1]), {
          hiddenStateFromEnd: skip || undefined,
          finalLayerNorm: url.searchParams.get("finalLayerNorm") === "1",
        });
        return sendJson(res, 200, modelLinks(backend, file));
      }
      if (path === "vae-decoder" || path === "vae-encoder") {
        const chunking = parseChunking(url.searchParams, 1, options.maxSide);
        const file = await (path === "vae-decoder"
          ? models.vaeDecoder(chunking)
          : models.vaeEncoder(chunking));
        return sendJson(res, 200, modelLinks(backend, file));
      }
      if (path === "sampler-step") {
        const flag = (name: string) => {
          const value = url.searchParams.get(name);
          if (value !== "0" && value !== "1")
            throw new HttpError(400, `${name}: use 0 or 1; got ${JSON.stringify(value)}`);
          return value === "1";
        };
        const step = { guided: flag("guided"), noise: flag("noise") };
        return sendJson(res, 200, modelLinks(backend, await models.samplerStep(step)));
      }
      throw new HttpError(404, `no model route ${path}`);
    },
    async close() {
      // Those that failed to open have nothing to close.
      await components.releaseAll((models) => models.close());
    },
  };
}

/** maxBinding and latentSide (both or neither) as the builders' chunking plan. */
function parseChunking(
  query: URLSearchParams,
  maxBatch: number,
  maxSide: number,
): AttentionChunking | undefined {
  const binding = query.get("maxBinding");
  const side = query.get("latentSide");
  if (binding === null && side === null) return undefined;
  const maxBindingBytes = Number(binding);
  const maxLatentSide = Number(side);
  if (!Number.isSafeInteger(maxBindingBytes) || maxBindingBytes < 2 ** 20)
    throw new HttpError(
      400,
      `maxBinding: a whole number of bytes, at least 1 MiB; got "${binding}"`,
    );
  if (!Number.isSafeInteger(maxLatentSide) || maxLatentSide < 1 || maxLatentSide > maxSide)
    throw new HttpError(400, `latentSide: a whole number from 1 to ${maxSide}; got "${side}"`);
  return { maxBindingBytes, maxLatentSide, maxBatch };
}

/** The UNet's reduction settings, as the browser's pipeline resolved them (JSON), or none. */
function parseSettings(text: string | null): ReductionSettings | undefined {
  if (text === null || text === "" || text === "null") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, "reduction: not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new HttpError(400, "reduction: expected an object of resolved settings");
  let options: ReturnType<typeof parseReductionOptions>;
  try {
    options = parseReductionOptions(value as Record<string, never>);
  } catch (error) {
    throw new HttpError(400, `reduction: ${firstLine(error)}`);
  }
  if (
    options.factor === "auto" ||
    options.factorLevel2 === "auto" ||
    options.ratioLevel2 === "auto"
  )
    throw new HttpError(400, "reduction: give resolved settings (no auto values)");
  return options as ReductionSettings;
}
