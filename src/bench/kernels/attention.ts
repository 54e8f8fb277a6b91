/**
 * Attention rows at the UNet's level-1 shapes (batch 2, 8 heads of 40, (size/8)^2 queries):
 * self-attention over every key (also with K/V stored by head), over ToDo's nearest keys (factor
 * 2, read from the full K/V by the kernel), and cross-attention over 77 keys; self-attention at
 * levels 2 and 3 (heads of 80 and 160: the default order's tiling, and at 2048 px the candidates
 * of WIDE_HEAD_SWEEP); all against onnxruntime's com.microsoft.MultiHeadAttention (given the keys
 * it attends to: for ToDo, K/V already reduced) but the K/V stored by head;
 * at 1024 px also the tile and matrix-shape sweep of the target shape (16384 x 16384), and the
 * average pooling of K/V that avg ToDo runs before attention.
 */
import { randomValues } from "../../gpu/check.js";
import type { GpuContext } from "../../gpu/context.js";
import {
  type AttentionShape,
  type AttentionTiling,
  attentionFlops,
  attentionKeys,
  attentionTilingName,
  DEFAULT_ATTENTION_TILINGS,
  prepareAttention,
  SCORE_SCRATCH_SWEEP,
  WIDE_HEAD_SWEEP,
} from "../../gpu/kernels/attention.js";
import { prepareAvgPool } from "../../gpu/kernels/elementwise.js";
import type { MatrixShape, StorageType } from "../../gpu/types.js";
import type { KernelVariant } from "../../gpu/variants.js";
import { attr, GraphBuilder, MS_DOMAIN, type Value } from "../../onnx/builder.js";
import { buildModelBytes } from "../../onnx/model-io.js";
import { probeOutput } from "../probe-output.js";
import { prepared, variantName } from "./prepared.js";
import type { KernelBench, KernelBenchCase } from "./types.js";

const HEADS = 8;
const HEAD_DIM = 40;

/** (batch, n, channels) tokens for an onnxruntime model: a small random block tiled, plus `bias`. */
export function tiledTokens(
  g: GraphBuilder,
  name: string,
  bias: Value,
  batch: number,
  n: number,
  channels: number,
  seed: number,
): Value {
  const unit = n % 64 === 0 ? 64 : n;
  const block = g.weight(name, [1, unit, channels], () =>
    randomValues(unit * channels, seed, "f32"),
  );
  return g.add(g.op("Tile", [block, g.int64([batch, n / unit, 1])]), bias);
}

interface SweepEntry {
  readonly matrix?: string;
  readonly tiling: AttentionTiling;
}

function describe(v: KernelVariant, t: AttentionTiling): string {
  return `${variantName(v)} ${attentionTilingName(t, v.path)}`;
}

function withMatrix(ctx: GpuContext, v: KernelVariant, matrix?: string): KernelVariant {
  if (!matrix || v.path !== "tensor-core") return v;
  const found = ctx.capabilities.matrixShapes.find(
    (s: MatrixShape) => `${s.m}x${s.n}x${s.k}` === matrix,
  );
  if (!found) throw new Error(`no ${matrix} subgroup-matrix shape on this adapter`);
  return { ...v, matrix: found };
}

