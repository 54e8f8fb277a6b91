/**
 * Non-finite values in a generation: a NaN or infinity anywhere in the latents spreads to the
 * whole image, which would be written as black. The pipeline checks the latents after every
 * step and the decoded image, and stops with an error that says where and what is likely at
 * fault, instead of returning a broken image.
 */

/** The index of the first NaN or infinity in `data`, or -1. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

/** Guidance far beyond this makes the guided prediction overflow float32 arithmetic sooner or later. */
export const USUAL_GUIDANCE_LIMIT = 30;

/** What most likely made a generation's latents non-finite, for the error message. */
export function likelyCause(settings: {
  readonly guidanceScale: number;
  readonly recordedLatents: boolean;
  readonly recordedNoise: boolean;
  readonly dtype?: string;
}): string {
  if (Math.abs(settings.guidanceScale) > USUAL_GUIDANCE_LIMIT)
    return `the guidance scale ${settings.guidanceScale} is likely at fault (usual: 1 to 20)`;
  if (settings.recordedLatents || settings.recordedNoise)
    return "check the given latents or noise for extreme values";
  return "the model's weights may overflow in float16; try --dtype fp32";
}

export class NonFiniteError extends Error {
  override name = "NonFiniteError";
}
