import type { Command } from "commander";
import {
  describeReduction,
  encodeSafetensors,
  ensureWritableFolder,
  fitImage,
  type GenerateOptions,
  type GenerateResult,
  loadPipeline,
  readPngFile,
  rgb8ToFloat,
  SafetensorsFile,
  writeBytesAtomically,
  writeResultPngs,
} from "../index.js";
import {
  addModelFlags,
  addReductionFlags,
  floatArg,
  intArg,
  loadOptionsFromFlags,
  type ModelFlagValues,
  type ReductionFlagValues,
  reductionFromFlags,
  sizeArg,
} from "./options.js";
import { formatSeconds, ProgressBar } from "./progress.js";

interface GenerateFlags extends ModelFlagValues, ReductionFlagValues {
  readonly negative?: string;
  readonly width?: number;
  readonly height?: number;
  readonly size?: { width: number; height: number };
  readonly steps: number;
  readonly cfg: number;
  readonly scheduler?: string;
  readonly seed?: number;
  readonly batch: number;
  readonly clipSkip?: number;
  readonly image?: string;
  readonly strength?: number;
  readonly out: string;
  readonly latents?: string;
  readonly noise?: string;
  readonly raw?: string;
  readonly longPrompts?: boolean;
}

/** Flags of one image generation, shared by generate and compare. */
export function addGenerationFlags(command: Command): Command {
  return addReductionFlags(addModelFlags(command))
    .option("-n, --negative <prompt>", "negative prompt")
    .option("--width <px>", "image width (multiple of 8)", intArg("--width"))
    .option("--height <px>", "image height (multiple of 8)", intArg("--height"))
    .option("--size <WxH>", "image size, e.g. 1024 or 1024x768", sizeArg)
    .option("--steps <n>", "denoising steps", intArg("--steps"), 30)
    .option(
      "--cfg <scale>",
      "classifier-free guidance scale (<= 1 turns guidance off)",
      floatArg("--cfg"),
      7.5,
    )
    .option(
      "--scheduler <name>",
      'sampler, e.g. "Euler a", "DPM++ 2M Karras", DDIM (default: the model\'s)',
    )
    .option("--seed <n>", "random seed", intArg("--seed", 0))
    .option("--clip-skip <n>", "skip the last n text-encoder layers", intArg("--clip-skip", 0))
    .option(
      "--long-prompts",
      "encode prompts over 77 tokens in 75-token chunks instead of truncating",
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
    .option("-o, --out <dir>", "output folder", ".")
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

export function imageSize(flags: {
  width?: number;
  height?: number;
  size?: { width: number; height: number };
}) {
  return { width: flags.width ?? flags.size?.width, height: flags.height ?? flags.size?.height };
}

function readTensorFile(path: string, keys: (file: SafetensorsFile) => string[]): Float32Array[] {
  const file = SafetensorsFile.open(path);
  try {
    return keys(file).map((key) => file.readFloat32(key).slice());
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

async function generateCommand(prompt: string, flags: GenerateFlags): Promise<void> {
  const { width, height } = imageSize(flags);
  for (const [name, value] of [
    ["--width", width],
    ["--height", height],
  ] as const) {
    if (value !== undefined && value % 8 !== 0)
      throw new Error(`${name} must be a multiple of 8; got ${value}`);
  }
  if (flags.strength !== undefined && !flags.image)
    throw new Error("--strength needs --image (img2img)");
  if (flags.image && flags.latents)
    throw new Error("--latents is for txt2img; img2img starts from --image");
  ensureWritableFolder(flags.out);
  const latents = flags.latents ? readTensorFile(flags.latents, () => ["latents"])[0] : undefined;
  const noise = flags.noise ? readTensorFile(flags.noise, noiseKeys) : undefined;
  let initImage: GenerateOptions["image"];
  if (flags.image) {
    const decoded = rgb8ToFloat(readPngFile(flags.image));
    const target = {
      width: width ?? decoded.width - (decoded.width % 8),
      height: height ?? decoded.height - (decoded.height % 8),
    };
    const fitted =
      decoded.width === target.width && decoded.height === target.height
        ? decoded
        : fitImage(decoded, target.width, target.height);
    initImage = { data: fitted.data, count: 1, width: fitted.width, height: fitted.height };
  }
  const reduction = reductionFromFlags(flags, true);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 31);
  const loadStart = performance.now();
  const pipeline = await loadPipeline(flags.model, {
    ...loadOptionsFromFlags(flags),
    onBuild: (component) => process.stderr.write(`building ${component}...\n`),
  });
  const size = { width: width ?? initImage?.width, height: height ?? initImage?.height };
  const resolved = pipeline.resolveReductionFor(
    reduction,
    size.width ?? pipeline.parts.defaultSize,
    size.height ?? pipeline.parts.defaultSize,
  );
  process.stderr.write(
    `model ${pipeline.parts.label} (${pipeline.family}) ready in ${formatSeconds((performance.now() - loadStart) / 1000)}; token reduction: ${describeReduction(resolved)}\n`,
  );
  const bar = new ProgressBar("denoising");
  const result: GenerateResult = await pipeline.generate({
    prompt,
    negativePrompt: flags.negative,
    width: size.width,
    height: size.height,
    steps: flags.steps,
    guidanceScale: flags.cfg,
    imagesPerPrompt: flags.batch,
    clipSkip: flags.clipSkip,
    scheduler: flags.scheduler,
    seed,
    latents,
    noise,
    image: initImage,
    strength: initImage ? (flags.strength ?? 0.8) : undefined,
    reduction,
    longPrompts: flags.longPrompts ? "chunk" : "truncate",
    onProgress: (info) => bar.update(info.step, info.totalSteps),
  });
  const prefix = `todo-sd-${timestamp()}-${seed}`;
  const paths = writeResultPngs(result, flags.out, prefix, flags.model);
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
  await pipeline.release();
  const t = result.timings;
  for (const path of paths) process.stdout.write(`${path}\n`);
  process.stderr.write(
    `done in ${formatSeconds(t.totalMs / 1000)}: UNet ${formatSeconds(t.unetMs / 1000)} (${((100 * t.unetMs) / t.totalMs).toFixed(0)}%, ${t.unetCalls} calls), text ${formatSeconds(t.textEncoderMs / 1000)}, VAE ${formatSeconds(t.vaeMs / 1000)}\n`,
  );
}

function timestamp(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}
