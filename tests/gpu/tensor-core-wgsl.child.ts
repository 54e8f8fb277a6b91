// Run by tensor-core-wgsl.test.ts in a process of its own: compiles every tensor-core shader
// variant with Dawn's WGSL front end on its null backend, which (unlike SwiftShader) offers
// shader-f16, subgroups and subgroup matrices. Nothing runs: the null backend only validates.
// Prints one JSON line: how many shaders compiled and each one's errors.
import {
  type AttentionShape,
  type AttentionTiling,
  prepareAttention,
  TENSOR_CORE_ATTENTION_ORDER,
} from "../../src/gpu/kernels/attention.js";
import { CHECKED_TENSOR_CORE_TILINGS } from "../../src/gpu/kernels/attention-checks.js";
import { convSpec, sameConv } from "../../src/gpu/kernels/conv2d.js";
import { prepareUpsample2x } from "../../src/gpu/kernels/elementwise.js";
import { gemmSpec } from "../../src/gpu/kernels/gemm.js";
import {
  DEFAULT_TILINGS,
  SMALL_GRID_TILINGS,
  tilingName,
} from "../../src/gpu/kernels/matmul-kernel.js";

/** prepareAttention's refusals of a tiling that does not fit a matrix shape or head dim. */
const REFUSALS =
  /does not fit the matrix shape|lanes per row do not split the tile|bytes of workgroup memory|keys per tile do not fit workgroup memory/;

import { matmulReduceWgsl, matmulWgsl } from "../../src/gpu/kernels/matmul-wgsl.js";
import { type MatrixShape, SUBGROUP_MATRIX_FEATURE } from "../../src/gpu/types.js";
import type { KernelVariant } from "../../src/gpu/variants.js";
import { capturingContext } from "./capturing-context.js";

const { create } = (await import("webgpu")) as { create(toggles: string[]): GPU };
const gpu = create(["enable-dawn-features=allow_unsafe_apis", "backend=null"]);
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error("Dawn's null backend gave no adapter");
const device = await adapter.requestDevice({
  requiredFeatures: ["shader-f16", "subgroups", SUBGROUP_MATRIX_FEATURE] as GPUFeatureName[],
});

/** The shaders prepareAttention asks for (its first matrix spelling: Dawn's current one). */
async function attentionSources(
  variant: KernelVariant,
  shape: AttentionShape,
  tiling: AttentionTiling,
): Promise<string[]> {
  const sources: string[] = [];
  await prepareAttention(capturingContext(sources), variant, shape, tiling);
  return sources;
}

