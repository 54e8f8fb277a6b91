/**
 * A kernels-engine runner with another engine behind it: the first time the kernels engine meets
 * something it does not run (an operator or a shape, found when a call reaches it), the runner
 * releases it, makes the other engine's runner for the same model, and runs that call and every
 * later one there. Other errors pass through. Used where the engine was chosen automatically
 * (`auto` in Node, the browser engine), never where the kernels engine was asked for by name.
 */
import type { Float32Feed, ModelRunner, RunnerFeed } from "../runtime/types.js";
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
    ...(primary.compileSummary ? { compileSummary: primary.compileSummary } : {}),
    async run(feeds) {
      if (replacement) return (await replacement).run(feeds);
      try {
        return await primary.run(feeds);
      } catch (error) {
        if (!(error instanceof UnsupportedByKernels)) throw error;
        return (await replace(error)).run(feeds);
      }
    },
    // Tensors kept on the device: the kernels' own until the model moves, then the other
    // engine's.
    ...(primary.upload && primary.runOnDevice
      ? {
          async upload(tensor: Float32Feed) {
            const runner = replacement ? await replacement : primary;
            return runner.upload ? runner.upload(tensor) : Promise.reject(noDevice());
          },
          async runOnDevice(feeds: Readonly<Record<string, RunnerFeed>>, keep: readonly string[]) {
            if (!replacement) {
              try {
                return await (primary.runOnDevice as NonNullable<ModelRunner["runOnDevice"]>)(
                  feeds,
                  keep,
                );
              } catch (error) {
                if (!(error instanceof UnsupportedByKernels)) throw error;
                replace(error);
              }
            }
            // onnxruntime reads the kernels' resident feeds back itself.
            const runner = await (replacement as Promise<ModelRunner>);
            return runner.runOnDevice ? runner.runOnDevice(feeds, keep) : runner.run(feeds);
          },
        }
      : {}),
    async release() {
      await (replacement ? (await replacement).release() : primary.release());
    },
  };
}

function noDevice(): Error {
  return new Error("the model moved to onnxruntime, which cannot keep tensors on this device");
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
