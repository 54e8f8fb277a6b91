import { existsSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { readConfigFile } from "../configs/config-json.js";
import {
  DEFAULT_VAE_TILING,
  describeReduction,
  encodeResultPng,
  fitImage,
  GENERATION_DEFAULTS,
  type GenerateOptions,
  type GenerateResult,
  type GenerationPlan,
  type LoraRequest,
  loadPipeline,
  randomSeed,
  readPngFile,
  rgb8ToFloat,
  type StableDiffusionPipeline,
  writeResultPngs,
} from "../index.js";
import { deviceUnavailable, deviceUnavailableProbed } from "../runtime/device-check.js";
import {
  removeStaleTemporaries,
  writeBytesAtomically,
  writeBytesExclusively,
} from "../util/atomic-write.js";
import { encodeSafetensors, SafetensorsFile } from "../weights/safetensors.js";
import { checkFiniteTensor, checkGuidanceFlag, warnLongPrompts } from "./input-checks.js";
import { addLoraFlags, type LoraFlagValues, resolveLoraFlags, warn } from "./lora-flags.js";
import { checkJobFits, maxPixelsArg } from "./memory-check.js";
import {
  addModelFlags,
  addReductionFlags,
  floatArg,
  intArg,
  loadOptionsFromFlags,
  type ModelFlagValues,
  pixelsArg,
  reductionFromFlags,
  sizeArg,
} from "./options.js";
import { checkOutputFile, checkOutputFolder } from "./output-files.js";
import {
  DEFAULT_NAME_PATTERN,
  fileName,
  isPngFileTarget,
  modelName,
  namePatternArg,
} from "./output-names.js";
import { formatSeconds, ProgressBar } from "./progress.js";
import type { ReductionFlags } from "./reduction-flags.js";

/** The released models are trained on 1000 timesteps: a schedule cannot have more steps. */
function stepsArg(value: string): number {
  const steps = intArg("--steps")(value);
  if (steps > 1000)
    throw new InvalidArgumentError("--steps must be at most 1000 (the models' training timesteps)");
  return steps;
}

/** The flags addGenerationFlags defines. */
export interface GenerationFlags extends ModelFlagValues, ReductionFlags, LoraFlagValues {
  readonly negative?: string;
  readonly width?: number;
  readonly height?: number;
  readonly size?: { width: number; height: number };
  readonly steps: number;
  readonly cfg: number;
  readonly scheduler?: string;
  readonly schedulerConfig?: string;
  readonly seed?: number;
  readonly clipSkip?: number;
  readonly longPrompts?: boolean;
  readonly vaeTiling: "auto" | "on" | "off";
  readonly latentsOnDevice: "auto" | "on" | "off";
  readonly maxPixels?: number;
}

interface GenerateFlags extends GenerationFlags {
  readonly batch: number;
  readonly image?: string;
  readonly strength?: number;
  readonly out: string;
  readonly name?: string;
  readonly latents?: string;
  readonly noise?: string;
  readonly raw?: string;
}

/** Flags of one image generation, shared by generate and compare. */
export function addGenerationFlags(command: Command): Command {
  return addLoraFlags(addReductionFlags(addModelFlags(command)), { promptTags: true })
    .option("-n, --negative <prompt>", "negative prompt")
    .option("--width <px>", "image width (multiple of 8)", pixelsArg("--width"))
    .option("--height <px>", "image height (multiple of 8)", pixelsArg("--height"))
    .option("--size <WxH>", "image size, e.g. 1024 or 1024x768", sizeArg)
    .option("--steps <n>", "denoising steps (1 to 1000)", stepsArg, GENERATION_DEFAULTS.steps)
    .option(
      "--cfg <scale>",
      "classifier-free guidance scale (<= 1 turns guidance off)",
      floatArg("--cfg"),
      GENERATION_DEFAULTS.guidanceScale,
    )
    .option(
      "--scheduler <name>",
      'sampler, e.g. "Euler a", "DPM++ 2M Karras", DDIM (default: the model\'s)',
    )
    .option(
      "--scheduler-config <json>",
      "a scheduler_config.json to use instead of the model's (--scheduler still picks the sampler)",
    )
    .option("--seed <n>", "random seed", intArg("--seed", 0))
    .option(
      "--max-pixels <n>",
      "refuse images over this many pixels (default 4096 x 4096)",
      maxPixelsArg,
    )
    .option("--clip-skip <n>", "skip the last n text-encoder layers", intArg("--clip-skip", 0))
    .option(
      "--long-prompts",
      "encode prompts over 77 tokens in 75-token chunks instead of truncating",
    )
    .addOption(
      new Option(
        "--vae-tiling <mode>",
        "decode in overlapping 768 px tiles: auto (images over 1024 px), on or off",
      )
        .choices(["auto", "on", "off"])
        .default("auto"),
    )
    .addOption(
      new Option(
        "--latents-on-device <mode>",
        "keep the latents on the GPU for the whole denoising loop: auto (where the device and sampler allow), on or off",
      )
        .choices(["auto", "on", "off"])
        .default("auto"),
    );
}

export function registerGenerate(program: Command): void {
  addGenerationFlags(
    program
      .command("generate")
      .description("generate images from a prompt")
      .argument("<prompt>", "the prompt"),
  )
    .option("--batch <n>", "images per prompt", intArg("--batch"), 1)
    .option("--image <png>", "init image for img2img")
    .option(
      "--strength <s>",
      "img2img: how much of the schedule to run, in (0, 1]",
      floatArg("--strength"),
    )
    .option(
      "-o, --out <dir|file.png>",
      "output folder, or a .png file for a single image (never overwritten)",
      ".",
    )
    .option(
      "--name <pattern>",
      "file names in the output folder: {seed} {index} {prompt} {model} {width} {height} {steps} {date} {time}",
      namePatternArg,
    )
    .option("--latents <file>", "initial latents from a .safetensors file (key latents)")
    .option(
      "--noise <file>",
      "every other random draw from a .safetensors file (keys noise.0, noise.1, ...)",
    )
    .option("--raw <file>", "also write the float images to a .safetensors file (key image)")
    .action(async (prompt: string, flags: GenerateFlags) => {
      await generateCommand(prompt, flags);
    });
}

function readTensorFile(path: string, keys: (file: SafetensorsFile) => string[]): Float32Array[] {
  const file = SafetensorsFile.open(path);
  try {
    return keys(file).map((key) => {
      if (!file.has(key)) throw new Error(`${path}: no tensor named ${key}`);
      return file.readFloat32(key).slice();
    });
  } finally {
    file.close();
  }
}

function noiseKeys(file: SafetensorsFile): string[] {
  const keys: string[] = [];
  while (file.has(`noise.${keys.length}`)) keys.push(`noise.${keys.length}`);
  if (keys.length === 0) throw new Error(`${file.label}: no tensor named noise.0`);
  return keys;
}

/** The --scheduler-config file, if given (bare Infinity/NaN tokens accepted). */
export function readSchedulerConfig(flags: GenerationFlags) {
  const path = flags.schedulerConfig;
  if (!path) return undefined;
  const config = readConfigFile(path);
  if (flags.scheduler === undefined && typeof config._class_name !== "string")
    throw new Error(
      `--scheduler-config: ${path} has no _class_name; add one or name the sampler with --scheduler`,
    );
  return config;
}

/** Init images up to 4096 x 4096: larger ones would cost gigabytes to decode and resize. */
const MAX_INIT_PIXELS = 4096 * 4096;

/** The init image of img2img as a batch of one, fitted to the asked size (else its own, floored to 8). */
function readInitImage(
  path: string,
  width: number | undefined,
  height: number | undefined,
): NonNullable<GenerateOptions["image"]> {
  const decoded = rgb8ToFloat(readPngFile(path, { maxPixels: MAX_INIT_PIXELS }));
  const target = {
    width: width ?? decoded.width - (decoded.width % 8),
    height: height ?? decoded.height - (decoded.height % 8),
  };
  if (target.width === 0 || target.height === 0)
    throw new Error(`${path}: ${decoded.width}x${decoded.height} is too small; give 8x8 or more`);
  const fitted =
    decoded.width === target.width && decoded.height === target.height
      ? decoded
      : fitImage(decoded, target.width, target.height);
  return { data: fitted.data, count: 1, width: fitted.width, height: fitted.height };
}

/** Loads the model of the flags; building happens later, when a component is first used. */
export function loadModel(
  flags: ModelFlagValues,
  loras: readonly LoraRequest[] = [],
): Promise<StableDiffusionPipeline> {
  return loadPipeline(flags.model, {
    ...loadOptionsFromFlags(flags),
    loras,
    onWarning: warn,
    onBuild: (component) => process.stderr.write(`building ${component}...\n`),
  });
}

/** The generation settings shared by generate and compare, as library options. */
export function generationOptions(
  prompt: string,
  flags: GenerationFlags,
  seed: number,
  schedulerConfig: Record<string, unknown> | undefined,
): GenerateOptions {
  return {
    prompt,
    negativePrompt: flags.negative,
    steps: flags.steps,
    guidanceScale: flags.cfg,
    clipSkip: flags.clipSkip,
    scheduler: flags.scheduler,
    schedulerConfig,
    seed,
    longPrompts: flags.longPrompts ? "chunk" : "truncate",
    vaeTiling: flags.vaeTiling === "on" ? DEFAULT_VAE_TILING : flags.vaeTiling,
    latentsOnDevice: flags.latentsOnDevice,
  };
}

/**
 * What generate and compare check before any work: --cfg, --device (with its adapter probed
 * without letting Dawn print its native dump), and --latents-on-device on where no run can leave
 * tensors on the device. Returns the prompt without its LoRA tags, the LoRAs and the asked size.
 */
export async function checkGenerationFlags(promptWithTags: string, flags: GenerationFlags) {
  checkGuidanceFlag(flags.cfg);
  const unavailable = deviceUnavailable(flags.device);
  if (unavailable) throw new Error(unavailable);
  // Only onnxruntime's WebGPU backend hands GPU buffers from one run to the next.
  if (flags.latentsOnDevice === "on" && flags.device !== "webgpu")
    throw new Error(
      `--latents-on-device on: the ${flags.device} device cannot keep tensors between runs; use --device webgpu, or auto`,
    );
  const noAdapter = await deviceUnavailableProbed(flags.device);
  if (noAdapter) throw new Error(noAdapter);
  return {
    ...resolveLoraFlags(promptWithTags, flags),
    width: flags.width ?? flags.size?.width,
    height: flags.height ?? flags.size?.height,
  };
}

async function generateCommand(promptWithTags: string, flags: GenerateFlags): Promise<void> {
  const { prompt, loras, width, height } = await checkGenerationFlags(promptWithTags, flags);
  if (flags.strength !== undefined && !flags.image)
    throw new Error("--strength needs --image (img2img)");
  if (flags.image && flags.latents)
    throw new Error("--latents is for txt2img; img2img starts from --image");
  const outFile = checkImageOutput(flags);
  if (flags.raw) checkOutputFile(flags.raw, "--raw");
  const latents = flags.latents
    ? checkFiniteTensor(
        readTensorFile(flags.latents, () => ["latents"])[0],
        "--latents",
        flags.latents,
      )
    : undefined;
  const noise = flags.noise
    ? readTensorFile(flags.noise, noiseKeys).map((n) =>
        checkFiniteTensor(n, "--noise", flags.noise!),
      )
    : undefined;
  const schedulerConfig = readSchedulerConfig(flags);
  const initImage = flags.image ? readInitImage(flags.image, width, height) : undefined;
  const reduction = reductionFromFlags(flags, true);
  const seed = flags.seed ?? randomSeed();
  const started = new Date();
  const loadStart = performance.now();
  const pipeline = await loadModel(flags, loras);
  try {
    const bar = new ProgressBar("denoising");
    const plan = pipeline.plan({
      ...generationOptions(prompt, flags, seed, schedulerConfig),
      width,
      height,
      imagesPerPrompt: flags.batch,
      latents,
      noise,
      image: initImage,
      strength: flags.strength,
      reduction,
      onProgress: (info) => bar.update(info.step, info.totalSteps),
    });
    const size = { width: plan.width, height: plan.height };
    if (latents) checkLatents(latents, flags.latents!, plan);
    warnLongPrompts(pipeline.parts.tokenizers[0], prompt, flags);
    checkJobFits(pipeline, { ...flags, ...size, guided: plan.guided }, plan.reduction);
    process.stderr.write(
      `model ${pipeline.parts.label} (${pipeline.family}) ready in ${formatSeconds((performance.now() - loadStart) / 1000)}; ${size.width}x${size.height}, ${plan.scheduler}; token reduction: ${describeReduction(plan.reduction)}; engine ${pipeline.parts.engine ?? "onnxruntime"}\n`,
    );
    const result: GenerateResult = await pipeline.generate(plan);
    // The raw floats first: a failure there leaves no PNG without its companion file.
    if (flags.raw) {
      const { images } = result;
      const bytes = encodeSafetensors({
        image: {
          dtype: "F32",
          shape: [images.count, images.height, images.width, 3],
          data: images.data,
        },
      });
      writeBytesAtomically(flags.raw, bytes);
    }
    const model = modelName(flags.model);
    const paths = outFile
      ? [writeBytesExclusively(outFile, encodeResultPng(result, 0, model))]
      : writeResultPngs(
          result,
          flags.out,
          (index) =>
            fileName(flags.name ?? DEFAULT_NAME_PATTERN, {
              seed,
              index,
              prompt,
              model,
              width: size.width,
              height: size.height,
              steps: flags.steps,
              date: started,
            }),
          model,
        );
    const t = result.timings;
    for (const path of paths) process.stdout.write(`${path}\n`);
    process.stderr.write(
      `done in ${formatSeconds(t.totalMs / 1000)}: ${t.denoisedOn === "device" ? "denoising loop on the device" : "UNet"} ${formatSeconds(t.unetMs / 1000)} (${((100 * t.unetMs) / t.totalMs).toFixed(0)}%, ${t.unetCalls} calls), text ${formatSeconds(t.textEncoderMs / 1000)}, VAE ${formatSeconds(t.vaeMs / 1000)}\n`,
    );
  } finally {
    await pipeline.release();
  }
}

/** The `-o` file of a single image, or undefined for a folder (checked before any work). */
function checkImageOutput(flags: GenerateFlags): string | undefined {
  if (!isPngFileTarget(flags.out)) {
    checkOutputFolder(flags.out, "--out");
    // Images a killed run was writing (their temporaries carry its pid) go first.
    removeStaleTemporaries(flags.out);
    return undefined;
  }
  if (flags.batch > 1)
    throw new Error(
      `-o ${flags.out} names one file, but --batch ${flags.batch} makes ${flags.batch} images; give a folder (and --name for the file names)`,
    );
  if (flags.name !== undefined)
    throw new Error(`--name names files in an output folder; -o ${flags.out} is a file`);
  if (existsSync(flags.out))
    throw new Error(`-o ${flags.out} exists; todo-sd never overwrites an image`);
  checkOutputFile(flags.out, "--out");
  return flags.out;
}

function checkLatents(latents: Float32Array, path: string, plan: GenerationPlan): void {
  const dims = plan.latentDims;
  const expected = dims.reduce((product, d) => product * d, 1);
  if (latents.length !== expected)
    throw new Error(
      `--latents: ${path} holds ${latents.length} values; ${plan.width}x${plan.height} with --batch ${plan.imagesPerPrompt} needs [${dims.join(", ")}] = ${expected}`,
    );
}
