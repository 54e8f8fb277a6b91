// Tiled VAE decoding: where the tiles go, that blending reproduces a decoder that acts pointwise
// exactly, and that the pipeline tiles when asked (or above 1024 px) and not otherwise.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_VAE_TILING, loadPipeline, type StableDiffusionPipeline } from "../../src/index.js";
import type { HostTensor } from "../../src/pipelines/components.js";
import { decodeInTiles, tileStarts } from "../../src/pipelines/vae-tiling.js";
import { fixturePath } from "../fixtures.js";

/** A stand-in decoder that acts on each latent pixel alone: 4 channels to 3, upscaled 8x. */
async function pointwiseDecode(latents: HostTensor): Promise<HostTensor> {
  const [b, c, h, w] = latents.dims;
  const s = 8;
  const out = new Float32Array(b * 3 * h * s * w * s);
  for (let n = 0; n < b; n++)
    for (let k = 0; k < 3; k++)
      for (let y = 0; y < h * s; y++)
        for (let x = 0; x < w * s; x++) {
          let v = 0;
          for (let ch = 0; ch < c; ch++)
            v +=
              (k + 1) *
              (ch - 1.5) *
              latents.data[((n * c + ch) * h + ((y / s) | 0)) * w + ((x / s) | 0)];
          out[((n * 3 + k) * h * s + y) * w * s + x] = Math.tanh(v);
        }
  return { data: out, dims: [b, 3, h * s, w * s] };
}

function randomLatents(dims: number[]): HostTensor {
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = Math.sin(i * 12.9898) * 2;
  return { data, dims };
}

describe("VAE tiling", () => {
  it("places tiles every tile - overlap, the last one flush with the end", () => {
    expect(tileStarts(96, DEFAULT_VAE_TILING)).toEqual([0]);
    expect(tileStarts(97, DEFAULT_VAE_TILING)).toEqual([0, 1]);
    expect(tileStarts(256, DEFAULT_VAE_TILING)).toEqual([0, 80, 160]);
    expect(tileStarts(200, { tile: 96, overlap: 16 })).toEqual([0, 80, 104]);
  });

  it("blends tiles back into exactly the whole decode of a pointwise decoder", async () => {
    const latents = randomLatents([2, 4, 40, 30]);
    const whole = await pointwiseDecode(latents);
    const calls: number[][] = [];
    const tiled = await decodeInTiles(
      (t) => {
        calls.push([...t.dims]);
        return pointwiseDecode(t);
      },
      latents,
      { tile: 16, overlap: 4 },
    );
    expect(tiled.dims).toEqual(whole.dims);
    // 40 rows: starts 0, 12, 24; 30 columns: 0, 12, 14.
    expect(calls).toHaveLength(9);
    for (const dims of calls) expect(dims).toEqual([2, 4, 16, 16]);
    let worst = 0;
    for (let i = 0; i < whole.data.length; i++)
      worst = Math.max(worst, Math.abs(tiled.data[i] - whole.data[i]));
    expect(worst).toBeLessThan(1e-6);
  });

  it("decodes latents no larger than a tile whole, and rejects an overlap as large as a tile", async () => {
    const latents = randomLatents([1, 4, 8, 8]);
    let calls = 0;
    const count = (t: HostTensor) => {
      calls++;
      return pointwiseDecode(t);
    };
    await decodeInTiles(count, latents, { tile: 8, overlap: 2 });
    expect(calls).toBe(1);
    await expect(decodeInTiles(count, latents, { tile: 4, overlap: 4 })).rejects.toThrow(
      "VAE tiling: the overlap must be from 0 to tile - 1; got 4",
    );
  });
});

describe("VAE tiling in the pipeline", () => {
  let pipeline: StableDiffusionPipeline;
  beforeAll(async () => {
    pipeline = await loadPipeline(fixturePath("pipelines", "sd15-tiny"), { cacheDir: false });
  });
  afterAll(async () => {
    await pipeline.release();
  });
  const options = {
    prompt: "a cat",
    width: 128,
    height: 96,
    steps: 2,
    seed: 1,
    scheduler: "Euler",
  } as const;

  it("leaves small images whole under auto and tiles when given tiles", async () => {
    const off = await pipeline.generate({ ...options, vaeTiling: "off" });
    const auto = await pipeline.generate({ ...options, vaeTiling: "auto" });
    expect(auto.images.data).toEqual(off.images.data);
    // 16 x 12 latents in 8 x 8 tiles overlapping by 4: the image changes but keeps its size.
    const tiled = await pipeline.generate({ ...options, vaeTiling: { tile: 8, overlap: 4 } });
    expect([tiled.images.width, tiled.images.height]).toEqual([128, 96]);
    expect(tiled.images.data).not.toEqual(off.images.data);
  });
});
