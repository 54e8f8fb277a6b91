// Run by tuned.test.ts in a process of its own (Dawn finds its Vulkan driver through the
// environment a process starts with): one small graph whose MatMul, Conv and MultiHeadAttention
// nodes come in shapes the tuned src/gpu kernels take and in shapes they refuse, run twice by
// the kernels engine; every output against a float64 reference computed here. Prints one JSON
// line.

import type { ExecutionStats } from "../../src/engine/executor.js";
import { createKernelRunner } from "../../src/engine/runner.js";
import { GpuContext } from "../../src/gpu/context.js";
import { DEFAULT_TILINGS } from "../../src/gpu/kernels/matmul-kernel.js";
import { attr, GraphBuilder, MS_DOMAIN, type Value } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { float32, floatOutput, type RunnerTensor } from "../../src/runtime/types.js";
import { maxAbsDiff } from "../fixtures.js";

export interface TunedReport {
  /** Largest |engine - float64 reference| per output, for each of the two calls. */
  readonly diffs: Record<string, number>[];
  readonly kernels: Record<string, number>[];
  readonly submits: number[];
  readonly launches: number[];
  /** The same graph with a submit every 3 launches: its launches, submits and max |difference|. */
  chunked: {
    launches: number;
    submits: number;
    diff: number;
    /** ExecutionStats.gpu of its two calls. */
    gpu?: (ExecutionStats["gpu"] | undefined)[];
  };
  /** The same graph with splitK false: its reduction launches and max |engine - reference|. */
  unsplit: { reductions: number; diff: number };
  /**
   * The same graph with K/V stored by head before every tuned attention (kvByHeadFrom 1): max
   * |difference| from the first runner's outputs, its launches by kernel, and the label of the
   * tuned attention it compiled.
   */
  byHead: { diff: number; kernels: Record<string, number>; labels: string[] };
  /** The one-line error for a submit interval that is not a whole number of launches. */
  badSubmitEvery: string;
  /** The error of a call asked both to time its submits and to profile every launch. */
  timedAndProfiled?: string;
}

interface Tensor {
  readonly data: Float64Array;
  readonly dims: readonly number[];
}

let seed = 12345;
/** Uniform in [-1, 1) from a fixed linear congruential sequence (values exact in float32). */
function random(dims: readonly number[]): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    data[i] = Math.fround(seed / 2 ** 30 - 1);
  }
  return { data, dims };
}

/** a (..., M, K) x b (..., K, N) with broadcast batch dims (both padded to one rank here). */
function matmul(a: Tensor, b: Tensor): Tensor {
  const rank = Math.max(a.dims.length, b.dims.length);
  const pad = (d: readonly number[]) => [...new Array<number>(rank - d.length).fill(1), ...d];
  const ad = pad(a.dims);
  const bd = pad(b.dims);
  const [m, k] = ad.slice(-2);
  const n = bd[rank - 1];
  const batch = ad.slice(0, -2).map((d, i) => Math.max(d, bd[i]));
  const count = batch.reduce((x, y) => x * y, 1);
  const out = new Float64Array(count * m * n);
  for (let bi = 0; bi < count; bi++) {
    let rem = bi;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let d = batch.length - 1; d >= 0; d--) {
      const c = rem % batch[d];
      rem = Math.floor(rem / batch[d]);
      ia += (ad[d] === 1 ? 0 : c) * sa;
      ib += (bd[d] === 1 ? 0 : c) * sb;
      sa *= ad[d];
      sb *= bd[d];
    }
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let x = 0; x < k; x++)
          s += a.data[(ia * m + i) * k + x] * b.data[(ib * k + x) * n + j];
        out[(bi * m + i) * n + j] = s;
      }
  }
  return { data: out, dims: [...batch, m, n] };
}

function addBias(x: Tensor, bias: Tensor): Tensor {
  const n = bias.data.length;
  return { data: x.data.map((v, i) => v + bias.data[i % n]), dims: x.dims };
}

