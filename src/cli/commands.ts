import type { Command } from "commander";
import { registerBench } from "./bench.js";
import { registerConvert } from "./convert.js";
import { registerGenerate } from "./generate.js";

/** Adds every subcommand to the program. */
export function registerCommands(program: Command): void {
  registerGenerate(program);
  registerBench(program);
  registerConvert(program);
}
