// How a UNet call's time depends on how often the kernels engine submits what it has recorded
// (ExecutorOptions.submitEvery): for each size, rounds over the intervals given, each timing a few
// warm calls, with the host's recording time (call start to its last launch recorded) beside it.
// An interval written with "/nosplit" (Infinity/nosplit) runs with ExecutorOptions.splitK false:
// every GEMM and convolution unsplit, to time split-K's effect on the same warm card. One with
// "/timed" (32/timed) times each submitted pass on the GPU (ExecutorOptions.timeSubmits) and adds
// the GPU's busy time per call and its idle time between passes: a call whose GPU idles waits on
// the host's recording, one whose GPU is busy throughout on the kernels. One with "/walk"
// (32/walk) walks the graph on every call (ExecutorOptions.replay false) instead of replaying
// the warm call's launches (src/engine/replay.ts).
//
//   npm run build && node scripts/submit-sweep.mjs builtin:sd15 1024,512 Infinity,Infinity/nosplit,32,32/timed,32/walk [calls] [rounds] [float16|float32]
import { unetFeeds } from "../dist/bench/unet-bench.js";
import { GraphExecutor } from "../dist/engine/executor.js";
import { crossAttentionWidth } from "../dist/models/unet.js";
import { openModelFiles } from "../dist/pipelines/load.js";
import { unetBuilds } from "../dist/pipelines/plan-runners.js";

const [source, sizesText, everyText, callsText = "6", roundsText = "2", dtype = "float16"] =
  process.argv.slice(2);
if (!source || !sizesText || !everyText) {
  console.error(
    "usage: node scripts/submit-sweep.mjs <model> <sizes> <intervals> [calls] [rounds]",
  );
  process.exit(2);
}
const variants = everyText.split(",").map((text) => {
  const [every, ...flags] = text.split("/");
  for (const flag of flags)
    if (!["nosplit", "timed", "walk"].includes(flag)) throw new Error(`unknown variant ${text}`);
  return {
    text,
    submitEvery: Number(every),
    splitK: !flags.includes("nosplit"),
    timeSubmits: flags.includes("timed"),
    replay: !flags.includes("walk"),
  };
});
let variant = variants[0];
let lastRecord = 0;
const runKeeping = GraphExecutor.prototype.runKeeping;
GraphExecutor.prototype.runKeeping = function (...args) {
  this.options = {
    ...this.options,
    submitEvery: variant.submitEvery,
    splitK: variant.splitK,
    timeSubmits: variant.timeSubmits,
    replay: variant.replay,
  };
  return runKeeping.apply(this, args);
};
const enqueue = GraphExecutor.prototype.enqueue;
GraphExecutor.prototype.enqueue = function (...args) {
  const out = enqueue.apply(this, args);
  lastRecord = performance.now();
  return out;
};

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const { files } = await openModelFiles(source);
const unet = unetBuilds(files, { device: "webgpu", dtype, engine: "kernels" });
console.log(
  "size  submitEvery      call ms (median, min)  recording ms (median)  submits  GPU busy, idle ms (median)",
);
for (const size of sizesText.split(",").map(Number)) {
  const feeds = unetFeeds(
    2,
    { width: size, height: size },
    unet.config.inChannels,
    crossAttentionWidth(unet.config) ?? 768,
    undefined,
    999,
  );
  const runner = await unet.runner(undefined);
  for (let i = 0; i < 2; i++) await runner.run(feeds);
  for (let round = 0; round < Number(roundsText); round++)
    for (const every of variants) {
      variant = every;
      await runner.run(feeds);
      const calls = [];
      const recording = [];
      const busy = [];
      const idle = [];
      for (let i = 0; i < Number(callsText); i++) {
        const start = performance.now();
        await runner.run(feeds);
        calls.push(performance.now() - start);
        recording.push(lastRecord - start);
        const gpu = runner.lastStats?.gpu;
        if (gpu) {
          busy.push(gpu.busyMs);
          idle.push(gpu.spanMs - gpu.busyMs);
        }
      }
      const call = `${median(calls).toFixed(1)}, ${Math.min(...calls).toFixed(1)}`;
      const submits = String(runner.lastStats?.submits ?? "");
      const gpu = busy.length > 0 ? `${median(busy).toFixed(1)}, ${median(idle).toFixed(1)}` : "";
      console.log(
        `${String(size).padEnd(6)}${every.text.padEnd(17)}${call.padEnd(23)}${median(recording).toFixed(1).padEnd(23)}${submits.padEnd(9)}${gpu}`,
      );
    }
  await runner.release();
}
