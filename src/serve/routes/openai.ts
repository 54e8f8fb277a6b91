/**
 * The OpenAI images API: POST /v1/images/generations with `prompt`, `n`, `size` ("WxH"),
 * `response_format` (b64_json or url) and `model`; our settings as extra fields
 * (negative_prompt, steps, guidance_scale, sampler, seed, clip_skip, reduction). The response
 * comes when the images are done; a client that hangs up leaves the job to finish. Errors use
 * OpenAI's shape: {error: {message, type, param, code}}.
 */

import { API_DEFAULTS, checkGeneration } from "../generation-request.js";
import { HttpError, readJsonBody, sendJson } from "../http.js";
import { RequestError, requestObject } from "../protocol.js";
import { submitFor } from "./api.js";
import type { RouteModule, ServerContext } from "./context.js";

/** OpenAI's own fields that do not apply here; accepted and ignored, as their docs allow. */
const IGNORED = new Set([
  "quality",
  "style",
  "user",
  "background",
  "moderation",
  "output_format",
  "output_compression",
]);
const FIELDS = new Set([
  "prompt",
  "n",
  "size",
  "response_format",
  "model",
  "negative_prompt",
  "steps",
  "guidance_scale",
  "sampler",
  "seed",
  "clip_skip",
  "reduction",
]);

export function openAiError(status: number, message: string, param: string | null = null) {
  const type =
    status === 401
      ? "authentication_error"
      : status === 429
        ? "rate_limit_error"
        : status >= 500
          ? "server_error"
          : "invalid_request_error";
  return { error: { message, type, param, code: null } };
}

export function openAiRoutes(server: ServerContext): RouteModule {
  return {
    matches: (path) => path.startsWith("/v1/"),
    needsKey: () => true,
    async handle(request) {
      const { req, res, url, method } = request;
      if (url.pathname === "/v1/models") {
        if (method !== "GET") throw new HttpError(405, `${method} is not allowed here; use GET`);
        return sendJson(res, 200, {
          object: "list",
          data: [{ id: server.info.model, object: "model", created: 0, owned_by: "todo-sd" }],
        });
      }
      if (url.pathname !== "/v1/images/generations")
        throw new HttpError(
          404,
          `no route ${url.pathname} (this server has /v1/images/generations)`,
        );
      if (method !== "POST") throw new HttpError(405, `${method} is not allowed here; use POST`);
      const body = await readJsonBody(req, server.maxBodyBytes);
      const fields = requestObject(body);
      for (const key of Object.keys(fields))
        if (!FIELDS.has(key) && !IGNORED.has(key)) throw new RequestError(`unknown field "${key}"`);
      if (fields.stream === true) throw new RequestError("stream: streaming is not supported");
      const format = fields.response_format ?? "b64_json";
      if (format !== "b64_json" && format !== "url")
        throw new RequestError(
          `response_format: use b64_json or url; got ${JSON.stringify(format)}`,
        );
      let width: number | undefined;
      let height: number | undefined;
      if (fields.size !== undefined && fields.size !== null && fields.size !== "auto") {
        const size = /^(\d{1,6})x(\d{1,6})$/.exec(String(fields.size));
        if (typeof fields.size !== "string" || !size)
          throw new RequestError(
            `size: "WIDTHxHEIGHT" such as "512x512"; got ${JSON.stringify(fields.size)}`,
          );
        width = Number(size[1]);
        height = Number(size[2]);
      }
      const params = checkGeneration(
        {
          prompt: fields.prompt,
          negativePrompt: fields.negative_prompt,
          width,
          height,
          steps: fields.steps,
          guidanceScale: fields.guidance_scale,
          scheduler: fields.sampler,
          seed: fields.seed,
          clipSkip: fields.clip_skip,
          count: fields.n,
          reduction: fields.reduction,
        },
        server.validation,
        { size: server.info.defaultSize, ...API_DEFAULTS.openai },
        {
          negativePrompt: "negative_prompt",
          guidanceScale: "guidance_scale",
          scheduler: "sampler",
          clipSkip: "clip_skip",
          count: "n",
          width: "size",
          height: "size",
        },
      );
      const { id, token } = await submitFor(server, request, { kind: "generate", params });
      server.log(`job ${id} (OpenAI): ${params.count} x ${params.width}x${params.height}`);
      const job = await server.jobs.wait(id);
      if (job.status !== "done" || job.outcome?.kind !== "generate")
        return sendJson(
          res,
          job.status === "cancelled" ? 409 : 500,
          openAiError(
            500,
            `the generation ${job.status === "cancelled" ? "was cancelled" : `failed: ${job.error}`}`,
          ),
        );
      const result = job.outcome.result;
      const origin = `http://${req.headers.host}`;
      const data = [];
      for (const image of result.images) {
        if (format === "url") {
          data.push({ url: `${origin}${image.url}?token=${token}`, revised_prompt: params.prompt });
        } else {
          const bytes = await server.jobs.image(
            id,
            image.url.slice(image.url.lastIndexOf("/") + 1),
          );
          if (!bytes) throw new HttpError(500, `image ${image.url} is missing`);
          data.push({
            b64_json: Buffer.from(bytes).toString("base64"),
            revised_prompt: params.prompt,
          });
        }
      }
      return sendJson(res, 200, { created: Math.floor(Date.parse(job.createdAt) / 1000), data });
    },
  };
}