/** NCHW convolution with ONNX pads [top, left, bottom, right]. */
function conv(x: Tensor, w: Tensor, bias: Tensor | undefined, stride: number, pads: number[]) {
  const [nb, c, h, wd] = x.dims;
  const [o, , kh, kw] = w.dims;
  const oh = Math.floor((h + pads[0] + pads[2] - kh) / stride) + 1;
  const ow = Math.floor((wd + pads[1] + pads[3] - kw) / stride) + 1;
  const out = new Float64Array(nb * o * oh * ow);
  for (let n = 0; n < nb; n++)
    for (let oc = 0; oc < o; oc++)
      for (let y = 0; y < oh; y++)
        for (let xx = 0; xx < ow; xx++) {
          let s = bias ? bias.data[oc] : 0;
          for (let ic = 0; ic < c; ic++)
            for (let ky = 0; ky < kh; ky++)
              for (let kx = 0; kx < kw; kx++) {
                const iy = y * stride - pads[0] + ky;
                const ix = xx * stride - pads[1] + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s +=
                  x.data[((n * c + ic) * h + iy) * wd + ix] *
                  w.data[((oc * c + ic) * kh + ky) * kw + kx];
              }
          out[((n * o + oc) * oh + y) * ow + xx] = s;
        }
  return { data: out, dims: [nb, o, oh, ow] };
}

/** q (B, Nq, H d), k and v (B, Nk, H d): softmax(scale q k^T) v per head. */
function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, scale: number): Tensor {
  const [b, nq, width] = q.dims;
  const nk = k.dims[1];
  const d = width / heads;
  const out = new Float64Array(b * nq * width);
  for (let bi = 0; bi < b; bi++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < nq; i++) {
        const scores = Array.from({ length: nk }, (_, j) => {
          let s = 0;
          for (let x = 0; x < d; x++)
            s +=
              q.data[(bi * nq + i) * width + h * d + x] * k.data[(bi * nk + j) * width + h * d + x];
          return s * scale;
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((x, y) => x + y, 0);
        for (let x = 0; x < d; x++) {
          let s = 0;
          for (let j = 0; j < nk; j++) s += e[j] * v.data[(bi * nk + j) * width + h * d + x];
          out[(bi * nq + i) * width + h * d + x] = s / sum;
        }
      }
  return { data: out, dims: q.dims };
}

/** Group norm of (B, C, H, W) with per-channel scale and shift, then SiLU (unless `silu` is false). */
function groupNormSilu(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  groups: number,
  eps: number,
  silu = true,
): Tensor {
  const [b, c, h, w] = x.dims;
  const per = (c / groups) * h * w;
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < b * groups; r++) {
    const base = r * per;
    let mean = 0;
    for (let j = 0; j < per; j++) mean += x.data[base + j];
    mean /= per;
    let variance = 0;
    for (let j = 0; j < per; j++) variance += (x.data[base + j] - mean) ** 2;
    const inv = 1 / Math.sqrt(variance / per + eps);
    for (let j = 0; j < per; j++) {
      const ch = (r % groups) * (c / groups) + Math.floor(j / (h * w));
      const y = (x.data[base + j] - mean) * inv * gamma.data[ch] + beta.data[ch];
      out[base + j] = silu ? y / (1 + Math.exp(-y)) : y;
    }
  }
  return { data: out, dims: x.dims };
}

/** Layer norm over the last axis, with scale and optional bias. */
function layerNorm(x: Tensor, scale: Tensor, bias: Tensor | undefined, eps: number): Tensor {
  const c = x.dims[x.dims.length - 1];
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.data.length / c; r++) {
    const row = x.data.subarray(r * c, (r + 1) * c);
    const mean = row.reduce((a, b) => a + b, 0) / c;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / c;
    for (let j = 0; j < c; j++)
      out[r * c + j] =
        ((row[j] - mean) / Math.sqrt(variance + eps)) * scale.data[j] + (bias ? bias.data[j] : 0);
  }
  return { data: out, dims: x.dims };
}

/** erf by its Maclaurin series (float64 accurate to ~1e-9 where |x| < 6; +-1 beyond). */
function erf(x: number): number {
  if (Math.abs(x) >= 6) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** GELU in the erf form, elementwise. */
function gelu(y: Tensor): Tensor {
  return { data: y.data.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), dims: y.dims };
}

