/** The checks of one generation call, made before any model runs; every message is one line. */
import type { GenerateOptions } from "./generate-options.js";
import type { PipelineParts } from "./pipeline-parts.js";

/** Checks the call before any model runs; every message is one line. */
export function validateGenerateOptions(
  options: GenerateOptions,
  parts: Pick<PipelineParts, "vaeScale" | "defaultSize"> &
    Partial<Pick<PipelineParts, "textEncoders">>,
): void {
  const prompts = typeof options.prompt === "string" ? [options.prompt] : options.prompt;
  if (prompts.length === 0) throw new Error("prompt: give at least one prompt");
  if (options.negativePrompt !== undefined && typeof options.negativePrompt !== "string") {
    if (options.negativePrompt.length !== prompts.length) {
      throw new Error(
        `negativePrompt: ${options.negativePrompt.length} negative prompts for ${prompts.length} prompts; give one, or one per prompt`,
      );
    }
  }
  const multiple = parts.vaeScale;
  for (const [name, value] of [
    ["width", options.width],
    ["height", options.height],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new Error(`${name} must be a positive multiple of ${multiple}; got ${value}`);
    }
  }
  if (options.steps !== undefined && (!Number.isInteger(options.steps) || options.steps < 1)) {
    throw new Error(`steps must be a whole number >= 1; got ${options.steps}`);
  }
  if (options.guidanceScale !== undefined && !Number.isFinite(options.guidanceScale)) {
    throw new Error(`guidanceScale must be a number; got ${options.guidanceScale}`);
  }
  if (
    options.imagesPerPrompt !== undefined &&
    (!Number.isInteger(options.imagesPerPrompt) || options.imagesPerPrompt < 1)
  ) {
    throw new Error(`imagesPerPrompt must be a whole number >= 1; got ${options.imagesPerPrompt}`);
  }
  if (
    options.clipSkip !== undefined &&
    (!Number.isInteger(options.clipSkip) || options.clipSkip < 0)
  ) {
    throw new Error(`clipSkip must be a whole number >= 0; got ${options.clipSkip}`);
  }
  const layers = Math.min(...(parts.textEncoders ?? []).map((encoder) => encoder.layers));
  if (options.clipSkip !== undefined && options.clipSkip >= layers)
    throw new Error(
      `clip skip ${options.clipSkip} is out of range: the model's text encoder has ${layers} layers, so 0 to ${layers - 1} may be skipped`,
    );
  if (options.seed !== undefined && (!Number.isSafeInteger(options.seed) || options.seed < 0)) {
    throw new Error(`seed must be a non-negative integer; got ${options.seed}`);
  }
  for (const lora of options.loras ?? []) {
    const weight = lora?.weight ?? 1;
    if (typeof lora?.path !== "string" || lora.path === "")
      throw new Error("loras: every LoRA needs a file path");
    if (typeof weight !== "number" || !Number.isFinite(weight))
      throw new Error(`LoRA ${lora.path}: weight must be a finite number; got ${weight}`);
  }
  if (options.strength !== undefined) {
    if (!(options.strength > 0 && options.strength <= 1)) {
      throw new Error(`strength must be in (0, 1]; got ${options.strength}`);
    }
    if (!options.image) throw new Error("strength is for img2img: give an init image too");
  }
  if (options.image && options.latents)
    throw new Error("latents are for txt2img; img2img starts from the init image");
  const onDevice = options.latentsOnDevice;
  if (onDevice !== undefined && onDevice !== "auto" && onDevice !== "on" && onDevice !== "off")
    throw new Error(
      `latentsOnDevice must be "auto", "on" or "off"; got ${JSON.stringify(onDevice)}`,
    );
}
