// Baseline and accelerated images side by side, optionally labelled with their timings.
import { drawText, LINE_HEIGHT, measureText } from "./bitmap-font.js";
import { checkFloatImage, type FloatImage } from "./float-image.js";

type Rgb = readonly [number, number, number];

export interface SideBySideOptions {
  /** Pixels between images (default 8). */
  gap?: number;
  /** One line under each image, e.g. "baseline 1.23 s", "ToDo x2 0.61 s (2.0x)". */
  labels?: readonly string[];
  /** Integer font scale; default grows with the image width (1 below 512 px, 2 from 512...). */
  labelScale?: number;
  /** RGB in [0, 1]; default white. */
  background?: Rgb;
  /** RGB in [0, 1]; default black. */
  textColor?: Rgb;
}

/**
 * Places images left to right, tops aligned, `gap` pixels apart, on the background colour.
 * Labels are centred under their image and cut at its edges when too long.
 */
export function sideBySide(
  images: readonly FloatImage[],
  options: SideBySideOptions = {},
): FloatImage {
  if (images.length === 0) throw new Error("sideBySide needs at least one image");
  for (const [i, image] of images.entries()) checkFloatImage(image, `image ${i + 1}`);
  const gap = options.gap ?? 8;
  if (!Number.isInteger(gap) || gap < 0)
    throw new Error(`gap must be a non-negative integer, got ${gap}`);
  const labels = options.labels;
  if (labels && labels.length !== images.length) {
    throw new Error(`sideBySide got ${labels.length} labels for ${images.length} images`);
  }
  const narrowest = Math.min(...images.map((image) => image.width));
  const scale = options.labelScale ?? Math.max(1, Math.floor(narrowest / 256));
  const padding = 2 * scale;
  const labelHeight = labels ? LINE_HEIGHT * scale + 2 * padding : 0;
  const width = images.reduce((sum, image) => sum + image.width, 0) + gap * (images.length - 1);
  const height = Math.max(...images.map((image) => image.height)) + labelHeight;
  const data = new Float32Array(width * height * 3);
  const background = options.background ?? [1, 1, 1];
  for (let i = 0; i < width * height; i++) data.set(background, i * 3);
  const out: FloatImage = { width, height, data };
  let left = 0;
  for (const [index, image] of images.entries()) {
    const rowLength = image.width * 3;
    for (let y = 0; y < image.height; y++) {
      data.set(image.data.subarray(y * rowLength, (y + 1) * rowLength), (y * width + left) * 3);
    }
    const label = labels?.[index];
    if (label) {
      const textWidth = measureText(label, scale);
      const x = left + Math.max(0, Math.floor((image.width - textWidth) / 2));
      drawText(out, label, x, image.height + padding, {
        scale,
        color: options.textColor ?? [0, 0, 0],
        clipRight: left + image.width,
      });
    }
    left += image.width + gap;
  }
  return out;
}