const shaders: { name: string; code: string }[] = [];
const matrices: MatrixShape[] = [
  { m: 16, n: 16, k: 16 },
  { m: 16, n: 8, k: 16 },
  { m: 16, n: 8, k: 8 },
];
for (const matrix of matrices) {
  const variant: KernelVariant = { path: "tensor-core", storage: "f16", matrix, subgroupSize: 32 };
  const tag = `${matrix.m}x${matrix.n}x${matrix.k}`;
  // Attention: every head dim the models use, self (a key count no tile divides, and one every
  // tile divides: no bounds checks in the softmax), nearest ToDo on a grid the factor does not
  // divide, cross-attention; every rescale mode and ablation.
  for (const headDim of [40, 64, 80, 160]) {
    const shapes: AttentionShape[] = [
      { batch: 2, queries: 67, heads: 2, headDim, kvTokens: 67 },
      {
        batch: 1,
        queries: 90,
        heads: 2,
        headDim,
        kvTokens: 90,
        keyGrid: { height: 9, width: 10, factor: 2 },
      },
      { batch: 1, queries: 33, heads: 2, headDim, kvTokens: 77 },
      { batch: 1, queries: 64, heads: 2, headDim, kvTokens: 64 },
    ];
    // The default order's tilings in every rescale mode, ablation and staging; the other
    // checked tilings (sweep candidates) as they are.
    const variations = [
      { rescale: "every-tile" as const },
      { rescale: "lazy" as const },
      { ablation: "o-in-matrices" as const },
      { ablation: "no-softmax" as const },
      { ablation: "mma-only" as const },
      { ablation: "no-kv-loads" as const },
      { staging: "single" as const },
    ];
    for (const base of CHECKED_TENSOR_CORE_TILINGS)
      for (const extra of TENSOR_CORE_ATTENTION_ORDER.includes(base) ? variations : [{}]) {
        const merged: AttentionTiling = { ...base, ...extra };
        // Softmax lanes on runs of adjacent keys (the default takes pairs) belong to the lazy
        // softmax: one key at a time where a variation
        // is not lazy (every-tile, the ablations).
        const lazy =
          merged.rescale === "lazy" &&
          (merged.ablation === undefined || merged.ablation === "no-kv-loads");
        const tiling: AttentionTiling = lazy ? merged : { ...merged, laneKeys: 1 };
        for (const [i, shape] of shapes.entries()) {
          let sources: string[];
          try {
            sources = await attentionSources(variant, shape, tiling);
          } catch (error) {
            // Only a tiling this matrix shape or head dim cannot take (refused before WGSL).
            if (!REFUSALS.test(String(error))) throw error;
            continue;
          }
          for (const code of sources)
            shaders.push({
              name: `attention ${tag} d${headDim} ${JSON.stringify(tiling)} #${i}`,
              code,
            });
        }
      }
  }
  // GEMM with each epilogue and the options, and 3x3 / 1x1 convolutions (stride 1 and 2).
  // Each default tiling once (the GEMMs' default is also the first small-grid tile).
  const tilings = new Set([
    DEFAULT_TILINGS.tensorCore,
    DEFAULT_TILINGS.gemm,
    DEFAULT_TILINGS.wideGemm,
    ...SMALL_GRID_TILINGS,
  ]);
  for (const tiling of tilings) {
    for (const epilogue of ["none", "gelu", "geglu"] as const)
      shaders.push({
        name: `gemm ${tag} ${epilogue} ${tilingName(tiling)}`,
        code: matmulWgsl(
          gemmSpec(
            variant,
            { batch: 2, m: 77, n: 40, k: 36, sharedB: true },
            { epilogue, bias: true, residual: epilogue !== "geglu", tiling },
          ),
        ),
      });
    for (const [kernel, stride] of [
      [3, 1],
      [3, 2],
      [1, 1],
    ] as const)
      shaders.push({
        name: `conv ${tag} ${kernel}x${kernel}/${stride} ${tilingName(tiling)}`,
        code: matmulWgsl(
          convSpec(
            variant,
            sameConv(
              { batch: 2, height: 9, width: 7, inChannels: 12, outChannels: 20 },
              kernel,
              stride,
            ),
            {
              bias: true,
              residual: stride === 1,
              tiling,
              channelsFirstInput: kernel === 3,
              channelsFirstOutput: kernel === 3,
            },
          ),
        ),
      });
    // Split-K: the split multiplies (K = 200, several K tiles per split) and their reductions,
    // a GELU GEMM with a residual, GEGLU, a channels-first GEMM and a channels-first convolution.
    const splits = [
      gemmSpec(
        variant,
        { batch: 2, m: 77, n: 40, k: 200, sharedB: true },
        { epilogue: "gelu", bias: true, residual: true, tiling, splitK: 3 },
      ),
      gemmSpec(
        variant,
        { batch: 1, m: 50, n: 40, k: 200, sharedB: true },
        { epilogue: "geglu", bias: true, tiling, splitK: 2 },
      ),
      // A transformer's proj_out written into its map (channels-first, the map added).
      gemmSpec(
        variant,
        { batch: 1, m: 70, n: 40, k: 200, sharedB: true },
        { bias: true, residual: true, planeSize: 35, tiling, splitK: 2 },
      ),
      convSpec(
        variant,
        sameConv({ batch: 2, height: 9, width: 7, inChannels: 24, outChannels: 20 }),
        {
          bias: true,
          residual: true,
          tiling,
          channelsFirstInput: true,
          channelsFirstOutput: true,
          splitK: 4,
        },
      ),
    ];
    for (const spec of splits) {
      const family = spec.label.startsWith("gemm") ? "gemm" : "conv";
      shaders.push({ name: `${family} ${tag} split ${spec.label}`, code: matmulWgsl(spec) });
      shaders.push({
        name: `${family} ${tag} split reduce ${spec.label}`,
        code: matmulReduceWgsl(spec),
      });
    }
  }
}