/** GEGLU: y (..., 2n) -> y[..., :n] * GELU(y[..., n:]), GELU in the erf form. */
function geglu(y: Tensor): Tensor {
  const n = y.dims[y.dims.length - 1] / 2;
  const out = new Float64Array(y.data.length / 2);
  for (let r = 0; r < out.length / n; r++)
    for (let j = 0; j < n; j++) {
      const gate = y.data[r * 2 * n + n + j];
      out[r * n + j] = y.data[r * 2 * n + j] * 0.5 * gate * (1 + erf(gate / Math.SQRT2));
    }
  return { data: out, dims: [...y.dims.slice(0, -1), n] };
}

const g = new GraphBuilder();
const feeds: Record<string, RunnerTensor> = {};
const expected = new Map<string, Tensor>();
const input = (name: string, t: Tensor): Value => {
  feeds[name] = float32(Float32Array.from(t.data), t.dims);
  return g.input(name, "float32", t.dims);
};
const weight = (name: string, t: Tensor): Value =>
  g.weight(name, t.dims, () => Float32Array.from(t.data));
const output = (value: Value, name: string, reference: Tensor): void => {
  g.output(value, name, "float32");
  expected.set(name, reference);
};
const convOp = (
  x: Value,
  w: Value,
  b: Value | undefined,
  kernel: number,
  stride: number,
  pads: number[],
) =>
  g.op("Conv", b ? [x, w, b] : [x, w], {
    kernel_shape: attr.ints([kernel, kernel]),
    strides: attr.ints([stride, stride]),
    pads: attr.ints(pads),
  });
const mha = (q: Value, k: Value, v: Value, heads: number, scale: number) =>
  g.op(
    "MultiHeadAttention",
    [q, k, v],
    { num_heads: attr.int(heads), scale: attr.float(scale) },
    { domain: MS_DOMAIN },
  );

// A Linear (MatMul + bias Add): the tuned GEMM with the bias in its epilogue.
const x = random([2, 5, 12]);
const w = random([12, 8]);
const bias = random([8]);
const xv = input("x", x);
output(
  g.add(g.matMul(xv, weight("w", w)), weight("bias", bias)),
  "linear",
  addBias(matmul(x, w), bias),
);
// Equal batch dims: a batch of tuned GEMMs.
const p = random([2, 3, 5, 4]);
const q = random([2, 3, 4, 6]);
const qv = input("q", q);
output(g.matMul(input("p", p), qv), "batched", matmul(p, q));
// a broadcast against b's batch dims: no tuned form, the portable matmul.
const r = random([5, 4]);
output(g.matMul(input("r", r), qv), "broadcast", matmul(r, q));

// Convolutions the tuned kernel takes: 3x3 padding 1 with bias, 3x3 stride 2, 1x1.
const image = random([2, 3, 6, 5]);
const iv = input("image", image);
const w3 = random([4, 3, 3, 3]);
const b3 = random([4]);
const w3v = weight("w3", w3);
output(
  convOp(iv, w3v, weight("b3", b3), 3, 1, [1, 1, 1, 1]),
  "conv3",
  conv(image, w3, b3, 1, [1, 1, 1, 1]),
);
output(
  convOp(iv, w3v, undefined, 3, 2, [1, 1, 1, 1]),
  "conv3s2",
  conv(image, w3, undefined, 2, [1, 1, 1, 1]),
);
const w1 = random([5, 3, 1, 1]);
const b1 = random([5]);
output(
  convOp(iv, weight("w1", w1), weight("b1", b1), 1, 1, [0, 0, 0, 0]),
  "conv1",
  conv(image, w1, b1, 1, [0, 0, 0, 0]),
);
// The VAE encoder's bottom-right padding (tuned, the padding written); refused: weights that are
// no initializer.
output(
  convOp(iv, w3v, undefined, 3, 2, [0, 0, 1, 1]),
  "convAsymmetric",
  conv(image, w3, undefined, 2, [0, 0, 1, 1]),
);
const fedWeights = random([4, 3, 3, 3]);
output(
  convOp(iv, input("fedWeights", fedWeights), undefined, 3, 1, [1, 1, 1, 1]),
  "convFedWeights",
  conv(image, fedWeights, undefined, 1, [1, 1, 1, 1]),
);

