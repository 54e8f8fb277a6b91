/**
 * The popular web UIs' API, as tools and bots call it:
 *   POST /sdapi/v1/txt2img, /sdapi/v1/img2img   -> {images: [base64 PNG], parameters, info}
 *   GET  /sdapi/v1/samplers                      -> [{name, aliases, options}]
 *   GET  /sdapi/v1/progress                      -> {progress, eta_relative, state, ...}
 * Fields: prompt, negative_prompt, steps, cfg_scale, width, height, seed (-1: random),
 * sampler_name (or sampler_index), batch_size, n_iter, denoising_strength, init_images,
 * clip_skip; our reduction settings as `reduction`. Fields these UIs send that do not apply
 * here (styles, restore_faces, ...) are ignored, as those UIs ignore what they do not know.
 * Image i of the batch is seeded seed + i, as in those UIs.
 */
import { listSchedulers } from "../../schedulers/registry.js";
import { API_DEFAULTS, checkGeneration, MAX_IMAGES_PER_JOB } from "../generation-request.js";
import { allowMethods, HttpError, readJsonBody, sendJson } from "../http.js";
import { type GenerationParams, RequestError, requestObject } from "../protocol.js";
import { submitFor } from "./api.js";
import type { RequestContext, RouteModule, ServerContext } from "./context.js";

interface Tracked {
  readonly id: string;
  readonly started: number;
}

export function webUiRoutes(server: ServerContext): RouteModule {
  /** The latest job of this front end, for /progress (those UIs report one job at a time). */
  let latest: Tracked | undefined;

  const generate = async (request: RequestContext, img2img: boolean) => {
    const { req, res } = request;
    const body = await readJsonBody(req, img2img ? server.maxImageBodyBytes : server.maxBodyBytes);
    const f = requestObject(body);
    const whole = (key: string, fallback: number) => {
      const value = f[key] ?? fallback;
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1)
        throw new RequestError(
          `${key}: must be a whole number from 1; got ${JSON.stringify(value)}`,
        );
      return value;
    };
    const batch = whole("batch_size", 1);
    const iterations = whole("n_iter", 1);
    if (batch * iterations > MAX_IMAGES_PER_JOB)
      throw new RequestError(
        `batch_size x n_iter: at most ${MAX_IMAGES_PER_JOB} images a request; got ${batch * iterations}`,
      );
    let initImage: unknown;
    if (img2img) {
      const images = f.init_images;
      if (!Array.isArray(images) || images.length !== 1)
        throw new RequestError("init_images: one base64 PNG image");
      initImage = images[0];
    } else if (f.init_images !== undefined) {
      throw new RequestError("init_images: send init images to /sdapi/v1/img2img");
    }
    let sampler = f.sampler_name ?? f.sampler_index;
    if (sampler === "") sampler = undefined;
    const params = checkGeneration(
      {
        prompt: f.prompt,
        negativePrompt: f.negative_prompt === "" ? undefined : f.negative_prompt,
        width: f.width,
        height: f.height,
        steps: f.steps,
        guidanceScale: f.cfg_scale,
        scheduler: sampler,
        seed: f.seed,
        clipSkip: typeof f.clip_skip === "number" ? Math.max(0, f.clip_skip - 1) : f.clip_skip,
        count: batch * iterations,
        reduction: f.reduction,
        initImage,
        strength: img2img
          ? (f.denoising_strength ?? API_DEFAULTS.webui.strength)
          : f.denoising_strength,
      },
      server.validation,
      { size: server.info.defaultSize, ...API_DEFAULTS.webui },
      {
        negativePrompt: "negative_prompt",
        guidanceScale: "cfg_scale",
        scheduler: "sampler_name",
        clipSkip: "clip_skip",
        initImage: "init_images[0]",
        strength: "denoising_strength",
      },
    );
    const { id } = await submitFor(server, request, { kind: "generate", params });
    latest = { id, started: Date.now() };
    server.log(
      `job ${id} (${img2img ? "img2img" : "txt2img"}): ${params.count} x ${params.width}x${params.height}`,
    );
    const job = await server.jobs.wait(id);
    if (job.status !== "done" || job.outcome?.kind !== "generate")
      throw new HttpError(
        job.status === "cancelled" ? 409 : 500,
        job.status === "cancelled"
          ? "the generation was cancelled"
          : `the generation failed: ${job.error}`,
      );
    const images: string[] = [];
    for (const image of job.outcome.result.images) {
      const bytes = await server.jobs.image(id, image.url.slice(image.url.lastIndexOf("/") + 1));
      if (!bytes) throw new HttpError(500, `image ${image.url} is missing`);
      images.push(Buffer.from(bytes).toString("base64"));
    }
    const { init_images: _images, ...parameters } = f;
    return sendJson(res, 200, {
      images,
      parameters,
      info: JSON.stringify(info(params, batch, server.info.model, job.createdAt)),
    });
  };

  return {
    matches: (path) => path.startsWith("/sdapi/v1/"),
    needsKey: () => true,
    async handle(request) {
      const { res, url, method } = request;
      switch (url.pathname) {
        case "/sdapi/v1/txt2img":
          allowMethods(method, "POST");
          return generate(request, false);
        case "/sdapi/v1/img2img":
          allowMethods(method, "POST");
          return generate(request, true);
        case "/sdapi/v1/samplers":
          allowMethods(method, "GET");
          return sendJson(
            res,
            200,
            listSchedulers().map((name) => ({ name, aliases: [], options: {} })),
          );
        case "/sdapi/v1/progress": {
          allowMethods(method, "GET");
          const job = latest ? await server.jobs.get(latest.id) : undefined;
          const p = job?.progress;
          const running =
            job !== undefined && (job.status === "running" || job.status === "queued");
          const fraction =
            p && running ? ((p.image ?? 0) + p.step / p.totalSteps) / (p.images ?? 1) : 0;
          const elapsed = latest ? (Date.now() - latest.started) / 1000 : 0;
          return sendJson(res, 200, {
            progress: fraction,
            eta_relative: fraction > 0 ? (elapsed / fraction) * (1 - fraction) : 0,
            state: {
              skipped: false,
              interrupted: job?.status === "cancelled",
              job: running ? job.id : "",
              job_count: running ? 1 : 0,
              job_timestamp: job?.createdAt ?? "",
              job_no: p?.image ?? 0,
              sampling_step: running ? (p?.step ?? 0) : 0,
              sampling_steps: running ? (p?.totalSteps ?? 0) : 0,
            },
            current_image: null,
            textinfo: null,
          });
        }
        default:
          throw new HttpError(404, `no route ${url.pathname}`);
      }
    },
  };
}

