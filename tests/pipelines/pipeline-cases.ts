// The reference pipeline calls of cases/pipelines.json as library options.
import type { GenerateOptions } from "../../src/index.js";
import {
  type ReferenceReductionArgs,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import { openCaseTensors, readCaseJson } from "../fixtures.js";

export interface PipelineCase {
  pipeline: string;
  label: string;
  scheduler: string;
  scheduler_config?: Record<string, unknown>;
  call: {
    prompt: string | string[];
    negative_prompt?: string | string[] | null;
    height?: number;
    width?: number;
    num_inference_steps: number;
    guidance_scale: number;
    clip_skip?: number;
    strength?: number;
  };
  todo_args?: ReferenceReductionArgs | null;
  noise_draws: number;
  key: string;
}

export const cases = readCaseJson<{ cases: PipelineCase[] }>("pipelines").cases;
export const tensors = openCaseTensors("pipelines");
/**
 * The scheduler config a case ran with: its own, or, where the case names only the class (the
 * img2img case), the config recorded for that class on the same pipeline by the other cases.
 */
function schedulerConfigOf(c: PipelineCase): Record<string, unknown> | undefined {
  if (c.scheduler_config) return c.scheduler_config;
  return cases.find(
    (o) => o.pipeline === c.pipeline && o.scheduler === c.scheduler && o.scheduler_config,
  )?.scheduler_config;
}

/** The reference call as library options. */
export function callOptions(c: PipelineCase): GenerateOptions {
  const noise = Array.from({ length: c.noise_draws }, (_, i) =>
    tensors.readFloat32(`${c.key}.noise.${i}`),
  );
  let image: GenerateOptions["image"];
  if (c.call.strength !== undefined) {
    const info = tensors.info(`${c.key}.init_image`);
    const [count, , height, width] = info.shape;
    const nchw = tensors.readFloat32(`${c.key}.init_image`);
    const data = new Float32Array(nchw.length);
    const plane = height * width;
    for (let n = 0; n < count; n++)
      for (let ch = 0; ch < 3; ch++)
        for (let p = 0; p < plane; p++)
          data[(n * plane + p) * 3 + ch] = nchw[(n * 3 + ch) * plane + p];
    image = { data, count, width, height };
  }
  return {
    prompt: c.call.prompt,
    negativePrompt: c.call.negative_prompt ?? undefined,
    width: c.call.width,
    height: c.call.height,
    steps: c.call.num_inference_steps,
    guidanceScale: c.call.guidance_scale,
    clipSkip: c.call.clip_skip,
    scheduler: c.scheduler,
    schedulerConfig: schedulerConfigOf(c),
    latents: image ? undefined : tensors.readFloat32(`${c.key}.latents`),
    noise,
    image,
    strength: c.call.strength,
    reduction: c.todo_args ? settingsFromReferenceArgs(c.todo_args) : undefined,
  };
}
