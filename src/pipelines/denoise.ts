/**
 * The denoising loop, on the host or on the device, chosen in one place. On the host every step
 * runs the UNet, applies guidance and steps the sampler with the latents in host memory; on the
 * device (device-loop.ts) the traced schedule runs with the latents left where the UNet wrote
 * them, when the runtime can hold them and the sampler is linear in its inputs.
 */
import { type LinearTrace, traceLinearSampler } from "../schedulers/linear-trace.js";
import type { Scheduler } from "../schedulers/types.js";
import type { NoiseSource } from "../util/random.js";
import type { DeviceUnet, UnetComponent } from "./components.js";
import { runDeviceLoop } from "./device-loop.js";
import { firstNonFinite, NonFiniteError } from "./finite-check.js";
import type { GenerationPlan } from "./generation-plan.js";
import { applyGuidance, duplicate } from "./host-tensors.js";
import type { TextConditioning } from "./prompt-encoding.js";

export interface DenoiseInputs {
  readonly plan: GenerationPlan;
  /** The sampler that made `start` (from `plan.newScheduler()`); the host loop steps it on. */
  readonly scheduler: Scheduler;
  readonly unet: UnetComponent;
  /** The starting latents, already noised (`plan.latentDims`). */
  readonly start: Float32Array;
  readonly conditioning: TextConditioning;
  /** The sampler's draws, after those the starting latents took. */
  readonly noise: NoiseSource;
  /** What is likely at fault when the latents turn non-finite (ends the error message). */
  readonly cause: () => string;
  /** Called after each step; `latents` only when they are on the host. */
  readonly onStep: (index: number, latents: Float32Array | undefined) => void;
  /** Throws to stop the loop (cancellation). */
  readonly checkAbort: () => void;
}

export interface Denoised {
  readonly latents: Float32Array;
  /** UNet time; on the device, the whole loop's (its runs are not awaited one by one). */
  readonly unetMs: number;
  readonly unetCalls: number;
  readonly on: "host" | "device";
}

/** Runs the plan's schedule from `start` to the final latents. */
export async function denoise(inputs: DenoiseInputs): Promise<Denoised> {
  const trace = traceForDevice(inputs.plan, inputs.unet);
  return trace ? denoiseOnDevice(inputs, trace) : denoiseOnHost(inputs);
}

/**
 * The traced schedule for a loop on the device, or undefined to step on the host (see
 * `GenerateOptions.latentsOnDevice`). Traced on a fresh sampler set up like the loop's.
 */
function traceForDevice(
  plan: GenerationPlan,
  unet: UnetComponent,
): (LinearTrace & { readonly device: DeviceUnet }) | undefined {
  const mode = plan.latentsOnDevice;
  if (mode === "off") return undefined;
  if (!unet.device) {
    if (mode === "auto") return undefined;
    throw new Error(
      'latentsOnDevice "on": this runtime cannot keep tensors on its device (WebGPU can, on either engine); use "auto" or "off"',
    );
  }
  const outcome = traceLinearSampler(plan.newScheduler(), plan.timesteps);
  if (outcome.ok) return { ...outcome.trace, device: unet.device };
  if (mode === "auto") return undefined;
  throw new Error(`latentsOnDevice "on": ${outcome.reason}; use "auto" or "off"`);
}

async function denoiseOnDevice(
  inputs: DenoiseInputs,
  trace: LinearTrace & { readonly device: DeviceUnet },
): Promise<Denoised> {
  const { plan, cause } = inputs;
  let unetCalls = 0;
  const loopStart = performance.now();
  const latents = await runDeviceLoop({
    trace,
    start: inputs.start,
    latentDims: plan.latentDims,
    guidanceScale: plan.guided ? plan.guidanceScale : undefined,
    noise: inputs.noise,
    unet: trace.device,
    conditioning: inputs.conditioning,
    checkAbort: inputs.checkAbort,
    nonFiniteCause: cause,
    onStep: (index) => {
      unetCalls++;
      inputs.onStep(index, undefined);
    },
  });
  const unetMs = performance.now() - loopStart;
  if (firstNonFinite(latents) >= 0)
    throw new NonFiniteError(
      `the latents became NaN or infinite during the denoising loop on the device (${plan.timesteps.length} steps; --latents-on-device off finds the step); ${cause()}`,
    );
  return { latents, unetMs, unetCalls, on: "device" };
}

async function denoiseOnHost(inputs: DenoiseInputs): Promise<Denoised> {
  const { plan, scheduler, unet, conditioning, noise, cause } = inputs;
  const { guided, guidanceScale, latentDims, timesteps } = plan;
  const rows = guided ? plan.batch * 2 : plan.batch;
  let latents = inputs.start;
  let unetMs = 0;
  let unetCalls = 0;
  for (const [index, t] of timesteps.entries()) {
    inputs.checkAbort();
    const scaled = scheduler.scaleModelInput(latents, t);
    const unetStart = performance.now();
    const prediction = await unet.predict({
      sample: { data: guided ? duplicate(scaled) : scaled, dims: [rows, ...latentDims.slice(1)] },
      timestep: new Float32Array(rows).fill(t),
      ...conditioning,
    });
    unetMs += performance.now() - unetStart;
    unetCalls++;
    const guidedPrediction = guided
      ? applyGuidance(prediction.data, guidanceScale)
      : prediction.data;
    latents = scheduler.step(guidedPrediction, t, latents, noise, latentDims);
    if (firstNonFinite(latents) >= 0)
      throw new NonFiniteError(
        `the latents became NaN or infinite at step ${index + 1} of ${timesteps.length}; ${cause()}`,
      );
    inputs.onStep(index, latents);
  }
  return { latents, unetMs, unetCalls, on: "host" };
}
