import type { Command } from "commander";
import { startServer } from "../index.js";
import { addModelFlags, intArg, type ModelFlagValues } from "./options.js";

interface ServeFlags extends ModelFlagValues {
  readonly port: number;
  readonly host: string;
  readonly browserEngine: boolean;
}

export function registerServe(program: Command): void {
  addModelFlags(
    program
      .command("serve")
      .description("a local web app: baseline and ToDo/ToMe images side by side, with timings"),
  )
    .option("--port <n>", "port to listen on (0: any free port)", intArg("--port", 0), 7860)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("--no-browser-engine", "do not serve models to the in-browser engine")
    .action(async (flags: ServeFlags) => {
      if (flags.cache === false) {
        throw new Error(
          "serve keeps built models in the cache (the browser engine downloads them from there); drop --no-cache",
        );
      }
      const server = await startServer({
        model: flags.model,
        port: flags.port,
        host: flags.host,
        device: flags.device,
        dtype: flags.dtype,
        cacheDir: flags.cacheDir,
        browserEngine: flags.browserEngine,
        load: {
          configFrom: flags.configFrom,
          tokenizer: flags.tokenizer,
          variant: flags.variant,
          revision: flags.revision,
          offline: flags.offline,
        },
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${server.url}\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
      await server.close();
    });
}
