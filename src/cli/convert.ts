import { basename, dirname, join } from "node:path";
import type { Command } from "commander";
import { CONVERT_COMPONENTS, convertModel } from "../index.js";
import { formatBytes } from "../onnx/model-io.js";
import { parseConvertComponent } from "../pipelines/convert.js";
import { removeStaleTemporaries } from "../util/atomic-write.js";
import type { ModelDtype } from "../util/vocabulary.js";
import { addLoraFlags, type LoraFlagValues, warn } from "./lora-flags.js";
import { addReductionFlags, dtypeArg, reductionFromFlags, sizeArg } from "./options.js";
import { checkOutputFile, checkOutputFolder } from "./output-files.js";
import { formatSeconds } from "./progress.js";
import type { ReductionFlags } from "./reduction-flags.js";

interface ConvertFlags extends ReductionFlags, LoraFlagValues {
  readonly component: string;
  readonly out: string;
  readonly dtype: ModelDtype;
  readonly target: "cpu" | "webgpu" | "cuda";
  readonly size?: { width: number; height: number };
  readonly configFrom?: string;
  readonly variant?: string;
  readonly revision?: string;
  readonly offline?: boolean;
}

export function registerConvert(program: Command): void {
  addLoraFlags(
    addReductionFlags(
      program
        .command("convert")
        .description("build a component from its weights and write it as an ONNX file")
        .argument(
          "<model>",
          "diffusers folder, .safetensors checkpoint, Hub id or builtin:sd15|sd21|sdxl",
        ),
    ),
    { promptTags: false },
  )
    .requiredOption(
      "--component <name>",
      "unet, text_encoder, text_encoder_2, vae_decoder, vae_encoder or all",
    )
    .requiredOption("-o, --out <path>", "the .onnx file (a folder with --component all)")
    .option("--dtype <dtype>", "fp32 or fp16", dtypeArg, "float32" as ModelDtype)
    .option(
      "--target <backend>",
      "use the fused operators of cpu (runs anywhere), webgpu or cuda",
      "cpu",
    )
    .option("--size <WxH>", "the image size --todo auto picks factors for", sizeArg)
    .option(
      "--config-from <folder>",
      "single-file checkpoints: take configs from this diffusers folder",
    )
    .option("--variant <name>", "weight variant, e.g. fp16")
    .option("--revision <rev>", "Hub revision")
    .option("--offline", "never use the network")
    .action(async (model: string, flags: ConvertFlags) => {
      const component = parseConvertComponent(flags.component);
      if (!["cpu", "webgpu", "cuda"].includes(flags.target))
        throw new Error(`--target must be cpu, webgpu or cuda; got "${flags.target}"`);
      if (component === "all") checkOutputFolder(flags.out, "--out");
      else if (/\.onnx$/i.test(flags.out)) checkOutputFile(flags.out, "--out");
      const reduction = reductionFromFlags(flags, false);
      // What a conversion killed mid-write left in the same folder goes first.
      const folders =
        component === "all"
          ? [flags.out, ...CONVERT_COMPONENTS.map((name) => join(flags.out, name))]
          : [dirname(flags.out)];
      const removed = folders.flatMap((folder) => removeStaleTemporaries(folder));
      if (removed.length > 0)
        process.stderr.write(
          `removed ${removed.length} unfinished file${removed.length === 1 ? "" : "s"} of stopped runs: ${removed.map((p) => basename(p)).join(", ")}\n`,
        );
      const started = performance.now();
      await convertModel(model, {
        component,
        out: flags.out,
        dtype: flags.dtype,
        target: flags.target,
        reduction,
        width: flags.size?.width,
        height: flags.size?.height,
        configFrom: flags.configFrom,
        variant: flags.variant,
        revision: flags.revision,
        offline: flags.offline,
        loras: flags.lora,
        onWarning: warn,
        onComponent: (name, files, ms) => {
          for (const file of files) process.stdout.write(`${file}\n`);
          process.stderr.write(`${name}: written in ${formatSeconds(ms / 1000)}\n`);
        },
      });
      const peak = process.resourceUsage().maxRSS * 1024;
      process.stderr.write(
        `done in ${formatSeconds((performance.now() - started) / 1000)}, peak RSS ${formatBytes(peak)}\n`,
      );
    });
}
