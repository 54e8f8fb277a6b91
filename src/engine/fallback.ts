/**
 * A kernels-engine runner with another engine behind it: the first time the kernels engine meets
 * something it does not run (an operator or a shape, found when a call reaches it), the runner
 * releases it, makes the other engine's runner for the same model, and runs that call and every
 * later one there. Other errors pass through. Used where the engine was chosen automatically
 * (`auto` in Node, the browser engine), never where the kernels engine was asked for by name.
 */
import type { ModelRunner } from "../runtime/types.js";
import { UnsupportedByKernels } from "./unsupported.js";

export function withFallback(
  primary: ModelRunner,
  fallback: () => Promise<ModelRunner>,
  onFallback: (reason: string) => void,
): ModelRunner {
  let replacement: Promise<ModelRunner> | undefined;
  const replace = (error: UnsupportedByKernels): Promise<ModelRunner> => {
    replacement ??= (async () => {
      onFallback(error.message.split("; ")[0]);
      await primary.release();
      return fallback();
    })();
    return replacement;
  };
  return {
    inputNames: primary.inputNames,
    outputNames: primary.outputNames,
    /** The kernels' path until the model moves to the other engine; then none. */
    get kernelPath() {
      return replacement ? undefined : primary.kernelPath;
    },
    async run(feeds) {
      if (replacement) return (await replacement).run(feeds);
      try {
        return await primary.run(feeds);
      } catch (error) {
        if (!(error instanceof UnsupportedByKernels)) throw error;
        return (await replace(error)).run(feeds);
      }
    },
    async release() {
      await (replacement ? (await replacement).release() : primary.release());
    },
  };
}

/**
 * A kernels-engine runner made by `make`, or, where making it fails because the engine does not
 * run the model (an operator it lacks), the other engine's; either way with `withFallback`.
 */
export async function kernelsOrFallback(
  make: () => Promise<ModelRunner>,
  fallback: () => Promise<ModelRunner>,
  onFallback: (reason: string) => void,
): Promise<ModelRunner> {
  let primary: ModelRunner;
  try {
    primary = await make();
  } catch (error) {
    if (!(error instanceof UnsupportedByKernels)) throw error;
    onFallback(error.message.split("; ")[0]);
    return fallback();
  }
  return withFallback(primary, fallback, onFallback);
}
