/**
 * Float64 references for GEMM and convolution, with a per-element error bound for a kernel that
 * computes the same thing with f32 accumulation and stores the result in f16 or f32.
 *
 * The bound (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1): a
 * sum of K products accumulated in floating point with unit roundoff u, in any order, is off by
 * at most gamma_K * sum |a_i b_i|, gamma_K = K u / (1 - K u). The kernels' inputs are exact in
 * their storage type and f16 x f16 products are exact in f32, so the accumulation is the only
 * error before the epilogue; u = 2^-24 for f32 adds, doubled for the tensor cores (whose adders
 * may truncate instead of rounding). Bias and residual adds cost one rounding each; GELU
 * magnifies an input error by at most max |GELU'| < 1.13 and adds its own evaluation error
 * (erf by Abramowitz-Stegun, 1.5e-7, plus f32 rounding: 1e-6 |x| covers both); the final store
 * rounds once to the storage type (2^-11 relative for f16, 2^-24 for f32, plus half of f16's
 * smallest subnormal).
 */
import type { ConvShape, StorageType } from "../types.js";

export const F32_UNIT_ROUNDOFF = 2 ** -24;
const GELU_SLOPE = 1.13;
const GELU_EVALUATION = 1e-6;

/** erf in float64 (Taylor series below 3, continued fraction for erfc above; error < 1e-14). */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= (-a * a) / n;
      const next = term / (2 * n + 1);
      sum += next;
      if (Math.abs(next) < 1e-17 * Math.abs(sum)) break;
    }
    return (Math.sign(x) * 2 * sum) / Math.sqrt(Math.PI);
  }
  if (a > 10) return Math.sign(x);
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...))))).
  let fraction = a;
  for (let n = 60; n >= 1; n--) fraction = a + n / 2 / fraction;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / fraction;
  return Math.sign(x) * (1 - erfc);
}

export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export type ReferenceEpilogue = "none" | "gelu" | "geglu";

export interface Reference {
  readonly value: Float64Array;
  /** Largest error a correct kernel can make at each element. */
  readonly bound: Float64Array;
}

export interface ArithmeticModel {
  readonly storage: StorageType;
  /** The tensor-core path: accumulate with twice the f32 roundoff. */
  readonly tensorCore: boolean;
}

function storeRoundoff(storage: StorageType): { relative: number; absolute: number } {
  return storage === "f16"
    ? { relative: 2 ** -11, absolute: 2 ** -25 }
    : { relative: F32_UNIT_ROUNDOFF, absolute: 0 };
}

/**
 * The epilogue applied to accumulated dot products, in float64, with the error bound.
 * `dots[i]` / `mags[i]` are the exact dot product and sum of |products| of output i (and, for
 * GEGLU, `gateDots` / `gateMags` those of its gate column).
 */
function finish(
  terms: number,
  model: ArithmeticModel,
  out: Reference,
  i: number,
  dot: number,
  mag: number,
  bias: number,
  gate: { dot: number; mag: number; bias: number } | undefined,
  residual: number | undefined,
  epilogue: ReferenceEpilogue,
): void {
  const u = (model.tensorCore ? 2 : 1) * F32_UNIT_ROUNDOFF;
  const gamma = (n: number) => (n * u) / (1 - n * u);
  const preError = (d: number, m: number, b: number) =>
    gamma(terms) * m + F32_UNIT_ROUNDOFF * (Math.abs(d + b) + gamma(terms) * m);
  let h = dot + bias;
  let error = preError(dot, mag, bias);
  if (epilogue === "gelu") {
    error = GELU_SLOPE * error + GELU_EVALUATION * Math.abs(h);
    h = gelu(h);
  } else if (epilogue === "geglu" && gate) {
    const g = gate.dot + gate.bias;
    const gateError = preError(gate.dot, gate.mag, gate.bias);
    const geluG = gelu(g);
    const geluError = GELU_SLOPE * gateError + GELU_EVALUATION * Math.abs(g);
    error = Math.abs(geluG) * error + (Math.abs(h) + error) * geluError;
    h *= geluG;
    error += F32_UNIT_ROUNDOFF * Math.abs(h);
  }
  if (residual !== undefined) {
    h += residual;
    error += F32_UNIT_ROUNDOFF * (Math.abs(h) + error);
  }
  const store = storeRoundoff(model.storage);
  out.value[i] = h;
  out.bound[i] = error + store.relative * (Math.abs(h) + error) + store.absolute;
}