function attentionCase(
  name: string,
  imageSize: number,
  shape: AttentionShape,
  options: { sweep?: SweepEntry; ort?: boolean } = {},
): KernelBenchCase {
  const hd = shape.heads * shape.headDim;
  const qCount = shape.batch * shape.queries * hd;
  const kvCount = shape.batch * shape.kvTokens * hd;
  const keys = attentionKeys(shape);
  return {
    family: "attention",
    name,
    imageSize,
    flops: attentionFlops(shape),
    async prepare(ctx, variant) {
      const sweep = options.sweep;
      let v = variant;
      let tiling: AttentionTiling | undefined;
      if (sweep) {
        if (variant.path !== "tensor-core" && sweep.matrix)
          throw new Error("a tensor-core sweep entry");
        v = withMatrix(ctx, variant, sweep.matrix);
        tiling = sweep.tiling;
      }
      const kernel = await prepareAttention(ctx, v, shape, tiling);
      const s = v.storage;
      const tensors = [
        ctx.upload(randomValues(qCount, 1, s), [qCount], s),
        ctx.upload(randomValues(kvCount, 2, s), [kvCount], s),
        ctx.upload(randomValues(kvCount, 3, s), [kvCount], s),
        ctx.allocate([qCount], s),
      ];
      const launches = [kernel.launch(tensors.map((t) => t.buffer))];
      const spelling = kernel.matrixSpelling ? ` ${kernel.matrixSpelling}` : "";
      return prepared(ctx, launches, tensors, `${describe(v, kernel.tiling)}${spelling}`);
    },
    ort:
      options.ort === false
        ? undefined
        : {
            op: "MultiHeadAttention",
            build(storage: StorageType) {
              const g = new GraphBuilder(storage === "f16" ? "float16" : "float32");
              const bias = g.castToFloat(g.input("bias", "float32", [1]));
              const q = tiledTokens(g, "q", bias, shape.batch, shape.queries, hd, 1);
              const k = tiledTokens(g, "k", bias, shape.batch, keys, hd, 2);
              const v = tiledTokens(g, "v", bias, shape.batch, keys, hd, 3);
              const y = g.op(
                "MultiHeadAttention",
                [q, k, v],
                { num_heads: attr.int(shape.heads) },
                { domain: MS_DOMAIN },
              );
              probeOutput(g, y, qCount);
              return buildModelBytes(g);
            },
          },
  };
}

/** Tile and matrix-shape candidates timed at the target shape. */
export const ATTENTION_SWEEP: readonly SweepEntry[] = Object.freeze([
  { matrix: "16x16x16", tiling: { subgroups: 4, keysPerTile: 64 } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32 } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, rescale: "lazy" } },
  { matrix: "16x16x16", tiling: DEFAULT_ATTENTION_TILINGS.tensorCore },
  {
    matrix: "16x16x16",
    tiling: { subgroups: 4, keysPerTile: 32, rescale: "lazy", staging: "double" },
  },
  {
    matrix: "16x8x16",
    tiling: { subgroups: 8, keysPerTile: 32, rescale: "lazy", staging: "double" },
  },
  {
    matrix: "16x16x16",
    tiling: { subgroups: 4, keysPerTile: 32, rescale: "lazy", staging: "double", rowBlocks: 2 },
  },
  { matrix: "16x16x16", tiling: { subgroups: 4, keysPerTile: 32, rescale: "lazy", rowBlocks: 2 } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, rescale: "lazy", rowBlocks: 2 } },
  { matrix: "16x16x16", tiling: { subgroups: 2, keysPerTile: 64, rescale: "lazy", rowBlocks: 2 } },
  // The default's score scratch: rows padded by 8 words, softmax lanes one or four keys at a time.
  ...SCORE_SCRATCH_SWEEP.map((tiling) => ({ matrix: "16x16x16", tiling })),
  // The default with the launch grid transposed: resident workgroups spread over the heads.
  { matrix: "16x16x16", tiling: { ...DEFAULT_ATTENTION_TILINGS.tensorCore, headsFirst: true } },
  { matrix: "16x16x16", tiling: { subgroups: 4, keysPerTile: 64, rescale: "lazy" } },
  {
    matrix: "16x8x16",
    tiling: { subgroups: 4, keysPerTile: 32, rescale: "lazy", staging: "double", rowBlocks: 2 },
  },
  { matrix: "16x16x16", tiling: { subgroups: 4, keysPerTile: 32 } },
  { matrix: "16x8x16", tiling: { subgroups: 8, keysPerTile: 32, rescale: "lazy" } },
  { matrix: "16x16x16", tiling: { subgroups: 2, keysPerTile: 64 } },
  { matrix: "16x8x16", tiling: { subgroups: 4, keysPerTile: 64 } },
  { matrix: "16x8x8", tiling: { subgroups: 4, keysPerTile: 64 } },
  // Ablations of the 8-subgroup tiling (timed only, wrong results): what the O round trip, the
  // softmax and the staging each cost.
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, ablation: "o-in-matrices" } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, ablation: "no-softmax" } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, ablation: "mma-only" } },
  { matrix: "16x16x16", tiling: { subgroups: 8, keysPerTile: 32, ablation: "no-kv-loads" } },
  {
    matrix: "16x16x16",
    tiling: { subgroups: 8, keysPerTile: 32, rescale: "lazy", ablation: "no-kv-loads" },
  },
]);

