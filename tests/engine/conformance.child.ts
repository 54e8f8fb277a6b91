// Run by conformance.test.ts in a process of its own (Dawn finds its Vulkan driver through the
// environment a process starts with): every UNet case (baseline and ToDo/ToMe variants) and every
// VAE case through the kernels engine on the adapter's f32 path. Prints one JSON line.

import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { parseVaeConfig } from "../../src/configs/vae-config.js";
import type { ExecutionStats } from "../../src/engine/executor.js";
import { createKernelRunner } from "../../src/engine/runner.js";
import { GpuContext } from "../../src/gpu/context.js";
import { buildUnet } from "../../src/models/unet.js";
import { buildVaeDecoder, buildVaeEncoder } from "../../src/models/vae.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import {
  type ReferenceReductionArgs,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import { float32, floatOutput, type RunnerTensor } from "../../src/runtime/types.js";
import { maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { fixtureComponent } from "../models/component-weights.js";

interface UnetCase {
  readonly size: string;
  readonly variant: string;
  readonly args: ReferenceReductionArgs | null;
  readonly output: string;
}

export interface CaseReport {
  readonly name: string;
  readonly maxAbsDiff: number;
  readonly hostFallbacks: Record<string, number>;
  readonly submits: number;
  readonly readbacks: number;
  /** Launches by kernel (ExecutionStats.kernels). */
  readonly kernels: Record<string, number>;
  readonly launches: number;
  readonly bindGroups: number;
  /** The UNet baseline run a second time on the same inputs: its stats and its output's drift. */
  readonly again?: {
    readonly bindGroups: number;
    readonly launches: number;
    readonly diff: number;
  };
}

function statsOf(stats: ExecutionStats): Omit<CaseReport, "name" | "maxAbsDiff" | "again"> {
  const { hostFallbacks, submits, readbacks, kernels, launches, bindGroups } = stats;
  return {
    hostFallbacks: { ...hostFallbacks },
    submits,
    readbacks,
    kernels: { ...kernels },
    launches,
    bindGroups,
  };
}

// Arguments: which model's cases ("sd15-tiny", ..., "vae"; all if absent), then optionally a
// comma-separated list of variants and a comma-separated list of latent sizes to keep.
const only = process.argv[2];
const variants = process.argv[3] ? new Set(process.argv[3].split(",")) : undefined;
const sizes = process.argv[4] ? new Set(process.argv[4].split(",")) : undefined;
const ctx = await GpuContext.create();
// SwiftShader is a fallback adapter, so the engine's tuned GEMM and convolution take the small
// portable tile here by default (enginePortableTiling). tuned.child.ts runs src/gpu's default tile.
const executor = {};
const results: CaseReport[] = [];
const errors: Record<string, string> = {};

async function unetCases(model: string): Promise<void> {
  const name = `unet-${model}`;
  const cases = readCaseJson<{ cases: UnetCase[] }>(name).cases;
  const tensors = openCaseTensors(name);
  const { config, weights } = fixtureComponent(model, "unet");
  for (const variant of [...new Set(cases.map((c) => c.variant))]) {
    if (variants && !variants.has(variant)) continue;
    const ofVariant = cases.filter((c) => c.variant === variant && (!sizes || sizes.has(c.size)));
    if (ofVariant.length === 0) continue;
    try {
      const args = ofVariant[0].args;
      const built = buildUnet(
        parseUnetConfig(config),
        weights,
        args ? { reduction: settingsFromReferenceArgs(args) } : {},
      );
      const runner = await createKernelRunner(buildModelBytes(built.builder), {
        context: ctx,
        executor,
      });
      for (const c of ofVariant) {
        const key = (k: string) => `${c.size}.${k}`;
        const feed = (k: string) =>
          float32(tensors.readFloat32(key(k)), tensors.info(key(k)).shape);
        const sample = feed("sample");
        const feeds: Record<string, RunnerTensor> = {
          sample,
          timestep: float32(
            new Float32Array(sample.dims[0]).fill(tensors.readFloat32(key("timestep"))[0]),
            [sample.dims[0]],
          ),
          encoder_hidden_states: feed("encoder_hidden_states"),
        };
        if (tensors.has(key("text_embeds"))) {
          feeds.text_embeds = feed("text_embeds");
          feeds.time_ids = feed("time_ids");
        }
        const out = floatOutput(await runner.run(feeds), "out_sample");
        const stats = runner.lastStats;
        let again: CaseReport["again"];
        if (variant === "baseline") {
          // A warm call: the bind groups of the first are reused, the result is the same.
          const second = floatOutput(await runner.run(feeds), "out_sample");
          const { bindGroups, launches } = runner.lastStats;
          again = { bindGroups, launches, diff: maxAbsDiff(second.data, out.data) };
        }
        results.push({
          name: `${name} ${c.size} ${variant}`,
          maxAbsDiff: maxAbsDiff(out.data, tensors.readFloat32(c.output)),
          ...statsOf(stats),
          ...(again ? { again } : {}),
        });
      }
      await runner.release();
    } catch (error) {
      errors[`${name} ${variant}`] = (error as Error).message;
    }
  }
  tensors.close();
}

async function vaeCases(): Promise<void> {
  const cases = readCaseJson<{ cases: Array<{ pipeline: string }> }>("vae").cases;
  const tensors = openCaseTensors("vae");
  const feed = (k: string) => float32(tensors.readFloat32(k), tensors.info(k).shape);
  for (const { pipeline } of cases) {
    try {
      const { config, weights } = fixtureComponent(pipeline, "vae");
      const parsed = parseVaeConfig(config);
      const decoder = await createKernelRunner(
        buildModelBytes(buildVaeDecoder(parsed, weights).builder),
        { context: ctx, executor },
      );
      const decoded = await decoder.run({ [decoder.inputNames[0]]: feed(`${pipeline}.latents`) });
      results.push({
        name: `vae ${pipeline} decode`,
        maxAbsDiff: maxAbsDiff(
          floatOutput(decoded, "image").data,
          tensors.readFloat32(`${pipeline}.decoded`),
        ),
        ...statsOf(decoder.lastStats),
      });
      const encoder = await createKernelRunner(
        buildModelBytes(buildVaeEncoder(parsed, weights).builder),
        { context: ctx, executor },
      );
      const encoded = await encoder.run({ [encoder.inputNames[0]]: feed(`${pipeline}.image`) });
      for (const [output, key] of [
        ["latent_mean", "encoded_mean"],
        ["latent_logvar", "encoded_logvar"],
      ])
        results.push({
          name: `vae ${pipeline} ${key}`,
          maxAbsDiff: maxAbsDiff(
            floatOutput(encoded, output).data,
            tensors.readFloat32(`${pipeline}.${key}`),
          ),
          ...statsOf(encoder.lastStats),
        });
    } catch (error) {
      errors[`vae ${pipeline}`] = (error as Error).message;
    }
  }
  tensors.close();
}

for (const model of ["sd15-tiny", "sd21-tiny", "sdxl-tiny"])
  if (!only || only === model) await unetCases(model);
if (!only || only === "vae") await vaeCases();
ctx.destroy();
process.stdout.write(
  `${JSON.stringify({ results, errors, fallbackAdapter: ctx.capabilities.fallbackAdapter })}\n`,
);
