// Run by replay.test.ts on SwiftShader: warm calls replayed from a captured call (src/engine/
// replay.ts) against the same calls walked through the graph by an executor that never replays,
// on one context. Prints one JSON line.
//
// The model is a miniature of the UNet's host work: a timestep feed whose embedding (sin) is made
// on the host and uploaded, and an If on the timestep (as the reduction thresholds' stop/switch)
// that picks one of two device branches.

import { createKernelRunner } from "../../src/engine/runner.js";
import { GpuContext } from "../../src/gpu/context.js";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelProto } from "../../src/onnx/model-io.js";
import { ifElse } from "../../src/reduce/graph-helpers.js";
import { float32, int64, type RunnerFeed, type RunnerTensor } from "../../src/runtime/types.js";

const ctx = await GpuContext.create();
const dims = [2, 3, 4, 4];
const n = 2 * 3 * 4 * 4;

const g = new GraphBuilder("float32");
const x = g.input("x", "float32", dims);
const t = g.input("t", "float32", [1]);
const embedding = g.mul(g.op("Sin", [g.mul(t, g.float(0.01))]), g.float(3));
const weights = Array.from({ length: 16 }, (_, i) => ((i * 7) % 5) / 4 - 0.5);
// The MatMul runs on the device, so what follows it does too.
const y = g.add(g.matMul(x, g.float(weights, [4, 4])), embedding);
const late = g.op("Greater", [t, g.float(500)]);
const [z] = ifElse(
  g,
  late,
  "stop",
  ["float32"],
  (b) => [b.mul(b.op("Sigmoid", [y]), b.float(3))],
  (b) => [b.sub(b.transpose(y, [0, 1, 3, 2]), b.float(1))],
);
g.output(z, "z", "float32", dims);
const proto = buildModelProto(g);

const replaying = await createKernelRunner(proto, { context: ctx });
const walking = await createKernelRunner(proto, { context: ctx, executor: { replay: false } });

const xs = (seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * (1 + seed / 4));
const feeds = (seed: number, step: number): Record<string, RunnerFeed> => ({
  x: float32(xs(seed), dims),
  t: float32(Float32Array.of(step), [1]),
});
const values = async (feed: RunnerFeed | undefined): Promise<Float32Array> => {
  if (feed?.type === "resident") return feed.read();
  if (feed?.type === "float32") return feed.data;
  throw new Error("no float output");
};
const maxDiff = (a: Float32Array, b: Float32Array): number => {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

// Host feeds over a schedule that crosses the If's threshold and comes back: each call against
// the walked one, and whether it replayed.
const steps = [900, 800, 100, 50, 700, 20];
const hostCalls: { replayed: boolean; diff: number; launches: number }[] = [];
for (const [i, step] of steps.entries()) {
  const a = (await replaying.run(feeds(i, step))).z as RunnerTensor;
  const replayed = replaying.lastStats.replayed;
  const launches = replaying.lastStats.launches;
  const b = (await walking.run(feeds(i, step))).z as RunnerTensor;
  hostCalls.push({ replayed, diff: maxDiff(await values(a), await values(b)), launches });
}
const walkedReplayed = walking.lastStats.replayed;

// Device feeds and kept outputs, as a denoising loop on the device: each call feeds the last
// one's kept output; a kept output stays the caller's while later calls run.
const upload = replaying.upload as NonNullable<typeof replaying.upload>;
const onDevice = replaying.runOnDevice as NonNullable<typeof replaying.runOnDevice>;
let current: RunnerFeed = await upload(float32(xs(7), dims));
let reference: Float32Array = xs(7);
const kept: { replayed: boolean; diff: number }[] = [];
const held: RunnerFeed[] = [];
for (const step of [600, 550, 510]) {
  const out: RunnerFeed = (
    await onDevice({ x: current, t: float32(Float32Array.of(step), [1]) }, ["z"])
  ).z;
  const replayed = replaying.lastStats.replayed;
  const expected = (
    await walking.run({ x: float32(reference, dims), t: float32(Float32Array.of(step), [1]) })
  ).z as RunnerTensor;
  kept.push({ replayed, diff: maxDiff(await values(out), await values(expected)) });
  held.push(out);
  current = out;
  reference = await values(expected);
}
// The first kept output, read again after the later calls: still its own values.
const firstAgain = await values(held[0]);
const firstExpected = (
  await walking.run({ x: float32(xs(7), dims), t: float32(Float32Array.of(600), [1]) })
).z as RunnerTensor;
const heldDiff = maxDiff(firstAgain, await values(firstExpected));
const distinctBuffers = new Set(held.map((h) => (h.type === "resident" ? h.handle : h))).size;
for (const h of held) if (h.type === "resident") h.dispose();

// A pooled buffer of the plan held elsewhere: the call walks the graph (and is right), the next
// one replays again.
await replaying.run(feeds(1, 900));
const free = (ctx.buffers as unknown as { free: Map<number, GPUBuffer[]> }).free;
const taken = [...free.values()].flat();
ctx.buffers.take(taken);
const contended = (await replaying.run(feeds(2, 900))).z as RunnerTensor;
const contendedReplayed = replaying.lastStats.replayed;
const contendedDiff = maxDiff(
  await values(contended),
  await values((await walking.run(feeds(2, 900))).z),
);
for (const b of taken) ctx.buffers.release(b);
await replaying.run(feeds(3, 900));
const afterRelease = replaying.lastStats.replayed;

// A feed's values decide a launch (the shape of a Reshape): never replayed, right every call.
const r = new GraphBuilder("float32");
const rx = r.input("x", "float32", [n]);
const shape = r.input("shape", "int64", [2]);
r.output(
  r.reshape(r.matMul(r.reshape(rx, [n / 4, 4]), r.float(weights, [4, 4])), shape),
  "y",
  "float32",
);
const reshaping = await createKernelRunner(buildModelProto(r), { context: ctx });
const decided: { replayed: boolean; dims: number[]; diff: number }[] = [];
for (const rows of [4, 8, 8]) {
  const out = (
    await reshaping.run({
      x: float32(xs(rows), [n]),
      shape: int64(BigInt64Array.of(BigInt(rows), BigInt(n / rows)), [2]),
    })
  ).y as RunnerTensor;
  const input = xs(rows);
  const want = input.map((_, i) => {
    const row = Math.floor(i / 4);
    let sum = 0;
    for (let k = 0; k < 4; k++) sum += input[row * 4 + k] * weights[k * 4 + (i % 4)];
    return sum;
  });
  decided.push({
    replayed: reshaping.lastStats.replayed,
    dims: [...out.dims],
    diff: maxDiff(await values(out), want),
  });
}

await replaying.release();
await walking.release();
await reshaping.release();
ctx.destroy();
console.log(
  JSON.stringify({
    hostCalls,
    walkedReplayed,
    kept,
    heldDiff,
    distinctBuffers,
    contendedReplayed,
    contendedDiff,
    afterRelease,
    decided,
  }),
);
process.exit(0);
