/**
 * Float64 references for the memory-bound kernels (norms, elementwise ops, upsampling, the
 * timestep embedding), with per-element error bounds for f32 arithmetic and a final store in the
 * storage type (u = 2^-24; WGSL's accuracy: division 2.5 ULP, inverseSqrt 2 ULP, exp 3 + 2|x|
 * ULP, sin/cos 2^-11 absolute on [-pi, pi]; one ULP <= 2u relative).
 *
 * Group norm over n = HW C/G values: the f32 sums are within gamma_n sum|x| and gamma_{n+1} sum x^2
 * (Higham 3.1, any order); mean = S1/n and E2 = S2/n add 5u each; var = E2 - mean^2 adds
 * 2|mean||dmean| + dmean^2 and two roundings 2u (E2 + |dE2|). Layer norm computes the variance
 * from the deviations: sum (x - m~)^2 = sum (x - m)^2 + C dm^2 exactly, then gamma_{C+2} for the
 * rounded deviations, squares and sum, and 5u for the division. With delta = (|dvar| + u(var +
 * eps)) / (var + eps), 1/sqrt is off by at most delta / (2 (1 - delta)^1.5) + 4u relative. The
 * affine map (x - m) r gamma + beta then rounds four times. SiLU x / (1 + exp(-x)): |silu'| < 1.1
 * carries the input error, its evaluation adds (13 + 4|x|) u |silu(x)| (exp, add, divide).
 * GELU (exact-erf form by Abramowitz-Stegun): 1e-6 |x| covers the erf approximation (7.5e-8 |x|)
 * and the f32 roundings, as in reference/matmul.ts. add / mul: one rounding. Upsampling copies.
 * Timestep embedding: the argument t * freq is rounded to f32 as in the ONNX graph (the reference
 * uses that same f32 value); the kernel reduces it by k 2 pi with a two-part constant (k C1
 * exact, errors u |r| + u |k C2| + |k| |C2 - (2 pi - C1)|) and sin/cos add 2^-11.
 */
import type { StorageType } from "../types.js";
import { F32_UNIT_ROUNDOFF, gelu, type Reference } from "./matmul.js";

const U = F32_UNIT_ROUNDOFF;

function gamma(n: number): number {
  return (n * U) / (1 - n * U);
}

