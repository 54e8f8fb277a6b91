/**
 * GEMM rows: 4096^3 (the target), and the UNet's linear layers at level 1 (the largest token
 * count) per image size: the feed-forward's GEGLU projection (320 -> 2 x 1280) and its output
 * projection (1280 -> 320, with the residual), against onnxruntime's MatMul (+ Add).
 */
import { randomValues } from "../../gpu/check.js";
import { type GemmOptions, type GemmShape, prepareGemm } from "../../gpu/kernels/gemm.js";
import { GraphBuilder } from "../../onnx/builder.js";
import { buildModelBytes } from "../../onnx/model-io.js";
import { probeOutput } from "../probe-output.js";
import { matmulTilings } from "./matmul-tilings.js";
import { preparedMatmul } from "./prepared.js";
import type { KernelBench, KernelBenchCase } from "./types.js";

function gemmCase(
  name: string,
  imageSize: number,
  shape: GemmShape,
  options: GemmOptions,
): KernelBenchCase {
  const cols = options.epilogue === "geglu" ? 2 * shape.n : shape.n;
  return {
    family: "gemm",
    name,
    imageSize,
    flops: 2 * shape.batch * shape.m * shape.k * cols,
    async prepare(ctx, variant, tiling) {
      const kernel = await prepareGemm(ctx, variant, shape, { ...options, tiling });
      const s = variant.storage;
      const tensors = [
        ctx.upload(
          randomValues(shape.batch * shape.m * shape.k, 1, s),
          [shape.batch * shape.m * shape.k],
          s,
        ),
        ctx.upload(randomValues(shape.k * cols, 2, s), [shape.k * cols], s),
        ctx.allocate([shape.batch * shape.m * shape.n], s),
        ...(options.bias ? [ctx.upload(randomValues(cols, 3, s), [cols], s)] : []),
        ...(options.residual
          ? [
              ctx.upload(
                randomValues(shape.batch * shape.m * shape.n, 4, s),
                [shape.batch * shape.m * shape.n],
                s,
              ),
            ]
          : []),
      ];
      return preparedMatmul(ctx, variant, kernel, tensors);
    },
    ort: {
      op: options.bias ? "MatMul+Add" : "MatMul",
      build(storage) {
        const g = new GraphBuilder(storage === "f16" ? "float16" : "float32");
        const bias = g.castToFloat(g.input("bias", "float32", [1]));
        const a = g.add(
          g.weight("a", [shape.batch, shape.m, shape.k], () =>
            randomValues(shape.batch * shape.m * shape.k, 1, "f32"),
          ),
          bias,
        );
        let y = g.matMul(
          a,
          g.weight("b", [shape.k, cols], () => randomValues(shape.k * cols, 2, "f32")),
        );
        if (options.bias)
          y = g.add(
            y,
            g.weight("c", [cols], () => randomValues(cols, 3, "f32")),
          );
        probeOutput(g, y, shape.batch * shape.m * cols);
        return buildModelBytes(g);
      },
    },
  };
}

export const GEMM_BENCH: KernelBench = {
  family: "gemm",
  ortOp: "MatMul",
  cases(sizes) {
    // The 4096^3 target shape rides along with real image sizes only (not with small test sizes).
    const cases =
      Math.max(0, ...sizes) >= 512
        ? [
            gemmCase(
              "4096 x 4096 x 4096",
              0,
              { batch: 1, m: 4096, n: 4096, k: 4096, sharedB: true },
              {},
            ),
          ]
        : [];
    for (const size of sizes) {
      const tokens = (size / 8) ** 2;
      cases.push(
        gemmCase(
          `ff GEGLU 2x${tokens} 320->2x1280`,
          size,
          { batch: 2, m: tokens, n: 1280, k: 320, sharedB: true },
          { bias: true, epilogue: "geglu" },
        ),
        gemmCase(
          `ff out 2x${tokens} 1280->320 +res`,
          size,
          { batch: 2, m: tokens, n: 320, k: 1280, sharedB: true },
          { bias: true, residual: true },
        ),
      );
    }
    return cases;
  },
  tilings: matmulTilings,
};
