/**
 * Node runners over a model plan: each planned component is built (or found in the model
 * cache) and run by onnxruntime-node; the pipeline's parts are these runners.
 */

import type { UnetConfig } from "../configs/unet-config.js";
import type { ExecutorOptions } from "../engine/executor.js";
import { kernelsOrFallback } from "../engine/fallback.js";
import { createKernelRunner } from "../engine/runner.js";
import {
  checkKernelPath,
  type Engine,
  type EngineChoice,
  resolveEngine,
} from "../engine/select.js";
import { SharedGpuContext } from "../engine/shared-context.js";
import type { PathRequest } from "../gpu/types.js";
import type { LoraRequest } from "../lora/apply-loras.js";
import type { SamplerStepOptions } from "../models/sampler-step.js";
import { buildModelBytes, buildModelProto, readModel, saveModel } from "../onnx/model-io.js";
import type { ModelProto } from "../onnx/proto.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { SessionOptions, WebGpuTuning } from "../runtime/session.js";
import { createRunner } from "../runtime/session.js";
import type { ModelRunner } from "../runtime/types.js";
import { loadClipTokenizer } from "../tokenizers/load-folder.js";
import { PromiseMemo } from "../util/promise-memo.js";
import { type Device, type ModelDtype, type ModelFamily, modelDtype } from "../util/vocabulary.js";
import { probeAdapter } from "../util/webgpu-probe.js";
import type { ModelFiles } from "../weights/model-files.js";
import { loraVariants } from "./lora-variants.js";
import { defaultCacheDir, hashKey, ModelCache } from "./model-cache.js";
import {
  type ComponentBuild,
  type ModelPlan,
  planModel,
  textEncoderOutputs,
  WEBGPU_VAE_CHUNKING,
} from "./model-plan.js";
import type { AdaptedModels, PipelineParts } from "./pipeline-parts.js";
import { RunnerTextEncoder, RunnerUnet, RunnerVae } from "./runner-components.js";

/** How built models run in this process. */
export interface RunnerOptions {
  /** Where models run (default cpu). */
  readonly device?: Device;
  /** Weights and activations of the UNet and text encoders (default float32 on cpu, float16 on GPUs). */
  readonly dtype?: ModelDtype;
  /** Folder of built models (default: $TODO_SD_CACHE, else ~/.cache/todo-sd); false builds in memory. */
  readonly cacheDir?: string | false;
  /** A tokenizer folder for sources that have none (single files, builtins). */
  readonly tokenizer?: string;
  /** WebGPU backend settings for every session. */
  readonly webgpu?: WebGpuTuning;
  /**
   * Which engine runs the models (default auto: the kernels for float16 on WebGPU with
   * shader-f16, else onnxruntime; see engine/select.ts).
   */
  readonly engine?: EngineChoice;
  /** The kernels engine's path (default auto; see engine/select.ts). */
  readonly kernelPath?: PathRequest;
  /** Whether the WebGPU adapter has shader-f16, for `auto` (set by `probeEngine`). */
  readonly shaderF16?: boolean;
  /** Called when a model is built rather than found in the cache. */
  readonly onBuild?: (component: string, path: string | undefined) => void;
  /** LoRAs merged into the UNet and text encoders (`generate` may ask for another set). */
  readonly loras?: readonly LoraRequest[];
  /** Told about LoRA keys that land on no weight (default: console.warn). */
  readonly onWarning?: (message: string) => void;
}

/**
 * The kernels engine's options for a component: the VAE's convolutions read their NCHW inputs
 * directly, which on its large maps is faster than the transposing copies the UNet's keep
 * (measured both ways: ExecutorOptions.channelsFirstConv).
 */
export function kernelExecutorOptions(
  component: string,
  kernelPath?: PathRequest,
): ExecutorOptions {
  return { channelsFirstConv: component.startsWith("vae_"), kernelPath };
}

/** Turns planned components into runners, cached on disk when a cache is set. */
class RunnerFactory {
  private readonly cache: ModelCache | undefined;
  readonly engine: Engine;
  /** The kernels engine's one device for all models, so tensors pass between them there. */
  private readonly gpu = new SharedGpuContext();

