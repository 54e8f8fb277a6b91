// Resampling for init images of another size. Separable convolution whose kernel widens by
// the scale factor when shrinking (so downscaling averages instead of aliasing), with pixel
// centres aligned and edge weights renormalized: the scheme of Pillow's resize, which
// diffusers' VaeImageProcessor uses with Lanczos by default.
import { checkFloatImage, type FloatImage } from "./float-image.js";

export type ResampleFilter = "bilinear" | "bicubic" | "lanczos";

interface Kernel {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

// Keys' cubic convolution with a = -0.5 (Keys 1981, "Cubic convolution interpolation for
// digital image processing"); Lanczos with three lobes (Duchon 1979).
const KERNELS: Readonly<Record<ResampleFilter, Kernel>> = Object.freeze({
  bilinear: { support: 1, weight: (x: number) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    weight: (x: number) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return ((t - 5) * t + 8) * t * a - 4 * a;
      return 0;
    },
  },
  lanczos: { support: 3, weight: (x: number) => (Math.abs(x) < 3 ? sinc(x) * sinc(x / 3) : 0) },
});

interface AxisWeights {
  start: Int32Array;
  count: Int32Array;
  /** `taps` weights per output sample. */
  weights: Float64Array;
  taps: number;
}

/** Weights mapping `inSize` samples (the part from `begin` to `end`) onto `outSize`. */
function axisWeights(
  kernel: Kernel,
  inSize: number,
  outSize: number,
  begin: number,
  end: number,
): AxisWeights {
  const scale = (end - begin) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = kernel.support * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const center = begin + (i + 0.5) * scale;
    const first = Math.max(0, Math.floor(center - support + 0.5));
    const last = Math.min(inSize, Math.floor(center + support + 0.5));
    let total = 0;
    for (let x = first; x < last; x++) {
      const w = kernel.weight((x + 0.5 - center) / filterScale);
      weights[i * taps + x - first] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < last - first; k++) weights[i * taps + k] /= total;
    start[i] = first;
    count[i] = last - first;
  }
  return { start, count, weights, taps };
}

function clamp01(value: number): number {
  return Math.min(Math.max(value, 0), 1);
}

export interface ResizeOptions {
  /** Default `lanczos`, as diffusers' image processor. */
  filter?: ResampleFilter;
  /** Source region [left, top, right, bottom] in pixels (fractions allowed); default all. */
  box?: readonly [number, number, number, number];
}

/**
 * Resizes an RGB float image. Results are clipped to [0, 1] after each pass, as they are
 * when 8-bit images are resampled (Lanczos and bicubic overshoot at edges).
 */
export function resizeImage(
  image: FloatImage,
  width: number,
  height: number,
  options: ResizeOptions = {},
): FloatImage {
  checkFloatImage(image);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`cannot resize to ${width}x${height}: the size must be positive integers`);
  }
  const kernel = KERNELS[options.filter ?? "lanczos"];
  if (!kernel) throw new Error(`unknown resampling filter ${JSON.stringify(options.filter)}`);
  const [left, top, right, bottom] = options.box ?? [0, 0, image.width, image.height];
  if (!(left >= 0 && top >= 0 && right <= image.width && bottom <= image.height)) {
    throw new Error(
      `resize box [${options.box}] is outside the ${image.width}x${image.height} image`,
    );
  }
  if (!(right > left && bottom > top)) throw new Error(`resize box [${options.box}] is empty`);

  let current = image;
  if (width !== image.width || left !== 0 || right !== image.width) {
    const axis = axisWeights(kernel, image.width, width, left, right);
    const out = new Float32Array(current.height * width * 3);
    const src = current.data;
    for (let y = 0; y < current.height; y++) {
      const row = y * current.width * 3;
      for (let x = 0; x < width; x++) {
        let r = 0;
        let g = 0;
        let b = 0;
        const base = x * axis.taps;
        for (let k = 0; k < axis.count[x]; k++) {
          const w = axis.weights[base + k];
          const s = row + (axis.start[x] + k) * 3;
          r += w * src[s];
          g += w * src[s + 1];
          b += w * src[s + 2];
        }
        const o = (y * width + x) * 3;
        out[o] = clamp01(r);
        out[o + 1] = clamp01(g);
        out[o + 2] = clamp01(b);
      }
    }
    current = { width, height: current.height, data: out };
  }
  if (height !== image.height || top !== 0 || bottom !== image.height) {
    const axis = axisWeights(kernel, image.height, height, top, bottom);
    const rowLength = current.width * 3;
    const out = new Float32Array(height * rowLength);
    const src = current.data;
    const sums = new Float64Array(rowLength);
    for (let y = 0; y < height; y++) {
      sums.fill(0);
      const base = y * axis.taps;
      for (let k = 0; k < axis.count[y]; k++) {
        const w = axis.weights[base + k];
        const row = (axis.start[y] + k) * rowLength;
        for (let i = 0; i < rowLength; i++) sums[i] += w * src[row + i];
      }
      for (let i = 0; i < rowLength; i++) out[y * rowLength + i] = clamp01(sums[i]);
    }
    current = { width: current.width, height, data: out };
  }
  if (current === image) return { width, height, data: image.data.slice() };
  return current;
}

/**
 * How an init image of another aspect ratio becomes the target size: `stretch` resizes it
 * whole (what diffusers does), `cover` scales it to cover the target and crops the centre.
 */
export type FitMode = "stretch" | "cover";

export function fitImage(
  image: FloatImage,
  width: number,
  height: number,
  mode: FitMode = "stretch",
  filter: ResampleFilter = "lanczos",
): FloatImage {
  if (mode === "stretch") return resizeImage(image, width, height, { filter });
  if (mode !== "cover")
    throw new Error(`unknown fit mode ${JSON.stringify(mode)}; use stretch or cover`);
  const scale = Math.max(width / image.width, height / image.height);
  const boxWidth = width / scale;
  const boxHeight = height / scale;
  const left = (image.width - boxWidth) / 2;
  const top = (image.height - boxHeight) / 2;
  return resizeImage(image, width, height, {
    filter,
    box: [left, top, left + boxWidth, top + boxHeight],
  });
}
