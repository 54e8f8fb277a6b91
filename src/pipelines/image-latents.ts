/**
 * Between images and latents: the init image of img2img through the VAE encoder to a scaled
 * latent sample, and the final latents through the VAE decoder to images. Images here are
 * [N, H, W, 3] in [0, 1]; the VAE sees [N, 3, H, W] in [-1, 1].
 */
import type { NoiseSource } from "../util/random.js";
import type { HostTensor, VaeComponent } from "./components.js";
import { firstNonFinite, NonFiniteError } from "./finite-check.js";
import type { ImageBatch } from "./generate-options.js";
import { repeatRows } from "./host-tensors.js";
import { decodeInTiles, type VaeTiling } from "./vae-tiling.js";

/**
 * The init images' latents for `batch` outputs: a draw from the encoder's distribution,
 * shifted and scaled as the UNet expects. One image serves every output.
 */
export async function encodeInitImage(
  vae: VaeComponent,
  image: ImageBatch,
  batch: number,
  noise: NoiseSource,
): Promise<Float32Array> {
  const { width, height } = image;
  const { mean, logvar } = await vae.encode({
    data: imageToNchw(image),
    dims: [image.count, 3, height, width],
  });
  const draw = noise.normal(mean.dims);
  const sample = new Float32Array(mean.data.length);
  const { scalingFactor, shiftFactor } = vae;
  for (let i = 0; i < sample.length; i++) {
    const clamped = Math.min(Math.max(logvar.data[i], -30), 20);
    sample[i] = (mean.data[i] + Math.exp(0.5 * clamped) * draw[i] - shiftFactor) * scalingFactor;
  }
  return image.count === batch ? sample : repeatRows({ data: sample, dims: mean.dims }, batch).data;
}

/** Final latents (B, C, h, w) to images; `cause` ends the message when the decode overflows. */
export async function decodeLatents(
  vae: VaeComponent,
  latents: Float32Array,
  dims: readonly number[],
  tiles: VaeTiling | undefined,
  cause: () => string,
): Promise<ImageBatch> {
  const { scalingFactor, shiftFactor } = vae;
  const scaled = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / scalingFactor + shiftFactor;
  const decoded = tiles
    ? await decodeInTiles((t) => vae.decode(t), { data: scaled, dims }, tiles)
    : await vae.decode({ data: scaled, dims });
  if (firstNonFinite(decoded.data) >= 0) {
    let largest = 0;
    for (const v of latents) largest = Math.max(largest, Math.abs(v));
    throw new NonFiniteError(
      `the VAE decoded NaN or infinite values from latents as large as ${largest.toPrecision(3)}; ${cause()}`,
    );
  }
  return nchwToImage(decoded);
}

/** [N, H, W, 3] in [0, 1] -> [N, 3, H, W] in [-1, 1]. */
function imageToNchw(image: ImageBatch): Float32Array {
  const plane = image.width * image.height;
  const nchw = new Float32Array(image.count * 3 * plane);
  for (let n = 0; n < image.count; n++) {
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++)
        nchw[(n * 3 + c) * plane + p] = image.data[(n * plane + p) * 3 + c] * 2 - 1;
    }
  }
  return nchw;
}

/** [N, 3, H, W] in [-1, 1] -> [N, H, W, 3] in [0, 1], clamped. */
function nchwToImage(decoded: HostTensor): ImageBatch {
  const [count, , height, width] = decoded.dims;
  const plane = width * height;
  const out = new Float32Array(count * plane * 3);
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      for (let p = 0; p < plane; p++) {
        const v = decoded.data[base + p] / 2 + 0.5;
        out[(n * plane + p) * 3 + c] = v < 0 ? 0 : Math.min(v, 1);
      }
    }
  }
  return { data: out, count, width, height };
}
