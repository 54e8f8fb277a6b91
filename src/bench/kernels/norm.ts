/**
 * Memory-bound rows (GB/s counted for fp16 storage: the bytes a kernel must read and write):
 * group norm with SiLU at the UNet's level-1 and level-3 maps against the decomposition our
 * builders emit for onnxruntime's WebGPU backend (which has no GroupNorm kernel: reshape,
 * InstanceNormalization in float32, affine, SiLU), layer norm against LayerNormalization,
 * elementwise add / SiLU / GELU against Add / x*Sigmoid(x) / the erf form, and nearest 2x
 * upsampling against Resize.
 */
import { randomValues } from "../../gpu/check.js";
import type { GpuContext, GpuTensor } from "../../gpu/context.js";
import {
  type ElementwiseOp,
  isBinary,
  prepareElementwise,
  prepareUpsample2x,
} from "../../gpu/kernels/elementwise.js";
import { prepareGroupNorm, prepareLayerNorm } from "../../gpu/kernels/norm.js";
import type { StorageType } from "../../gpu/types.js";
import { attr, GraphBuilder, type Value } from "../../onnx/builder.js";
import { buildModelBytes } from "../../onnx/model-io.js";
import { probeOutput } from "../probe-output.js";
import { tiledTokens } from "./attention.js";
import { prepared } from "./prepared.js";
import type { KernelBench, KernelBenchCase } from "./types.js";

const F16 = 2;

/** A norm's input x (`count` values), gamma and beta (`channels` each) and its output. */
function normTensors(
  ctx: GpuContext,
  count: number,
  channels: number,
  s: StorageType,
): GpuTensor[] {
  return [
    ctx.upload(randomValues(count, 1, s), [count], s),
    ctx.upload(randomValues(channels, 2, s), [channels], s),
    ctx.upload(randomValues(channels, 3, s), [channels], s),
    ctx.allocate([count], s),
  ];
}

function graph(storage: StorageType): { g: GraphBuilder; bias: Value } {
  const g = new GraphBuilder(storage === "f16" ? "float16" : "float32");
  return { g, bias: g.castToFloat(g.input("bias", "float32", [1])) };
}

function groupNormCase(imageSize: number, side: number, channels: number): KernelBenchCase {
  const pixels = side * side;
  const shape = { batch: 2, pixels, channels, groups: 32, eps: 1e-5, silu: true };
  const count = 2 * pixels * channels;
  return {
    family: "groupnorm",
    name: `groupnorm+silu 2x${side}x${side}x${channels} /32`,
    imageSize,
    bytes: 3 * count * F16,
    async prepare(ctx, variant) {
      const kernel = await prepareGroupNorm(ctx, variant, shape);
      const s = variant.storage;
      const t = [
        ...normTensors(ctx, count, channels, s),
        ctx.allocate([2, kernel.slices, channels, 2], "f32"),
        ctx.allocate([2, 32, 2], "f32"),
      ];
      const launches = kernel.launches({
        x: t[0].buffer,
        gamma: t[1].buffer,
        beta: t[2].buffer,
        out: t[3].buffer,
        partials: t[4].buffer,
        stats: t[5].buffer,
      });
      return prepared(ctx, launches, t, `${s} ${kernel.slices} slices`);
    },
    ort: {
      op: "InstanceNormalization decomposition",
      build(storage) {
        const { g, bias } = graph(storage);
        // NCHW as our ONNX builders feed it.
        const x = g.reshape(
          g.transpose(tiledTokens(g, "x", bias, 2, pixels, channels, 1), [0, 2, 1]),
          [2, channels, side, side],
        );
        const upcast = storage === "f16";
        const x32 = upcast ? g.cast(x, "float32") : x;
        const normed = g.op(
          "InstanceNormalization",
          [
            g.reshape(x32, [0, 32, -1]),
            g.float(new Array<number>(32).fill(1), [32], "float32"),
            g.float(new Array<number>(32).fill(0), [32], "float32"),
          ],
          { epsilon: attr.float(1e-5) },
        );
        const restored = g.reshape(normed, [2, channels, side, side]);
        const y = g.silu(
          g.add(
            g.mul(
              upcast ? g.castToFloat(restored) : restored,
              g.weight("gamma", [channels, 1, 1], () => randomValues(channels, 2, "f32")),
            ),
            g.weight("beta", [channels, 1, 1], () => randomValues(channels, 3, "f32")),
          ),
        );
        probeOutput(g, y, count);
        return buildModelBytes(g);
      },
    },
  };
}

