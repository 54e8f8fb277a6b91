// Runs `todo-sd bench --profile` with the UNet's 2 x 16384-token attention launched three times
// in a row (#1 #2 #3, same buffers) and once on random q, k, v ("random"), so the profile tells
// a cold first launch from data the kernel is slow on.
//
//   npm run build && node scripts/unet-attention-diag.mjs bench -m builtin:sd15 --device webgpu --dtype fp16 --engine kernels --sizes 1024 --methods none --profile

import { main } from "../dist/cli/main.js";
import { GraphExecutor } from "../dist/engine/executor.js";
import { randomValues } from "../dist/gpu/check.js";

const orig = GraphExecutor.prototype.record;
let random;
GraphExecutor.prototype.record = function (label, launch, detail) {
  if (
    label === "tuned attention" &&
    detail?.includes(process.env.DIAG_SHAPE ?? "2x16384x8x40 keys 16384")
  ) {
    orig.call(this, label, launch, `${detail} #1`);
    orig.call(this, label, launch, `${detail} #2`);
    if (!random) {
      const n = 2 * 16384 * 320;
      random = [1, 2, 3].map((s) => this.ctx.upload(randomValues(n, s, "f16"), [n], "f16").buffer);
    }
    orig.call(
      this,
      label,
      { ...launch, bindGroup: undefined, buffers: [...random, launch.buffers[3]] },
      `${detail} random`,
    );
    return orig.call(this, label, launch, `${detail} #3`);
  }
  return orig.call(this, label, launch, detail);
};
process.exitCode = await main(process.argv.slice(2));
