// GPU time per kernel of one VAE decode on the kernels engine (the UNet has `bench --profile`;
// the VAE has no bench of its own): builds the model's decoder in fp16, decodes seeded latents
// of the given size twice (the first call warms up) and prints the profile of the second.
//
//   npm run build && node scripts/vae-profile.mjs builtin:sd15 1024 [fp16|fp32]

import { createKernelRunner } from "../dist/engine/runner.js";
import { buildModelProto } from "../dist/onnx/model-io.js";
import { openModelFiles } from "../dist/pipelines/load.js";
import { planModel } from "../dist/pipelines/model-plan.js";
import { SeededRandom } from "../dist/util/random.js";

const [source = "builtin:sd15", sizeArg = "1024", dtypeArg = "fp16"] = process.argv.slice(2);
const dtype = dtypeArg === "fp32" ? "float32" : "float16";
const size = Number(sizeArg);
const { files, folder } = await openModelFiles(source, {});
const plan = planModel(files, folder, { device: "webgpu", dtype });
const { builder, metadata } = plan.vae("decoder").build();
const runner = await createKernelRunner(buildModelProto(builder, { metadata }), {
  // As the pipelines run the VAE: its convolutions read their NCHW inputs directly.
  executor: { profile: true, channelsFirstConv: true },
});
const side = size / plan.vaeScale;
const dims = [1, plan.latentChannels, side, side];
const data = new SeededRandom(1).normalArray(dims.reduce((a, b) => a * b, 1));
const input = runner.inputNames[0];
for (let call = 0; call < 2; call++) {
  const start = performance.now();
  await runner.run({ [input]: { data, dims, type: "float32" } });
  console.log(`call ${call + 1}: ${(performance.now() - start).toFixed(1)} ms wall`);
}
console.log(JSON.stringify(runner.profileSummary(), null, 1));
await runner.release();
