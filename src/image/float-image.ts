// Float RGB images, the form pipelines produce and consume, and their 8-bit conversions.
// Conversions follow diffusers' VaeImageProcessor so that our PNGs hold the same bytes as
// the reference stack's: float32 arithmetic, clipping to [0, 1], numpy's rounding.

/** RGB, interleaved (H, W, 3), values in [0, 1]. */
export interface FloatImage {
  width: number;
  height: number;
  data: Float32Array;
}

export function checkFloatImage(image: FloatImage, what = "image"): void {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`${what}: invalid size ${width}x${height}`);
  }
  if (data.length !== width * height * 3) {
    throw new Error(
      `${what}: ${data.length} values do not make a ${width}x${height} RGB image (need ${width * height * 3})`,
    );
  }
}

/** Rounds half to even, as numpy's round does. */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Float RGB in [0, 1] to 8-bit RGB: clip, multiply by 255 in float32, round half to even
 * (diffusers: `clamp(0, 1)`, then numpy_to_pil's `(images * 255).round().astype("uint8")`).
 * NaN becomes 0.
 */
export function floatToRgb8(image: FloatImage): Uint8Array {
  checkFloatImage(image);
  const { data } = image;
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (!(value > 0)) continue;
    out[i] = value >= 1 ? 255 : roundHalfEven(Math.fround(value * 255));
  }
  return out;
}

/** The part of a decoded PNG this module needs. */
export interface Pixels8 {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array | Uint8ClampedArray;
}

/**
 * 8-bit gray, gray + alpha, RGB or RGBA to float RGB in [0, 1] (value / 255 in float32, as
 * diffusers' pil_to_numpy). Alpha is dropped and gray is repeated, as Pillow's
 * `convert("RGB")` does for init images.
 */
export function rgb8ToFloat(image: Pixels8): FloatImage {
  const { width, height, channels, data } = image;
  if (![1, 2, 3, 4].includes(channels) || data.length !== width * height * channels) {
    throw new Error(
      `image: ${data.length} bytes do not make a ${width}x${height} image with ${channels} channels`,
    );
  }
  const pixels = width * height;
  const out = new Float32Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const source = p * channels;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = data[channels < 3 ? source : source + c] / 255;
  }
  return { width, height, data: out };
}

/**
 * Splits a batch (B, H, W, 3) into images; each shares the batch's buffer, no copy is made.
 */
export function imagesFromBatch(
  data: Float32Array,
  batch: number,
  height: number,
  width: number,
): FloatImage[] {
  const size = height * width * 3;
  if (data.length !== batch * size) {
    throw new Error(`image batch: ${data.length} values do not make ${batch}x${height}x${width}x3`);
  }
  return Array.from({ length: batch }, (_, b) => ({
    width,
    height,
    data: data.subarray(b * size, (b + 1) * size),
  }));
}