function store(storage: StorageType, value: number, error: number): number {
  const magnitude = Math.abs(value) + error;
  return error + (storage === "f16" ? 2 ** -11 * magnitude + 2 ** -25 : U * magnitude);
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

function reference(size: number): Reference {
  return { value: new Float64Array(size), bound: new Float64Array(size) };
}

/** Relative error of 1/sqrt(var + eps) given the error of var. */
function rstdRelative(variance: number, varianceError: number, eps: number): number {
  const delta = (varianceError + U * (variance + eps + varianceError)) / (variance + eps);
  if (delta >= 1) return Number.POSITIVE_INFINITY;
  return delta / (2 * (1 - delta) ** 1.5) + 4 * U;
}

/** (x - mean) * rstd * gamma + beta (+ SiLU) from float64 statistics and their errors. */
function affine(
  x: number,
  mean: number,
  meanError: number,
  rstd: number,
  rstdRel: number,
  g: number,
  b: number,
  withSilu: boolean,
): { value: number; error: number } {
  const dev = x - mean;
  const devError = meanError + U * (Math.abs(dev) + meanError);
  const normal = dev * rstd;
  const e1 = devError * rstd * (1 + rstdRel) + Math.abs(dev) * rstd * rstdRel;
  const e2 = e1 + U * (Math.abs(normal) + e1);
  const scaled = normal * g;
  const e3 = Math.abs(g) * e2 + U * (Math.abs(scaled) + Math.abs(g) * e2);
  const y = scaled + b;
  const e4 = e3 + U * (Math.abs(y) + e3);
  if (!withSilu) return { value: y, error: e4 };
  const value = silu(y);
  return { value, error: 1.1 * e4 + (13 + 4 * (Math.abs(y) + e4)) * U * (Math.abs(value) + e4) };
}

export function referenceGroupNorm(
  shape: {
    batch: number;
    pixels: number;
    channels: number;
    groups: number;
    eps: number;
    silu: boolean;
  },
  inputs: { x: Float32Array; gamma: Float32Array; beta: Float32Array },
  storage: StorageType,
): Reference {
  const { batch, pixels, channels, groups, eps } = shape;
  const cpg = channels / groups;
  const n = pixels * cpg;
  const out = reference(batch * pixels * channels);
  for (let b = 0; b < batch; b++)
    for (let g = 0; g < groups; g++) {
      let s1 = 0;
      let a1 = 0;
      let s2 = 0;
      for (let p = 0; p < pixels; p++)
        for (let c = g * cpg; c < (g + 1) * cpg; c++) {
          const x = inputs.x[(b * pixels + p) * channels + c];
          s1 += x;
          a1 += Math.abs(x);
          s2 += x * x;
        }
      const mean = s1 / n;
      const e2 = s2 / n;
      const variance = Math.max(e2 - mean * mean, 0);
      const meanError = (gamma(n) * a1) / n + 5 * U * (Math.abs(mean) + (gamma(n) * a1) / n);
      const e2Error = gamma(n + 1) * e2 + 5 * U * e2 * (1 + gamma(n + 1));
      const varianceError =
        e2Error + 2 * Math.abs(mean) * meanError + meanError ** 2 + 2 * U * (e2 + e2Error);
      const rstd = 1 / Math.sqrt(variance + eps);
      const rstdRel = rstdRelative(variance, varianceError, eps);
      for (let p = 0; p < pixels; p++)
        for (let c = g * cpg; c < (g + 1) * cpg; c++) {
          const at = (b * pixels + p) * channels + c;
          const r = affine(
            inputs.x[at],
            mean,
            meanError,
            rstd,
            rstdRel,
            inputs.gamma[c],
            inputs.beta[c],
            shape.silu,
          );
          out.value[at] = r.value;
          out.bound[at] = store(storage, r.value, r.error);
        }
    }
  return out;
}

export function referenceLayerNorm(
  shape: { rows: number; channels: number; eps: number },
  inputs: { x: Float32Array; gamma: Float32Array; beta: Float32Array },
  storage: StorageType,
): Reference {
  const { rows, channels: c, eps } = shape;
  const out = reference(rows * c);
  for (let r = 0; r < rows; r++) {
    let s1 = 0;
    let a1 = 0;
    for (let j = 0; j < c; j++) {
      s1 += inputs.x[r * c + j];
      a1 += Math.abs(inputs.x[r * c + j]);
    }
    const mean = s1 / c;
    let q = 0;
    for (let j = 0; j < c; j++) q += (inputs.x[r * c + j] - mean) ** 2;
    const variance = q / c;
    const meanError = (gamma(c) * a1) / c + 5 * U * (Math.abs(mean) + (gamma(c) * a1) / c);
    const shifted = variance + meanError ** 2;
    const varianceError =
      meanError ** 2 + gamma(c + 2) * shifted + 5 * U * shifted * (1 + gamma(c + 2));
    const rstd = 1 / Math.sqrt(variance + eps);
    const rstdRel = rstdRelative(variance, varianceError, eps);
    for (let j = 0; j < c; j++) {
      const at = r * c + j;
      const y = affine(
        inputs.x[at],
        mean,
        meanError,
        rstd,
        rstdRel,
        inputs.gamma[j],
        inputs.beta[j],
        false,
      );
      out.value[at] = y.value;
      out.bound[at] = store(storage, y.value, y.error);
    }
  }
  return out;
}

export function referenceElementwise(
  op: "add" | "mul" | "silu" | "gelu",
  a: Float32Array,
  b: Float32Array | undefined,
  storage: StorageType,
): Reference {
  const out = reference(a.length);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b?.[i] ?? 0;
    let value: number;
    let error: number;
    switch (op) {
      case "add":
        value = x + y;
        error = U * Math.abs(value);
        break;
      case "mul":
        value = x * y;
        error = U * Math.abs(value);
        break;
      case "silu":
        value = silu(x);
        error = (13 + 4 * Math.abs(x)) * U * Math.abs(value);
        break;
      case "gelu":
        value = gelu(x);
        error = 1e-6 * Math.abs(x);
        break;
    }
    out.value[i] = value;
    out.bound[i] = store(storage, value, error);
  }
  return out;
}

/** Nearest 2x upsampling (B, H, W, C) -> (B, 2H, 2W, C): a copy, so any difference is an error. */
export function referenceUpsample2x(
  shape: { batch: number; height: number; width: number; channels: number },
  x: Float32Array,
): Reference {
  const { batch, height, width, channels } = shape;
  const out = reference(batch * 4 * height * width * channels);
  let at = 0;
  for (let b = 0; b < batch; b++)
    for (let y = 0; y < 2 * height; y++)
      for (let xo = 0; xo < 2 * width; xo++)
        for (let c = 0; c < channels; c++) {
          out.value[at] = x[((b * height + (y >> 1)) * width + (xo >> 1)) * channels + c];
          out.bound[at++] = Number.MIN_VALUE;
        }
  return out;
}

export function referenceTimestepEmbedding(
  t: Float32Array,
  frequencies: readonly number[],
  dim: number,
  flipSinToCos: boolean,
  reduction: { hi: number; lo: number },
  storage: StorageType,
): Reference {
  const half = frequencies.length;
  const out = reference(t.length * dim);
  const loError = Math.abs(reduction.lo - (2 * Math.PI - reduction.hi));
  for (let n = 0; n < t.length; n++)
    for (let col = 0; col < dim; col++) {
      const at = n * dim + col;
      if (col >= 2 * half) {
        out.value[at] = 0;
        out.bound[at] = Number.MIN_VALUE;
        continue;
      }
      const arg = Math.fround(t[n] * frequencies[col % half]);
      const first = col < half;
      const value = first === flipSinToCos ? Math.cos(arg) : Math.sin(arg);
      const k = Math.abs(Math.round(arg / (2 * Math.PI))) + 1;
      const error =
        2 ** -11 + U * (Math.PI + k * reduction.lo) + U * k * reduction.lo + k * loError;
      out.value[at] = value;
      out.bound[at] = store(storage, value, error);
    }
  return out;
}