/** The `info` JSON those UIs return: the parameters, one seed and one info line per image. */
function info(params: GenerationParams, batch: number, model: string, createdAt: string) {
  const seeds = Array.from({ length: params.count }, (_, i) => params.seed + i);
  const sampler = params.scheduler ?? "default";
  const line = (seed: number) =>
    `${params.prompt}\n${params.negativePrompt ? `Negative prompt: ${params.negativePrompt}\n` : ""}Steps: ${params.steps}, Sampler: ${sampler}, CFG scale: ${params.guidanceScale}, Seed: ${seed}, Size: ${params.width}x${params.height}, Model: ${model}`;
  return {
    prompt: params.prompt,
    all_prompts: seeds.map(() => params.prompt),
    negative_prompt: params.negativePrompt ?? "",
    all_negative_prompts: seeds.map(() => params.negativePrompt ?? ""),
    seed: params.seed,
    all_seeds: seeds,
    subseed: -1,
    all_subseeds: seeds.map(() => -1),
    width: params.width,
    height: params.height,
    sampler_name: sampler,
    cfg_scale: params.guidanceScale,
    steps: params.steps,
    batch_size: batch,
    n_iter: params.count / batch,
    denoising_strength: params.strength,
    clip_skip: params.clipSkip + 1,
    sd_model_name: model,
    job_timestamp: createdAt,
    infotexts: seeds.map(line),
  };
}
