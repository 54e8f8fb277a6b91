/** `todo-sd cache list|clean|verify`: what the model cache holds, and its repair. */
import type { Command } from "commander";
import { defaultCacheDir, ModelCache } from "../index.js";
import { formatBytes } from "../onnx/model-io.js";
import { staleTemporaries } from "../util/atomic-write.js";

interface CacheFlags {
  readonly cacheDir?: string;
  readonly all?: boolean;
}

export function registerCache(program: Command): void {
  const cache = program
    .command("cache")
    .description("list, clean or verify the cache of built models");
  const dirOption = "where built models are cached (default: $TODO_SD_CACHE or ~/.cache/todo-sd)";
  cache
    .command("list")
    .description("every entry with its component, size and a quick (size) check")
    .option("--cache-dir <dir>", dirOption)
    .action((flags: CacheFlags) => {
      const models = new ModelCache(flags.cacheDir ?? defaultCacheDir());
      const entries = models.list();
      let total = 0;
      for (const entry of entries) {
        total += entry.bytes;
        process.stdout.write(
          `${entry.key}  ${(entry.component ?? "?").padEnd(14)} ${formatBytes(entry.bytes).padStart(10)}  ${entry.created ?? "-"}${entry.problem ? `  DAMAGED: ${entry.problem}` : ""}\n`,
        );
      }
      const stale = staleTemporaries(models.root);
      process.stdout.write(
        `${entries.length} entries, ${formatBytes(total)} in ${models.root}${stale.length > 0 ? `; ${stale.length} unfinished builds of stopped runs (todo-sd cache clean removes them)` : ""}\n`,
      );
    });
  cache
    .command("clean")
    .description("remove unfinished builds of stopped runs and damaged entries (--all: everything)")
    .option("--cache-dir <dir>", dirOption)
    .option("--all", "remove every entry")
    .action((flags: CacheFlags) => {
      const models = new ModelCache(flags.cacheDir ?? defaultCacheDir(), { notice: () => {} });
      const stale = models.removeStale();
      let removed = 0;
      let freed = 0;
      for (const entry of models.list()) {
        if (!flags.all && !entry.problem) continue;
        models.remove(entry.key);
        removed++;
        freed += entry.bytes;
      }
      process.stdout.write(
        `removed ${stale.length} unfinished builds and ${removed} ${flags.all ? "" : "damaged "}entries (${formatBytes(freed)})\n`,
      );
    });
  cache
    .command("verify")
    .description("check every entry's files against the sizes and hashes written with them")
    .option("--cache-dir <dir>", dirOption)
    .action((flags: CacheFlags) => {
      const models = new ModelCache(flags.cacheDir ?? defaultCacheDir());
      const entries = models.list(true);
      const damaged = entries.filter((entry) => entry.problem);
      for (const entry of damaged)
        process.stdout.write(
          `${entry.key}  ${entry.component ?? "?"}  DAMAGED: ${entry.problem}\n`,
        );
      process.stdout.write(
        `${entries.length - damaged.length} of ${entries.length} entries sound\n`,
      );
      if (damaged.length > 0)
        throw new Error(
          `${damaged.length} damaged cache entr${damaged.length === 1 ? "y" : "ies"}; todo-sd cache clean removes them (they are rebuilt when next needed)`,
        );
    });
}
