/**
 * Tiled VAE decoding: large latents are decoded in overlapping tiles whose images are blended
 * with linear ramps across the overlaps, so no single decode needs the activations of the whole
 * image (the SD 1.5 decoder's last blocks hold 1 GiB per tensor at 2048 px, more than one WebGPU
 * buffer may be). The decoder's convolutions see only their tile and its mid-block attention only
 * the tile's positions, so the image differs slightly from a whole decode, mostly far from the
 * seams' centres; the overlap hides the seams.
 */
import type { HostTensor } from "./components.js";

export interface VaeTiling {
  /** Tile side in latent pixels. */
  readonly tile: number;
  /** Overlap of neighbouring tiles in latent pixels (less than `tile`). */
  readonly overlap: number;
}

/** 768 px tiles overlapping by 128 px (SD's 8x VAE): whole decodes run fine at that size. */
export const DEFAULT_VAE_TILING: VaeTiling = Object.freeze({ tile: 96, overlap: 16 });

/** `auto` tiles latents with a side over this (1024 px): the largest size measured to decode whole. */
export const AUTO_TILING_ABOVE = 128;

/** Tile starts along an axis of `length`: every tile - overlap, the last one flush with the end. */
export function tileStarts(length: number, tiling: VaeTiling): number[] {
  if (length <= tiling.tile) return [0];
  const stride = tiling.tile - tiling.overlap;
  const starts: number[] = [];
  for (let s = 0; s + tiling.tile < length; s += stride) starts.push(s);
  starts.push(length - tiling.tile);
  return starts;
}

/** Blend weights along one axis of a decoded tile: ramps where a neighbour overlaps it. */
function ramp(size: number, overlap: number, before: boolean, after: boolean): Float32Array {
  const w = new Float32Array(size).fill(1);
  for (let i = 0; i < size; i++) {
    if (before) w[i] = Math.min(w[i], (i + 0.5) / overlap);
    if (after) w[i] = Math.min(w[i], (size - i - 0.5) / overlap);
  }
  return w;
}

/**
 * Decodes `latents` (B, C, H, W) with `decode` tile by tile; latents no larger than a tile are
 * decoded whole. The decoder's output is (B, K, H * s, W * s) for some scale s.
 */
export async function decodeInTiles(
  decode: (latents: HostTensor) => Promise<HostTensor>,
  latents: HostTensor,
  tiling: VaeTiling,
): Promise<HostTensor> {
  if (!(tiling.overlap >= 0 && tiling.overlap < tiling.tile))
    throw new Error(`VAE tiling: the overlap must be from 0 to tile - 1; got ${tiling.overlap}`);
  const [batch, channels, height, width] = latents.dims;
  if (height <= tiling.tile && width <= tiling.tile) return decode(latents);
  const ys = tileStarts(height, tiling);
  const xs = tileStarts(width, tiling);
  const th = Math.min(tiling.tile, height);
  const tw = Math.min(tiling.tile, width);
  let out: Float32Array | undefined;
  let weights: Float32Array | undefined;
  let outChannels = 0;
  let scale = 0;
  for (const [yi, y0] of ys.entries()) {
    for (const [xi, x0] of xs.entries()) {
      const tile = new Float32Array(batch * channels * th * tw);
      for (let bc = 0; bc < batch * channels; bc++)
        for (let y = 0; y < th; y++) {
          const from = (bc * height + y0 + y) * width + x0;
          tile.set(latents.data.subarray(from, from + tw), (bc * th + y) * tw);
        }
      const decoded = await decode({ data: tile, dims: [batch, channels, th, tw] });
      const [, k, oh, ow] = decoded.dims;
      if (!out || !weights) {
        outChannels = k;
        scale = oh / th;
        out = new Float32Array(batch * k * height * scale * width * scale);
        weights = new Float32Array(height * scale * width * scale);
      }
      const ovl = Math.max(1, tiling.overlap * scale);
      const wy = ramp(oh, ovl, yi > 0, yi < ys.length - 1);
      const wx = ramp(ow, ovl, xi > 0, xi < xs.length - 1);
      const fullW = width * scale;
      const fullH = height * scale;
      for (let y = 0; y < oh; y++) {
        const row = (y0 * scale + y) * fullW + x0 * scale;
        for (let x = 0; x < ow; x++) weights[row + x] += wy[y] * wx[x];
      }
      for (let bk = 0; bk < batch * k; bk++)
        for (let y = 0; y < oh; y++) {
          const row = (bk * fullH + y0 * scale + y) * fullW + x0 * scale;
          const src = (bk * oh + y) * ow;
          for (let x = 0; x < ow; x++) out[row + x] += decoded.data[src + x] * wy[y] * wx[x];
        }
    }
  }
  if (!out || !weights) throw new Error("VAE tiling: no tile was decoded");
  const plane = weights.length;
  for (let i = 0; i < out.length; i++) out[i] /= weights[i % plane];
  return { data: out, dims: [batch, outChannels, height * scale, width * scale] };
}