// Attention: two heads of 8 with the default scale (tuned, K/V shorter than Q as after ToDo's
// downsampling); heads of 2 (not a multiple of 4) and another scale stay portable.
const aq = random([2, 7, 16]);
const ak = random([2, 5, 16]);
const av = random([2, 5, 16]);
const [aqv, akv, avv] = [input("aq", aq), input("ak", ak), input("av", av)];
output(
  mha(aqv, akv, avv, 2, 1 / Math.sqrt(8)),
  "attention",
  attention(aq, ak, av, 2, Math.fround(1 / Math.sqrt(8))),
);
output(
  mha(aqv, akv, avv, 8, 1 / Math.sqrt(2)),
  "attentionNarrow",
  attention(aq, ak, av, 8, Math.fround(1 / Math.sqrt(2))),
);
output(mha(aqv, akv, avv, 2, 0.3), "attentionScale", attention(aq, ak, av, 2, Math.fround(0.3)));
// Heads wider than the flash kernels take: scores on the GEMM, a softmax, the GEMM again, in
// blocks of queries (the runner below allows 288 bytes of scores at once). The VAE's one head of
// 512 (beyond every adapter's workgroup memory for the tuned kernel) in blocks of 4 queries
// (4 + 3); two heads of 136 with a scale the tuned kernel does not apply, in blocks of 2
// (2 + 2 + 2 + 1). q and k are scaled by 1/8, so a score's float32 error stays within the
// tolerance: its 512 products sum to at most 8 in magnitude, 512 * 2^-24 * 8 < 2.5e-4 before the
// scale of 1/sqrt(512), and the softmax's relative error carries it to the output.
const eighth = (t: Tensor): Tensor => ({ data: t.data.map((x) => x / 8), dims: t.dims });
const vq = eighth(random([2, 7, 512]));
const vk = eighth(random([2, 9, 512]));
const vv = random([2, 9, 512]);
output(
  mha(input("vq", vq), input("vk", vk), input("vv", vv), 1, 1 / Math.sqrt(512)),
  "attentionWide",
  attention(vq, vk, vv, 1, Math.fround(1 / Math.sqrt(512))),
);
const wq = eighth(random([2, 7, 272]));
const wk = eighth(random([2, 9, 272]));
const wv = random([2, 9, 272]);
output(
  mha(input("wq", wq), input("wk", wk), input("wv", wv), 2, 0.05),
  "attentionWideHeads",
  attention(wq, wk, wv, 2, Math.fround(0.05)),
);

// The UNet's GEGLU feed-forward projection: Linear, Split into halves, hidden * GELU(gate), all
// in the GEMM's epilogue.
const wg = random([12, 16]);
const bg = random([16]);
const [hidden, gate] = g.split(g.add(g.matMul(xv, weight("wg", wg)), weight("bg", bg)), [8, 8], -1);
output(g.mul(hidden, g.gelu(gate)), "geglu", geglu(addBias(matmul(x, wg), bg)));

// A transformer MLP's Linear and GELU, the GELU in the GEMM's epilogue.
const wm = random([12, 8]);
const bm = random([8]);
output(
  g.gelu(g.add(g.matMul(xv, weight("wm", wm)), weight("bm", bm))),
  "linearGelu",
  gelu(addBias(matmul(x, wm), bm)),
);

// A transformer's residual: x + Linear(x), the Add in the GEMM's epilogue.
const wr = random([12, 12]);
const br = random([12]);
output(g.add(xv, g.add(g.matMul(xv, weight("wr", wr)), weight("br", br))), "linearResidual", {
  data: addBias(matmul(x, wr), br).data.map((v, i) => v + x.data[i]),
  dims: [2, 5, 12],
});

/**
 * A transformer's proj_out as spatialTransformer builds it: tokens (2, 15, 12) times `w` plus
 * the bias, transposed to channels, reshaped to the map's (2, 12, 3, 5) and the map added.
 */
function projOut(name: string, w: Tensor): void {
  const tokens = random([2, 15, 12]);
  const map = random([2, 12, 3, 5]);
  const bias = random([12]);
  const mapv = input(`${name}Map`, map);
  const shape = g.shape(mapv);
  const product = g.add(
    g.matMul(input(`${name}Tokens`, tokens), weight(`${name}W`, w)),
    weight(`${name}B`, bias),
  );
  const linear = addBias(matmul(tokens, w), bias);
  const expected = new Float64Array(map.data.length);
  for (let b = 0; b < 2; b++)
    for (let c = 0; c < 12; c++)
      for (let t = 0; t < 15; t++)
        expected[(b * 12 + c) * 15 + t] =
          linear.data[(b * 15 + t) * 12 + c] + map.data[(b * 12 + c) * 15 + t];
  output(g.add(g.reshape(g.transpose(product, [0, 2, 1]), shape), mapv), name, {
    data: expected,
    dims: map.dims,
  });
}

