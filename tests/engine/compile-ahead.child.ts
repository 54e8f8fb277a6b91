// Run by compile-ahead.test.ts on SwiftShader: a first call with the compile-ahead walk
// (ExecutorOptions.compileAhead, the default) against the same call without it, each on a context
// of its own so that both compile from nothing. Prints one JSON line: how many compiles each had
// in flight at once, how many launches each dispatched, and the outputs' difference.
//
// The model: the UNet's miniature (miniature-unet.ts) with a Sigmoid after it, five kernels in
// its first call.

import { createKernelRunner } from "../../src/engine/runner.js";
import { GpuContext } from "../../src/gpu/context.js";
import { float32, type RunnerTensor } from "../../src/runtime/types.js";
import { maxAbsDiff } from "../fixtures.js";
import { MINIATURE_DIMS, miniatureUnet } from "./miniature-unet.js";

const dims = MINIATURE_DIMS;
const n = 2 * 3 * 4 * 4;
const proto = miniatureUnet((g, z) => g.op("Sigmoid", [z]));
const feeds = (step: number) => ({
  x: float32(
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)),
    dims,
  ),
  t: float32(Float32Array.of(step), [1]),
});

/** A context that counts compiles in flight (the most at once) and dispatched launches. */
async function countingContext() {
  const ctx = await GpuContext.create();
  const counts = { inFlight: 0, most: 0, launches: 0 };
  const pipeline = ctx.pipeline.bind(ctx);
  ctx.pipeline = (source) => {
    counts.inFlight++;
    counts.most = Math.max(counts.most, counts.inFlight);
    const made = pipeline(source);
    made.then(
      () => counts.inFlight--,
      () => counts.inFlight--,
    );
    return made;
  };
  const dispatch = ctx.dispatch.bind(ctx);
  ctx.dispatch = (launches, options) => {
    counts.launches += launches.length;
    return dispatch(launches, options);
  };
  return { ctx, counts };
}

const errors: string[] = [];
const ahead = await countingContext();
const aheadRunner = await createKernelRunner(proto, {
  context: ahead.ctx,
  executor: { onCompileAheadError: (e) => errors.push(e.message) },
});
const plain = await countingContext();
const plainRunner = await createKernelRunner(proto, {
  context: plain.ctx,
  executor: { compileAhead: false },
});

const first = {
  ahead: (await aheadRunner.run(feeds(900))).z as RunnerTensor,
  plain: (await plainRunner.run(feeds(900))).z as RunnerTensor,
};
const firstCounts = { ahead: { ...ahead.counts }, plain: { ...plain.counts } };
// The If's other branch under the same signature: walked (its plan's guard fails), not walked ahead again.
const before = ahead.ctx.pipelines.compiles.length;
const second = {
  ahead: (await aheadRunner.run(feeds(100))).z as RunnerTensor,
  plain: (await plainRunner.run(feeds(100))).z as RunnerTensor,
};
process.stdout.write(
  `${JSON.stringify({
    most: { ahead: firstCounts.ahead.most, plain: firstCounts.plain.most },
    launches: { ahead: firstCounts.ahead.launches, plain: firstCounts.plain.launches },
    firstDiff: maxAbsDiff(first.ahead.data as Float32Array, first.plain.data as Float32Array),
    secondDiff: maxAbsDiff(second.ahead.data as Float32Array, second.plain.data as Float32Array),
    secondCompiles: ahead.ctx.pipelines.compiles.length - before,
    errors,
  })}\n`,
);
await aheadRunner.release();
await plainRunner.release();
ahead.ctx.destroy();
plain.ctx.destroy();