// The f16 storage upsample, which SwiftShader (no shader-f16) cannot run: its three copies
// (16-byte vectors, 4-byte words, and per element for a pixel of 10 bytes).
for (const channels of [8, 6, 5]) {
  const sources: string[] = [];
  await prepareUpsample2x(
    capturingContext(sources),
    { path: "portable", storage: "f16", subgroupSize: 32 },
    { batch: 2, height: 3, width: 5, channels },
  );
  for (const code of sources) shaders.push({ name: `upsample f16 ${channels} channels`, code });
}

/** Bytes of a WGSL workgroup variable's type: scalars, atomics and arrays of them. */
function typeBytes(type: string): number {
  const array = /^array<(.+),\s*(\d+)u?>$/.exec(type);
  if (array) return typeBytes(array[1].trim()) * Number(array[2]);
  const sizes: Record<string, number> = { f16: 2, f32: 4, u32: 4, i32: 4, "atomic<u32>": 4 };
  const size = sizes[type];
  if (size === undefined) throw new Error(`unknown workgroup type ${type}`);
  return size;
}

// Every workgroup variable a multiple of 16 bytes: NVIDIA's driver may place them in another
// order than declared, and a 4-byte flag among f16 tiles once left the matrix loads reading a
// misaligned tile (the lazy attention's wrong results on an H100).
const misaligned: Record<string, string[]> = {};
for (const shader of shaders)
  for (const [, name, type] of shader.code.matchAll(/var<workgroup>\s+(\w+)\s*:\s*([^;]+);/g)) {
    const bytes = typeBytes(type.trim());
    if (bytes % 16 !== 0)
      misaligned[shader.name] = [...(misaligned[shader.name] ?? []), `${name}: ${bytes} bytes`];
  }

const failures: Record<string, string[]> = {};
for (const shader of shaders) {
  const module = device.createShaderModule({ code: shader.code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error").map((m) => m.message);
  if (errors.length > 0) failures[shader.name] = errors;
}
const names = shaders.map((s) => s.name.split(" ")[0]);
process.stdout.write(
  `${JSON.stringify({
    compiled: shaders.length,
    families: [...new Set(names)],
    lazy: shaders.filter((s) => s.code.includes("rescale_at")).length,
    everyTile: shaders.filter((s) => s.name.includes('"every-tile"')).length,
    doubleStaged: shaders.filter((s) => s.code.includes(" - kv_cur")).length,
    rowBlocks: shaders.filter((s) => s.code.includes("qf_1_0")).length,
    pairedLanes: shaders.filter((s) => s.code.includes("lane_key = part * 2u")).length,
    quadLanes: shaders.filter((s) => s.code.includes("lane_key = part * 4u")).length,
    // Split-K multiplies (a K range of their own) and reductions.
    splitK: shaders.filter((s) => s.code.includes("kt_begin = split_id")).length,
    reductions: shaders.filter((s) => s.code.includes("value += partials[at]")).length,
    // Lazy softmaxes without the bounds check (keys that fill every tile).
    // The upsample's copies: 16-byte vectors, words, elements.
    upsampleCopies: ["vec4<u32>", "array<u32>", "array<T>"].map(
      (type) =>
        shaders.filter((s) => s.name.startsWith("upsample") && s.code.includes(type)).length,
    ),
    unguarded: shaders.filter(
      (s) => s.code.includes("rescale_at") && !s.code.includes("+ lane_key <"),
    ).length,
    failures,
    misaligned,
  })}\n`,
);
process.exit(0);