  constructor(private readonly options: RunnerOptions) {
    const { cacheDir } = options;
    this.cache = cacheDir === false ? undefined : new ModelCache(cacheDir ?? defaultCacheDir());
    const device = options.device ?? "cpu";
    this.engine = resolveEngine(options.engine ?? "auto", {
      device,
      dtype: modelDtype(device, options.dtype),
      shaderF16: options.shaderF16,
    });
    checkKernelPath(this.engine, options.kernelPath);
  }

  /** A runner of a planned component; its description keys the cache. */
  async runner(
    { component, description, build }: ComponentBuild,
    session: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice"> = {},
  ): Promise<ModelRunner> {
    const { device = "cpu", webgpu, onBuild } = this.options;
    const options = { device, webgpu, ...session };
    // The kernels engine reads the model message in memory (no protobuf size limit): built here
    // without a cache, else from the same cached file onnxruntime opens (weights beyond 1.5 GB in
    // its external data file), so a model is built once for both engines.
    const kernels = this.engine === "kernels";
    const profile = session.profilePrefix !== undefined;
    // A profiled runner has a device of its own (made with exact timestamps); the others share one.
    const executor = kernelExecutorOptions(component, this.options.kernelPath);
    const kernelRunner = async (model: () => ModelProto): Promise<ModelRunner> => {
      if (profile) return createKernelRunner(model(), { executor: { ...executor, profile } });
      const lease = await this.gpu.acquire();
      try {
        return await createKernelRunner(model(), {
          context: lease.context,
          onRelease: lease.release,
          executor,
        });
      } catch (error) {
        lease.release();
        throw error;
      }
    };
    if (!this.cache) {
      onBuild?.(component, undefined);
      const { builder, metadata } = build();
      const onOrt = () => createRunner(buildModelBytes(builder, { metadata }), options);
      return kernels
        ? this.onKernels(
            component,
            () => kernelRunner(() => buildModelProto(builder, { metadata })),
            onOrt,
          )
        : onOrt();
    }
    return this.cache.open(
      hashKey(description),
      description,
      (path) => {
        onBuild?.(component, path);
        const { builder, metadata } = build();
        saveModel(builder, path, { metadata });
      },
      (entry) => {
        const onOrt = () => createRunner(entry.modelPath, options);
        return kernels
          ? this.onKernels(component, () => kernelRunner(() => readModel(entry.modelPath)), onOrt)
          : onOrt();
      },
    );
  }

  /**
   * A kernels-engine runner. Where `auto` chose the engine, a model the kernels cannot run (an
   * operator or shape they lack) runs on onnxruntime instead, with a warning; where the kernels
   * were asked for by name, their one-line error stands.
   */
  private onKernels(
    component: string,
    make: () => Promise<ModelRunner>,
    onnxruntime: () => Promise<ModelRunner>,
  ): Promise<ModelRunner> {
    if ((this.options.engine ?? "auto") !== "auto") return make();
    const warn = this.options.onWarning ?? ((message: string) => console.warn(message));
    return kernelsOrFallback(make, onnxruntime, (reason) =>
      warn(`${component}: ${reason}; it runs on onnxruntime instead`),
    );
  }
}

/**
 * The options with what `auto` needs to choose an engine: for float16 models on WebGPU, whether
 * the adapter has shader-f16 (asked once a process, of a child). Other options come back as
 * they are.
 */
export async function probeEngine<T extends RunnerOptions>(options: T): Promise<T> {
  const device = options.device ?? "cpu";
  if (
    (options.engine ?? "auto") !== "auto" ||
    device !== "webgpu" ||
    modelDtype(device, options.dtype) !== "float16" ||
    options.shaderF16 !== undefined
  )
    return options;
  const found = await probeAdapter();
  return found === undefined ? options : { ...options, shaderF16: found === "shader-f16" };
}

/** The UNet of a model plan, built per reduction setting. */
export interface UnetBuilds {
  readonly config: UnetConfig;
  /** The engine its runners run on. */
  readonly engine: Engine;
  readonly family: ModelFamily;
  /** A runner of the UNet built for `reduction` (cached on disk per settings). */
  runner(
    reduction: ReductionSettings | undefined,
    session?: Pick<SessionOptions, "profilePrefix" | "keepOutputsOnDevice">,
  ): Promise<ModelRunner>;
}

