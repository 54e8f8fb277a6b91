import type { Command } from "commander";
import { registerGenerate } from "./generate.js";

/** Adds every subcommand to the program. */
export function registerCommands(program: Command): void {
  registerGenerate(program);
}
