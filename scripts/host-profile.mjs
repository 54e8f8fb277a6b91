// Where the host's time goes in a UNet call: V8's sampling profiler over a few calls after the
// warm-ups (compilation and first uploads left out), as self time per function, largest first.
// The GPU's share shows as time in `onSubmittedWorkDone`/`mapAsync` waits (idle in the profile).
//
//   npm run build && node scripts/host-profile.mjs builtin:sd15 512 [kernels|onnxruntime] [float16|float32] [calls]
import { Session } from "node:inspector/promises";
import { unetFeeds } from "../dist/bench/unet-bench.js";
import { crossAttentionWidth } from "../dist/models/unet.js";
import { openModelFiles } from "../dist/pipelines/load.js";
import { unetBuilds } from "../dist/pipelines/plan-runners.js";

const [source, sizeText, engine = "kernels", dtype = "float16", callsText = "5"] =
  process.argv.slice(2);
if (!source || !sizeText) {
  console.error(
    "usage: node scripts/host-profile.mjs <model> <size> [kernels|onnxruntime] [float16|float32] [calls]",
  );
  process.exit(2);
}
const size = { width: Number(sizeText), height: Number(sizeText) };
const calls = Number(callsText);
const { files } = await openModelFiles(source);
const unet = unetBuilds(files, { device: "webgpu", dtype, engine });
const feeds = unetFeeds(
  2,
  size,
  unet.config.inChannels,
  crossAttentionWidth(unet.config) ?? 768,
  undefined,
  999,
);
const runner = await unet.runner(undefined);
for (let i = 0; i < 2; i++) await runner.run(feeds);

const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 50 });
await session.post("Profiler.start");
const start = performance.now();
for (let i = 0; i < calls; i++) await runner.run(feeds);
const wallMs = (performance.now() - start) / calls;
const { profile } = await session.post("Profiler.stop");
await runner.release();

// Self time per function: each sample's time goes to the node it landed in.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
let totalUs = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  totalUs += dt;
  const frame = byId.get(id).callFrame;
  const file = frame.url.split("/").slice(-2).join("/");
  const key = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
});
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40);
console.log(`${engine} ${dtype} ${sizeText} px: ${wallMs.toFixed(1)} ms per call (${calls} calls)`);
console.log("self ms/call  share  function");
for (const [key, us] of rows)
  console.log(
    `${(us / 1000 / calls).toFixed(2).padStart(11)}  ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${key}`,
  );