function avgPoolCase(imageSize: number, latent: number): KernelBenchCase {
  const shape = { batch: 2, height: latent, width: latent, channels: HEADS * HEAD_DIM, factor: 2 };
  const count = shape.batch * latent * latent * shape.channels;
  const out = count / 4;
  return {
    family: "attention",
    name: `avgpool K/V 2x${latent}x${latent}x320 /2`,
    imageSize,
    bytes: (count + out) * 2, // fp16 storage
    async prepare(ctx, variant) {
      const kernel = await prepareAvgPool(ctx, variant, shape);
      const s = variant.storage;
      const tensors = [ctx.upload(randomValues(count, 1, s), [count], s), ctx.allocate([out], s)];
      const launches = [kernel.launch(tensors.map((t) => t.buffer))];
      return prepared(ctx, launches, tensors, `${s} (${kernel.bytes} bytes)`);
    },
  };
}

export const ATTENTION_BENCH: KernelBench = {
  family: "attention",
  ortOp: "MultiHeadAttention",
  cases(sizes) {
    const cases: KernelBenchCase[] = [];
    for (const size of sizes) {
      const latent = size / 8;
      const n = latent * latent;
      const base = { batch: 2, queries: n, heads: HEADS, headDim: HEAD_DIM, kvTokens: n };
      cases.push(attentionCase(`self 2x${n} x ${n} keys 8x40`, size, base));
      // K/V stored by head (AttentionShape.kvByHead): one head's K/V in fewer cache lines.
      cases.push(
        attentionCase(
          `self 2x${n} x ${n} keys 8x40 K/V by head`,
          size,
          { ...base, kvByHead: true },
          {
            ort: false,
          },
        ),
      );
      if (size === 2048) {
        const tiling = { ...DEFAULT_ATTENTION_TILINGS.tensorCore, headsFirst: true };
        const name = `sweep self 2x${n} x ${n} 16x16x16 ${attentionTilingName(tiling, "tensor-core")}`;
        cases.push(
          attentionCase(name, size, base, { sweep: { matrix: "16x16x16", tiling }, ort: false }),
        );
      }
      cases.push(
        attentionCase(`self ToDo nearest/2 2x${n} x ${n / 4} keys 8x40`, size, {
          ...base,
          keyGrid: { height: latent, width: latent, factor: 2 },
        }),
        attentionCase(`cross 2x${n} x 77 keys 8x40`, size, { ...base, kvTokens: 77 }),
        avgPoolCase(size, latent),
      );
      // Levels 2 and 3: the same 320 x 2^(level-1) channels in 8 heads of 80 and 160.
      for (const [level, headDim] of [
        [2, 80],
        [3, 160],
      ] as const) {
        const tokens = n / 4 ** (level - 1);
        const wide = { batch: 2, queries: tokens, heads: HEADS, headDim, kvTokens: tokens };
        const name = `self 2x${tokens} x ${tokens} keys 8x${headDim}`;
        cases.push(attentionCase(`${name} (level ${level})`, size, wide));
        if (size === 2048)
          for (const tiling of WIDE_HEAD_SWEEP[headDim])
            cases.push(
              attentionCase(
                `sweep ${name} 16x16x16 ${attentionTilingName(tiling, "tensor-core")}`,
                size,
                wide,
                { sweep: { matrix: "16x16x16", tiling }, ort: false },
              ),
            );
      }
      if (size === 1024)
        for (const entry of ATTENTION_SWEEP)
          cases.push(
            attentionCase(
              `sweep self 2x${n} x ${n} ${entry.matrix} ${attentionTilingName(entry.tiling, "tensor-core")}`,
              size,
              base,
              { sweep: entry, ort: false },
            ),
          );
    }
    return cases;
  },
};
