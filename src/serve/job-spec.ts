/**
 * What a server job is, independent of where it runs: a typed record of its parameters (the
 * demo's comparison, or a plain generation for the OpenAI and web-UI routes), what it reports,
 * and what it leaves behind. Both job implementations (in-process and the Redis queue) carry
 * these records unchanged, so a new generation setting is one new field here and in the parser
 * that fills it.
 */
import type {
  GenerationParams,
  GenerationResult,
  JobEvent,
  JobParams,
  JobResult,
} from "./protocol.js";

export type JobSpec =
  | { readonly kind: "compare"; readonly params: JobParams }
  | { readonly kind: "generate"; readonly params: GenerationParams };

export type JobOutcome =
  | { readonly kind: "compare"; readonly result: JobResult }
  | { readonly kind: "generate"; readonly result: GenerationResult };

/** The facts a job runs with besides its spec. */
export interface JobContext {
  readonly id: string;
  readonly createdAt: string;
  /** The model's name as the user gave it (recorded in the PNGs). */
  readonly model: string;
  readonly device: string;
  /** Where the job's LoRAs are found by name (the generation process's LoRA folder). */
  readonly loraDir?: string;
}

/** A job's images are named `baseline.png`, `accelerated.png` or `<index>.png`. */
export const IMAGE_NAME = /^(baseline|accelerated|\d{1,3})\.png$/;

export function imageUrl(id: string, name: string): string {
  return `/api/jobs/${id}/images/${name}`;
}

/** What runs a job reports back while it runs. */
export interface JobHooks {
  emit(event: JobEvent): void;
  /** Stores an image before the event that names it is emitted. */
  image(name: string, png: Uint8Array): void;
}

/** The parameters as kept in records: an init image is replaced by its size in bytes. */
export function recordedSpec(spec: JobSpec): JobSpec {
  if (spec.kind !== "generate" || spec.params.initImage === null) return spec;
  return {
    kind: "generate",
    params: { ...spec.params, initImage: `<${spec.params.initImage.length} base64 characters>` },
  };
}
