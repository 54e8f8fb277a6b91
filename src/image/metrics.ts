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
  // Five moments per pixel: x, y, x^2, y^2, xy; first filtered along rows, then columns.
  const rows = new Float64Array(5 * height * outWidth);
  const plane = height * outWidth;
  let total = 0;
  for (let channel = 0; channel < 3; channel++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < outWidth; x++) {
        let mx = 0;
        let my = 0;
        let mxx = 0;
        let myy = 0;
        let mxy = 0;
        for (let k = 0; k < size; k++) {
          const i = (y * width + x + k) * 3 + channel;
          const w = window[k];
          const u = a.data[i];
          const v = b.data[i];
          mx += w * u;
          my += w * v;
          mxx += w * u * u;
          myy += w * v * v;
          mxy += w * u * v;
        }
        const o = y * outWidth + x;
        rows[o] = mx;
        rows[plane + o] = my;
        rows[2 * plane + o] = mxx;
        rows[3 * plane + o] = myy;
        rows[4 * plane + o] = mxy;
      }
    }
    let sum = 0;
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) {
        let mx = 0;
        let my = 0;
        let mxx = 0;
        let myy = 0;
        let mxy = 0;
        for (let k = 0; k < size; k++) {
          const o = (y + k) * outWidth + x;
          const w = window[k];
          mx += w * rows[o];
          my += w * rows[plane + o];
          mxx += w * rows[2 * plane + o];
          myy += w * rows[3 * plane + o];
          mxy += w * rows[4 * plane + o];
        }
        const varX = mxx - mx * mx;
        const varY = myy - my * my;
        const cov = mxy - mx * my;
        sum +=
          ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (varX + varY + c2));
      }
    }
    total += sum / (outWidth * outHeight);
  }
  return total / 3;
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
