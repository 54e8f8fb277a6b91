/**
 * The `todo-sd` command line. Every command turns its flags into a call of the library's public
 * API; errors come out as one line on stderr with a non-zero exit code.
 */
import { Command, CommanderError } from "commander";
import { registerBench } from "./bench.js";
import { registerBenchKernels } from "./bench-kernels.js";
import { registerCache } from "./cache.js";
import { registerCompare } from "./compare.js";
import { registerConvert } from "./convert.js";
import { registerGenerate } from "./generate.js";
import { registerInfo } from "./info.js";
import { flagWordedMessage } from "./option-flags.js";
import { registerPatch } from "./patch.js";
import { registerServe } from "./serve.js";

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command("todo-sd");
  program
    .description(
      "Fast, high-resolution Stable Diffusion on onnxruntime, with ToDo token downsampling",
    )
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      writeOut: (text) => process.stdout.write(text),
      writeErr: (text) => process.stderr.write(text),
      outputError: () => {
        // errors are printed once, below, in the toolkit's one-line format
      },
    });
  registerCommands(program);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === "commander.helpDisplayed" ||
        error.code === "commander.version" ||
        error.exitCode === 0
      ) {
        return 0;
      }
      process.stderr.write(`todo-sd: ${oneLine(error).replace(/^error: /, "")}\n`);
      return error.exitCode || 2;
    }
    process.stderr.write(`todo-sd: ${oneLine(error)}\n`);
    return 1;
  }
}

/** Adds every subcommand to the program. */
function registerCommands(program: Command): void {
  registerGenerate(program);
  registerCompare(program);
  registerInfo(program);
  registerConvert(program);
  registerPatch(program);
  registerBench(program);
  registerBenchKernels(program);
  registerServe(program);
  registerCache(program);
}

/** The message on one line: commander puts its "(Did you mean ...?)" hints on a second one. */
function oneLine(error: unknown): string {
  const message = flagWordedMessage(error);
  if (error instanceof CommanderError) return message.replace(/\s*\n\s*/g, " ").trim();
  return message.split("\n")[0].trim();
}
