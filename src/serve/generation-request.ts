/**
 * Checks plain generation requests (the OpenAI and web-UI routes) into GenerationParams before
 * anything is queued: sizes, steps, counts, samplers, seeds, reduction settings and base64 init
 * images. Throws RequestError with one line that names the field.
 */
import { decodePng, hasPngSignature } from "../image/png.js";
import { parseReductionOptions, type ReductionOptionsInput } from "../reduce/options.js";
import { MAX_SEED, randomSeed } from "../util/random.js";
import {
  checkPromptAndSize,
  checkSampler,
  firstLine,
  type GenerationParams,
  isMissing,
  RequestError,
  resolveJobLoras,
  textField,
  type ValidationContext,
  wholeField,
} from "./protocol.js";

/** Images one request may ask for. */
export const MAX_IMAGES_PER_JOB = 8;

/**
 * The fields every route maps its own names onto, those of GenerationParams as received;
 * undefined: the default.
 */
export type GenerationFields = { readonly [K in keyof GenerationParams]?: unknown } & {
  readonly prompt: unknown;
};

/** The names the client used, for messages (`cfg_scale` rather than guidanceScale). */
export type FieldNames = Readonly<Partial<Record<keyof GenerationFields, string>>>;

/** What a route fills in for fields a request leaves out. */
export interface GenerationDefaults {
  readonly size: number;
  readonly steps: number;
  readonly guidanceScale: number;
  /** img2img: the strength of a request that gives an init image and no strength. */
  readonly strength?: number;
}

/**
 * The defaults of the APIs the server speaks besides its own, one set per API and after that
 * API's conventions, for the fields a client leaves out (the size is the model's).
 */
export const API_DEFAULTS = Object.freeze({
  /** The AUTOMATIC1111 web UI's API (`/sdapi/v1/txt2img`, `/sdapi/v1/img2img`). */
  webui: Object.freeze({ steps: 20, guidanceScale: 7, strength: 0.75 }),
  /** OpenAI-style image generation (`/v1/images/generations`; it has no init images). */
  openai: Object.freeze({ steps: 20, guidanceScale: 7.5 }),
} satisfies Record<string, Omit<GenerationDefaults, "size">>);

export function checkGeneration(
  fields: GenerationFields,
  context: ValidationContext,
  defaults: GenerationDefaults,
  names: FieldNames = {},
): GenerationParams {
  const name = (key: string) => names[key as keyof GenerationFields] ?? key;
  const { prompt, ...checked } = checkPromptAndSize(fields, context, defaults, name);
  const { width, height } = checked;
  const whole = (key: keyof GenerationFields, min: number, max: number, fallback: number) =>
    wholeField(fields, key, min, max, fallback, name);
  const scheduler = checkSampler(
    textField(fields, "scheduler", Number.POSITIVE_INFINITY, false, name),
    name("scheduler"),
  );
  const count = whole("count", 1, MAX_IMAGES_PER_JOB, 1);
  const drawSeed = () => context.randomSeed?.() ?? randomSeed();
  // -1 asks for a random seed, as in the web UIs.
  const seed =
    isMissing(fields.seed) || fields.seed === -1
      ? drawSeed()
      : whole("seed", 0, MAX_SEED - count + 1, 0);
  const clipSkip = whole("clipSkip", 0, Math.max(0, context.textEncoderLayers - 2), 0);
  let reduction: GenerationParams["reduction"] = null;
  if (!isMissing(fields.reduction)) {
    const value = fields.reduction;
    if (typeof value !== "object" || Array.isArray(value))
      throw new RequestError(`${name("reduction")}: an object such as {"method": "todo"}`);
    try {
      reduction = parseReductionOptions(value as ReductionOptionsInput);
      context.resolveReduction(reduction, width, height);
    } catch (error) {
      throw new RequestError(`${name("reduction")}: ${firstLine(error)}`);
    }
  }
  const initImage = isMissing(fields.initImage)
    ? null
    : checkBase64Png(fields.initImage, name("initImage"), context.limits.maxSide);
  let strength: number | null = null;
  if (!isMissing(fields.strength) || initImage !== null) {
    if (initImage === null)
      throw new RequestError(`${name("strength")}: needs an init image (img2img)`);
    const value = isMissing(fields.strength) ? defaults.strength : fields.strength;
    if (value === undefined)
      throw new RequestError(`${name("strength")}: required with an init image`);
    if (typeof value !== "number" || !(value > 0 && value <= 1))
      throw new RequestError(
        `${name("strength")}: must be a number above 0 and at most 1; got ${JSON.stringify(value)}`,
      );
    strength = value;
  }
  return {
    ...resolveJobLoras(prompt, fields.loras, context, name("loras")),
    ...checked,
    scheduler,
    seed,
    clipSkip,
    count,
    reduction,
    initImage,
    strength,
  };
}

/**
 * A base64 PNG (a `data:image/png;base64,` prefix allowed), decoded here so that a broken or
 * oversized image is refused before it is queued. Returns the bare base64 text.
 */
export function checkBase64Png(value: unknown, field: string, maxSide: number): string {
  if (typeof value !== "string") throw new RequestError(`${field}: must be base64 text`);
  const bare = value.replace(/^data:image\/png;base64,/, "").replace(/\s+/g, "");
  if (bare === "" || !/^[A-Za-z0-9+/]+={0,2}$/.test(bare) || bare.length % 4 === 1)
    throw new RequestError(`${field}: not valid base64`);
  const bytes = Buffer.from(bare, "base64");
  if (!hasPngSignature(bytes))
    throw new RequestError(`${field}: not a PNG image (send PNG as base64)`);
  // The header's size first, so that a huge image is refused before it is decoded.
  if (bytes.length >= 24) {
    const width = bytes.readUInt32BE(16);
    const height = bytes.readUInt32BE(20);
    if (width > maxSide || height > maxSide)
      throw new RequestError(`${field}: ${width}x${height} is larger than ${maxSide} px a side`);
  }
  try {
    decodePng(bytes, field);
  } catch (error) {
    throw new RequestError(firstLine(error));
  }
  return bare;
}
