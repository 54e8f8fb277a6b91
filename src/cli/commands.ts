import type { Command } from "commander";
import { registerBench } from "./bench.js";
import { registerBenchKernels } from "./bench-kernels.js";
import { registerCompare } from "./compare.js";
import { registerConvert } from "./convert.js";
import { registerGenerate } from "./generate.js";
import { registerInfo } from "./info.js";
import { registerPatch } from "./patch.js";
import { registerServe } from "./serve.js";

/** Adds every subcommand to the program. */
export function registerCommands(program: Command): void {
  registerGenerate(program);
  registerCompare(program);
  registerInfo(program);
  registerConvert(program);
  registerPatch(program);
  registerBench(program);
  registerBenchKernels(program);
  registerServe(program);
}
