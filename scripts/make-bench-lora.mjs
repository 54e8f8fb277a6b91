// Writes a synthetic kohya LoRA for a model: rank R on every attention projection and
// feed-forward layer of the UNet and every attention and MLP layer of the text encoders, float16
// values from a fixed seed. For measuring what merging LoRAs costs a build (BENCHMARKS.md).
//
//   npm run build && node scripts/make-bench-lora.mjs builtin:sd15 64 sd15-rank64.safetensors
import { writeFileSync } from "node:fs";
import { encodeSafetensors, openModelFiles, SeededRandom } from "../dist/index.js";

const [source, rankText, out] = process.argv.slice(2);
if (!source || !rankText || !out) {
  console.error("usage: node scripts/make-bench-lora.mjs <model> <rank> <out.safetensors>");
  process.exit(2);
}
const rank = Number(rankText);
const TARGETS = {
  unet: /\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$|\.ff\.net\.(0\.proj|2)\.weight$/,
  text_encoder: /\.self_attn\.(q|k|v|out)_proj\.weight$|\.mlp\.fc[12]\.weight$/,
  text_encoder_2: /\.self_attn\.(q|k|v|out)_proj\.weight$|\.mlp\.fc[12]\.weight$/,
};
const PREFIX = { unet: "lora_unet_", text_encoder: "lora_te_", text_encoder_2: "lora_te2_" };

const { files } = await openModelFiles(source);
if (files.weights.text_encoder_2) PREFIX.text_encoder = "lora_te1_";
const random = new SeededRandom(1234);
/** Values of the scale of trained LoRAs (std 0.01), rounded to float16 bits. */
const halfRandom = (count) => {
  const values = random.normalArray(count);
  const view = new DataView(new ArrayBuffer(4));
  const bits = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    view.setFloat32(0, values[i] * 0.01);
    const f = view.getUint32(0);
    const sign = (f >>> 16) & 0x8000;
    const exponent = ((f >>> 23) & 0xff) - 127 + 15;
    bits[i] = exponent <= 0 ? sign : sign | (exponent << 10) | ((f >>> 13) & 0x3ff);
  }
  return bits;
};
const tensors = {};
let modules = 0;
for (const [component, pattern] of Object.entries(TARGETS)) {
  const weights = files.weights[component];
  if (!weights) continue;
  for (const key of weights.keys().filter((k) => pattern.test(k))) {
    const [rows, cols] = weights.info(key).shape;
    const name = `${PREFIX[component]}${key
      .slice(0, -".weight".length)

      .replace(/\./g, "_")}`;
    tensors[`${name}.lora_down.weight`] = {
      dtype: "F16",
      shape: [rank, cols],
      data: halfRandom(rank * cols),
    };
    tensors[`${name}.lora_up.weight`] = {
      dtype: "F16",
      shape: [rows, rank],
      data: halfRandom(rows * rank),
    };
    tensors[`${name}.alpha`] = { dtype: "F32", shape: [], data: Float32Array.of(rank / 2) };
    modules++;
  }
}
files.close();
const bytes = encodeSafetensors(tensors);
writeFileSync(out, bytes);
console.log(
  `${out}: ${modules} modules, rank ${rank}, ${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB`,
);
