/**
 * What the runners over onnxruntime-node (session.ts) and onnxruntime-web (web.ts) share: feeds
 * turned into the package's tensors, outputs read back or kept on the device, and the runner
 * around a session. Each package's own tensor class comes in through an `OrtBinding`, so this
 * module imports neither package.
 */
import type {
  Float32Feed,
  ModelRunner,
  ResidentTensor,
  RunnerFeed,
  RunnerTensor,
} from "./types.js";

/** The parts of an onnxruntime tensor the runners read. */
type OrtTensorLike = { readonly type: string; readonly location: string };

/** How one onnxruntime package makes, recognises and reads back its tensors. */
export interface OrtBinding<T extends OrtTensorLike> {
  /** The package's tensor class. */
  readonly Tensor: new (
    type: RunnerTensor["type"],
    data: RunnerTensor["data"],
    dims: readonly number[],
  ) => T;
  /** An output on the host; one left on the GPU is read back and its buffer freed. */
  toHost(name: string, tensor: T): Promise<RunnerTensor>;
  /** A float32 output left in a GPU buffer, kept there. */
  resident(tensor: T): ResidentTensor;
}

/** A resident tensor whose `dispose` frees it once, however often it is called. */
export function residentTensor(
  dims: readonly number[],
  handle: unknown,
  read: () => Promise<Float32Array>,
  free: () => void,
): ResidentTensor {
  let disposed = false;
  return {
    type: "resident",
    dims,
    handle,
    read,
    dispose() {
      if (disposed) return;
      disposed = true;
      free();
    },
  };
}

/**
 * A runner over a session. With `device` it can upload tensors that stay the same over many
 * runs, and with `keepOutputs` keep float32 outputs left in GPU buffers there for the next run.
 */
export function ortRunner<T extends OrtTensorLike>(
  session: {
    readonly inputNames: readonly string[];
    readonly outputNames: readonly string[];
    run(feeds: Record<string, T>): Promise<Record<string, T>>;
    release(): Promise<void>;
  },
  binding: OrtBinding<T>,
  device?: {
    readonly upload: (tensor: Float32Feed) => Promise<ResidentTensor>;
    readonly keepOutputs: boolean;
  },
): ModelRunner {
  const { Tensor } = binding;
  // Feeds as the package's tensors: one kept on the device by another engine is read back.
  const run = async (feeds: Readonly<Record<string, RunnerFeed>>) => {
    const ortFeeds: Record<string, T> = {};
    for (const [name, feed] of Object.entries(feeds))
      ortFeeds[name] =
        feed.type !== "resident"
          ? new Tensor(feed.type, feed.data, feed.dims)
          : feed.handle instanceof Tensor
            ? feed.handle
            : new Tensor("float32", await feed.read(), feed.dims);
    return Object.entries(await session.run(ortFeeds));
  };
  const runner: ModelRunner = {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds) {
      const out: Record<string, RunnerTensor> = {};
      for (const [name, tensor] of await run(feeds)) out[name] = await binding.toHost(name, tensor);
      return out;
    },
    release: () => session.release(),
  };
  if (!device) return runner;
  runner.upload = device.upload;
  if (device.keepOutputs) {
    runner.runOnDevice = async (feeds, keep) => {
      const out: Record<string, RunnerFeed> = {};
      for (const [name, tensor] of await run(feeds)) {
        const stays =
          keep.includes(name) && tensor.type === "float32" && tensor.location === "gpu-buffer";
        out[name] = stays ? binding.resident(tensor) : await binding.toHost(name, tensor);
      }
      return out;
    };
  }
  return runner;
}
