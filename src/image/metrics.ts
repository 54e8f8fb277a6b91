// How far an accelerated image is from its baseline: MSE, PSNR and SSIM on RGB images in
// [0, 1].
import { checkFloatImage, type FloatImage } from "./float-image.js";

function checkSameSize(a: FloatImage, b: FloatImage): void {
  checkFloatImage(a, "first image");
  checkFloatImage(b, "second image");
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(
      `cannot compare a ${a.width}x${a.height} image with a ${b.width}x${b.height} image; sizes must match`,
    );
  }
}

/** Mean squared error over every sample of every channel. */
export function meanSquaredError(a: FloatImage, b: FloatImage): number {
  checkSameSize(a, b);
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i] - b.data[i];
    sum += d * d;
  }
  return sum / a.data.length;
}

/** Peak signal-to-noise ratio in dB for a peak of 1; +Infinity for identical images. */
export function peakSignalToNoiseRatio(a: FloatImage, b: FloatImage): number {
  return psnrFromMse(meanSquaredError(a, b));
}

export function psnrFromMse(mse: number): number {
  return mse === 0 ? Number.POSITIVE_INFINITY : -10 * Math.log10(mse);
}

export interface SsimOptions {
  /** Side of the square Gaussian window (odd), default 11. */
  windowSize?: number;
  /** Standard deviation of the window, default 1.5. */
  sigma?: number;
  k1?: number;
  k2?: number;
  /** Dynamic range of the values, default 1. */
  dataRange?: number;
}

function gaussianWindow(size: number, sigma: number): Float64Array {
  const weights = new Float64Array(size);
  const half = (size - 1) / 2;
  let total = 0;
  for (let i = 0; i < size; i++) {
    weights[i] = Math.exp(-((i - half) ** 2) / (2 * sigma * sigma));
    total += weights[i];
  }
  for (let i = 0; i < size; i++) weights[i] /= total;
  return weights;
}

/**
 * Structural similarity (Wang, Bovik, Sheikh and Simoncelli 2004, "Image quality assessment:
 * from error visibility to structural similarity") with the paper's settings: an 11x11
 * Gaussian window of standard deviation 1.5, K1 = 0.01, K2 = 0.03, biased (population)
 * variances. The SSIM map covers the positions where the window lies wholly inside the image
 * (no padding) and no automatic downsampling is applied. Each RGB channel is scored on its
 * own and the result is the mean of the three channel means, so colour shifts count (the
 * convention of scikit-image with channel_axis and of torchmetrics).
 */
export function structuralSimilarity(
  a: FloatImage,
  b: FloatImage,
  options: SsimOptions = {},
): number {
  checkSameSize(a, b);
  const size = options.windowSize ?? 11;
  const sigma = options.sigma ?? 1.5;
  const range = options.dataRange ?? 1;
  const c1 = ((options.k1 ?? 0.01) * range) ** 2;
  const c2 = ((options.k2 ?? 0.03) * range) ** 2;
  if (!Number.isInteger(size) || size < 1 || size % 2 === 0) {
    throw new Error(`SSIM window size must be an odd positive integer, got ${size}`);
  }
  const { width, height } = a;
  if (width < size || height < size) {
    throw new Error(`SSIM needs images of at least ${size}x${size} pixels, got ${width}x${height}`);
  }
  const window = gaussianWindow(size, sigma);
  const outWidth = width - size + 1;
  const outHeight = height - size + 1;
  const pixels = width * height;
  let total = 0;
  for (let channel = 0; channel < 3; channel++) {
    // The local means of x, y, x^2, y^2 and xy: each moment filtered along rows, then columns.
    const moments = Array.from({ length: 5 }, () => new Float64Array(pixels));
    for (let p = 0; p < pixels; p++) {
      const u = a.data[p * 3 + channel];
      const v = b.data[p * 3 + channel];
      moments[0][p] = u;
      moments[1][p] = v;
      moments[2][p] = u * u;
      moments[3][p] = v * v;
      moments[4][p] = u * v;
    }
    const [mx, my, mxx, myy, mxy] = moments.map((plane) =>
      filterValid(filterValid(plane, width, height, window, true), outWidth, height, window, false),
    );
    let sum = 0;
    for (let o = 0; o < outWidth * outHeight; o++) {
      const varX = mxx[o] - mx[o] * mx[o];
      const varY = myy[o] - my[o] * my[o];
      const cov = mxy[o] - mx[o] * my[o];
      sum +=
        ((2 * mx[o] * my[o] + c1) * (2 * cov + c2)) /
        ((mx[o] * mx[o] + my[o] * my[o] + c1) * (varX + varY + c2));
    }
    total += sum / (outWidth * outHeight);
  }
  return total / 3;
}

/**
 * `plane` (width x height, row-major) correlated with `window` along its rows or its columns,
 * keeping only the positions where the window lies wholly inside.
 */
function filterValid(
  plane: Float64Array,
  width: number,
  height: number,
  window: Float64Array,
  alongRows: boolean,
): Float64Array {
  const outWidth = alongRows ? width - window.length + 1 : width;
  const outHeight = alongRows ? height : height - window.length + 1;
  const step = alongRows ? 1 : width;
  const out = new Float64Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const start = y * width + x;
      let sum = 0;
      for (let k = 0; k < window.length; k++) sum += window[k] * plane[start + k * step];
      out[y * outWidth + x] = sum;
    }
  }
  return out;
}

export interface ImageComparison {
  mse: number;
  /** dB; +Infinity when the images are identical. */
  psnr: number;
  ssim: number;
  /** Largest absolute difference of any sample. */
  maxAbsDiff: number;
}

export function compareImages(a: FloatImage, b: FloatImage): ImageComparison {
  const mse = meanSquaredError(a, b);
  let maxAbsDiff = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return { mse, psnr: psnrFromMse(mse), ssim: structuralSimilarity(a, b), maxAbsDiff };
}

/** JSON has no infinity: PSNR of identical images is written as the string "Infinity". */
export interface ImageComparisonJson {
  mse: number;
  psnr: number | "Infinity";
  ssim: number;
  maxAbsDiff: number;
}

/**
 * The JSON form of a comparison. Identical images have an infinite PSNR, written as the string
 * "Infinity" (the convention of the project's fixtures; JSON.stringify would write null).
 */
export function comparisonToJson(comparison: ImageComparison): ImageComparisonJson {
  return {
    mse: comparison.mse,
    psnr: comparison.psnr === Number.POSITIVE_INFINITY ? "Infinity" : comparison.psnr,
    ssim: comparison.ssim,
    maxAbsDiff: comparison.maxAbsDiff,
  };
}
