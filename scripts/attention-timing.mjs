// Times one attention kernel several ways on one device: batched launches in one timed pass,
// one timed pass per launch (as the engine's profile does), and wall time.
//
//   npm run build && node scripts/attention-timing.mjs

import { randomValues } from "../dist/gpu/check.js";
import { GpuContext } from "../dist/gpu/context.js";
import { prepareAttention } from "../dist/gpu/kernels/attention.js";
import { chooseKernelVariant } from "../dist/gpu/variants.js";

const ctx = await GpuContext.create({ bench: true });
const base = chooseKernelVariant(ctx.capabilities, "f16", "tensor-core");
const variant = { ...base, matrix: { m: 16, n: 16, k: 16 } };
const shapes = [
  { batch: 2, queries: 16384, heads: 8, headDim: 40, kvTokens: 16384 },
  { batch: 2, queries: 4096, heads: 8, headDim: 80, kvTokens: 4096 },
  { batch: 2, queries: 65536, heads: 8, headDim: 40, kvTokens: 65536 },
];
const tilings = [
  { keysPerTile: 32, subgroups: 8, rescale: "lazy" },
  { keysPerTile: 32, subgroups: 8, rescale: "lazy", staging: "double" },
  { keysPerTile: 32, subgroups: 4, rescale: "lazy" },
  { keysPerTile: 32, subgroups: 4, rescale: "lazy", staging: "double" },
];
for (const shape of shapes) {
  const hd = shape.heads * shape.headDim;
  const n = shape.batch * shape.queries * hd;
  const s = "f16";
  const t = [0, 1, 2].map((i) => ctx.upload(randomValues(n, i + 1, s), [n], s));
  const out = ctx.allocate([n], s);
  for (const tiling of tilings) {
    let kernel;
    try {
      kernel = await prepareAttention(ctx, variant, shape, tiling);
    } catch (e) {
      console.log(
        `${shape.queries}x${shape.headDim} ${JSON.stringify(tiling)}: ${e.message.split("\n")[0]}`,
      );
      continue;
    }
    const launch = kernel.launch([...t.map((x) => x.buffer), out.buffer]);
    const reps = shape.queries >= 65536 ? 3 : 10;
    const w0 = performance.now();
    while (performance.now() - w0 < 300) {
      ctx.dispatch([launch], { repeat: reps });
      await ctx.finish();
    }
    const timer = ctx.createTimer(64);
    ctx.dispatch([launch], { timer, repeat: reps, label: "batched" });
    for (let i = 0; i < reps; i++) ctx.dispatch([launch], { timer, label: "single" });
    const r = await timer.read();
    timer.destroy();
    const batched = r[0].ms / reps;
    const singles = r
      .slice(1)
      .map((x) => x.ms)
      .sort((a, b) => a - b);
    let st = performance.now();
    for (let i = 0; i < reps; i++) ctx.dispatch([launch]);
    await ctx.finish();
    const wall = (performance.now() - st) / reps;
    st = performance.now();
    for (let i = 0; i < reps; i++) {
      ctx.dispatch([launch]);
      await ctx.finish();
    }
    const wallEach = (performance.now() - st) / reps;
    const flops = 4 * shape.batch * shape.heads * shape.queries * shape.kvTokens * shape.headDim;
    console.log(
      `${shape.batch}x${shape.queries}x8x${shape.headDim} ${kernel.label.split(" f16 ")[1]}: batched ${batched.toFixed(2)} ms (${(flops / batched / 1e9).toFixed(1)} TF/s), single-pass median ${singles[singles.length >> 1].toFixed(2)} min ${singles[0].toFixed(2)}, wall ${wall.toFixed(2)}, wall+finish ${wallEach.toFixed(2)}`,
    );
  }
}
process.exit(0);
