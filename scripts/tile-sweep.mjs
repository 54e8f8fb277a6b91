// Times the tensor-core GEMM and convolution at the SD 1.5 UNet's own shapes (batch 2, 512 and
// 1024 px) with several tile shapes, to see where the 128 x 128 tile leaves the card short of
// workgroups (the deep levels' maps are small). Prints one line per shape: the default tiling's
// time (which steps down to smaller tiles on small grids), each candidate's, and the workgroups
// each launches; where the default splits K (the deep levels), the default again without
// split-K and the smallest tile at several splits.
//
//   npm run build && node scripts/tile-sweep.mjs [512,1024]

import { randomValues } from "../dist/gpu/check.js";
import { GpuContext } from "../dist/gpu/context.js";
import { prepareConv, sameConv } from "../dist/gpu/kernels/conv2d.js";
import { prepareGemm } from "../dist/gpu/kernels/gemm.js";
import { chooseKernelVariant } from "../dist/gpu/variants.js";

const sizes = (process.argv[2] ?? "512,1024").split(",").map(Number);
const ctx = await GpuContext.create({ bench: true });
const variant = chooseKernelVariant(ctx.capabilities, "f16", "tensor-core");
const tc = (tileM, tileN, tileK, subgroupsM, subgroupsN) => ({
  kind: "tensor-core",
  tileM,
  tileN,
  tileK,
  subgroupsM,
  subgroupsN,
  pad: 8,
});
// [label, tiling (undefined: the default), split-K (undefined: the default's)]
const candidates = [
  ["default", undefined, undefined],
  ["default without split-K", undefined, 1],
  ["128x128", tc(128, 128, 32, 2, 4), 1],
  ["128x64", tc(128, 64, 32, 2, 2), 1],
  ["64x128", tc(64, 128, 32, 2, 2), 1],
  ["64x64", tc(64, 64, 32, 2, 2), 1],
  ["64x64 split 2", tc(64, 64, 32, 2, 2), 2],
  ["64x64 split 4", tc(64, 64, 32, 2, 2), 4],
  ["64x64 split 8", tc(64, 64, 32, 2, 2), 8],
  ["64x128/2x4", tc(64, 128, 32, 2, 4), 1],
  ["128x64/4x2", tc(128, 64, 32, 4, 2), 1],
];

async function time(launches) {
  // Long enough for the card's clock to come up from idle (on an H100 it idles at 345 MHz and
  // takes a few hundred ms to reach 1980 under load), since compiling the candidate left it idle.
  const w0 = performance.now();
  while (performance.now() - w0 < 400) {
    ctx.dispatch(launches, { repeat: 10 });
    await ctx.finish();
  }
  const timer = ctx.createTimer(5);
  for (let p = 0; p < 5; p++) ctx.dispatch(launches, { timer, repeat: 10, label: `p${p}` });
  const ms = (await timer.read()).map((r) => r.ms / 10).sort((a, b) => a - b);
  timer.destroy();
  return ms[2];
}

async function sweep(name, flops, prepare, sizesOf) {
  const [aSize, bSize, outSize] = sizesOf;
  const s = "f16";
  const t = [
    ctx.upload(randomValues(aSize, 1, s), [aSize], s),
    ctx.upload(randomValues(bSize, 2, s), [bSize], s),
    ctx.allocate([outSize], s),
  ];
  const cells = [];
  let defaultSplit = 1;
  for (const [label, tiling, splitK] of candidates) {
    try {
      const kernel = await prepare(tiling, splitK);
      const split = kernel.spec.splitK ?? 1;
      if (label === "default") defaultSplit = split;
      // Without split-K is the default itself where the default does not split.
      if (label === "default without split-K" && defaultSplit === 1) continue;
      const partials = kernel.partials ? ctx.allocate([kernel.partials], "f32") : undefined;
      const ms = await time(
        kernel.launches(
          t.map((x) => x.buffer),
          partials?.buffer,
        ),
      );
      if (partials) ctx.release(partials);
      const wg = kernel.workgroups.reduce((a, b) => a * b, 1);
      const tag = split > 1 ? `, split ${split}` : "";
      cells.push(`${label} ${ms.toFixed(3)} (${(flops / ms / 1e9).toFixed(0)} TF, ${wg} wg${tag})`);
    } catch (e) {
      cells.push(`${label} error: ${String(e.message).split("\n")[0].slice(0, 60)}`);
    }
  }
  for (const x of t) ctx.release(x);
  console.log(`${name} | ${cells.join(" | ")}`);
}

for (const size of sizes) {
  const l = size / 8;
  const convs = [
    [l, 320, 320],
    [l, 640, 320],
    [l, 960, 320],
    [l / 2, 640, 640],
    [l / 2, 1280, 640],
    [l / 2, 960, 640],
    [l / 4, 1280, 1280],
    [l / 4, 2560, 1280],
    [l / 4, 1920, 1280],
    [l / 8, 1280, 1280],
    [l / 8, 2560, 1280],
  ];
  for (const [h, cin, cout] of convs) {
    const shape = sameConv({ batch: 2, height: h, width: h, inChannels: cin, outChannels: cout });
    const opts = { bias: false, channelsFirstOutput: true };
    await sweep(
      `conv ${size}px 2x${h}x${h} ${cin}->${cout}`,
      2 * 2 * h * h * 9 * cin * cout,
      (tiling, splitK) => prepareConv(ctx, variant, shape, { ...opts, tiling, splitK }),
      [2 * h * h * cin, 9 * cin * cout, 2 * h * h * cout],
    );
  }
  const t = 2 * l * l;
  const gemms = [
    [t, 320, 320],
    [t, 320, 1280],
    [t / 4, 640, 640],
    [t / 4, 640, 2560],
    [t / 16, 1280, 1280],
    [t / 16, 1280, 5120],
    [t / 64, 1280, 1280],
  ];
  for (const [m, n, k] of gemms) {
    const shape = { batch: 1, m, n, k, sharedB: true };
    await sweep(
      `gemm ${size}px ${m}x${n}x${k}`,
      2 * m * n * k,
      (tiling, splitK) => prepareGemm(ctx, variant, shape, { tiling, splitK }),
      [m * k, k * n, m * n],
    );
  }
}
process.exit(0);
