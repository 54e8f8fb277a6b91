/**
 * Float64 references for attention and for the K/V average pooling, with a per-element error
 * bound for the kernels' arithmetic (f32 throughout; on the tensor-core path f16 probabilities and
 * twice the f32 roundoff in the matrix adders). u = 2^-24.
 *
 * Attention, per output element o = sum_j p_j v_j, p = softmax(t), t_j = c q.k_j, c = log2(e) /
 * sqrt(d) (the kernels work in log2 units and use exp2):
 * - Scores: a d-term dot product plus the scaling, Higham's gamma_{d+2} bound (section 3.1):
 *   |dt_j| <= D_j = gamma_{d+2} c sum_i |q_i k_ji|, D = max_j D_j. A common offset cancels in the
 *   normalisation, so each weight changes by a factor within 2^(+-2D).
 * - exp2: WGSL allows 3 + 2|x| ULP (<= 2u each) for f32 exp2; every weight passes through one exp2
 *   of its own (|x| <= R, R = max t - min t) and through at most T rescalings (T tiles of keys),
 *   whose arguments add up to at most R; each rescaling also rounds the accumulator (u) and its
 *   argument is a rounded difference (u R ln 2 relative). Relative weight error:
 *   eta = expm1(2 D ln 2) + 2u (6 + 3T + 4R) + u R ln2 (1 + T) + T u + e_p,
 *   e_p = 2^-11 where the probabilities are stored in f16 (the tensor-core path), else 0.
 *   Lazy rescaling (the tensor-core path) lets a score exceed its row's offset by up to a margin
 *   g (log2 units), so an exp2 argument reaches R + g: 4u g + u g ln2 more.
 * - Normalising weights each off by a relative eta moves them by at most 2 eta / (1 - eta)
 *   relative; the two sums (numerator over Nk terms, the row sum) add gamma_Nk each; the final
 *   reciprocal and product 3.5 ULP (WGSL's 2.5 for division, plus 1): 7u |o|.
 *   bound = (2 eta / (1 - eta) + 2 gamma_Nk)(1 + eta) sum_j p_j |v_j| + 7u |o| + store rounding.
 * Average pooling of an f x f cell: f^2 - 1 f32 adds and one product with a rounded 1/f^2:
 *   gamma_{f^2+1} sum |x| / f^2 + store rounding.
 */
import type { StorageType } from "../types.js";
import { F32_UNIT_ROUNDOFF, type Reference } from "./matmul.js";

const U = F32_UNIT_ROUNDOFF;

export interface AttentionReferenceShape {
  readonly batch: number;
  readonly queries: number;
  readonly heads: number;
  readonly headDim: number;
  readonly kvTokens: number;
  readonly keyGrid?: { readonly height: number; readonly width: number; readonly factor: number };
}

export interface AttentionArithmetic {
  readonly storage: StorageType;
  readonly tensorCore: boolean;
  /** Tiles of keys the kernel walks (rescalings of the accumulator). */
  readonly tiles: number;
  /** How far (log2 units) a score may exceed its row's offset: lazy rescaling's margin, or 0. */
  readonly rescaleMargin?: number;
}

function storeBound(storage: StorageType, value: number): number {
  return storage === "f16" ? 2 ** -11 * Math.abs(value) + 2 ** -25 : U * Math.abs(value);
}

function gamma(n: number, u: number): number {
  return (n * u) / (1 - n * u);
}

/** The token each key reads under torch's nearest rule (src/reduce/resample.ts). */
export function referenceKeyTokens(shape: AttentionReferenceShape): number[] {
  const g = shape.keyGrid;
  if (!g) return Array.from({ length: shape.kvTokens }, (_, j) => j);
  const oh = Math.floor(g.height / g.factor);
  const ow = Math.floor(g.width / g.factor);
  const pick = (i: number, side: number, out: number) => {
    const scale = Math.fround(side / out);
    return Math.min(Math.floor(Math.fround(i * scale)), side - 1);
  };
  const tokens: number[] = [];
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      tokens.push(pick(y, g.height, oh) * g.width + pick(x, g.width, ow));
  return tokens;
}

