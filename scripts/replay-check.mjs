// Whether replaying warm UNet calls (src/engine/replay.ts) gives what walking the graph gives:
// three calls with different latents and timesteps through one runner (captured, then replayed),
// the same three through a runner that walks every call, and the largest difference per call.
//
//   npm run build && node scripts/replay-check.mjs builtin:sd15 512 [float16|float32]
import { unetFeeds } from "../dist/bench/unet-bench.js";
import { GraphExecutor } from "../dist/engine/executor.js";
import { crossAttentionWidth } from "../dist/models/unet.js";
import { openModelFiles } from "../dist/pipelines/load.js";
import { unetBuilds } from "../dist/pipelines/plan-runners.js";

const [source, sizeText, dtype = "float16"] = process.argv.slice(2);
if (!source || !sizeText) {
  console.error("usage: node scripts/replay-check.mjs <model> <size> [float16|float32]");
  process.exit(2);
}
let replayOption = true;
let last;
const runKeeping = GraphExecutor.prototype.runKeeping;
GraphExecutor.prototype.runKeeping = function (...args) {
  this.options = { ...this.options, replay: replayOption };
  last = this;
  return runKeeping.apply(this, args);
};
const { files } = await openModelFiles(source);
const unet = unetBuilds(files, { device: "webgpu", dtype, engine: "kernels" });
const size = { width: Number(sizeText), height: Number(sizeText) };
const feeds = (seed, timestep) => {
  const f = unetFeeds(
    2,
    size,
    unet.config.inChannels,
    crossAttentionWidth(unet.config) ?? 768,
    undefined,
    timestep,
  );
  const data = f.sample.data.map((v, i) => v * (0.5 + seed / 4) + Math.sin(i * seed) / 2);
  return { ...f, sample: { ...f.sample, data } };
};
const calls = [
  [1, 999],
  [2, 500],
  [3, 10],
];
const runner = await unet.runner(undefined);
const replayed = [];
for (const [seed, t] of calls) {
  const out = (await runner.run(feeds(seed, t))).out_sample.data;
  replayed.push({ out, replayed: last.stats.replayed });
}
replayOption = false;
for (const [i, [seed, t]] of calls.entries()) {
  const out = (await runner.run(feeds(seed, t))).out_sample.data;
  let diff = 0;
  for (let j = 0; j < out.length; j++) diff = Math.max(diff, Math.abs(out[j] - replayed[i].out[j]));
  console.log(
    `call ${i + 1} (timestep ${t}): replayed ${replayed[i].replayed}, walked ${last.stats.replayed === false}, max abs difference ${diff}`,
  );
}
await runner.release();