export interface GemmReferenceInputs {
  readonly a: Float32Array;
  readonly b: Float32Array;
  readonly bias?: Float32Array;
  readonly residual?: Float32Array;
}

/** (batch, M, N) = epilogue(A (batch, M, K) x B ((batch,) K, N')) in float64, with bounds. */
export function referenceGemm(
  shape: { batch: number; m: number; n: number; k: number; sharedB: boolean },
  inputs: GemmReferenceInputs,
  epilogue: ReferenceEpilogue,
  model: ArithmeticModel,
): Reference {
  const { batch, m, n, k } = shape;
  const cols = epilogue === "geglu" ? 2 * n : n;
  const out: Reference = {
    value: new Float64Array(batch * m * n),
    bound: new Float64Array(batch * m * n),
  };
  const dots = new Float64Array(cols);
  const mags = new Float64Array(cols);
  for (let bt = 0; bt < batch; bt++) {
    const bOffset = shape.sharedB ? 0 : bt * k * cols;
    for (let row = 0; row < m; row++) {
      dots.fill(0);
      mags.fill(0);
      const aOffset = (bt * m + row) * k;
      for (let kk = 0; kk < k; kk++) {
        const av = inputs.a[aOffset + kk];
        const bRow = bOffset + kk * cols;
        for (let col = 0; col < cols; col++) {
          const p = av * inputs.b[bRow + col];
          dots[col] += p;
          mags[col] += Math.abs(p);
        }
      }
      for (let col = 0; col < n; col++) {
        const i = (bt * m + row) * n + col;
        const gate =
          epilogue === "geglu"
            ? { dot: dots[n + col], mag: mags[n + col], bias: inputs.bias?.[n + col] ?? 0 }
            : undefined;
        const magBias = Math.abs(inputs.bias?.[col] ?? 0);
        finish(
          k + 1,
          model,
          out,
          i,
          dots[col],
          mags[col] + magBias,
          inputs.bias?.[col] ?? 0,
          gate,
          inputs.residual?.[i],
          epilogue,
        );
      }
    }
  }
  return out;
}

/** NHWC convolution (weights (KH, KW, Cin, Cout)) in float64, from its definition, with bounds. */
export function referenceConv(
  shape: ConvShape,
  inputs: { x: Float32Array; w: Float32Array; bias?: Float32Array; residual?: Float32Array },
  model: ArithmeticModel,
): Reference {
  const {
    batch,
    height: h,
    width: w,
    inChannels: cin,
    outChannels: cout,
    kernel: kw,
    stride,
    padding,
  } = shape;
  const ho = Math.floor((h + 2 * padding - kw) / stride) + 1;
  const wo = Math.floor((w + 2 * padding - kw) / stride) + 1;
  const out: Reference = {
    value: new Float64Array(batch * ho * wo * cout),
    bound: new Float64Array(batch * ho * wo * cout),
  };
  const dots = new Float64Array(cout);
  const mags = new Float64Array(cout);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        dots.fill(0);
        mags.fill(0);
        for (let ky = 0; ky < kw; ky++) {
          const iy = oy * stride - padding + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * stride - padding + kx;
            if (ix < 0 || ix >= w) continue;
            for (let c = 0; c < cin; c++) {
              const xv = inputs.x[((b * h + iy) * w + ix) * cin + c];
              const wRow = ((ky * kw + kx) * cin + c) * cout;
              for (let o = 0; o < cout; o++) {
                const p = xv * inputs.w[wRow + o];
                dots[o] += p;
                mags[o] += Math.abs(p);
              }
            }
          }
        }
        for (let o = 0; o < cout; o++) {
          const i = ((b * ho + oy) * wo + ox) * cout + o;
          const bias = inputs.bias?.[o] ?? 0;
          finish(
            kw * kw * cin + 1,
            model,
            out,
            i,
            dots[o],
            mags[o] + Math.abs(bias),
            bias,
            undefined,
            inputs.residual?.[i],
            "none",
          );
        }
      }
    }
  }
  return out;
}
