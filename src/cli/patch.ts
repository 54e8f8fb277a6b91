import { type Command, Option } from "commander";
import { describeReduction } from "../index.js";
import { patchModel } from "../patch/patch-model.js";
import { addReductionFlags, reductionFromFlags, sizeArg } from "./options.js";
import { checkOutputFile } from "./output-files.js";
import { formatSeconds } from "./progress.js";
import type { ReductionFlags } from "./reduction-flags.js";

interface PatchFlags extends ReductionFlags {
  readonly out: string;
  readonly size?: { width: number; height: number };
  readonly externalData: "auto" | "always" | "never";
}

export function registerPatch(program: Command): void {
  addReductionFlags(
    program
      .command("patch")
      .description("add ToDo/ToMe to a UNet exported to ONNX by another tool")
      .argument("<model>", "the exported UNet (.onnx; external weight files beside it are read)"),
  )
    .requiredOption("-o, --out <path>", "the patched .onnx file to write (a new file)")
    .option(
      "--size <WxH>",
      "the image size --todo auto picks factors for (static-shape exports give their own)",
      sizeArg,
    )
    .addOption(
      new Option("--external-data <mode>", "weights in a separate file beside --out")
        .choices(["auto", "always", "never"])
        .default("auto"),
    )
    .action((model: string, flags: PatchFlags) => {
      patchCommand(model, flags);
    });
}

function patchCommand(model: string, flags: PatchFlags): void {
  checkOutputFile(flags.out, "--out");
  const reduction = reductionFromFlags(flags, true);
  const started = performance.now();
  const result = patchModel(model, flags.out, {
    reduction,
    width: flags.size?.width,
    height: flags.size?.height,
    externalData: flags.externalData,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  for (const file of result.files) process.stdout.write(`${file}\n`);
  process.stderr.write(
    `token reduction: ${describeReduction(result.settings)}; done in ${formatSeconds((performance.now() - started) / 1000)}\n`,
  );
}
