/**
 * Convolution rows: the UNet's 3x3 convolutions per image size at each level (320 channels at
 * the full latent, 640 at half, 1280 at a quarter and an eighth, the deep ones also without
 * split-K) and the stride-2 downsampler, batch 2, against onnxruntime's Conv (NCHW model; its
 * WebGPU backend runs it in NHWC).
 */
import { randomValues } from "../../gpu/check.js";
import { convOutputSize, prepareConv, sameConv } from "../../gpu/kernels/conv2d.js";
import type { ConvShape } from "../../gpu/types.js";
import { GraphBuilder } from "../../onnx/builder.js";
import { buildModelBytes } from "../../onnx/model-io.js";
import { probeOutput } from "../probe-output.js";
import { matmulTilings } from "./matmul-tilings.js";
import { preparedMatmul } from "./prepared.js";
import type { KernelBench, KernelBenchCase } from "./types.js";

/** A convolution row; `splitK: 1` times it without split-K (no onnxruntime row beside it). */
function convCase(imageSize: number, shape: ConvShape, splitK?: 1): KernelBenchCase {
  const out = convOutputSize(shape);
  const { batch: b, inChannels: cin, outChannels: cout, kernel: k } = shape;
  const inputCount = b * shape.height * shape.width * cin;
  const weightCount = k * k * cin * cout;
  const name = `${k}x${k}/${shape.stride} ${b}x${shape.height}x${shape.width} ${cin}->${cout}`;
  return {
    family: "conv",
    name: splitK === 1 ? `${name} without split-K` : name,
    imageSize,
    flops: 2 * b * out.height * out.width * k * k * cin * cout,
    async prepare(ctx, variant, tiling) {
      const kernel = await prepareConv(ctx, variant, shape, { bias: true, tiling, splitK });
      const s = variant.storage;
      const tensors = [
        ctx.upload(randomValues(inputCount, 1, s), [inputCount], s),
        ctx.upload(randomValues(weightCount, 2, s), [weightCount], s),
        ctx.allocate([b * out.height * out.width * cout], s),
        ctx.upload(randomValues(cout, 3, s), [cout], s),
      ];
      return preparedMatmul(ctx, variant, kernel, tensors);
    },
    ort:
      splitK === 1
        ? undefined
        : {
            op: "Conv",
            build(storage) {
              const g = new GraphBuilder(storage === "f16" ? "float16" : "float32");
              const bias = g.castToFloat(g.input("bias", "float32", [1]));
              const x = g.add(
                g.weight("x", [b, cin, shape.height, shape.width], () =>
                  randomValues(inputCount, 1, "f32"),
                ),
                bias,
              );
              const w = g.weight("w", [cout, cin, k, k], () => randomValues(weightCount, 2, "f32"));
              const y = g.conv(
                x,
                w,
                g.weight("c", [cout], () => randomValues(cout, 3, "f32")),
                {
                  kernel: k,
                  stride: shape.stride,
                  padding: shape.padding,
                },
              );
              probeOutput(g, y, b * out.height * out.width * cout);
              return buildModelBytes(g);
            },
          },
  };
}

export const CONV_BENCH: KernelBench = {
  family: "conv",
  ortOp: "Conv",
  cases: (sizes) =>
    sizes.flatMap((size) => {
      const latent = size / 8;
      const shape = (h: number, cin: number, cout: number, stride = 1) =>
        sameConv({ batch: 2, height: h, width: h, inChannels: cin, outChannels: cout }, 3, stride);
      // The deep levels (a quarter and an eighth of the latent, 1280 channels) twice: as the
      // engine runs them (split-K where the default splits) and without split-K.
      const deep = [shape(latent / 4, 1280, 1280), shape(latent / 8, 1280, 1280)];
      return [
        convCase(size, shape(latent, 320, 320)),
        convCase(size, shape(latent / 2, 640, 640)),
        ...deep.flatMap((s) => [convCase(size, s), convCase(size, s, 1)]),
        convCase(size, shape(latent, 320, 320, 2)),
      ];
    }),
  tilings: matmulTilings,
};
