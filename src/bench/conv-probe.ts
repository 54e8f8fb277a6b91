/**
 * Convolution microbenchmarks: a 3x3 convolution of the UNet's shape built as the ONNX Conv
 * operator and as an explicit im2col plus MatMul (channels-first and channels-last), timed on one
 * device, to choose how the builders express convolutions for each backend.
 */

import { transposeMatrix } from "../models/layers.js";
import { attr, GraphBuilder, type Value } from "../onnx/builder.js";
import { buildModelBytes } from "../onnx/model-io.js";
import { parseDevice } from "../util/vocabulary.js";
import { probeOutput, timeProbe } from "./probe-output.js";

export type ConvVariant = "conv" | "im2col-nchw" | "im2col-nhwc" | "matmul-only";

export interface ConvShape {
  readonly batch: number;
  readonly channels: number;
  readonly outChannels: number;
  readonly size: number;
}

function values(count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  return out;
}

/** The conv weight W[o][c][dy][dx] as im2col rows: out[o][(dy * 3 + dx) * c + ch]. */
function im2colWeight(w: Float32Array, o: number, c: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let oo = 0; oo < o; oo++)
    for (let ch = 0; ch < c; ch++)
      for (let t = 0; t < 9; t++) out[oo * 9 * c + t * c + ch] = w[(oo * c + ch) * 9 + t];
  return out;
}

/** NCHW values in NHWC order. */
function channelsLast(x: Float32Array, b: number, c: number, hw: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let bb = 0; bb < b; bb++)
    for (let ch = 0; ch < c; ch++)
      for (let p = 0; p < hw; p++) out[(bb * hw + p) * c + ch] = x[(bb * c + ch) * hw + p];
  return out;
}

/** Nine shifted views of a padded map, concatenated along `axis` (the im2col columns). */
function shiftedWindows(
  g: GraphBuilder,
  padded: Value,
  size: number,
  hAxis: number,
  wAxis: number,
  channelAxis: number,
): Value {
  const views: Value[] = [];
  for (let dy = 0; dy < 3; dy++) {
    for (let dx = 0; dx < 3; dx++) {
      views.push(g.slice(padded, [dy, dx], [dy + size, dx + size], [hAxis, wAxis]));
    }
  }
  return g.concat(views, channelAxis);
}

export function buildConvProbe(variant: ConvVariant, shape: ConvShape): Uint8Array {
  const g = new GraphBuilder("float16");
  const { batch: b, channels: c, outChannels: o, size: s } = shape;
  const bias = g.castToFloat(g.input("bias", "float32", [1]));
  // The input as a weight through one Add with the graph input (see attention-probe.ts).
  const input = (dims: number[], fill: () => Float32Array) =>
    g.add(g.weight("x", dims, fill), bias);
  let out: Value;
  switch (variant) {
    case "conv": {
      const x = input([b, c, s, s], () => values(b * c * s * s));
      const w = g.weight("w", [o, c, 3, 3], () => values(o * c * 9));
      out = g.conv(x, w, undefined, { kernel: 3, padding: 1 });
      break;
    }
    case "im2col-nchw": {
      const x = input([b, c, s, s], () => values(b * c * s * s));
      const padded = g.op("Pad", [x, g.int64([0, 0, 1, 1, 0, 0, 1, 1])], {
        mode: attr.string("constant"),
      });
      const columns = g.reshape(shiftedWindows(g, padded, s, 2, 3, 1), [b, 9 * c, s * s]); // (B, 9C, HW)
      const w = g.weight("w", [o, 9 * c], () => im2colWeight(values(o * c * 9), o, c));
      out = g.matMul(w, columns); // (B, O, HW)
      break;
    }
    case "im2col-nhwc": {
      const x = input([b, s, s, c], () => channelsLast(values(b * c * s * s), b, c, s * s));
      const padded = g.op("Pad", [x, g.int64([0, 1, 1, 0, 0, 1, 1, 0])], {
        mode: attr.string("constant"),
      });
      const columns = shiftedWindows(g, padded, s, 1, 2, 3); // (B, H, W, 9C)
      const w = g.weight("w", [9 * c, o], () =>
        transposeMatrix(im2colWeight(values(o * c * 9), o, c), o, 9 * c),
      );
      out = g.matMul(columns, w); // (B, H, W, O)
      break;
    }
    case "matmul-only": {
      const x = input([b, s * s, 9 * c], () => values(b * s * s * 9 * c));
      const w = g.weight("w", [9 * c, o], () => values(o * c * 9));
      out = g.matMul(x, w);
      break;
    }
  }
  // conv and im2col-nchw compute the same (B, O, H*W) values, im2col-nhwc the same in (B, H, W, O)
  // order; matmul-only is the GEMM alone, on other data.
  probeOutput(g, out, b * o * s * s);
  return buildModelBytes(g);
}

const CONV_SHAPES: readonly ConvShape[] = [
  { batch: 2, channels: 320, outChannels: 320, size: 128 },
  { batch: 2, channels: 640, outChannels: 320, size: 128 },
  { batch: 2, channels: 1280, outChannels: 1280, size: 32 },
  { batch: 2, channels: 320, outChannels: 320, size: 256 },
];

/** Every variant at SD 1.5's convolution shapes (or `shapes`), as JSON lines. */
export async function* runConvProbes(
  deviceName: string,
  shapes: readonly ConvShape[] = CONV_SHAPES,
): AsyncGenerator<string> {
  const device = parseDevice(deviceName);
  for (const shape of shapes) {
    for (const variant of ["conv", "im2col-nchw", "im2col-nhwc", "matmul-only"] as const) {
      try {
        const median = (await timeProbe(buildConvProbe(variant, shape), device))[5];
        const flops =
          2 * shape.batch * shape.size * shape.size * 9 * shape.channels * shape.outChannels;
        yield JSON.stringify({
          ...shape,
          variant,
          medianMs: Number(median.toFixed(2)),
          tflops: Number((flops / median / 1e9).toFixed(1)),
        });
      } catch (error) {
        yield JSON.stringify({ ...shape, variant, error: (error as Error).message.split("\n")[0] });
      }
    }
  }
}