/** The model plan of opened files for Node runners on `options.device`. */
export function runnerPlan(
  files: ModelFiles,
  folder: string | undefined,
  options: RunnerOptions,
): ModelPlan {
  const device = options.device ?? "cpu";
  return planModel(files, folder, { device, dtype: modelDtype(device, options.dtype) });
}

/** The UNet of opened model files, built per reduction setting. */
export function unetBuilds(files: ModelFiles, options: RunnerOptions = {}): UnetBuilds {
  const plan = runnerPlan(files, undefined, options);
  const factory = new RunnerFactory(options);
  return {
    config: plan.unetConfig,
    engine: factory.engine,
    family: plan.family,
    runner: (reduction, session) => factory.runner(plan.unet(reduction), session),
  };
}

/** A model plan as pipeline parts of Node runners. */
export function runnerParts(plan: ModelPlan, options: RunnerOptions): PipelineParts {
  const { files, family, device } = plan;
  const factory = new RunnerFactory(options);
  // On WebGPU the UNet's output stays on the GPU and the sampler step runs there as a graph, so
  // a denoising loop keeps its latents on the device (GenerateOptions.latentsOnDevice), on
  // either engine (the kernels engine's models share one device for it).
  const onWebGpu = device === "webgpu";
  const ortOnWebGpu = onWebGpu && factory.engine === "onnxruntime";
  const steppers = new PromiseMemo<string, ModelRunner>();
  const samplerStep = (step: SamplerStepOptions) =>
    steppers.get(JSON.stringify(step), () =>
      factory.runner(plan.samplerStep(step), { keepOutputsOnDevice: true }),
    );
  // The text encoders and UNet of model files with (or without) a set of LoRAs merged in.
  const adaptedModels = (view: ModelFiles) => {
    const textEncoders = plan.textEncoders.map(
      ({ name, config }) =>
        new RunnerTextEncoder(config.hiddenSize, config.numHiddenLayers, (request) =>
          factory.runner(plan.textEncoder(name, textEncoderOutputs(request), view)),
        ),
    );
    const unets = new PromiseMemo<string, RunnerUnet>();
    return {
      textEncoders,
      unet: (reduction: ReductionSettings | undefined) =>
        unets.get(JSON.stringify(reduction ?? null), () =>
          factory
            .runner(plan.unet(reduction, { view }), { keepOutputsOnDevice: onWebGpu })
            .then((runner) => new RunnerUnet(runner, onWebGpu ? samplerStep : undefined)),
        ),
      async release() {
        for (const encoder of textEncoders) await encoder.release();
        await unets.releaseAll((unet) => unet.release());
      },
    } satisfies Omit<AdaptedModels, "loras"> & { release(): Promise<void> };
  };
  const loras = loraVariants(files, family, options, adaptedModels);
  const own = loras.own;
  const chunking = ortOnWebGpu ? WEBGPU_VAE_CHUNKING : undefined;
  const vae = new RunnerVae(
    plan.vaeConfig.scalingFactor,
    plan.vaeConfig.shiftFactor ?? 0,
    () => factory.runner(plan.vae("decoder", chunking)),
    () => factory.runner(plan.vae("encoder", chunking)),
  );
  return {
    family,
    label: files.label,
    engine: factory.engine,
    tokenizers: plan
      .tokenizers(options)
      .map(({ dir, padToken }) => loadClipTokenizer(dir, { padToken })),
    textEncoders: own.textEncoders,
    unet: (reduction) => own.unet(reduction),
    loras: own.loras,
    withLoras: (requests) => loras.withLoras(requests),
    vae,
    schedulerConfig: plan.schedulerConfig(),
    forceZerosForEmptyPrompt: plan.forceZerosForEmptyPrompt,
    latentChannels: plan.latentChannels,
    vaeScale: plan.vaeScale,
    defaultSize: plan.defaultSize,
    memoryShape: plan.memoryShape(),
    async release() {
      await loras.release();
      await steppers.releaseAll((stepper) => stepper.release());
      await vae.release();
      files.close();
    },
  };
}