/** softmax(q k^T / sqrt(d)) v per batch entry and head, layout (B, N, H d), with bounds. */
export function referenceAttention(
  shape: AttentionReferenceShape,
  inputs: { q: Float32Array; k: Float32Array; v: Float32Array },
  model: AttentionArithmetic,
): Reference {
  const { batch, queries, heads, headDim: d, kvTokens } = shape;
  const hd = heads * d;
  const tokens = referenceKeyTokens(shape);
  const nk = tokens.length;
  const c = Math.LOG2E / Math.sqrt(d);
  const uAcc = (model.tensorCore ? 2 : 1) * U;
  const gScore = gamma(d + 2, uAcc);
  const gSum = gamma(nk, uAcc);
  const eP = model.tensorCore ? 2 ** -11 : 0;
  const margin = model.rescaleMargin ?? 0;
  const out: Reference = {
    value: new Float64Array(batch * queries * hd),
    bound: new Float64Array(batch * queries * hd),
  };
  const t = new Float64Array(nk);
  const p = new Float64Array(nk);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < queries; i++) {
        const qBase = (b * queries + i) * hd + h * d;
        let dMax = 0;
        let tMax = Number.NEGATIVE_INFINITY;
        let tMin = Number.POSITIVE_INFINITY;
        for (let j = 0; j < nk; j++) {
          const kBase = (b * kvTokens + tokens[j]) * hd + h * d;
          let dot = 0;
          let mag = 0;
          for (let e = 0; e < d; e++) {
            const x = inputs.q[qBase + e] * inputs.k[kBase + e];
            dot += x;
            mag += Math.abs(x);
          }
          t[j] = c * dot;
          dMax = Math.max(dMax, gScore * c * mag);
          tMax = Math.max(tMax, t[j]);
          tMin = Math.min(tMin, t[j]);
        }
        let sum = 0;
        for (let j = 0; j < nk; j++) {
          p[j] = 2 ** (t[j] - tMax);
          sum += p[j];
        }
        const range = tMax - tMin;
        const tiles = model.tiles;
        const eta =
          Math.expm1(2 * dMax * Math.LN2) +
          2 * U * (6 + 3 * tiles + 4 * range) +
          U * range * Math.LN2 * (1 + tiles) +
          tiles * U +
          4 * U * margin +
          U * margin * Math.LN2 +
          eP;
        const spread = (2 * eta) / (1 - eta) + 2 * gSum;
        for (let e = 0; e < d; e++) {
          let o = 0;
          let mag = 0;
          for (let j = 0; j < nk; j++) {
            const x = (p[j] / sum) * inputs.v[(b * kvTokens + tokens[j]) * hd + h * d + e];
            o += x;
            mag += Math.abs(x);
          }
          const at = qBase + e;
          out.value[at] = o;
          const error = spread * (1 + eta) * mag + 7 * U * Math.abs(o);
          out.bound[at] = error + storeBound(model.storage, Math.abs(o) + error);
        }
      }
  return out;
}

/** Mean of each whole f x f cell of a (B, H W, C) token grid -> (B, floor(H/f) floor(W/f), C). */
export function referenceAvgPool(
  shape: { batch: number; height: number; width: number; channels: number; factor: number },
  x: Float32Array,
  storage: StorageType,
): Reference {
  const { batch, height, width, channels, factor: f } = shape;
  const oh = Math.floor(height / f);
  const ow = Math.floor(width / f);
  const size = batch * oh * ow * channels;
  const out: Reference = { value: new Float64Array(size), bound: new Float64Array(size) };
  const g = gamma(f * f + 1, U);
  for (let b = 0; b < batch; b++)
    for (let y = 0; y < oh; y++)
      for (let xo = 0; xo < ow; xo++)
        for (let ch = 0; ch < channels; ch++) {
          let sum = 0;
          let mag = 0;
          for (let dy = 0; dy < f; dy++)
            for (let dx = 0; dx < f; dx++) {
              const value = x[((b * height + y * f + dy) * width + xo * f + dx) * channels + ch];
              sum += value;
              mag += Math.abs(value);
            }
          const at = ((b * oh + y) * ow + xo) * channels + ch;
          const mean = sum / (f * f);
          const error = (g * mag) / (f * f);
          out.value[at] = mean;
          out.bound[at] = error + storeBound(storage, Math.abs(mean) + error);
        }
  return out;
}
