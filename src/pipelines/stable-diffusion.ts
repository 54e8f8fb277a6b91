/**
 * The Stable Diffusion denoising pipelines (SD 1.x, 2.x and XL): prompt encoding with
 * classifier-free guidance (Ho and Salimans 2022), txt2img and img2img (SDEdit, Meng et al.
 * 2022), over components that hide where the models came from. The order of operations and of
 * random draws follows the reference pipelines, so recorded latents and noise reproduce their
 * images.
 *
 * Where each piece lives: the call's options and defaults in generate-options.ts, their checks
 * in validate-options.ts, the resolved call in generation-plan.ts, prompt encoding in
 * prompt-encoding.ts, image <-> latents in image-latents.ts, the loop in denoise.ts.
 */
import type { LoraRequest } from "../lora/apply-loras.js";
import type { ReductionOptions, ReductionSettings } from "../reduce/options.js";
import { type NoiseSource, recordedNoise, seededNoise } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { denoise } from "./denoise.js";
import { firstNonFinite, likelyCause, NonFiniteError } from "./finite-check.js";
import type { GenerateOptions, GenerateResult } from "./generate-options.js";
import { type GenerationPlan, planGeneration, reductionFor } from "./generation-plan.js";
import { decodeLatents, encodeInitImage } from "./image-latents.js";
import type { AdaptedModels, PipelineParts } from "./pipeline-parts.js";
import { encodeConditioning } from "./prompt-encoding.js";

export class StableDiffusionPipeline {
  constructor(readonly parts: PipelineParts) {}

  get family(): ModelFamily {
    return this.parts.family;
  }

  /** Frees the runtime sessions and open files; the pipeline cannot be used afterwards. */
  async release(): Promise<void> {
    await this.parts.release?.();
  }

  /**
   * The call resolved against this model (defaults, size, reduction, sampler, seed), checked
   * before any model runs; `generate` runs it as it is.
   */
  plan(options: GenerateOptions): GenerationPlan {
    return planGeneration(options, this.parts);
  }

  /** Reduction settings for a size, or undefined when nothing would be reduced. */
  resolveReductionFor(
    options: ReductionOptions | undefined,
    width: number,
    height: number,
  ): ReductionSettings | undefined {
    return reductionFor(this.parts.family, options, width, height);
  }

  /** Runs a call: its options, or a plan made by `plan` (whose seed is then kept). */
  async generate(call: GenerateOptions | GenerationPlan): Promise<GenerateResult> {
    const started = performance.now();
    const plan = "newScheduler" in call ? call : this.plan(call);
    throwIfAborted(plan.options.signal);
    const models = await this.modelsFor(plan.options.loras);
    try {
      return await this.run(plan, models, started);
    } finally {
      models.done?.();
    }
  }

  /** The pipeline's own models, or those of the call's LoRA set. */
  private async modelsFor(loras: readonly LoraRequest[] | undefined): Promise<AdaptedModels> {
    const parts = this.parts;
    if (loras === undefined)
      return {
        textEncoders: parts.textEncoders,
        unet: (reduction) => parts.unet(reduction),
        loras: parts.loras ?? [],
      };
    if (!parts.withLoras)
      throw new Error(`${parts.label}: this model source cannot change its LoRAs per call`);
    return parts.withLoras(loras);
  }

  private async run(
    plan: GenerationPlan,
    models: AdaptedModels,
    started: number,
  ): Promise<GenerateResult> {
    const { options, latentDims } = plan;
    const checkAbort = () => throwIfAborted(options.signal);
    const noise: NoiseSource = recordedNoise(options.noise ?? [], seededNoise(plan.seed));
    const cause = () =>
      likelyCause({
        guidanceScale: plan.guidanceScale,
        recordedLatents: options.latents !== undefined,
        recordedNoise: options.noise !== undefined,
      });

    // 1. Text conditioning.
    const textStart = performance.now();
    const conditioning = await encodeConditioning(plan, this.parts, models.textEncoders);
    const textEncoderMs = performance.now() - textStart;
    checkAbort();

    // 2. Starting latents: the init image noised to the first timestep, or a scaled draw.
    const scheduler = plan.newScheduler();
    let vaeMs = 0;
    let start: Float32Array;
    if (options.image) {
      const vaeStart = performance.now();
      const init = await encodeInitImage(this.parts.vae, options.image, plan.batch, noise);
      vaeMs += performance.now() - vaeStart;
      start = scheduler.addNoise(init, noise.normal(latentDims), plan.timesteps[0]);
    } else {
      const draws = options.latents ? recordedNoise([options.latents]) : noise;
      const sigma = scheduler.initNoiseSigma;
      start = draws.normal(latentDims).map((v) => v * sigma);
    }
    if (firstNonFinite(start) >= 0)
      throw new NonFiniteError(
        `the starting latents hold NaN or infinite values; ${options.latents ? "the given latents are broken" : cause()}`,
      );

    // 3. Denoising.
    const unet = await models.unet(plan.reduction);
    const denoised = await denoise({
      plan,
      scheduler,
      unet,
      start,
      conditioning,
      noise,
      cause,
      checkAbort,
      onStep: (index, latents) =>
        options.onProgress?.({
          step: index + 1,
          totalSteps: plan.timesteps.length,
          timestep: plan.timesteps[index],
          ...(latents && { latents: { data: latents, dims: latentDims } }),
          elapsedMs: performance.now() - started,
        }),
    });
    checkAbort();

    // 4. Decoding.
    const vaeStart = performance.now();
    const images = await decodeLatents(
      this.parts.vae,
      denoised.latents,
      latentDims,
      plan.vaeTiling,
      cause,
    );
    vaeMs += performance.now() - vaeStart;
    return {
      images,
      timings: {
        totalMs: performance.now() - started,
        textEncoderMs,
        unetMs: denoised.unetMs,
        vaeMs,
        unetCalls: denoised.unetCalls,
        denoisedOn: denoised.on,
      },
      parameters: {
        prompt: plan.prompts,
        negativePrompt:
          options.negativePrompt === undefined
            ? null
            : typeof options.negativePrompt === "string"
              ? [options.negativePrompt]
              : options.negativePrompt,
        width: plan.width,
        height: plan.height,
        steps: plan.steps,
        guidanceScale: plan.guidanceScale,
        imagesPerPrompt: plan.imagesPerPrompt,
        clipSkip: plan.clipSkip ?? null,
        scheduler: plan.scheduler,
        schedulerConfig: plan.schedulerConfig,
        seed: plan.seed,
        strength: plan.strength ?? null,
        reduction: plan.reduction ?? null,
        longPrompts: plan.longPrompts,
        family: this.parts.family,
        loras: models.loras,
      },
    };
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const error = new Error("generation cancelled");
    error.name = "AbortError";
    throw error;
  }
}