// The GEMM writes the map's channel planes itself, the map added in its epilogue (no Transpose
// copy, no Add launch).
projOut("transformerOut", random([12, 12]));

// Group norm with SiLU as the models build it, on rows long enough (2 groups of 4 channels of
// 48 x 48: 9216 values) to be split into chunks: partial statistics, then the merged ones
// applied. The values sit around 3, so merging the chunks' statistics must be done stably.
const gnX = random([1, 8, 48, 48]);
const gnShifted: Tensor = { data: gnX.data.map((v) => Math.fround(v + 3)), dims: gnX.dims };
const gnGamma = random([8]);
const gnBeta = random([8]);
/** Group norm of `xv` (2 groups) as the models build it, before any SiLU. */
const groupNormOf = (xv: Value, gamma: Value, beta: Value): Value => {
  const normed = g.op(
    "InstanceNormalization",
    [g.reshape(xv, [0, 2, -1]), g.float([1, 1], [2], "float32"), g.float([0, 0], [2], "float32")],
    { epsilon: attr.float(1e-5) },
  );
  return g.add(g.mul(g.reshape(normed, g.shape(xv)), gamma), beta);
};
const gnxv = input("gnx", gnShifted);
const gngv = weight("gng", { data: gnGamma.data, dims: [8, 1, 1] });
const gnbv = weight("gnb", { data: gnBeta.data, dims: [8, 1, 1] });
const gnLong = groupNormSilu(gnShifted, gnGamma, gnBeta, 2, 1e-5);
output(g.silu(groupNormOf(gnxv, gngv, gnbv)), "groupNormLong", gnLong);
// The same group norm read by a convolution alone: the group norm writes the NHWC input the
// tuned convolution reads (no transposing copy; the split kernels write it pixel by pixel). A
// 1x1 convolution, so its dot products (8 terms of SiLU'd values below 2.8) stay in the bound.
const wgc = random([3, 8, 1, 1]);
const bgc = random([3]);
output(
  convOp(
    g.silu(groupNormOf(gnxv, gngv, gnbv)),
    weight("wgc", wgc),
    weight("bgc", bgc),
    1,
    1,
    [0, 0, 0, 0],
  ),
  "groupNormConv",
  conv(gnLong, wgc, bgc, 1, [0, 0, 0, 0]),
);
// A transformer's tokens: group norm, then (B, C, H W) and (B, H W, C), written as tokens by the
// one-kernel group norm (no Transpose copy).
const tx = random([2, 4, 3, 5]);
const tg = random([4]);
const tb = random([4]);
{
  const normed = groupNormSilu(tx, tg, tb, 2, 1e-5, false);
  const tokens = new Float64Array(normed.data.length);
  for (let b = 0; b < 2; b++)
    for (let c = 0; c < 4; c++)
      for (let t = 0; t < 15; t++) tokens[(b * 15 + t) * 4 + c] = normed.data[(b * 4 + c) * 15 + t];
  const gamma = weight("tg", { data: tg.data, dims: [4, 1, 1] });
  const beta = weight("tb", { data: tb.data, dims: [4, 1, 1] });
  output(
    g.transpose(g.reshape(groupNormOf(input("tx", tx), gamma, beta), [0, 0, -1]), [0, 2, 1]),
    "groupNormTokens",
    { data: tokens, dims: [2, 15, 4] },
  );
}
// A resnet's shortcut + conv2(h): the Add in the tuned convolution's epilogue.
const shortcut = random([2, 4, 6, 5]);
output(
  g.add(input("shortcut", shortcut), convOp(iv, w3v, weight("b3r", b3), 3, 1, [1, 1, 1, 1])),
  "convResidual",
  {
    data: conv(image, w3, b3, 1, [1, 1, 1, 1]).data.map((v, i) => v + shortcut.data[i]),
    dims: shortcut.dims,
  },
);

