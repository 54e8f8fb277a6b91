// Run by replay.test.ts on SwiftShader: warm calls replayed from a captured call (src/engine/
// replay.ts) against the same calls walked through the graph by an executor that never replays,
// on one context. Prints one JSON line.
//
// The model is a miniature of the UNet's host work (miniature-unet.ts).

import { createKernelRunner, type KernelRunner } from "../../src/engine/runner.js";
import { GpuContext } from "../../src/gpu/context.js";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelProto } from "../../src/onnx/model-io.js";
import type { ModelProto } from "../../src/onnx/proto.js";
import { ifElse } from "../../src/reduce/graph-helpers.js";
import { float32, int64, type RunnerFeed, type RunnerTensor } from "../../src/runtime/types.js";
import { maxAbsDiff } from "../fixtures.js";
import { MINIATURE_DIMS, MINIATURE_WEIGHTS, miniatureUnet } from "./miniature-unet.js";

const ctx = await GpuContext.create();
const dims = MINIATURE_DIMS;
const n = 2 * 3 * 4 * 4;
const weights = MINIATURE_WEIGHTS;
const proto = miniatureUnet();

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
/** A runner of `model` that walks every call (replay off). */
const walker = (model: ModelProto) =>
  createKernelRunner(model, { context: ctx, executor: { replay: false } });
/** One call of output `y` through a replaying runner and a walking one: whether it replayed,
 * the output's dims, and the largest difference. */
async function againstWalk(
  replaying: KernelRunner,
  walking: KernelRunner,
  feed: Record<string, RunnerFeed>,
): Promise<{ replayed: boolean; dims: number[]; diff: number }> {
  const got = (await replaying.run(feed)).y as RunnerTensor;
  const replayed = replaying.lastStats.replayed;
  const want = (await walking.run(feed)).y as RunnerTensor;
  return {
    replayed,
    dims: [...got.dims],
    diff: maxAbsDiff(await values(got), await values(want)),
  };
}

// Host feeds over a schedule that crosses the If's threshold and comes back: each call against
// the walked one, and whether it replayed.
const steps = [900, 800, 100, 50, 700, 20];
const hostCalls: { replayed: boolean; diff: number; launches: number; sameWork: boolean }[] = [];
for (const [i, step] of steps.entries()) {
  const a = (await replaying.run(feeds(i, step))).z as RunnerTensor;
  const { replayed, launches, kernels } = replaying.lastStats;
  const b = (await walking.run(feeds(i, step))).z as RunnerTensor;
  const sameWork =
    launches === walking.lastStats.launches &&
    JSON.stringify(kernels) === JSON.stringify(walking.lastStats.kernels);
  hostCalls.push({
    replayed,
    diff: maxAbsDiff(await values(a), await values(b)),
    launches,
    sameWork,
  });
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
  kept.push({ replayed, diff: maxAbsDiff(await values(out), await values(expected)) });
  held.push(out);
  current = out;
  reference = await values(expected);
}
// The first kept output, read again after the later calls: still its own values.
const firstAgain = await values(held[0]);
const firstExpected = (
  await walking.run({ x: float32(xs(7), dims), t: float32(Float32Array.of(600), [1]) })
).z as RunnerTensor;
const heldDiff = maxAbsDiff(firstAgain, await values(firstExpected));
const distinctBuffers = new Set(held.map((h) => (h.type === "resident" ? h.handle : h))).size;
for (const h of held) if (h.type === "resident") h.dispose();

// The plan's pooled buffers held elsewhere (every free buffer taken): the replay takes others of
// their sizes, with new bind groups, and keeps them; the next call needs no new ones.
await replaying.run(feeds(1, 900));
const free = (ctx.buffers as unknown as { free: Map<number, GPUBuffer[]> }).free;
const taken = [...free.values()].flat();
ctx.buffers.take(taken);
const contended = (await replaying.run(feeds(2, 900))).z as RunnerTensor;
const contendedStats = { ...replaying.lastStats };
const contendedDiff = maxAbsDiff(
  await values(contended),
  await values((await walking.run(feeds(2, 900))).z),
);
for (const b of taken) ctx.buffers.release(b);
const afterContention = (await replaying.run(feeds(3, 900))).z as RunnerTensor;
const afterStats = { ...replaying.lastStats };
const afterDiff = maxAbsDiff(
  await values(afterContention),
  await values((await walking.run(feeds(3, 900))).z),
);

// Two device feeds in one buffer, then in two: another signature, so the second call is
// captured rather than replayed with both reading one buffer.
const p = new GraphBuilder("float32");
const pa = p.input("a", "float32", [4, 4]);
const pb = p.input("b", "float32", [4, 4]);
const pw = p.float(weights, [4, 4]);
p.output(p.sub(p.matMul(pa, pw), p.matMul(pb, pw)), "y", "float32", [4, 4]);
const pairModel = buildModelProto(p);
const pairs = await createKernelRunner(pairModel, { context: ctx });
const pairsWalked = await walker(pairModel);
const pairUpload = pairs.upload as NonNullable<typeof pairs.upload>;
const one = await pairUpload(float32(xs(1).subarray(0, 16), [4, 4]));
const two = await pairUpload(float32(xs(2).subarray(0, 16), [4, 4]));
const shared: { replayed: boolean; diff: number }[] = [];
for (const [a, b] of [
  [one, one],
  [one, two],
  [two, one],
]) {
  const { replayed, diff } = await againstWalk(pairs, pairsWalked, { a, b });
  shared.push({ replayed, diff });
}
one.type === "resident" && one.dispose();
two.type === "resident" && two.dispose();

