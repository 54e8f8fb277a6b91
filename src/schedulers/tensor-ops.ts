/**
 * Elementwise arithmetic on flat tensors and the conversions between what a model predicts
 * (noise, velocity or the clean sample) and the clean-sample estimate the samplers step with.
 */
import type { PredictionType } from "./config.js";

export type Tensor = ArrayLike<number>;

/** sum_k coefficient_k * tensor_k, in float64. */
export function combine(terms: ReadonlyArray<readonly [number, Tensor]>): Float64Array {
  const out = new Float64Array(terms[0][1].length);
  for (const [coefficient, tensor] of terms) {
    if (coefficient === 0) continue;
    for (let i = 0; i < out.length; i++) out[i] += coefficient * tensor[i];
  }
  return out;
}

/**
 * The clean-sample and noise estimates from a model output, for a sample
 * x = alpha * x0 + sigma * eps (variance preserving, alpha^2 + sigma^2 = 1). Velocity is
 * v = alpha * eps - sigma * x0 (Salimans and Ho, "Progressive Distillation", 2022, sec. 4).
 */
export function splitPrediction(
  type: PredictionType,
  modelOutput: Tensor,
  sample: Tensor,
  alpha: number,
  sigma: number,
): { x0: Float64Array; eps: Float64Array } {
  switch (type) {
    case "epsilon": {
      const eps = Float64Array.from(modelOutput);
      return {
        x0: combine([
          [1 / alpha, sample],
          [-sigma / alpha, eps],
        ]),
        eps,
      };
    }
    case "v_prediction":
      return {
        x0: combine([
          [alpha, sample],
          [-sigma, modelOutput],
        ]),
        eps: combine([
          [alpha, modelOutput],
          [sigma, sample],
        ]),
      };
    case "sample": {
      const x0 = Float64Array.from(modelOutput);
      return {
        x0,
        eps: combine([
          [1 / sigma, sample],
          [-alpha / sigma, x0],
        ]),
      };
    }
  }
}

/**
 * The clean-sample estimate of a sampler in Karras et al.'s (2022) parametrisation, where the
 * sample is x = x0 + sigma * eps and the model saw x / sqrt(sigma^2 + 1).
 */
export function denoised(
  type: PredictionType,
  modelOutput: Tensor,
  sample: Tensor,
  sigma: number,
): Float64Array {
  switch (type) {
    case "epsilon":
      return combine([
        [1, sample],
        [-sigma, modelOutput],
      ]);
    case "v_prediction":
      return combine([
        [-sigma / Math.sqrt(sigma * sigma + 1), modelOutput],
        [1 / (sigma * sigma + 1), sample],
      ]);
    case "sample":
      return Float64Array.from(modelOutput);
  }
}

export interface ClippingOptions {
  readonly clip_sample?: boolean;
  readonly clip_sample_range?: number;
  readonly thresholding?: boolean;
  readonly dynamic_thresholding_ratio?: number;
  readonly sample_max_value?: number;
}

/**
 * Clips the clean-sample estimate to [-range, range], or applies dynamic thresholding
 * (Saharia et al., "Photorealistic Text-to-Image Diffusion Models with Deep Language
 * Understanding", 2022, sec. 2.3): per batch item, s is the given percentile of |x0| clamped to
 * [1, sample_max_value], and x0 is clamped to [-s, s] and divided by s. In place.
 */
export function clipOrThreshold(
  x0: Float64Array,
  options: ClippingOptions,
  dims: readonly number[],
): Float64Array {
  if (options.thresholding === true) {
    const batch = dims[0] ?? 1;
    const size = x0.length / batch;
    for (let b = 0; b < batch; b++) {
      const item = x0.subarray(b * size, (b + 1) * size);
      const sorted = Float64Array.from(item, Math.abs).sort();
      const position = (options.dynamic_thresholding_ratio ?? 0.995) * (size - 1);
      const lo = Math.floor(position);
      const hi = Math.min(lo + 1, size - 1);
      const quantile = sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo);
      const s = Math.min(Math.max(quantile, 1), options.sample_max_value ?? 1);
      for (let i = 0; i < size; i++) item[i] = Math.min(Math.max(item[i], -s), s) / s;
    }
  } else if (options.clip_sample === true) {
    const r = options.clip_sample_range ?? 1;
    for (let i = 0; i < x0.length; i++) x0[i] = Math.min(Math.max(x0[i], -r), r);
  }
  return x0;
}
