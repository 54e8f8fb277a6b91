/**
 * A coarse estimate of the memory a generation needs, made before anything is built so that a
 * job far beyond the machine is refused at once rather than after minutes of swapping. It counts
 * the dominant terms only, each as the runtimes compute them:
 * - the UNet's weights, its skip connections (kept from the down path to the up path) and its
 *   widest working tensors (the feed-forward's 8x-wide GEGLU input at the largest level);
 * - self-attention scores, rows x heads x queries x keys, where the runtime materialises them
 *   (onnxruntime's CPU MultiHeadAttention does; the WebGPU and CUDA backends use flash
 *   attention), with keys reduced by ToDo's factor at each level;
 * - the VAE decoder at full resolution (or per tile): its widest activations and its mid-block
 *   attention, one head over every latent position.
 * Estimates run above what onnxruntime's arena finally holds rather than below.
 */
import type { ModelFamily } from "../util/vocabulary.js";

/** The shapes the estimate needs, from a model's configs (or its family's standard ones). */
export interface MemoryShape {
  /** UNet channels per level (level 1 = the latent resolution). */
  readonly unetChannels: readonly number[];
  /** Attention heads per level, 0 where a level has no self-attention. */
  readonly unetHeads: readonly number[];
  /** VAE decoder channels per level, widest resolution first. */
  readonly vaeChannels: readonly number[];
  /** Bytes of all the weights (UNet, text encoders, VAE) as they run. */
  readonly weightBytes: number;
}

/** The released architectures' shapes, for sources that carry no configs (ONNX exports). */
export function standardMemoryShape(family: ModelFamily, bytesPerWeight: number): MemoryShape {
  const vaeChannels = [128, 256, 512, 512];
  if (family === "sdxl")
    return {
      unetChannels: [320, 640, 1280],
      unetHeads: [0, 10, 20],
      vaeChannels,
      weightBytes: (2.57e9 + 0.82e9 + 0.08e9) * bytesPerWeight,
    };
  return {
    unetChannels: [320, 640, 1280, 1280],
    unetHeads: family === "sd2" ? [5, 10, 20, 0] : [8, 8, 8, 0],
    vaeChannels,
    weightBytes: (0.86e9 + (family === "sd2" ? 0.34e9 : 0.12e9) + 0.08e9) * bytesPerWeight,
  };
}

export interface MemoryJob {
  readonly width: number;
  readonly height: number;
  /** Images per call (prompts x images per prompt). */
  readonly batch: number;
  /** Classifier-free guidance doubles the UNet's rows. */
  readonly guided: boolean;
  /** Bytes per activation element of the UNet (2 for float16, 4 for float32). */
  readonly activationBytes: number;
  /** Whether attention scores are materialised (onnxruntime's CPU kernels). */
  readonly materialisedScores: boolean;
  /** ToDo's key/value factor per level (1 = none). */
  readonly keyFactors?: readonly number[];
  /** The VAE decodes tiles of this many pixels a side, or the whole image when undefined. */
  readonly vaeTile?: number;
}

export interface MemoryEstimate {
  readonly weights: number;
  readonly unet: number;
  readonly attention: number;
  readonly vae: number;
  readonly total: number;
}

export function estimateMemory(shape: MemoryShape, job: MemoryJob): MemoryEstimate {
  const rows = job.batch * (job.guided ? 2 : 1);
  const latentW = Math.ceil(job.width / 8);
  const latentH = Math.ceil(job.height / 8);
  const tokensAt = (level: number) =>
    Math.ceil(latentW / 2 ** (level - 1)) * Math.ceil(latentH / 2 ** (level - 1));
  let skips = 0;
  let widest = 0;
  let attention = 0;
  shape.unetChannels.forEach((channels, i) => {
    const tokens = tokensAt(i + 1);
    // Three skip tensors per level are held until the up path uses them.
    skips += 3 * rows * channels * tokens * job.activationBytes;
    // Input, output and the feed-forward's 8C-wide projection live together.
    widest = Math.max(widest, 10 * rows * channels * tokens * job.activationBytes);
    const heads = shape.unetHeads[i] ?? 0;
    if (heads > 0 && job.materialisedScores) {
      const factor = job.keyFactors?.[i] ?? 1;
      const keys = Math.max(1, Math.floor(tokens / (factor * factor)));
      attention = Math.max(attention, rows * heads * tokens * keys * 4);
    }
  });
  const unet = skips + widest;
  // The VAE runs in float32 over one image of the batch at a time, per tile when tiled.
  const side = (pixels: number) => (job.vaeTile ? Math.min(pixels, job.vaeTile) : pixels);
  const pixels = side(job.width) * side(job.height);
  const vaeLatent = pixels / 64;
  const vaeWidest = Math.max(
    ...shape.vaeChannels.map((channels, level) => (6 * channels * pixels * 4) / 4 ** level),
  );
  const vaeAttention = vaeLatent * vaeLatent * 4;
  const vae = vaeWidest + vaeAttention;
  const peak = Math.max(unet + attention, vae);
  return { weights: shape.weightBytes, unet, attention, vae, total: shape.weightBytes + peak };
}

/** Parameters of a weight source, from its tensor shapes (nothing is read). */
export function parameterCount(source: {
  keys(): string[];
  info(key: string): { shape: readonly number[] };
}): number {
  let count = 0;
  for (const key of source.keys()) count += source.info(key).shape.reduce((p, d) => p * d, 1);
  return count;
}

/** The shape of a model from its parsed UNet and VAE configs. */
export function memoryShapeFromConfigs(
  unet: {
    readonly downBlocks: readonly {
      readonly outChannels: number;
      readonly attention: { readonly heads: number } | null;
    }[];
  },
  vae: { readonly blockOutChannels: readonly number[] },
  weightBytes: number,
): MemoryShape {
  return {
    unetChannels: unet.downBlocks.map((block) => block.outChannels),
    unetHeads: unet.downBlocks.map((block) => block.attention?.heads ?? 0),
    vaeChannels: vae.blockOutChannels,
    weightBytes,
  };
}

/** Bytes as people read them: 1.5 GB, 340 MB. */
export function formatMemory(bytes: number): string {
  if (bytes >= 1e12) return `${(bytes / 1e12).toFixed(1)} TB`;
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return bytes === 0 ? "0 MB" : `${Math.max(1, Math.round(bytes / 1e6))} MB`;
}