// A shape made from a feed's value (ConstantOfShape of k, then its Shape, as a Slice's end):
// the Shape itself is no feed value, but the shapes differ, so that call walks.
const c = new GraphBuilder("float32");
const cx = c.input("x", "float32", [8, 4]);
const k = c.input("k", "int64", [1]);
const rows = c.shape(c.op("ConstantOfShape", [k]));
const product = c.matMul(cx, c.float(weights, [4, 4]));
c.output(c.op("Slice", [product, c.int64([0]), rows, c.int64([0])]), "y", "float32");
const slicing = await createKernelRunner(buildModelProto(c), { context: ctx });
const sliced: { replayed: boolean; dims: number[] }[] = [];
for (const count of [3, 5, 5]) {
  const out = (
    await slicing.run({
      x: float32(xs(count).subarray(0, 32), [8, 4]),
      k: int64(BigInt64Array.of(BigInt(count)), [1]),
    })
  ).y as RunnerTensor;
  sliced.push({ replayed: slicing.lastStats.replayed, dims: [...out.dims] });
}

// A Slice's step chosen from the timestep (as the reduction thresholds choose a factor): a
// value guard, so each step's plan replays where the step is the same.
const w = new GraphBuilder("float32");
const wx = w.input("x", "float32", [8, 4]);
const wt = w.input("t", "float32", [1]);
const stride = w.op("Where", [w.op("Greater", [wt, w.float(500)]), w.int64([2]), w.int64([1])]);
const wp = w.matMul(wx, w.float(weights, [4, 4]));
w.output(w.op("Slice", [wp, w.int64([0]), w.int64([8]), w.int64([0]), stride]), "y", "float32");
const strideModel = buildModelProto(w);
const striding = await createKernelRunner(strideModel, { context: ctx });
const strideWalked = await walker(strideModel);
const strided: { replayed: boolean; dims: number[]; diff: number }[] = [];
for (const [i, step] of [900, 800, 100, 50, 700].entries()) {
  const feed = {
    x: float32(xs(i).subarray(0, 32), [8, 4]),
    t: float32(Float32Array.of(step), [1]),
  };
  strided.push(await againstWalk(striding, strideWalked, feed));
}

// An If whose then branch hands back a value made from the feeds outside it.
const f = new GraphBuilder("float32");
const fx = f.input("x", "float32", [4, 4]);
const ft = f.input("t", "float32", [1]);
const fe = f.op("Sin", [f.mul(ft, f.float(0.01))]);
const [chosen] = ifElse(
  f,
  f.op("Greater", [ft, f.float(500)]),
  "pass",
  ["float32"],
  () => [fe],
  (b) => [b.mul(fe, b.float(2))],
);
f.output(f.add(f.matMul(fx, f.float(weights, [4, 4])), chosen), "y", "float32", [4, 4]);
const passModel = buildModelProto(f);
const passing = await createKernelRunner(passModel, { context: ctx });
const passWalked = await walker(passModel);
const passed: { replayed: boolean; diff: number }[] = [];
for (const [i, step] of [900, 800, 100, 700].entries()) {
  const feed = {
    x: float32(xs(i).subarray(0, 16), [4, 4]),
    t: float32(Float32Array.of(step), [1]),
  };
  const { replayed, diff } = await againstWalk(passing, passWalked, feed);
  passed.push({ replayed, diff });
}

// A feed's values decide a launch (the shape of a Reshape): replayed only for the same shape.
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
// Past MAX_PLANS (4) shapes the oldest plan goes: 8 is still kept at the end, 4 is not.
for (const rows of [4, 8, 8, 2, 3, 6, 8, 4]) {
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
    diff: maxAbsDiff(await values(out), want),
  });
}

// A replayed call with its submitted passes timed (ExecutorOptions.timeSubmits).
const timing = await createKernelRunner(proto, { context: ctx, executor: { timeSubmits: true } });
const timed: { replayed: boolean; passes: number; busy: boolean }[] = [];
for (const step of [900, 800]) {
  await timing.run(feeds(4, step));
  const { replayed, gpu } = timing.lastStats;
  timed.push({
    replayed,
    passes: gpu?.passes ?? 0,
    busy: (gpu?.busyMs ?? -1) >= 0 && (gpu?.busyMs ?? 0) <= (gpu?.spanMs ?? 0) + 1e-6,
  });
}

for (const runner of [
  timing,
  replaying,
  walking,
  reshaping,
  pairs,
  pairsWalked,
  slicing,
  passing,
  passWalked,
])
  await runner.release();
ctx.destroy();
console.log(
  JSON.stringify({
    hostCalls,
    walkedReplayed,
    kept,
    heldDiff,
    distinctBuffers,
    contended: {
      replayed: contendedStats.replayed,
      bindGroups: contendedStats.bindGroups,
      diff: contendedDiff,
    },
    after: { replayed: afterStats.replayed, bindGroups: afterStats.bindGroups, diff: afterDiff },
    decided,
    shared,
    sliced,
    strided,
    passed,
    timed,
  }),
);
process.exit(0);