function layerNormCase(imageSize: number, rows: number, channels: number): KernelBenchCase {
  const count = rows * channels;
  return {
    family: "layernorm",
    name: `layernorm ${rows}x${channels}`,
    imageSize,
    bytes: 2 * count * F16,
    async prepare(ctx, variant) {
      const kernel = await prepareLayerNorm(ctx, variant, { rows, channels, eps: 1e-5 });
      const s = variant.storage;
      const t = normTensors(ctx, count, channels, s);
      return prepared(ctx, [kernel.launch(t.map((x) => x.buffer))], t, s);
    },
    ort: {
      op: "LayerNormalization",
      build(storage) {
        const { g, bias } = graph(storage);
        const x = tiledTokens(g, "x", bias, 1, rows, channels, 1);
        const y = g.op(
          "LayerNormalization",
          [
            x,
            g.weight("gamma", [channels], () => randomValues(channels, 2, "f32")),
            g.weight("beta", [channels], () => randomValues(channels, 3, "f32")),
          ],
          { axis: attr.int(-1), epsilon: attr.float(1e-5) },
        );
        probeOutput(g, y, count);
        return buildModelBytes(g);
      },
    },
  };
}

function elementwiseCase(imageSize: number, op: ElementwiseOp, rows: number, channels: number) {
  const n = rows * channels;
  const binary = isBinary(op);
  const ortOps: Record<ElementwiseOp, string> = {
    add: "Add",
    mul: "Mul",
    silu: "x*Sigmoid(x)",
    gelu: "GELU (Erf form)",
  };
  const c: KernelBenchCase = {
    family: "elementwise",
    name: `${op} ${rows}x${channels}`,
    imageSize,
    bytes: (binary ? 3 : 2) * n * F16,
    async prepare(ctx, variant) {
      const kernel = await prepareElementwise(ctx, variant, op, n);
      const s = variant.storage;
      const t = [
        ctx.upload(randomValues(n, 1, s), [n], s),
        ...(binary ? [ctx.upload(randomValues(n, 2, s), [n], s)] : []),
        ctx.allocate([n], s),
      ];
      return prepared(ctx, [kernel.launch(t.map((x) => x.buffer))], t, s);
    },
    ort: {
      op: ortOps[op],
      build(storage) {
        const { g, bias } = graph(storage);
        const a = tiledTokens(g, "a", bias, 1, rows, channels, 1);
        let y: Value;
        if (op === "add" || op === "mul") {
          const b = tiledTokens(g, "b", bias, 1, rows, channels, 2);
          y = op === "add" ? g.add(a, b) : g.mul(a, b);
        } else y = op === "silu" ? g.silu(a) : g.gelu(a);
        probeOutput(g, y, n);
        return buildModelBytes(g);
      },
    },
  };
  return c;
}

function upsampleCase(imageSize: number, side: number, channels: number): KernelBenchCase {
  const count = 2 * side * side * channels;
  return {
    family: "upsample",
    name: `upsample2x 2x${side}x${side}x${channels}`,
    imageSize,
    bytes: 5 * count * F16,
    async prepare(ctx, variant) {
      const kernel = await prepareUpsample2x(ctx, variant, {
        batch: 2,
        height: side,
        width: side,
        channels,
      });
      const s = variant.storage;
      const t = [ctx.upload(randomValues(count, 1, s), [count], s), ctx.allocate([4 * count], s)];
      return prepared(ctx, [kernel.launch(t.map((x) => x.buffer))], t, s);
    },
    ort: {
      op: "Resize nearest (NCHW)",
      build(storage) {
        const { g, bias } = graph(storage);
        const x = g.reshape(tiledTokens(g, "x", bias, 2, side * side, channels, 1), [
          2,
          channels,
          side,
          side,
        ]);
        const y = g.op("Resize", [x, "", g.float([1, 1, 2, 2], [4], "float32")], {
          mode: attr.string("nearest"),
        });
        probeOutput(g, y, 4 * count);
        return buildModelBytes(g);
      },
    },
  };
}

export const GROUP_NORM_BENCH: KernelBench = {
  family: "groupnorm",
  ortOp: "InstanceNormalization decomposition",
  cases: (sizes) =>
    sizes.flatMap((size) => [
      groupNormCase(size, size / 8, 320),
      groupNormCase(size, size / 32, 1280),
    ]),
};

export const LAYER_NORM_BENCH: KernelBench = {
  family: "layernorm",
  ortOp: "LayerNormalization",
  cases: (sizes) => sizes.map((size) => layerNormCase(size, 2 * (size / 8) ** 2, 320)),
};

export const ELEMENTWISE_BENCH: KernelBench = {
  family: "elementwise",
  ortOp: "Add, Sigmoid, Erf",
  cases: (sizes) =>
    sizes.flatMap((size) =>
      (["add", "silu", "gelu"] as const).map((op) =>
        elementwiseCase(size, op, 2 * (size / 8) ** 2, op === "gelu" ? 1280 : 320),
      ),
    ),
};

export const UPSAMPLE_BENCH: KernelBench = {
  family: "upsample",
  ortOp: "Resize",
  cases: (sizes) => sizes.map((size) => upsampleCase(size, size / 16, 640)),
};
