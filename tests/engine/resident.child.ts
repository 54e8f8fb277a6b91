// Run by resident.test.ts on SwiftShader: tensors kept on the device between kernels-engine
// runners that share one context (a "model" y = 2 x + 1 feeding the sampler-step graph), against
// the same work through host tensors; a feed of another runtime read back; dispose and lease
// bookkeeping. Prints one JSON line.

import { createKernelRunner } from "../../src/engine/runner.js";
import { SharedGpuContext } from "../../src/engine/shared-context.js";
import { buildSamplerStep, SAMPLER_STEP_IO as io } from "../../src/models/sampler-step.js";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelProto } from "../../src/onnx/model-io.js";
import { float32, int64, type ResidentTensor, type RunnerFeed } from "../../src/runtime/types.js";

const shared = new SharedGpuContext();
const open = async (proto: ReturnType<typeof buildModelProto>) => {
  const lease = await shared.acquire();
  return createKernelRunner(proto, { context: lease.context, onRelease: lease.release });
};

// y = 2 x + 1 over (2, 1, 2, 3): the "UNet".
const g = new GraphBuilder("float32");
const x = g.input("x", "float32", [2, 1, 2, 3]);
g.output(g.add(g.mul(x, g.float(2)), g.float(1)), "y", "float32", [2, 1, 2, 3]);
const model = await open(buildModelProto(g));
const step = await open(buildModelProto(buildSamplerStep({ guided: true, noise: false })));
const holdersOpen = shared.holders;

const xs = Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 4);
const sources = 3;
const elements = 6;
const bankData = Float32Array.from({ length: sources * elements }, (_, i) => (i % 7) / 10);
const stepFeeds = (bank: RunnerFeed, output: RunnerFeed): Record<string, RunnerFeed> => ({
  [io.bank]: bank,
  [io.modelOutput]: output,
  [io.guidanceScale]: float32(Float32Array.of(7.5), [1]),
  [io.outputWeights]: float32(Float32Array.of(0, 1, 0), [sources, 1]),
  [io.combineWeights]: float32(Float32Array.of(0.5, 0.25, 1, 1, 0, -1), [2, sources]),
  [io.combinedShape]: int64(BigInt64Array.of(2n, 1n, 2n, 3n), [4]),
});

// On the host all the way.
const yHost = (await model.run({ x: float32(xs, [2, 1, 2, 3]) })).y;
const host = await step.run(stepFeeds(float32(bankData, [sources, elements]), yHost));

// On the device: x uploaded, y kept, the bank uploaded, bank_out and combined kept.
const xResident = await (model.upload as NonNullable<typeof model.upload>)(
  float32(xs, [2, 1, 2, 3]),
);
const yDevice = (
  await (model.runOnDevice as NonNullable<typeof model.runOnDevice>)({ x: xResident }, ["y"])
).y;
const bank = await (step.upload as NonNullable<typeof step.upload>)(
  float32(bankData, [sources, elements]),
);
const out = await (step.runOnDevice as NonNullable<typeof step.runOnDevice>)(
  stepFeeds(bank, yDevice),
  [io.bankOut, io.combined],
);
const read = async (feed: RunnerFeed | undefined) =>
  feed?.type === "resident"
    ? Array.from(await feed.read())
    : feed?.type === "float32"
      ? Array.from(feed.data)
      : null;
const diff = (a: ArrayLike<number> | null, b: ArrayLike<number> | null) => {
  if (!a || !b || a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const kinds = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.type]));
const bankDiff = diff(await read(out[io.bankOut]), await read(host[io.bankOut]));
const combinedDiff = diff(await read(out[io.combined]), await read(host[io.combined]));
// The kept output fed back to the model as its next input (a device round trip).
const again = (await model.run({ x: out[io.combined] })).y;
const againHost = (await model.run({ x: host[io.combined] as RunnerFeed })).y;
const roundTripDiff = diff(await read(again), await read(againHost));

// A resident tensor of another runtime: read back, then used.
const foreign: ResidentTensor = {
  type: "resident",
  dims: [2, 1, 2, 3],
  handle: {},
  read: async () => xs,
  dispose() {},
};
const foreignDiff = diff(await read((await model.run({ x: foreign })).y), await read(yHost));

// Disposed tensors: a second dispose does nothing; feeding one is a one-line error.
xResident.dispose();
xResident.dispose();
let disposedError = "";
try {
  await model.run({ x: xResident });
} catch (error) {
  disposedError = (error as Error).message;
}
// An upload whose data does not fill its shape: one line, nothing kept.
let uploadError = "";
try {
  await (model.upload as NonNullable<typeof model.upload>)(float32(xs, [2, 1, 2, 2]));
} catch (error) {
  uploadError = (error as Error).message;
}
for (const t of [yDevice, bank, ...Object.values(out)]) if (t.type === "resident") t.dispose();
await model.release();
const holdersAfterOne = shared.holders;
await step.release();
console.log(
  JSON.stringify({
    holdersOpen,
    holdersAfterOne,
    holdersAfter: shared.holders,
    kinds,
    yKind: yDevice.type,
    bankDiff,
    combinedDiff,
    roundTripDiff,
    foreignDiff,
    disposedError,
    uploadError,
  }),
);
process.exit(0);