// A convolution over K = 64 x 3 x 3 = 576 on a 2 x 4 x 4 map: one output tile, so it splits K in
// two by default (defaultSplitK), its partial sums added by a reduction. Inputs and weights are
// in [-1/32, 1/32), so the 576-term products sum to at most 576 / 1024 in magnitude and float32
// errs by at most 576 * 2^-24 * 0.5625 < 2e-5 (the bound above, same tolerance).
const thirtySecond = (t: Tensor): Tensor => ({ data: t.data.map((x) => x / 32), dims: t.dims });
const deep = thirtySecond(random([2, 64, 4, 4]));
const wd = thirtySecond(random([8, 64, 3, 3]));
output(
  convOp(input("deep", deep), weight("wd", wd), undefined, 3, 1, [1, 1, 1, 1]),
  "convSplit",
  conv(deep, wd, undefined, 1, [1, 1, 1, 1]),
);

// With one weight matrix per image the GEMM is batched, so it cannot write the map's planes: the
// Linear runs with its bias, then the Transpose, Reshape and Add on their own (the fallback).
projOut("transformerOutBatched", random([2, 12, 12]));

// Concat: two parts (a UNet skip connection, along channels; and along the last axis) in one
// launch, three parts by a copy each. Each first part comes from a Softmax over the last axis,
// a device op, since a Concat of host values alone runs on the host.
function concat(parts: readonly Tensor[], axis: number): Tensor {
  const dims = [...parts[0].dims];
  dims[axis] = parts.reduce((a, t) => a + t.dims[axis], 0);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const data: number[] = [];
  for (let o = 0; o < outer; o++)
    for (const t of parts) {
      const run = t.dims[axis] * inner;
      data.push(...t.data.subarray(o * run, (o + 1) * run));
    }
  return { data: Float64Array.from(data), dims };
}
function softmaxOf(name: string, t: Tensor): [Value, Tensor] {
  const n = t.dims[t.dims.length - 1];
  const data = new Float64Array(t.data.length);
  for (let r = 0; r < data.length; r += n) {
    const row = t.data.subarray(r, r + n);
    const max = Math.max(...row);
    const sum = row.reduce((a, x) => a + Math.exp(x - max), 0);
    for (let j = 0; j < n; j++) data[r + j] = Math.exp(row[j] - max) / sum;
  }
  return [g.op("Softmax", [input(name, t)], { axis: attr.int(-1) }), { data, dims: t.dims }];
}
{
  const [decoderV, decoder] = softmaxOf("decoder", random([2, 3, 4, 5]));
  const skip = random([2, 2, 4, 5]);
  output(
    g.op("Concat", [decoderV, input("skip", skip)], { axis: attr.int(1) }),
    "concatChannels",
    concat([decoder, skip], 1),
  );
  const [leftV, left] = softmaxOf("left", random([2, 3, 4]));
  const right = random([2, 3, 1]);
  output(
    g.op("Concat", [leftV, input("right", right)], { axis: attr.int(-1) }),
    "concatLast",
    concat([left, right], 2),
  );
  const [thirdV, third] = softmaxOf("third", random([1, 3, 4]));
  output(
    g.op("Concat", [thirdV, leftV, thirdV], { axis: attr.int(0) }),
    "concatThree",
    concat([third, left, third], 0),
  );
}

// Layer norm with scale and bias (tuned); without a bias it stays portable.
const scale = random([12]);
const shift = random([12]);
const sv = weight("scale", scale);
const eps = { epsilon: attr.float(1e-5), axis: attr.int(-1) };
output(
  g.op("LayerNormalization", [xv, sv, weight("shift", shift)], eps),
  "layerNorm",
  layerNorm(x, scale, shift, Math.fround(1e-5)),
);
output(
  g.op("LayerNormalization", [xv, sv], eps),
  "layerNormNoBias",
  layerNorm(x, scale, undefined, Math.fround(1e-5)),
);

