/**
 * The denoising loop with the latents kept on the device. The sampler's schedule is traced
 * first (schedulers/linear-trace.ts): every model input and the final latents are weighted sums
 * of the starting sample, the guided model outputs and the noise draws. The device holds those
 * sources in one tensor; per step the UNet's output stays on the device, the sampler-step graph
 * (models/sampler-step.ts) applies guidance, stores it and forms the next model input, and only
 * the weights (a few numbers) and any noise draw cross from the host. The final latents are
 * read back once, for the VAE.
 */
import { SAMPLER_STEP_IO } from "../models/sampler-step.js";
import { float32, int64, type ResidentTensor, type RunnerFeed } from "../runtime/types.js";
import { combineSources, type LinearTrace } from "../schedulers/linear-trace.js";
import type { NoiseSource } from "../util/random.js";
import type { DeviceUnet, DeviceUnetInputs } from "./components.js";
import { NonFiniteError } from "./finite-check.js";

export interface DeviceLoopOptions {
  readonly trace: LinearTrace;
  /** Source 0: the starting sample, (B, C, H, W). */
  readonly start: Float32Array;
  readonly latentDims: readonly number[];
  /** Classifier-free guidance scale, or undefined for none (the UNet sees B rows). */
  readonly guidanceScale: number | undefined;
  /** Draws the trace's noise, in the order the host loop would. */
  readonly noise: NoiseSource;
  readonly unet: DeviceUnet;
  /** The UNet inputs other than the sample and timestep. */
  readonly conditioning: Omit<DeviceUnetInputs, "sample" | "timestep">;
  /** Called before each step; throws to stop the loop (cancellation). */
  readonly checkAbort?: () => void;
  readonly onStep?: (index: number) => void;
  /** What is likely at fault when the latents turn non-finite (ends the error message). */
  readonly nonFiniteCause?: () => string;
}

/** Runs the traced schedule; returns the final latents on the host. */
export async function runDeviceLoop(options: DeviceLoopOptions): Promise<Float32Array> {
  const { trace, start, latentDims, unet } = options;
  const io = SAMPLER_STEP_IO;
  const guided = options.guidanceScale !== undefined;
  const copies = guided ? 2 : 1;
  const sources = trace.sources;
  const elements = start.length;
  const rows = latentDims[0] * copies;
  const inputDims = [rows, ...latentDims.slice(1)];
  if (trace.steps.length === 0) throw new Error("the traced schedule has no steps");

  const oneHots = (slots: readonly number[]) => {
    // (S, D): column d is one at row slots[d].
    const out = new Float32Array(sources * slots.length);
    slots.forEach((slot, d) => {
      out[slot * slots.length + d] = 1;
    });
    return float32(out, [sources, slots.length]);
  };

  const live = new Set<ResidentTensor>();
  const keep = (tensor: RunnerFeed | undefined, what: string): ResidentTensor => {
    if (tensor?.type !== "resident")
      throw new Error(`the sampler step's ${what} did not stay on the device`);
    live.add(tensor);
    return tensor;
  };
  const drop = (tensor: RunnerFeed) => {
    if (tensor.type !== "resident") return;
    tensor.dispose();
    live.delete(tensor);
  };

  try {
    const initial = new Float32Array(sources * elements);
    initial.set(start);
    let bank = await unet.upload({ data: initial, dims: [sources, elements] });
    live.add(bank);
    // The first model input is a multiple of the starting sample: formed on the host.
    const first = combineSources(trace.steps[0].modelInput, [start], elements);
    const firstInput = new Float32Array(copies * elements);
    for (let c = 0; c < copies; c++) firstInput.set(first, c * elements);
    let input: RunnerFeed = float32(firstInput, inputDims);
    const checks: (RunnerFeed | undefined)[] = [];

    for (const [index, step] of trace.steps.entries()) {
      options.checkAbort?.();
      const output = await unet.predict({
        ...options.conditioning,
        sample: input,
        timestep: new Float32Array(rows).fill(step.timestep),
      });
      live.add(output);
      const last = index === trace.steps.length - 1;
      // The next model input (once per guidance copy), or the final latents.
      const weights = last ? [step.sample] : Array(copies).fill(trace.steps[index + 1].modelInput);
      const combineWeights = new Float32Array(weights.length * sources);
      weights.forEach((w: Float64Array, r) => {
        combineWeights.set(w, r * sources);
      });
      const resultRows = last ? latentDims[0] : rows;
      const feeds: Record<string, RunnerFeed> = {
        [io.bank]: bank,
        [io.modelOutput]: output,
        [io.outputWeights]: oneHots([step.outputSource]),
        [io.combineWeights]: float32(combineWeights, [weights.length, sources]),
        [io.combinedShape]: int64(
          BigInt64Array.from([resultRows, ...latentDims.slice(1)], BigInt),
          [4],
        ),
      };
      if (guided) feeds[io.guidanceScale] = float32(Float32Array.of(options.guidanceScale), [1]);
      const draws = step.noiseSources.length;
      if (draws > 0) {
        const noise = new Float32Array(draws * elements);
        for (let d = 0; d < draws; d++) noise.set(options.noise.normal(latentDims), d * elements);
        feeds[io.noise] = float32(noise, [draws, elements]);
        feeds[io.noiseWeights] = oneHots(step.noiseSources);
      }
      const runner = await unet.samplerStep({ guided, noise: draws > 0 });
      if (!runner.runOnDevice)
        throw new Error("the sampler step cannot keep tensors on the device");
      // The final latents come back to the host; everything else stays.
      const out = await runner.runOnDevice(
        feeds,
        last ? [io.bankOut, io.finiteCheck] : [io.bankOut, io.combined, io.finiteCheck],
      );
      drop(bank);
      drop(output);
      drop(input);
      bank = keep(out[io.bankOut], "sources");
      // Each step's check stays on the device (reading it would wait for the GPU every step);
      // they are read once, after the loop.
      const check = out[io.finiteCheck];
      if (check?.type === "resident") live.add(check);
      checks.push(check);
      const combined = out[io.combined];
      options.onStep?.(index);
      if (!last) {
        input = keep(combined, "model input");
        continue;
      }
      if (combined?.type !== "float32") throw new Error("the sampler step gave no final latents");
      await throwOnNonFinite(checks, options.nonFiniteCause);
      return combined.data;
    }
    throw new Error("the loop ended before its last step");
  } finally {
    for (const tensor of live) tensor.dispose();
  }
}

/** Throws, naming the first step whose result held a NaN or infinity. */
async function throwOnNonFinite(
  checks: readonly (RunnerFeed | undefined)[],
  cause: (() => string) | undefined,
): Promise<void> {
  for (const [index, check] of checks.entries()) {
    if (!check) continue;
    const value = check.type === "resident" ? (await check.read())[0] : Number(check.data[0]);
    if (!Number.isFinite(value))
      throw new NonFiniteError(
        `the latents became NaN or infinite at step ${index + 1} of ${checks.length}${cause ? `; ${cause()}` : ""}`,
      );
  }
}