// One device for the runners below, so the second finds the first's kernels compiled.
const context = await GpuContext.create();
const executor = {
  // Every convolution (but the padded one) reads its NCHW input directly, as the VAE's do.
  channelsFirstConv: true,
  attentionScoreBytes: 288,
  // src/gpu's default portable tile (on a fallback adapter such as SwiftShader the engine would
  // take the small one, which the conformance cases run).
  portableTiling: DEFAULT_TILINGS.portable,
};
const runner = await createKernelRunner(buildModelBytes(g), { context, executor });
const report: TunedReport = {
  diffs: [],
  kernels: [],
  submits: [],
  launches: [],
  chunked: { launches: 0, submits: 0, diff: Number.NaN },
  unsplit: { reductions: Number.NaN, diff: Number.NaN },
  byHead: { diff: Number.NaN, kernels: {}, labels: [] },
  badSubmitEvery: "",
};
let first: Awaited<ReturnType<typeof runner.run>> | undefined;
for (let call = 0; call < 2; call++) {
  const outputs = await runner.run(feeds);
  first ??= outputs;
  const diffs: Record<string, number> = {};
  for (const [name, reference] of expected) {
    const out = floatOutput(outputs, name);
    if (out.dims.join(",") !== reference.dims.join(","))
      throw new Error(`${name}: dims [${out.dims}], expected [${reference.dims}]`);
    diffs[name] = maxAbsDiff(out.data, reference.data);
  }
  report.diffs.push(diffs);
  report.kernels.push({ ...runner.lastStats.kernels });
  report.submits.push(runner.lastStats.submits);
  report.launches.push(runner.lastStats.launches);
}
await runner.release();

// Submitting as the call is recorded changes when the GPU starts, not what it computes. Its
// passes timed on the GPU (timeSubmits), two calls in a row: each reports its own passes.
const chunked = await createKernelRunner(buildModelBytes(g), {
  context,
  executor: { ...executor, submitEvery: 3, timeSubmits: true },
});
/** The largest |difference| of any output from the first runner's. */
const diffFromFirst = (outputs: NonNullable<typeof first>): number =>
  Math.max(
    ...[...expected.keys()].map((name) =>
      maxAbsDiff(floatOutput(outputs, name).data, floatOutput(first ?? outputs, name).data),
    ),
  );
let again = await chunked.run(feeds);
const firstGpu = chunked.lastStats.gpu;
again = await chunked.run(feeds);
const diff = diffFromFirst(again);
report.chunked = {
  launches: chunked.lastStats.launches,
  submits: chunked.lastStats.submits,
  diff,
  gpu: [firstGpu, chunked.lastStats.gpu],
};
await chunked.release();

// Without split-K the head of 512's score products run unsplit: no reductions, the same results
// within the reference's bound (the sums group differently, so not bit for bit).
const unsplit = await createKernelRunner(buildModelBytes(g), {
  context,
  executor: { ...executor, splitK: false },
});
const whole = await unsplit.run(feeds);
let unsplitDiff = 0;
for (const [name, reference] of expected)
  unsplitDiff = Math.max(unsplitDiff, maxAbsDiff(floatOutput(whole, name).data, reference.data));
report.unsplit = {
  reductions: Object.entries(unsplit.lastStats.kernels)
    .filter(([label]) => label.endsWith(" reduce"))
    .reduce((sum, [, n]) => sum + n, 0),
  diff: unsplitDiff,
};
await unsplit.release();

// K and V stored by head: the same arithmetic on other addresses, so the same outputs bit for
// bit, with a copy of K and one of V before the tuned attention.
const byHead = await createKernelRunner(buildModelBytes(g), {
  context,
  executor: { ...executor, kvByHeadFrom: 1 },
});
const byHeadOut = await byHead.run(feeds);
report.byHead = {
  diff: diffFromFirst(byHeadOut),
  kernels: { ...byHead.lastStats.kernels },
  labels: context.pipelines.compiles
    .map((c) => c.label)
    .filter((label) => label.startsWith("attention ")),
};
await byHead.release();
await createKernelRunner(buildModelBytes(g), { context, executor: { submitEvery: 0.5 } }).then(
  (r) => r.release(),
  (error: unknown) => {
    report.badSubmitEvery = error instanceof Error ? error.message : String(error);
  },
);
// Timing the submits and profiling every launch at once: refused when the call starts.
const both = await createKernelRunner(buildModelBytes(g), {
  context,
  executor: { ...executor, timeSubmits: true, profile: true },
});
await both.run(feeds).then(
  () => {
    report.timedAndProfiled = "ran";
  },
  (error: unknown) => {
    report.timedAndProfiled = error instanceof Error ? error.message : String(error);
  },
);
await both.release();
context.destroy();
process.stdout.write(`${JSON.stringify(report)}\n`);
